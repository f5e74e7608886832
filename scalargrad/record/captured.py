"""Python values a transformed function reads from outside its arguments, watched so that a trace
never runs with a stale one. A trace bakes such values into the tape as constants (``if flag:`` on a
global too); ``Captured.of(fun)`` notes them when a trace starts and ``changed()``, at each call,
names one that differs now, so that the transform drops its traced paths and traces again. They
are noted again after every trace, so state the function itself updates (a call counter) counts
as unchanged until something else changes it.

Watched: numbers, NumPy arrays (their contents, so ``w[:] = ...`` counts) and lists or tuples of
numbers, held in the closure cells of ``fun`` or in the globals its code names, and likewise for the
plain Python functions reached that way (helpers defined in your modules), ``functools.partial``
arguments and the functions that transforms wrap. Not watched: attributes (``self.scale``,
``config.scale``), dict items, objects passed as arguments, and ``.compile()`` kernels once handed out.
"""
from __future__ import annotations

import functools
import math
import types

import numpy as np

# Functions of these packages are not followed: their globals are the libraries' own.
LIBRARIES = frozenset({"scalargrad", "numpy", "scipy", "math", "builtins", "numba", "functools", "dask"})
MAX_FUNCTIONS = 64  # functions followed from one transformed function (a bound on the trace-time walk)
_NUMBERS = (int, float, bool, complex, np.generic)


def _fingerprint(value):
    """What a later value must equal: None for an immutable number (compared by ``==``), else a
    hashable copy of the contents; raises TypeError for values that are not watched."""
    if isinstance(value, _NUMBERS):
        return None
    if type(value) is np.ndarray and value.dtype != object:
        return (value.shape, value.dtype.str, value.tobytes())
    if type(value) in (list, tuple) and all(isinstance(v, _NUMBERS) for v in value):
        return (type(value), tuple(value))
    raise TypeError


def _same_number(a, b) -> bool:
    """Whether numbers a and b act alike in arithmetic: equal and, if zero, of the same sign (``0.0``
    and ``-0.0`` are equal but ``1 / x`` tells them apart), or both NaN (never equal to themselves)."""
    if a == b:
        if a != 0:
            return True
        try:
            return math.copysign(1.0, a) == math.copysign(1.0, b)
        except TypeError:  # complex zeros
            return True
    return a != a and b != b


def _code_names(code) -> set[str]:
    """Global names read by ``code`` and the code objects nested in it (lambdas, comprehensions)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _sources(fun):
    """(where, name) of every value a plain Python function reads from outside: its closure cells
    and the globals its code names."""
    code = fun.__code__
    cells = [(cell, name) for name, cell in zip(code.co_freevars, fun.__closure__ or ())]
    return cells + [(fun.__globals__, name) for name in sorted(_code_names(code)) if name in fun.__globals__]


def _unwrap(fun):
    """(plain Python functions behind a callable, (where, name) of the arguments a partial binds)."""
    fun = getattr(fun, "__wrapped__", fun)  # transforms wrap the function they were given
    if isinstance(fun, functools.partial):
        return [fun.func], [(fun.args, i) for i in range(len(fun.args))] + [(fun.keywords, k) for k in fun.keywords]
    if isinstance(fun, types.MethodType):
        return [fun.__func__], []
    if isinstance(fun, types.FunctionType):
        return [fun], []
    call = getattr(type(fun), "__call__", None)
    return ([call] if isinstance(call, types.FunctionType) else []), []


_CELL = types.CellType


def _read(where, name):
    return where.cell_contents if type(where) is _CELL else where[name]


def _matches(value, fingerprint: tuple) -> bool:
    """Whether ``value`` has the contents that ``fingerprint`` (of an array, list or tuple) noted."""
    if type(value) is np.ndarray:
        return value.shape == fingerprint[0] and value.tobytes() == fingerprint[2] and value.dtype.str == fingerprint[1]
    then = fingerprint[1]
    return type(value) is fingerprint[0] and len(value) == len(then) and all(map(_same_number, value, then))


class Captured:
    """The watched values of one traced function: (where, name, value, fingerprint) each; where is a
    closure cell, a globals dict, or a partial's arguments (a tuple, or its keywords dict)."""

    __slots__ = ("entries",)

    def __init__(self, entries):
        self.entries = entries

    @classmethod
    def of(cls, fun) -> Captured:
        entries, seen, todo = [], set(), [fun]
        while todo and len(seen) < MAX_FUNCTIONS:
            functions, sources = _unwrap(todo.pop())
            for fn in functions:
                if id(fn) not in seen and (fn.__module__ or "").split(".")[0] not in LIBRARIES:
                    seen.add(id(fn))
                    sources += _sources(fn)
            for where, name in sources:
                try:
                    value = _read(where, name)
                except ValueError:  # an empty cell: a variable assigned later in the enclosing scope
                    continue
                if callable(value):
                    todo.append(value)
                    continue
                try:
                    entries.append((where, name, value, _fingerprint(value)))
                except TypeError:  # not a value we watch
                    pass
        return cls(tuple(entries))

    def changed(self) -> str | None:
        """The name of a watched value that is not what it was at the trace, or None (about 0.1 µs
        a number; an array costs a copy of its bytes)."""
        for where, name, then, fingerprint in self.entries:
            try:
                now = where.cell_contents if type(where) is _CELL else where[name]
            except (KeyError, ValueError):  # deleted since
                return str(name)
            if now is then:  # the common case: the same object, so only its contents can differ
                if fingerprint is None or (now.tobytes() == fingerprint[2] and now.shape == fingerprint[0]
                                           if type(now) is np.ndarray else _matches(now, fingerprint)):
                    continue
            elif fingerprint is None:
                if type(now) is type(then) and (now == then and now != 0 or _same_number(now, then)):
                    continue
            elif _matches(now, fingerprint):  # rebound to another array, list or tuple
                continue
            return str(name)
        return None
