"""The recording functions of the op table's ops: ``sg.<op>``, Variable's operators and methods,
and the NumPy ufuncs that record when applied to a Variable, one per table row.

Each computes its value eagerly (IEEE semantics, as NumPy) and appends one instruction to the
active recorder (variable.py). Binary ones return NotImplemented for operands of other types, so
they serve directly as Python operators; ``sg.<op>`` raises TypeError instead.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from ..core.ops import COMPARISONS, OPCODE, OPS, USER_OPS
from ..core.python_rules import python_forward
from .variable import (NoGrad, Variable, active_recorder, as_real, constant_variable, fresh_recorder, is_operand,
                       joined, new_variable, nonleaf, recording)


def _without_grad(record, args, value: float) -> Variable:
    """``record(*args)`` (whose value is ``value``) inside ``no_grad``: a constant in eager use; in a
    traced function, the op recorded into the trace and then ``stop_gradient`` of it."""
    traced = active_recorder.get().traced
    if traced is None:
        return constant_variable(value)
    with recording(traced):
        return RECORD["stop_gradient"](record(*args))


def object_scalar(v) -> np.ndarray:
    """``v`` in a 0-d object array, as NumPy's object loops take a Variable without offering it the ufunc."""
    box = np.empty((), dtype=object)
    box[()] = v
    return box


def elementwise(fn, args):
    """Apply a scalar op over NumPy arrays (object arrays of Variables included)."""
    # A bare Variable operand goes in as a 0-d object array: given as is, NumPy would offer the
    # frompyfunc ufunc to Variable.__array_ufunc__, which declines it (array * Variable failed).
    args = [object_scalar(x) if type(x) is Variable else x for x in args]
    with np.errstate(all="ignore"):  # IEEE results as documented (log(0) = -inf), no warnings
        out = np.frompyfunc(fn, len(args), 1)(*args)
    if isinstance(out, np.ndarray) and not any(type(v) is Variable for v in out.flat):
        return out.astype(np.float64)
    return out


def _check_operands(name, args):
    for i, x in enumerate(args):
        if not is_operand(x):
            raise TypeError(f"sg.{name}: operand {i} must be a Variable or a real number, "
                            f"got {type(x).__name__}")


def _make_recorder_fn(op):
    """The function that records ``op``; binary ones return NotImplemented for operands of other
    types, so they serve directly as Python operators (``sg.<name>`` raises TypeError instead)."""
    opcode = OPCODE[op.name]
    fwd = python_forward(op)
    fast = fwd.fast
    arity = op.arity

    if arity == 1 and not op.literal:
        def record(x):
            if type(x) is not Variable:
                return _fallback(record, op.name, (x,), fwd)
            xv = x._data
            try:
                y = fast(xv)
            except (ArithmeticError, ValueError):
                y = fwd(xv)
            rec = active_recorder.get()
            if rec is None or rec.sealed:
                rec = fresh_recorder()
                if rec is None:
                    return _without_grad(record, (x,), y)
            if x._rec is rec:
                xs, up = x._slot, x._up
            else:
                xs, up = rec.operand(x)
            k = len(rec.op)
            rec.op.append(opcode)
            rec.a.append(xs)
            rec.b.append(-1)
            if k >= rec.limit:
                rec.seal()
            v = new_variable(Variable)
            v._data, v._rec, v._slot, v._leaf, v._up = y, rec, k, False, up
            return v
    elif arity == 2 and not op.literal:
        def record(x, y):
            tx, ty = type(x), type(y)
            if tx is Variable:
                xv = x._data
                if ty is Variable:
                    yv = y._data
                elif ty is float or ty is int:
                    yv = y
                else:
                    return _fallback(record, op.name, (x, y), fwd)
            elif ty is Variable and (tx is float or tx is int):
                xv, yv = x, y._data
            else:
                return _fallback(record, op.name, (x, y), fwd)
            try:
                z = fast(xv, yv)
            except (ArithmeticError, ValueError):
                z = fwd(xv, yv)
            rec = active_recorder.get()
            if rec is None or rec.sealed:
                rec = fresh_recorder()
                if rec is None:
                    return _without_grad(record, (x, y), z)
            if tx is Variable and x._rec is rec:
                xs, ux = x._slot, x._up
            else:
                xs, ux = rec.operand(x)
            if ty is Variable and y._rec is rec:
                ys, uy = y._slot, y._up
            else:
                ys, uy = rec.operand(y)
            k = len(rec.op)
            rec.op.append(opcode)
            rec.a.append(xs)
            rec.b.append(ys)
            if k >= rec.limit:
                rec.seal()
            v = new_variable(Variable)
            v._data, v._rec, v._slot, v._leaf = z, rec, k, False
            v._up = ux if uy is None or uy is ux else uy if ux is None else (ux, uy)  # joined, inline
            return v
    else:  # literal ops (powc, cpow, custom ops) and where
        nops = arity

        def record(*args):
            if len(args) != nops + op.literal:
                raise TypeError(f"sg.{op.name} takes {nops + op.literal} arguments, got {len(args)}")
            operands, extra = args[:nops], args[nops:]
            if not any(type(x) is Variable for x in operands):
                return _fallback(record, op.name, args, fwd)
            _check_operands(op.name, operands)
            lit = as_real(extra[0], f"sg.{op.name} literal") if extra else None
            values = [x._data if type(x) is Variable else float(x) for x in operands]
            z = fwd(*values, *((lit,) if extra else ()))
            rec = active_recorder.get()
            if rec is None or rec.sealed:
                rec = fresh_recorder()
                if rec is None:
                    return _without_grad(record, args, z)
            slots, up = [], None
            for x in operands:
                slot, u = rec.operand(x)
                slots.append(slot)
                up = joined(up, u)
            k = rec.emit(opcode, slots[0], slots[1] if nops > 1 else -1)
            if nops > 2:
                rec.c_at.append(k)
                rec.c.append(slots[2])
            if extra:
                rec.set_literal(k, lit)
            return nonleaf(z, rec, k, up)

    record.__name__ = record.__qualname__ = op.name
    record.__doc__ = f"{op.name}: forward {op.forward}; partials {', '.join(op.partials)}." + \
        (f" Note: {op.note}." if op.note else "")
    return _exact_ints(record, op.name) if op.name in COMPARISONS else record


