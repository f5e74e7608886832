"""Variable and the recorder: operator overloading that appends instructions to a flat tape.

Every op computes its value eagerly (IEEE semantics, as NumPy) and appends one instruction to the
active recorder, found through a ContextVar. Eager use records into an eager recorder that is
sealed by ``backward()`` (or when it grows past ``EAGER_TAPE_LIMIT``), so a dropped graph frees its
memory; a later op that uses a value from a sealed recorder imports it as an input and
``backward()`` chains through the recorders. ``trace(f, *args)`` records into a fresh recorder.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import numbers
from array import array
from contextvars import ContextVar

import numpy as np

from .ops import COMPARISONS, CONST, FUNCTIONS, INPUT, OPCODE, OPS, USER_OPS, substitute
from .tape import Tape

EAGER_TAPE_LIMIT = 1 << 20  # instructions per eager recorder before a fresh one starts


class TracingError(TypeError):
    """A traced value was used where only a concrete Python value can work."""


# --- Python evaluation of the table's expressions --------------------------------------------

def _compile(expr: str, params: tuple[str, ...], namespace: dict):
    src = f"lambda {', '.join(params)}: " + substitute(expr, **{p: p for p in params})
    return eval(src, dict(namespace))


def operand_names(op) -> tuple[str, ...]:
    """Parameter names of an op's Python forward function: its operands, then the literal."""
    return tuple("abc"[: op.arity]) + (("lit",) if op.literal else ())


_MATH = {name: pair[0] for name, pair in FUNCTIONS.items()}
_NUMPY = {name: pair[1] for name, pair in FUNCTIONS.items()}


def python_forward(op):
    """A float function for ``op``'s forward rule with IEEE results: Python's math module where it
    is exact and fast, NumPy where math raises (log(-1) -> nan, 1/0 -> inf, exp(1000) -> inf)."""
    params = operand_names(op)
    fast = _compile(op.forward, params, _MATH)
    ieee = _compile(op.forward, params, _NUMPY)

    def forward(*args):
        try:
            return fast(*args)
        except (ArithmeticError, ValueError):
            with np.errstate(all="ignore"):
                return float(ieee(*map(np.float64, args)))

    forward.fast = fast
    return forward


# --- recorder ------------------------------------------------------------------------------------

_serial = itertools.count()


