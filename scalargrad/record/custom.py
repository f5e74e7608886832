"""User-defined scalar ops: ``sg.custom_op(name, forward, partials)``.

A custom op is a unary or binary scalar function with its own partial derivatives, all plain
Python functions that Numba compiles in nopython mode. Registered ops record like built-in ones
(one instruction, op row ``custom1``/``custom2`` of the table with the op's id as the literal), run
in the same compiled sweeps (through C function pointers, see jit/custom_call.py), and compose with
every transform, because each partial derivative is itself a custom op: give a partial as another
``custom_op`` (with its own partials) to differentiate twice or more. A partial given as a plain
function written with operators and ``sg.<op>`` functions (``3.0 * a * a``, ``sg.sigmoid(a)``;
numba_functions.py compiles the latter) is differentiated again by recording its own ops; one that
calls ``math`` functions can be evaluated but not differentiated again, and trying to raises
NotImplementedError.

The functions must be pure (the passes merge repeated calls with equal arguments) and are compiled
with ``error_model="numpy"`` like the built-in ops: 1/0 gives inf, not an exception. An exception a
function raises reaches the caller from Python-level calls (eager use, tracing); inside a compiled
sweep it cannot, and the result there is NaN (``debug_nans`` names the instruction). The id is a
CRC-32 of the name, so a saved or pickled tape finds its ops in any process that registers them.
Registering a name again with other functions replaces its definition everywhere it is used, except
in kernels handed out by ``compile()`` (the replaced ops stay alive for them).
"""
from __future__ import annotations

import inspect
import re
import threading
import warnings
import zlib

import numba
import numpy as np

from ..core.ops import CUSTOM_ROWS, OPS
from ..core.registry import CUSTOM_OPS, REPLACED
from ..jit.custom_ops import C_SIGNATURE, refresh_programs
from . import numba_functions
from .operators import RECORD
from .tracing import trace
from .variable import is_operand

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_LOCK = threading.Lock()


class CustomOp:
    """A registered op. Call it on Variables (records), floats (a float) or arrays (elementwise)."""

    __slots__ = ("name", "id", "arity", "function", "partials", "origin", "_jitted", "_cfunc", "_record", "_traces")

    def __init__(self, name, function, arity, partials, origin=""):
        self.name, self.id, self.arity = name, op_id(name), arity
        self.function = function
        self.partials = partials  # tuple of CustomOp, one per operand; None: not differentiable
        self.origin = origin      # for a partial made from a plain function: whose partial it is
        self._jitted, self._cfunc = _compile(origin or f"the forward function of {name!r}", function, arity)
        self._record = RECORD[OPS[CUSTOM_ROWS[arity]].name]
        self._traces = None  # for a plain partial: whether its function records table ops (inline)

    def __call__(self, *args):
        if len(args) != self.arity:
            raise TypeError(f"custom op {self.name!r} takes {self.arity} argument{'s' * (self.arity > 1)}, "
                            f"got {len(args)}")
        for i, x in enumerate(args):
            if not (is_operand(x) or isinstance(x, np.ndarray)):
                raise TypeError(f"custom op {self.name!r}: operand {i} must be a Variable, a real number "
                                f"or an array, got {type(x).__name__}")
        return self._record(*args, float(self.id))

    def __reduce__(self):
        """Pickled by name: unpickling finds the op registered under that name in the process
        (ValueError if there is none), as a pickled tape does."""
        return registered, (self.name,)

    @property
    def __name__(self) -> str:  # so that sg.grad(op) and friends name it in messages
        return self.name

    def __repr__(self) -> str:
        return f"<custom op {self.name!r}: {self.arity} operand{'s' * (self.arity > 1)}>"

    @property
    def address(self) -> int:
        """Address of the compiled C function ``double(double a, double b)``."""
        return self._cfunc.address

    def inline(self, *args):
        """A partial given as a plain function, applied to ``args`` so that it records its own table
        ops (differentiable again, to any order) when the function traces, which a function that
        Numba compiles does when it uses operators and ``sg.<op>`` functions only (``3.0 * a * a``,
        ``sg.exp(a)``; ``math.*`` does not trace); checked once, by tracing it. None otherwise (or for any other
        op): the caller records the op as one instruction."""
        if self.partials is not None or not self.origin:
            return None
        if self._traces is None:
            try:
                trace(self.function, *([0.5] * self.arity))
                self._traces = True
            except Exception:  # math.* on a traced value, a numba.njit helper, ...: not traceable
                self._traces = False
        return self.function(*args) if self._traces else None

    def partial(self, j: int) -> "CustomOp":
        """The op computing d(self)/d(operand j); NotImplementedError if there is none."""
        if self.partials is None:
            raise NotImplementedError(
                f"custom op {self.name!r} cannot be differentiated: it is {self.origin}, given as a plain "
                "function that does not trace (it calls math.* or compiled functions). To differentiate "
                "through it, write it with operators only, or give it as an sg.custom_op with its own "
                "partials.")
        return self.partials[j]

    def evaluate(self, which: int, a, b) -> float:
        """Function ``which`` at (a, b): 0 the op itself, j + 1 its partial in operand j."""
        fn = self if which == 0 else self.partial(which - 1)
        return float(fn._jitted(a) if fn.arity == 1 else fn._jitted(a, b))