# --- comparisons with Python ints that float64 cannot hold (Python compares them exactly) ---------

_MIRRORED = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}


def _inexact_int(n) -> bool:
    if type(n) is not int or -(1 << 53) <= n <= 1 << 53:
        return False
    try:
        return float(n) != n
    except OverflowError:  # beyond the float64 range
        return True


def _float_comparison(name: str, n: int) -> tuple[str, float]:
    """(comparison, float) such that ``x <comparison> float`` is ``x <name> n`` for every float64 x,
    NaN included, and an int n that float64 cannot hold: the floats either side of n decide the
    order comparisons; x == n never holds and x != n always does, as with NaN."""
    if name in ("eq", "ne"):
        return name, math.nan
    try:
        f = float(n)
    except OverflowError:
        f = math.inf if n > 0 else -math.inf
    below, above = (math.nextafter(f, -math.inf), f) if f > n else (f, math.nextafter(f, math.inf))
    return ("le", below) if name in ("lt", "le") else ("ge", above)


def _exact_ints(compare, name: str):
    """The comparison ``compare`` with Python's exact answer when one operand is an int that
    float64 cannot hold (``x < 2**53 + 1``) and the other a Variable or a Python number: the
    recorded instruction compares with a float chosen to give that answer. NumPy operands keep
    NumPy's semantics (the int rounded to float64)."""
    python = getattr(operator, name)

    def record(x, y):
        if type(x) is not int and type(y) is not int:  # the common case, without further calls
            return compare(x, y)
        left = _inexact_int(x)
        if not (left or _inexact_int(y)):
            return compare(x, y)
        other = y if left else x
        if type(other) is Variable:
            to, f = _float_comparison(_MIRRORED[name] if left else name, x if left else y)
            return RECORD[to](other, f)
        if type(other) is int or type(other) is float:
            return 1.0 if python(x, y) else 0.0
        return compare(x, y)

    record.__name__ = record.__qualname__ = compare.__name__
    record.__doc__ = compare.__doc__
    return record


def _fallback(record, name, args, fwd):
    """Slow path of an op: arrays (elementwise), plain numbers (a float), or a clear TypeError."""
    if any(isinstance(x, np.ndarray) for x in args):
        return elementwise(record, args)
    if any(type(x) is Variable for x in args):
        if not all(is_operand(x) for x in args):
            return NotImplemented  # lets Python try the other operand's method, then raise TypeError
        return record(*(x if type(x) is Variable else float(x) for x in args))
    _check_operands(name, args)
    return fwd(*(float(x) for x in args))


RECORD = {op.name: _make_recorder_fn(op) for op in OPS if op.arity}  # custom rows too (custom.py)


def power(x, y):
    """x ** y, recorded as ``square`` for exponent 2, ``powc``/``cpow`` when one side is a number."""
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return elementwise(power, (x, y))
    if type(y) is not Variable and is_operand(y):
        if type(x) is not Variable:
            return RECORD["pow"](x, y)
        return RECORD["square"](x) if y == 2 else RECORD["powc"](x, float(y))
    if type(x) is not Variable and is_operand(x):
        return RECORD["cpow"](y, float(x))
    return RECORD["pow"](x, y)


def _public(fn, name):
    """``sg.<name>``: the recording function, raising TypeError where an operator would defer."""
    def public(*args):
        out = fn(*args)
        if out is NotImplemented:
            _check_operands(name, args)
        return out
    public.__name__ = public.__qualname__ = name
    public.__doc__ = fn.__doc__
    return public