class Recorder:
    """Growable instruction buffers. Few instructions have a literal or a third operand, so those
    are kept sparse, as (slot, value) pairs in ``lit_at``/``lit`` and ``c_at``/``c``."""

    __slots__ = ("op", "a", "b", "c_at", "c", "lit_at", "lit", "trace", "limit", "sealed", "serial", "imports",
                 "imported", "guards", "adj", "lifts", "__weakref__")

    def __init__(self, trace: bool):
        self.op, self.a, self.b = array("b"), array("i"), array("i")
        self.c_at, self.c = array("i"), array("i")
        self.lit_at, self.lit = array("i"), array("d")
        self.trace = trace
        self.limit = 1 << 62 if trace else EAGER_TAPE_LIMIT  # eager recorders are sealed past it
        self.sealed = False
        self.serial = next(_serial)
        self.imports: list[tuple[int, Variable]] = []  # input slot -> the Variable it stands for
        self.imported: dict[int, int] = {}              # id(non-leaf Variable) -> its input slot
        self.guards: dict[int, float] = {}              # slot -> value the control flow relied on
        self.adj = None                                 # adjoints after backward() (eager only)
        self.lifts = None  # id(Variable) -> (input slot, Variable) for closed-over values (transforms.py)

    def emit(self, opcode: int, a: int = -1, b: int = -1) -> int:
        k = len(self.op)
        self.op.append(opcode)
        self.a.append(a)
        self.b.append(b)
        if k >= self.limit:
            self.sealed = True
        return k

    def set_literal(self, k: int, value: float) -> None:
        self.lit_at.append(k)
        self.lit.append(value)

    def constant(self, value: float) -> int:
        k = self.emit(CONST)
        self.set_literal(k, value)
        return k

    def adopt(self, v: Variable) -> int:
        """Slot of a Variable recorded elsewhere: an input instruction standing for it."""
        if v._rec is not None and v._rec.trace and not v._leaf and self.lifts is None:
            raise TracingError("a traced value escaped its traced function and cannot be used outside it")
        if self.trace:
            if v._rec is None and not v._requires_grad:
                return self.constant(v._data)
            if self.lifts is not None:  # a transform called with Variables: closed-over values are inputs
                entry = self.lifts.get(id(v))
                if entry is None:
                    entry = self.lifts[id(v)] = (self.emit(INPUT), v)
                return entry[0]
            raise TracingError(
                "a Variable created outside the traced function was used inside it; pass its value "
                "as an argument instead (the compiled function would otherwise bake in its current value)")
        if v._leaf:
            k = self.emit(INPUT)
            v._rec, v._slot = self, k
        else:
            k = self.imported.get(id(v))
            if k is not None:
                return k
            k = self.emit(INPUT)
            self.imported[id(v)] = k
        self.set_literal(k, v._data)
        self.imports.append((k, v))
        return k

    def slot(self, x) -> int:
        """Slot of an operand: a Variable or a real number (recorded as a constant)."""
        if type(x) is Variable:
            return x._slot if x._rec is self else self.adopt(x)
        return self.constant(x)

    def arrays(self):
        """The instruction arrays (views where possible) as NumPy arrays."""
        n = len(self.op)
        op = np.frombuffer(self.op, dtype=np.int8) if n else np.zeros(0, np.int8)
        a = np.frombuffer(self.a, dtype=np.int32) if n else np.zeros(0, np.int32)
        b = np.frombuffer(self.b, dtype=np.int32) if n else np.zeros(0, np.int32)
        c = np.full(n, -1, np.int32)
        if self.c_at:
            c[np.array(self.c_at, dtype=np.int64)] = np.array(self.c, dtype=np.int32)
        lit = np.zeros(n)
        if self.lit_at:
            lit[np.array(self.lit_at, dtype=np.int64)] = np.array(self.lit, dtype=np.float64)
        return op, a, b, c, lit


class _NoGrad:
    """Marker recorder for ``with no_grad():``; ops return constants."""
    sealed = True


_NO_GRAD = _NoGrad()
_active: ContextVar = ContextVar("scalargrad_recorder", default=None)


def _fresh_recorder():
    """The eager recorder to use now, or None inside ``no_grad``."""
    if _active.get() is _NO_GRAD:
        return None
    rec = Recorder(trace=False)
    _active.set(rec)
    return rec


def tracing() -> bool:
    """True inside a traced function (transforms called there record symbolically)."""
    rec = _active.get()
    return rec is not None and rec is not _NO_GRAD and rec.trace


@contextlib.contextmanager
def no_grad():
    """Inside this block operations compute values only and record nothing."""
    token = _active.set(_NO_GRAD)
    try:
        yield
    finally:
        _active.reset(token)


@contextlib.contextmanager
def recording(rec: Recorder):
    token = _active.set(rec)
    try:
        yield rec
    finally:
        _active.reset(token)


# --- Variable ------------------------------------------------------------------------------------

def _traced_error(what: str) -> TracingError:
    return TracingError(
        f"{what} of a traced value: the compiled function cannot turn a value that depends on its "
        "inputs into a Python number (it would be frozen at its first value). Use sg.<op> functions "
        "(sg.exp, sg.where, sg.maximum, ...) instead of math/int/float, and index arrays with Python ints.")


