"""Traced arrays: inside a transform an array argument is a ``TracedArray``, an object ndarray of
Variables on which ufuncs, reductions, ``np.where``, ``np.clip``, ... record the op table's ops per
element, branch-free (``x > 0`` is an array of 1.0/0.0 Variables); only ``bool()`` records a guard.
Anything else runs NumPy's object-array code, which reaches the Variables only through their methods
(recording ops, guarding on ``bool()``, raising on ``float()``): guarded or loud, never silently wrong.
"""
from __future__ import annotations

import itertools
import operator

import numpy as np

from .operators import (FUNCTIONS_BY_NAME, RECORD, REDUCTIONS, UFUNCS, elementwise, object_scalar, power,
                        unsupported_ufunc)
from .variable import TracingError, Variable, is_boolean, is_operand

_ne, _eq, _gt, _ge, _add = (FUNCTIONS_BY_NAME[name] for name in ("ne", "eq", "gt", "ge", "add"))
_where = FUNCTIONS_BY_NAME["where"]
_maximum, _minimum = FUNCTIONS_BY_NAME["maximum"], FUNCTIONS_BY_NAME["minimum"]
_NO = object()  # an argument not given
_AxisError = getattr(np, "exceptions", np).AxisError  # np.exceptions from NumPy 1.25
# Keywords of a ufunc call that cannot change an object array's values (NumPy's own mean and var
# pass them); any other (``where=``, a ``dtype`` other than these) goes to NumPy's object loops.
_HARMLESS = frozenset(("casting", "subok", "order"))
_SAME_VALUES = (np.dtype(object), np.dtype(np.float64))  # a traced value is a float64 already


def _same_values(dtype) -> bool:
    return dtype is None or np.dtype(dtype) in _SAME_VALUES


# --- truth values: NumPy's bool(v) as a comparison Variable (1.0 or 0.0) --------------------------

def _truth(v):
    """NumPy's truth of ``v`` (nonzero; NaN is true) as a comparison Variable, or 1.0/0.0."""
    if type(v) is Variable:
        return v if is_boolean(v) else _ne(v, 0.0)
    return 1.0 if v else 0.0


def _logical_and(a, b):
    return _ge(_add(_truth(a), _truth(b)), 2.0)


def _logical_or(a, b):
    return _gt(_add(_truth(a), _truth(b)), 0.0)


def _logical_xor(a, b):
    return _ne(_truth(a), _truth(b))


def _logical_not(a):
    return _eq(_truth(a), 0.0)


def _on_booleans(logical, symbol: str):
    """``logical`` as NumPy's ``symbol`` (``&`` ``|`` ``^`` ``~``): on comparison results and bools only;
    on numbers NumPy's would be bitwise (ints) or an error (floats), so other values raise."""
    def op(*args):
        for x in args:
            if not (is_boolean(x) if type(x) is Variable else isinstance(x, (bool, np.bool_))):
                raise TypeError(
                    f"`{symbol}` on a traced array whose elements are not comparison results: `{symbol}` "
                    "combines comparisons, as in (x > 0) & (x < 1); for the truth of numbers use "
                    "np.logical_and, np.logical_or, np.logical_xor or np.logical_not")
        return logical(*args)
    op.__name__ = op.__qualname__ = f"bitwise {symbol}"
    return op


def _clip(x, lo, hi):
    return _minimum(_maximum(x, lo), hi)  # NumPy's order: minimum(maximum(x, lo), hi), NaN kept


_ARRAY_UFUNCS = {
    np.logical_and: _logical_and, np.logical_or: _logical_or, np.logical_xor: _logical_xor,
    np.logical_not: _logical_not, np.bitwise_and: _on_booleans(_logical_and, "&"),
    np.bitwise_or: _on_booleans(_logical_or, "|"), np.bitwise_xor: _on_booleans(_logical_xor, "^"),
    np.invert: _on_booleans(_logical_not, "~"),
}
_REDUCERS = {ufunc: UFUNCS[ufunc] for ufunc in REDUCTIONS}
_TRUTH_REDUCERS = {np.logical_and: _minimum, np.logical_or: _maximum}  # all: min of truths; any: max


def _recorder_of(ufunc):
    """The scalar function a ufunc records elementwise, or None (NumPy's object loop then runs)."""
    fn = UFUNCS.get(ufunc) or _ARRAY_UFUNCS.get(ufunc)
    if fn is None and ufunc.__name__ == "clip" and ufunc.nin == 3:  # the ufunc behind np.clip
        fn = _clip
    return fn


def _power(x, y):
    return x.__pow__(y) if type(x) is Variable else power(x, y)  # x ** 2 records square, as the operator


def _unchecked(fn):
    """The recording function behind ``fn`` without ``sg.<op>``'s operand checks (it returns
    NotImplemented for operands of other types, as an operator does), or None."""
    if fn is power:
        return _power
    name = getattr(fn, "__name__", None)
    return RECORD[name] if FUNCTIONS_BY_NAME.get(name) is fn else None