def _reflected(fn):
    def method(self, other):
        return fn(other, self)
    return method


def _pow_method(self, other):
    t = type(other)
    if t is int or t is float:  # the common case, x ** 2, without the generic dispatch
        return RECORD["square"](self) if other == 2 else RECORD["powc"](self, float(other))
    return power(self, other) if is_operand(other) else NotImplemented


def _in_place(dunder: str, symbol: str, fn):
    """``v <symbol> other`` as in PyTorch: under ``no_grad`` a leaf is updated in place (same object,
    requires_grad and grad kept). While recording, a leaf that requires grad cannot be (the result
    would be a new non-leaf, whose .grad stays None); anything else rebinds to the out-of-place
    result, as Python floats do, which is right for autodiff (older graphs keep the old value)."""
    def method(self, other):
        grad_mode = type(active_recorder.get()) is not NoGrad
        if grad_mode and self._leaf and self._requires_grad:
            raise RuntimeError(
                f"`v {symbol} ...` on a leaf Variable that requires grad: an in-place update of a "
                "parameter would be recorded and make it a non-leaf (its .grad would stay None). Wrap "
                f"the update in `with sg.no_grad():` (as in PyTorch), or write `v = v {symbol[:-1]} ...` "
                "for a new Variable.")
        out = fn(self, other)
        if not grad_mode and self._leaf and type(out) is Variable and out._rec is None:
            self._data, self._rec, self._slot = out._data, None, -1  # the next op records the new value
            return self
        return out

    method.__name__ = method.__qualname__ = dunder
    return method


def _install_operators():
    for op in USER_OPS:
        fn = RECORD[op.name]
        if op.arity < 3:
            setattr(Variable, op.name, fn)
        for name in op.numpy if op.arity == 1 else ():  # NumPy's object-array loops call v.<ufunc name>()
            if not hasattr(Variable, name):             # (np.rint and np.round: v.rint())
                setattr(Variable, name, fn)
        if op.name == "pow":
            continue
        for i, dunder in enumerate(op.pyops):
            setattr(Variable, dunder, _reflected(fn) if i == 1 else fn)
    Variable.__pow__ = _pow_method
    Variable.__rpow__ = lambda self, other: power(other, self) if is_operand(other) else NotImplemented
    for dunder, symbol, fn in (("__iadd__", "+=", RECORD["add"]), ("__isub__", "-=", RECORD["sub"]),
                               ("__imul__", "*=", RECORD["mul"]), ("__itruediv__", "/=", RECORD["div"]),
                               ("__ipow__", "**=", _pow_method), ("__imod__", "%=", RECORD["mod"]),
                               ("__ifloordiv__", "//=", RECORD["floordiv"])):
        setattr(Variable, dunder, _in_place(dunder, symbol, fn))
    Variable.power = power
    Variable.conjugate = lambda self: self  # as float.conjugate (np.var of an object array calls it)
    Variable.__array_ufunc__ = _array_ufunc


def unsupported_ufunc(ufunc) -> TypeError:
    """The error for a NumPy ufunc that no op-table row records, naming it and the ways out."""
    return TypeError(
        f"np.{ufunc.__name__} has no scalargrad op, so it cannot be applied to Variables. Write it with "
        "the sg.<op> functions (docs/guide.md lists the NumPy functions that record), or register it "
        "with its derivatives: sg.custom_op(name, forward, partials).")


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    if method == "reduce" and inputs == (self,) and ufunc in REDUCTIONS and kwargs.get("out") is None:
        return self  # np.sum(v), np.prod(v), np.max(v) of one value is that value
    fn = UFUNCS.get(ufunc)
    if fn is None and method == "__call__" and all(
            isinstance(x, np.ndarray) or is_operand(x) for x in inputs + kwargs.get("out", ())):
        raise unsupported_ufunc(ufunc)  # rather than NumPy's "all returned NotImplemented"
    if method != "__call__" or kwargs or fn is None:
        return NotImplemented
    return fn(*inputs)


_install_operators()
FUNCTIONS_BY_NAME = {name: _public(fn, name) for name, fn in RECORD.items()}

# NumPy ufuncs that record when applied to a Variable (np.sin(v), np.float64(2) * v, ...): the
# table's ``numpy`` names, and power with the operator's dispatch.
UFUNCS = {getattr(np, name): FUNCTIONS_BY_NAME[op.name] for op in USER_OPS for name in op.numpy}
UFUNCS[np.power] = power
REDUCTIONS = (np.add, np.multiply, np.maximum, np.minimum)
UFUNCS[np.positive] = lambda x: x
UFUNCS[np.conjugate] = lambda x: x  # a real number's conjugate (NumPy's var and std call it)