class Variable:
    """A scalar that records the operations applied to it (as in micrograd, DeZero, PyTorch).

    ``data`` is the value, ``grad`` the derivative accumulated by ``backward()`` (None before).
    """

    __slots__ = ("_data", "_grad", "_rec", "_slot", "_leaf", "_requires_grad")
    __array_priority__ = 1000

    def __init__(self, data, requires_grad: bool = True):
        self._data = _as_real(data, "Variable data")
        self._grad = None
        self._leaf = True
        self._requires_grad = bool(requires_grad)
        self._rec = None
        self._slot = -1
        rec = _active.get()
        if isinstance(rec, Recorder) and rec.trace:  # created inside a traced function: a constant
            self._requires_grad = False
            self._rec, self._slot = rec, rec.constant(self._data)

    @property
    def data(self) -> float:
        if self._rec is not None and self._rec.trace and not self._leaf:
            raise _traced_error(".data")
        return self._data

    @data.setter
    def data(self, value):
        if not self._leaf:
            raise AttributeError("only leaf Variables (made by Variable(...)) can be assigned .data")
        self._data = _as_real(value, "Variable data")
        self._rec, self._slot = None, -1  # the next op records the new value

    @property
    def grad(self):
        if self._leaf:
            return self._grad
        rec = self._rec
        if rec is None or rec.adj is None or self._slot >= len(rec.adj):
            return None
        return float(rec.adj[self._slot])

    @grad.setter
    def grad(self, value):
        if not self._leaf:
            raise AttributeError("only leaf Variables store .grad")
        self._grad = None if value is None else _as_real(value, "grad")

    @property
    def requires_grad(self) -> bool:
        return not self._leaf or self._requires_grad

    @property
    def is_leaf(self) -> bool:
        return self._leaf

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (``grad`` becomes None, as in PyTorch)."""
        self._grad = None

    def backward(self, grad: float = 1.0, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) * grad into every leaf's ``.grad``. With ``create_graph``
        the gradients are Variables that record, so they can be differentiated again."""
        from .eager import backward
        backward(self, _as_real(grad, "grad"), create_graph)

    def __repr__(self) -> str:
        if self._rec is not None and self._rec.trace and not self._leaf:
            return f"Variable(traced, value at trace time {self._data!r})"
        grad = f", grad={self.grad!r}" if self.grad is not None else ""
        return f"Variable({self._data!r}{grad})"

    def __format__(self, spec: str) -> str:
        return format(self._data, spec) if spec else repr(self)

    __hash__ = object.__hash__

    def __pos__(self):
        return self

    def __bool__(self) -> bool:
        rec = self._rec
        if rec is not None and rec.trace and not self._leaf:
            k = self._slot
            if OPS[rec.op[k]].name not in COMPARISONS:
                k = rec.emit(OPCODE["ne"], k, rec.constant(0.0))
            rec.guards[k] = 1.0 if self._data != 0.0 else 0.0
        return self._data != 0.0

    def _concrete(self, what):
        if self._rec is not None and self._rec.trace and not self._leaf:
            raise _traced_error(what)
        return self._data

    def __float__(self):
        return float(self._concrete("float()"))

    def __int__(self):
        return int(self._concrete("int()"))

    def __index__(self):
        raise _traced_error("Using as an index or int") if self._rec is not None and self._rec.trace \
            else TypeError("a Variable cannot be used as an index; use int(v.data)")

    def __complex__(self):
        raise TypeError("scalargrad Variables are real; complex() is not supported")

    def __round__(self, ndigits=None):
        return round(self._concrete("round()"), ndigits)

    def __trunc__(self):
        return math.trunc(self._concrete("math.trunc()"))

    def __floor__(self):
        return math.floor(self._concrete("math.floor()"))

    def __ceil__(self):
        return math.ceil(self._concrete("math.ceil()"))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "reduce" and inputs == (self,) and ufunc in REDUCTIONS and kwargs.get("out") is None:
            return self  # np.sum(v), np.prod(v), np.max(v) of one value is that value
        fn = UFUNCS.get(ufunc)
        if method != "__call__" or kwargs or fn is None:
            return NotImplemented
        return fn(*inputs)


_REAL_TYPES = (float, int)