def _declined(out) -> bool:
    """Whether an unchecked recording function returned NotImplemented for some element."""
    return out is NotImplemented or (isinstance(out, np.ndarray) and out.dtype == object and any(
        map(operator.is_, out.flat, itertools.repeat(NotImplemented))))


def _checked(fn, run):
    """``run(f)`` with ``f`` the recording function behind ``fn`` (fast); if an element declined, a
    TypeError naming the op and the operand (from ``fn`` itself, which checks its operands)."""
    fast = _unchecked(fn)
    if fast is not None:
        out = run(fast)
        if not _declined(out):
            return out
    out = run(fn)
    if _declined(out):
        raise TypeError(f"{getattr(fn, '__name__', 'an op')}: an element of a traced array is neither a "
                        "Variable nor a real number")
    return out


def _apply(fn, args):
    """``fn`` over the plain operands ``args``, elementwise with NumPy's broadcasting."""
    return traced(_checked(fn, lambda f: elementwise(f, args)))


# --- conversions ----------------------------------------------------------------------------------

def _plain(x):
    """An operand as NumPy's object loops take it: a TracedArray as a plain ndarray (no dispatch back
    here), a bare Variable boxed in a 0-d object array (NumPy would offer it the ufunc)."""
    if isinstance(x, TracedArray):
        return x.view(np.ndarray)
    if type(x) is Variable:
        return object_scalar(x)
    return x


def traced(result):
    """NumPy's result for traced operands: object arrays as TracedArray, other arrays as plain
    ndarrays, lists and tuples item by item, anything else (a Variable, a number) as it is."""
    if isinstance(result, np.ndarray):
        if result.dtype == object:
            return result if type(result) is TracedArray else result.view(TracedArray)
        return result if type(result) is np.ndarray else result.view(np.ndarray)
    if type(result) is tuple or type(result) is list:
        return type(result)(traced(r) for r in result)
    return result


def _holds_variables(x) -> bool:
    return type(x) is Variable or (isinstance(x, np.ndarray) and x.dtype == object
                                   and any(type(v) is Variable for v in x.flat))


def _store(out, result):
    """``result``, written into ``out`` (a ufunc's ``out=`` tuple) when one was given."""
    if out is None or out[0] is None:
        return result
    out[0][...] = result
    return out[0]


def _holds_traced(key) -> bool:
    return type(key) is TracedArray or (type(key) is tuple and any(type(k) is TracedArray for k in key))


def _is_mask(key) -> bool:
    """Whether an index is a TracedArray of comparison results (or bools): a boolean mask."""
    return isinstance(key, TracedArray) and all(
        is_boolean(v) if type(v) is Variable else isinstance(v, (bool, np.bool_)) for v in key.flat)


def _concrete_index(key):
    """An index with each traced boolean mask turned into a bool array; the result's shape depends
    on it, so each element's ``bool()`` records a guard. Other traced indices are left to NumPy
    (which refuses them)."""
    def concrete(k):
        return np.array([bool(v) for v in k.flat], dtype=bool).reshape(k.shape) if _is_mask(k) else k
    if type(key) is tuple:
        return tuple(concrete(k) for k in key)
    return concrete(key)


# --- reductions -----------------------------------------------------------------------------------