def op_id(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def registered(name: str) -> CustomOp:
    """The op registered under ``name`` in this process; ValueError if there is none."""
    op = CUSTOM_OPS.get(op_id(name))
    if op is None or op.name != name:
        raise ValueError(f"custom op {name!r} is not registered in this process (sg.custom_op registers it)")
    return op


def custom_op(name: str, forward, partials) -> CustomOp:
    """Register a scalar op with its own derivatives and return it.

    ``forward(a)`` or ``forward(a, b)`` computes the op; ``partials`` holds one function per
    operand, d(forward)/d(operand), with the same parameters. All are Python functions (or
    ``numba.njit`` functions) that Numba compiles in nopython mode for float arguments, calling
    ``math`` and ``sg.<op>`` functions as they need; a function that does not compile raises
    TypeError now. A partial may itself be a ``custom_op`` (of the same
    arity), which makes second and higher derivatives available::

        dsoftplus = sg.custom_op("sigmoid_", lambda x: 1 / (1 + math.exp(-x)),
                                 [lambda x: math.exp(-x) / (1 + math.exp(-x)) ** 2])
        softplus = sg.custom_op("softplus", lambda x: math.log1p(math.exp(x)), [dsoftplus])

    Registering a name again with the same functions returns the registered op; with other
    functions (a notebook cell edited and run again) the new definition replaces the old, with a
    RuntimeWarning, and functions already traced with the op run the new one from their next call.
    The operand count cannot change (ValueError: choose another name).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"sg.custom_op: name must be an identifier (dots allowed), got {name!r}")
    forward_fn = _python_function(forward, name, "forward")
    arity = _arity(forward_fn, name, "forward")
    if isinstance(partials, (str, bytes)) or not hasattr(partials, "__len__"):
        raise TypeError(f"sg.custom_op({name!r}): partials must be a list with one function per operand, "
                        f"got {type(partials).__name__}")
    if len(partials) != arity:
        raise ValueError(f"sg.custom_op({name!r}): forward takes {arity} argument{'s' * (arity > 1)}, so "
                         f"partials needs {arity} function{'s' * (arity > 1)}, got {len(partials)}")
    with _LOCK:
        existing = CUSTOM_OPS.get(op_id(name))
        if existing is not None and existing.name == name and existing.function is forward_fn \
                and _same_partials(existing, partials):
            return existing  # the same registration again
        plain = [j for j, p in enumerate(partials) if not isinstance(p, CustomOp)]
        replaced = existing if existing is not None and existing.name == name else None
        own = {f"{name}.d{j}" for j in range(2)} if replaced is not None else set()  # its plain partials
        for new_name in [name] + [f"{name}.d{j}" for j in plain]:  # nothing is compiled or registered
            taken = CUSTOM_OPS.get(op_id(new_name))                 # unless every name is free (or ours)
            if taken is not None and not (taken is replaced or taken.name in own):
                raise ValueError(f"sg.custom_op: the name {new_name!r} is already taken"
                                 + (f" (its id collides with {taken.name!r})" if taken.name != new_name else "")
                                 + "; choose another name")
        if replaced is not None and replaced.arity != arity:
            raise ValueError(f"sg.custom_op: {name!r} is registered with {replaced.arity} operand"
                             f"{'s' * (replaced.arity > 1)}; tapes traced with it would misread a new definition "
                             f"with {arity}: choose another name")
        made = []
        for j, p in enumerate(partials):
            if j in plain:
                fn = _python_function(p, name, f"partial {j}")
                if _arity(fn, name, f"partial {j}") != arity:
                    raise ValueError(f"sg.custom_op({name!r}): partial {j} must take {arity} argument"
                                     f"{'s' * (arity > 1)}, like forward")
                p = CustomOp(f"{name}.d{j}", fn, arity, None, f"partial {j} of {name!r}")
            elif p.arity != arity:
                raise ValueError(f"sg.custom_op({name!r}): partial {j} is custom op {p.name!r} with "
                                 f"{p.arity} operand{'s' * (p.arity > 1)}; it needs {arity}, like forward")
            made.append(p)
        op = CustomOp(name, forward_fn, arity, tuple(made))
        if replaced is not None:  # its plain partials stay registered unless the new definition has its own
            REPLACED.extend([replaced, *(replaced.partials or ())])
        for entry in [op] + [made[j] for j in plain]:
            CUSTOM_OPS[entry.id] = entry
        if replaced is not None:
            refresh_programs()  # traced functions run the new definition from their next call
            warnings.warn(f"sg.custom_op: {name!r} was registered before with other functions; the new "
                          "definition replaces it, also in functions already traced with it (a kernel handed "
                          "out by compile() keeps the old one)", RuntimeWarning, stacklevel=2)
        return op


def _same_partials(op: CustomOp, partials) -> bool:
    return all(p is q or (not isinstance(p, CustomOp) and q.function is _python_function(p, op.name, ""))
               for p, q in zip(partials, op.partials))


def _python_function(fn, name: str, role: str):
    if isinstance(fn, numba.core.dispatcher.Dispatcher):
        return fn.py_func
    if not callable(fn):
        raise TypeError(f"sg.custom_op({name!r}): {role} must be a function, got {type(fn).__name__}")
    return fn


def _arity(fn, name: str, role: str) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        raise TypeError(f"sg.custom_op({name!r}): cannot read the parameters of the {role} function") from None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    if len(positional) not in (1, 2) or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        raise ValueError(f"sg.custom_op({name!r}): the {role} function must take 1 or 2 float arguments, "
                         f"takes {len(positional)}")
    return len(positional)


def _compile(what, function, arity):
    """(Python-callable compiled function, C callback) of ``function``, IEEE semantics."""
    numba_functions.register()  # sg.<op> calls compile
    jitted = numba.njit(error_model="numpy")(function)
    # An exception cannot leave a compiled sweep: Numba would print it and return 0.0. The C
    # function returns NaN instead, which debug_nans then traces to its instruction.
    if arity == 1:
        def c_function(a, b):
            try:
                return float(jitted(a))
            except Exception:
                return np.nan
    else:
        def c_function(a, b):
            try:
                return float(jitted(a, b))
            except Exception:
                return np.nan
    try:
        cfunc = numba.cfunc(C_SIGNATURE, error_model="numpy")(c_function)
    except numba.core.errors.NumbaError as e:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
        raise TypeError(f"sg.custom_op: {what} ({getattr(function, '__name__', 'a function')}) cannot be compiled "
                        "by Numba in nopython mode for float arguments returning a float (functions it calls "
                        "must be math, sg.<op> or numba.njit functions): "
                        + " ".join(line.strip() for line in message[:4])) from None
    return jitted, cfunc