def _as_real(x, what: str) -> float:
    if type(x) is float:
        return x
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (numbers.Real, np.ndarray)):
        raise TypeError(f"{what} must be a real number, got {type(x).__name__} {x!r:.60}")
    if isinstance(x, np.ndarray):
        if x.shape != () or x.dtype.kind not in "fiu":
            raise TypeError(f"{what} must be a real scalar, got an array of shape {x.shape} and dtype {x.dtype}")
    return float(x)


def _is_operand(x) -> bool:
    return type(x) is Variable or isinstance(x, (numbers.Real, np.bool_))


def _nonleaf(value: float, rec: Recorder, k: int) -> Variable:
    """A Variable computed by instruction k (non-leaves never read _grad/_requires_grad)."""
    v = _new_variable(Variable)
    v._data, v._rec, v._slot, v._leaf = value, rec, k, False
    return v


_new_variable = object.__new__


def _constant(value: float) -> Variable:
    v = _new_variable(Variable)
    v._data, v._grad, v._rec, v._slot, v._leaf, v._requires_grad = value, None, None, -1, True, False
    return v


def _object_scalar(v) -> np.ndarray:
    box = np.empty((), dtype=object)
    box[()] = v
    return box


def _elementwise(fn, args):
    """Apply a scalar op over NumPy arrays (object arrays of Variables included)."""
    # A bare Variable operand goes in as a 0-d object array: given as is, NumPy would offer the
    # frompyfunc ufunc to Variable.__array_ufunc__, which declines it (array * Variable failed).
    args = [_object_scalar(x) if type(x) is Variable else x for x in args]
    with np.errstate(all="ignore"):  # IEEE results as documented (log(0) = -inf), no warnings
        out = np.frompyfunc(fn, len(args), 1)(*args)
    if isinstance(out, np.ndarray) and not any(type(v) is Variable for v in out.flat):
        return out.astype(np.float64)
    return out


def _check_operands(name, args):
    for i, x in enumerate(args):
        if not _is_operand(x):
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
            rec = _active.get()
            if rec is None or rec.sealed:
                rec = _fresh_recorder()
                if rec is None:
                    return _constant(y)
            xs = x._slot if x._rec is rec else rec.adopt(x)
            k = len(rec.op)
            rec.op.append(opcode)
            rec.a.append(xs)
            rec.b.append(-1)
            if k >= rec.limit:
                rec.sealed = True
            v = _new_variable(Variable)
            v._data, v._rec, v._slot, v._leaf = y, rec, k, False
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
            rec = _active.get()
            if rec is None or rec.sealed:
                rec = _fresh_recorder()
                if rec is None:
                    return _constant(z)
            xs = x._slot if tx is Variable and x._rec is rec else rec.slot(x)
            ys = y._slot if ty is Variable and y._rec is rec else rec.slot(y)
            k = len(rec.op)
            rec.op.append(opcode)
            rec.a.append(xs)
            rec.b.append(ys)
            if k >= rec.limit:
                rec.sealed = True
            v = _new_variable(Variable)
            v._data, v._rec, v._slot, v._leaf = z, rec, k, False
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
            lit = _as_real(extra[0], f"sg.{op.name} literal") if extra else None
            values = [x._data if type(x) is Variable else float(x) for x in operands]
            z = fwd(*values, *((lit,) if extra else ()))
            rec = _active.get()
            if rec is None or rec.sealed:
                rec = _fresh_recorder()
                if rec is None:
                    return _constant(z)
            slots = [rec.slot(x) for x in operands]
            k = rec.emit(opcode, slots[0], slots[1] if nops > 1 else -1)
            if nops > 2:
                rec.c_at.append(k)
                rec.c.append(slots[2])
            if extra:
                rec.set_literal(k, lit)
            return _nonleaf(z, rec, k)

    record.__name__ = record.__qualname__ = op.name
    record.__doc__ = f"{op.name}: forward {op.forward}; partials {', '.join(op.partials)}." + \
        (f" Note: {op.note}." if op.note else "")
    return record