def _axes(axis, ndim: int, name: str) -> tuple[int, ...]:
    axes = tuple(range(ndim)) if axis is None else (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise _AxisError(f"{name}: axis {ax} is out of bounds for an array of dimension {ndim}")
    axes = tuple(int(ax) % ndim for ax in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name}: duplicate value in 'axis'")
    return axes


def _reduce(fn, x: np.ndarray, axis=None, keepdims=False, initial=_NO, name="reduce"):
    """``fn`` (a binary recording function) folded over ``axis`` of ``x`` (non-empty) left to right,
    as NumPy's object reductions are, starting from ``initial`` if given."""
    a = x.view(np.ndarray)
    axes = _axes(axis, a.ndim, name)
    kept = [d for i, d in enumerate(a.shape) if i not in axes]
    rows = np.moveaxis(a, axes, tuple(range(a.ndim - len(axes), a.ndim))).reshape(kept + [-1])
    if initial is not _NO:
        start = np.empty(kept + [1], dtype=object)
        start[...] = initial
        rows = np.concatenate([start, rows], axis=-1)
    with np.errstate(all="ignore"):
        out = _checked(fn, lambda f: np.frompyfunc(f, 2, 1).reduce(rows, axis=-1))
    if keepdims:
        out = np.reshape(out, [1 if i in axes else d for i, d in enumerate(a.shape)])
    return traced(out)


def _reduce_call(ufunc, x, kwargs):
    """A ufunc's ``reduce`` recorded branch-free (add, multiply, maximum, minimum; logical_and and
    logical_or as ``all``/``any``), or NotImplemented for the cases NumPy's loops should run."""
    if not isinstance(x, np.ndarray) or x.size == 0 or kwargs.get("where", True) is not True \
            or not set(kwargs) <= {"axis", "dtype", "keepdims", "initial", "where"}:
        return NotImplemented
    axis, keepdims, dtype = kwargs.get("axis", 0), kwargs.get("keepdims", False), kwargs.get("dtype")
    name = f"np.{ufunc.__name__}.reduce"
    if ufunc in _REDUCERS and _same_values(dtype):
        return _reduce(_REDUCERS[ufunc], x, axis, keepdims, kwargs.get("initial", _NO), name)
    if ufunc in _TRUTH_REDUCERS and "initial" not in kwargs and (dtype is None or np.dtype(dtype).kind in "bO"):
        truths = elementwise(_truth, [x.view(np.ndarray)])
        folded = _reduce(_TRUTH_REDUCERS[ufunc], truths, axis, keepdims, name=name)
        return traced(elementwise(_truth, [_plain(folded)])) if isinstance(folded, np.ndarray) else _truth(folded)
    return NotImplemented


# --- array functions with a branch-free form ------------------------------------------------------

def _np_where(condition, x=_NO, y=_NO):
    """np.where(condition, x, y) with a traced condition: the table's ``where`` per element."""
    if x is _NO or y is _NO or not _holds_variables(condition):
        return NotImplemented  # np.where(c) (indices) or a concrete condition: NumPy's own
    return traced(elementwise(_where, [_plain(condition), _plain(x), _plain(y)]))


def _np_select(condlist, choicelist, default=0):
    """np.select as nested np.where: the first condition that holds picks its choice."""
    if len(condlist) != len(choicelist) or not any(_holds_variables(c) for c in condlist):
        return NotImplemented
    result = default
    for condition, choice in zip(reversed(condlist), reversed(choicelist)):
        result = np.where(condition, choice, result)
    return result


def _refuse(name: str, instead: str):
    def refuse(*args, **kwargs):
        raise TypeError(f"np.{name} of a traced array: NumPy returns an object array unchanged, "
                        f"which would be silently wrong here; {instead}")
    return refuse


_FUNCTIONS = {
    np.where: _np_where,
    np.select: _np_select,
    np.nan_to_num: _refuse("nan_to_num", "use np.where(x != x, 0.0, x) (and np.clip for infinities)"),
}


class TracedArray(np.ndarray):
    """An object array of Variables, as array arguments arrive inside a transform. Indexing,
    reshaping, slicing, iteration and ``@`` behave as for any ndarray (results stay TracedArrays);
    ufuncs and ``np.where``/``np.select`` record the op table's ops per element, with NumPy's
    broadcasting, and reductions fold them (``np.max`` is a chain of ``maximum``). A comparison
    gives comparison Variables (1.0/0.0); ``bool()`` of one, or a traced mask used as an index,
    records a guard."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.pop("out", None)
        fn = _recorder_of(ufunc) if method == "__call__" else None
        result = NotImplemented
        if fn is not None and set(kwargs) <= _HARMLESS | {"dtype"} and _same_values(kwargs.get("dtype")) \
                and all(isinstance(x, np.ndarray) or is_operand(x) for x in inputs):
            result = _apply(fn, [_plain(x) for x in inputs])
        elif method == "reduce" and len(inputs) == 1:
            result = _reduce_call(ufunc, inputs[0], kwargs)
        if result is not NotImplemented:
            return _store(out, result)
        # NumPy's own object loop, on plain arrays: it reaches the Variables through their methods.
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        try:
            result = traced(getattr(ufunc, method)(*(_plain(x) for x in inputs), **kwargs))
        except TypeError as e:  # a NumPy ufunc without a row: named, as for a Variable (operators.py)
            if method != "__call__" or fn is not None or isinstance(e, TracingError) \
                    or getattr(np, ufunc.__name__, None) is not ufunc:
                raise
            raise unsupported_ufunc(ufunc) from e
        return result if out is None or len(out) != 1 or result is None else out[0]

    def __array_function__(self, func, types, args, kwargs):
        special = _FUNCTIONS.get(func)
        if special is not None:
            result = special(*args, **kwargs)
            if result is not NotImplemented:
                return result
        # NumPy's implementation on this array: its ufuncs and methods come back here.
        return traced(super().__array_function__(func, types, args, kwargs))

    def __getitem__(self, key):
        if _holds_traced(key):
            key = _concrete_index(key)
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        if _holds_traced(key):
            if type(key) is TracedArray and key.shape == self.shape and np.ndim(value) == 0 and _is_mask(key):
                # x[x < 0] = v keeps the shape: recorded branch-free, as x[...] = np.where(x < 0, v, x)
                key, value = ..., elementwise(_where, [key.view(np.ndarray), _plain(value), self.view(np.ndarray)])
            else:
                key = _concrete_index(key)
        super().__setitem__(key, value)


__all__ = ["TracedArray", "traced"]