def _fallback(record, name, args, fwd):
    """Slow path of an op: arrays (elementwise), plain numbers (a float), or a clear TypeError."""
    if any(isinstance(x, np.ndarray) for x in args):
        return _elementwise(record, args)
    if any(type(x) is Variable for x in args):
        if not all(_is_operand(x) for x in args):
            return NotImplemented  # lets Python try the other operand's method, then raise TypeError
        return record(*(x if type(x) is Variable else float(x) for x in args))
    _check_operands(name, args)
    return fwd(*(float(x) for x in args))


RECORD = {op.name: _make_recorder_fn(op) for op in OPS if op.arity}  # custom rows too (custom.py)


def power(x, y):
    """x ** y, recorded as ``square`` for exponent 2, ``powc``/``cpow`` when one side is a number."""
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return _elementwise(power, (x, y))
    if type(y) is not Variable and _is_operand(y):
        if type(x) is not Variable:
            return RECORD["pow"](x, y)
        return RECORD["square"](x) if y == 2 else RECORD["powc"](x, float(y))
    if type(x) is not Variable and _is_operand(x):
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
    return power(self, other) if _is_operand(other) else NotImplemented


def _install_operators():
    for op in USER_OPS:
        fn = RECORD[op.name]
        if op.arity < 3:
            setattr(Variable, op.name, fn)
        if op.name == "pow":
            continue
        for i, dunder in enumerate(op.pyops):
            setattr(Variable, dunder, _reflected(fn) if i == 1 else fn)
    Variable.__pow__ = _pow_method
    Variable.__rpow__ = lambda self, other: power(other, self) if _is_operand(other) else NotImplemented
    Variable.power = power


_install_operators()
FUNCTIONS_BY_NAME = {name: _public(fn, name) for name, fn in RECORD.items()}

# NumPy ufuncs that record when applied to a Variable (np.sin(v), np.float64(2) * v, ...).
UFUNCS = {getattr(np, name): FUNCTIONS_BY_NAME[op] for name, op in {
    "add": "add", "subtract": "sub", "multiply": "mul", "true_divide": "div", "negative": "neg",
    "absolute": "abs", "fabs": "abs", "square": "square", "reciprocal": "reciprocal", "exp": "exp",
    "log": "log", "log1p": "log1p", "expm1": "expm1", "sqrt": "sqrt", "sin": "sin", "cos": "cos",
    "tan": "tan", "tanh": "tanh", "sinh": "sinh", "cosh": "cosh", "arcsin": "arcsin",
    "arccos": "arccos", "arctan": "arctan", "arctan2": "arctan2", "maximum": "maximum",
    "minimum": "minimum", "less": "lt", "less_equal": "le", "greater": "gt",
    "greater_equal": "ge", "equal": "eq", "not_equal": "ne"}.items()}
UFUNCS[np.power] = power
REDUCTIONS = (np.add, np.multiply, np.maximum, np.minimum)
UFUNCS[np.positive] = lambda x: x


# --- tracing ---------------------------------------------------------------------------------------

def new_input(rec: Recorder, value: float) -> Variable:
    """A fresh traced input Variable holding ``value`` (used for the values of the first call)."""
    k = rec.emit(INPUT)
    v = _nonleaf(float(value), rec, k)
    v._leaf = False
    return v


def output_slot(rec: Recorder, out, where: str) -> int:
    """Slot holding an output of the traced function (a Variable or a real number)."""
    if type(out) is Variable:
        if out._rec is not rec:
            raise TracingError(f"{where} is a Variable that was not computed from the traced inputs")
        return out._slot
    if isinstance(out, np.ndarray) and out.shape == ():
        return output_slot(rec, out[()], where)
    if _is_operand(out):
        return rec.constant(float(out))
    raise TypeError(f"{where} must be a scalar (a number or a Variable), got {type(out).__name__}")


def to_tape(rec: Recorder, inputs, outputs) -> Tape:
    op, a, b, c, lit = rec.arrays()
    return Tape(op, a, b, c, lit, inputs, outputs, list(rec.guards), list(rec.guards.values()))
