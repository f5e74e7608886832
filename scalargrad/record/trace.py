"""Variable and the recorder: operator overloading that appends instructions to a flat tape.

Every op computes its value eagerly (IEEE semantics, as NumPy) and appends one instruction to the
active recorder, found through a ContextVar. Eager use records into an eager recorder that is
sealed by ``backward()`` (or when it grows past ``EAGER_TAPE_LIMIT``), so a dropped graph frees its
memory; a later op that uses a value from a sealed recorder imports it as an input and
``backward()`` chains through the recorders. ``trace(f, *args)`` records into a fresh recorder.

Which imported values a Variable depends on is its own ``_up`` (its provenance), not its recorder's:
a recorder is shared by every value computed while it was active, and if it held its imports, a
loop that never calls ``backward()`` would keep each filled recorder alive through the expression
that straddled the boundary to the next one, and so every recorder it ever filled.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import operator
import sys
import warnings
from array import array
from contextvars import ContextVar

import numpy as np

from ..core.ops import COMPARISONS, CONST, INPUT, OPCODE, OPS, USER_OPS
from ..core.python_rules import python_forward
from ..core.tape import Tape

# Instructions per eager recorder before a fresh one starts: what a loop that never calls backward()
# holds of work it has dropped (bench/eager_memory.py: about 55 MiB for 2**18, 200 MiB for 2**20).
EAGER_TAPE_LIMIT = 1 << 18


class TracingError(TypeError):
    """A traced value was used where only a concrete Python value can work."""


# --- recorder ------------------------------------------------------------------------------------

_serial = itertools.count()


class Recorder:
    """Growable instruction buffers. Few instructions have a literal or a third operand, so those
    are kept sparse, as (slot, value) pairs in ``lit_at``/``lit`` and ``c_at``/``c``."""

    __slots__ = ("op", "a", "b", "c_at", "c", "lit_at", "lit", "trace", "limit", "sealed", "serial", "imports",
                 "imported", "guards", "adj", "lifts", "index_error", "__weakref__")

    def __init__(self, trace: bool):
        self.op, self.a, self.b = array("b"), array("i"), array("i")
        self.c_at, self.c = array("i"), array("i")
        self.lit_at, self.lit = array("i"), array("d")
        self.trace = trace
        self.limit = 1 << 62 if trace else EAGER_TAPE_LIMIT  # eager recorders are sealed past it
        self.sealed = False
        self.serial = next(_serial)
        self.imports: list[tuple[int, Variable]] = []  # input slot -> the leaf Variable it stands for
        # id(non-leaf Variable) -> its import (input slot, Variable), while active (see provenance)
        self.imported: dict[int, tuple[int, Variable]] = {}
        self.guards: dict[int, float] = {}              # slot -> value the control flow relied on
        self.adj = None                                 # adjoints after backward() (eager only)
        self.lifts = None  # id(Variable) -> (input slot, Variable) for closed-over values (transforms.py)
        self.index_error = None  # (TracingError, code, instruction) of the last traced value used as an index

    def note_index_error(self, error: TracingError, frame) -> TracingError:
        """``error`` (a traced value used as an index), remembered with where ``frame`` was: NumPy
        replaces it with its own IndexError or TypeError (``a[x]``, ``np.zeros(x)``), raised there."""
        self.index_error = (error, frame.f_code, frame.f_lasti)
        return error

    def hidden_index_error(self, e: BaseException) -> TracingError | None:
        """The TracingError that NumPy replaced with ``e``, if ``e`` was raised where it was."""
        if self.index_error is None or isinstance(e, TracingError):
            return None
        error, code, lasti = self.index_error
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        return error if tb is not None and tb.tb_frame.f_code is code and tb.tb_lasti == lasti else None

    def emit(self, opcode: int, a: int = -1, b: int = -1) -> int:
        k = len(self.op)
        self.op.append(opcode)
        self.a.append(a)
        self.b.append(b)
        if k >= self.limit:
            self.seal()
        return k

    def seal(self) -> None:
        """No more instructions here: later ops record into a fresh recorder. The values imported so
        far are then held only by the Variables that depend on them (their ``_up``)."""
        self.sealed = True
        self.imported = {}

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
        if not v._leaf:
            return self.imported_entry(v)[0]
        k = self.emit(INPUT)
        v._rec, v._slot = self, k
        self.imports.append((k, v))
        self.set_literal(k, v._data)
        return k

    def imported_entry(self, v: Variable) -> tuple[int, Variable]:
        """The import ``(input slot, v)`` of a non-leaf eager Variable recorded elsewhere (once per
        recorder while it is active: a sealed one holds no imports)."""
        entry = self.imported.get(id(v))
        if entry is None:
            entry = (self.emit(INPUT), v)
            self.set_literal(entry[0], v._data)
            if not self.sealed:
                self.imported[id(v)] = entry
        return entry

    def operand(self, x) -> tuple[int, object]:
        """(slot, provenance) of an operand: a Variable or a real number (recorded as a constant)."""
        if type(x) is not Variable:
            return self.constant(x), None
        if x._rec is self:
            return x._slot, x._up
        if x._leaf or self.trace or x._rec.trace:  # adopt refuses a traced value that escaped
            return self.adopt(x), None
        entry = self.imported_entry(x)
        return entry[0], entry

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
    """Marker recorder for ``with no_grad():``. Eager ops return constants; inside a traced function
    (``traced`` is its recorder) ops still record, since their values change from call to call, and
    each result passes through ``stop_gradient`` (see ``_without_grad``)."""
    __slots__ = ("traced",)
    sealed = True

    def __init__(self, traced: Recorder | None):
        self.traced = traced


_active: ContextVar = ContextVar("scalargrad_recorder", default=None)


def _fresh_recorder():
    """The eager recorder to use now, or None inside ``no_grad``."""
    if type(_active.get()) is _NoGrad:
        return None
    rec = Recorder(trace=False)
    _active.set(rec)
    return rec


def tracing() -> bool:
    """True inside a traced function (transforms called there record symbolically)."""
    rec = _active.get()
    return type(rec) is Recorder and rec.trace


@contextlib.contextmanager
def no_grad():
    """Inside this block no derivative flows: eager operations compute values only and record
    nothing; inside a traced function they record with zero derivative (``stop_gradient``), so
    their values follow the inputs of every call and ``if`` on them is guarded as usual."""
    rec = _active.get()
    token = _active.set(_NoGrad(rec.traced if type(rec) is _NoGrad else rec if tracing() else None))
    try:
        yield
    finally:
        _active.reset(token)


@contextlib.contextmanager
def recording(rec: Recorder):
    token = _active.set(rec)
    try:
        yield rec
    except (IndexError, TypeError) as e:
        hidden = rec.hidden_index_error(e)
        if hidden is None:
            raise
        raise hidden.with_traceback(None) from e
    finally:
        _active.reset(token)


# --- Variable ------------------------------------------------------------------------------------

def _traced_error(what: str) -> TracingError:
    return TracingError(
        f"{what} of a traced value: the compiled function cannot turn a value that depends on its "
        "inputs into a Python number (it would be frozen at its first value). Use sg.<op> functions "
        "(sg.exp, sg.where, sg.maximum, ...) instead of math/int/float, and index arrays with Python ints.")


# --- provenance: the imported values a Variable depends on ---------------------------------------
# ``v._up`` is None (no imported value), an import ``(slot, Variable)`` of v's recorder, or a pair
# of provenances (the operands'), so an op costs one comparison and, rarely, one small tuple.

def _joined(ux, uy):
    return ux if uy is None or uy is ux else uy if ux is None else (ux, uy)


def imported_values(*ups) -> dict[int, "Variable"]:
    """Input slot -> imported Variable, for every import the provenances ``ups`` reach."""
    found, seen, stack = {}, set(), [u for u in ups if u is not None]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            if type(node[0]) is int:
                found[node[0]] = node[1]
            else:
                stack.extend(node)
    return found


class Variable:
    """A scalar that records the operations applied to it (as in micrograd, DeZero, PyTorch).

    ``data`` is the value, ``grad`` the derivative accumulated by ``backward()`` (None before).
    As PyTorch tensors: eager Variables hash by identity (dict keys such as ``to_dot``'s ``names``;
    ``Variable(2.0) in {2.0}`` is False), ``float(v)`` detaches (and warns while grad mode is on),
    and ``+= -= *= /= **=`` update a leaf in place under ``no_grad``. Traced values are unhashable.
    """

    __slots__ = ("_data", "_grad", "_rec", "_slot", "_leaf", "_requires_grad", "_up")
    __array_priority__ = 1000

    def __init__(self, data, requires_grad: bool = True):
        self._data = _as_real(data, "Variable data")
        self._grad = None
        self._leaf = True
        self._requires_grad = bool(requires_grad)
        self._rec = None
        self._slot = -1
        self._up = None
        rec = _active.get()
        if type(rec) is _NoGrad:
            rec = rec.traced
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

    def _traced(self) -> bool:
        """Computed inside a traced function: its value is known only when the compiled one runs."""
        return self._rec is not None and self._rec.trace and not self._leaf

    def __repr__(self) -> str:
        if self._traced():  # readable when printed, but float() cannot parse it back
            return f"Variable(traced, value at trace time {self._data!r})"
        grad = f", grad={self.grad!r}" if self.grad is not None else ""
        return f"Variable({self._data!r}{grad})"

    def __format__(self, spec: str) -> str:
        if not spec:
            return repr(self)
        if self._traced():
            raise TracingError(
                f"format(x, {spec!r}) of a traced value: the text would hold the value of the call that "
                f"traced it, frozen into the compiled function (float(f'{{x:{spec}}}') is a constant). "
                "Compute with sg.<op> functions; to print a traced value, use f'{x}' or repr(x).")
        return format(self._data, spec)

    def __hash__(self) -> int:
        if self._traced():  # an identity hash would make `x in {1.0, 2.0}` silently False
            raise TracingError(
                "hash() of a traced value (as a set member or dict key, e.g. `x in {1.0, 2.0}`): its "
                "value is not known until the compiled function runs, so it cannot be looked up. "
                "Compare instead: `x in (1.0, 2.0)` (a tuple compares with ==), `x == 1.0 or x == 2.0`, "
                "or sg.where(...)")
        return object.__hash__(self)

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
        if self._traced():
            raise _traced_error(what)
        return self._data

    def __float__(self):
        value = self._concrete("float()")
        if self.requires_grad and type(_active.get()) is not _NoGrad:
            warnings.warn(  # a warning, not an error: float(loss) for logging is common and harmless
                "float() of a Variable that requires grad is a plain number, so no derivative flows "
                "through it (math.sin(v) and float(v) * v lose it). Use sg.sin(v) and the other sg.<op> "
                "functions to keep the derivative, or v.data to read the value without this warning.",
                stacklevel=2)
        return float(value)

    def __int__(self):
        return int(self._concrete("int()"))

    def __index__(self):
        if self._rec is not None and self._rec.trace:
            raise self._rec.note_index_error(_traced_error("Using as an index or int"), sys._getframe(1))
        raise TypeError("a Variable cannot be used as an index; use int(v.data)")

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


def is_operand(x) -> bool:
    return type(x) is Variable or isinstance(x, (numbers.Real, np.bool_))


def _nonleaf(value: float, rec: Recorder, k: int, up=None) -> Variable:
    """A Variable computed by instruction k (non-leaves never read _grad/_requires_grad)."""
    v = _new_variable(Variable)
    v._data, v._rec, v._slot, v._leaf, v._up = value, rec, k, False, up
    return v


_new_variable = object.__new__


def _constant(value: float) -> Variable:
    v = _new_variable(Variable)
    v._data, v._grad, v._rec, v._slot, v._leaf, v._requires_grad, v._up = value, None, None, -1, True, False, None
    return v


def _without_grad(record, args, value: float) -> Variable:
    """``record(*args)`` (whose value is ``value``) inside ``no_grad``: a constant in eager use; in a
    traced function, the op recorded into the trace and then ``stop_gradient`` of it."""
    traced = _active.get().traced
    if traced is None:
        return _constant(value)
    with recording(traced):
        return RECORD["stop_gradient"](record(*args))


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
            rec = _active.get()
            if rec is None or rec.sealed:
                rec = _fresh_recorder()
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
            v = _new_variable(Variable)
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
            rec = _active.get()
            if rec is None or rec.sealed:
                rec = _fresh_recorder()
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
            v = _new_variable(Variable)
            v._data, v._rec, v._slot, v._leaf = z, rec, k, False
            v._up = ux if uy is None or uy is ux else uy if ux is None else (ux, uy)  # _joined, inline
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
                    return _without_grad(record, args, z)
            slots, up = [], None
            for x in operands:
                slot, u = rec.operand(x)
                slots.append(slot)
                up = _joined(up, u)
            k = rec.emit(opcode, slots[0], slots[1] if nops > 1 else -1)
            if nops > 2:
                rec.c_at.append(k)
                rec.c.append(slots[2])
            if extra:
                rec.set_literal(k, lit)
            return _nonleaf(z, rec, k, up)

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
        return _elementwise(record, args)
    if any(type(x) is Variable for x in args):
        if not all(is_operand(x) for x in args):
            return NotImplemented  # lets Python try the other operand's method, then raise TypeError
        return record(*(x if type(x) is Variable else float(x) for x in args))
    _check_operands(name, args)
    return fwd(*(float(x) for x in args))


RECORD = {op.name: _make_recorder_fn(op) for op in OPS if op.arity}  # custom rows too (custom.py, in this package)


def power(x, y):
    """x ** y, recorded as ``square`` for exponent 2, ``powc``/``cpow`` when one side is a number."""
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return _elementwise(power, (x, y))
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
        grad_mode = type(_active.get()) is not _NoGrad
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
        if op.name == "pow":
            continue
        for i, dunder in enumerate(op.pyops):
            setattr(Variable, dunder, _reflected(fn) if i == 1 else fn)
    Variable.__pow__ = _pow_method
    Variable.__rpow__ = lambda self, other: power(other, self) if is_operand(other) else NotImplemented
    for dunder, symbol, fn in (("__iadd__", "+=", RECORD["add"]), ("__isub__", "-=", RECORD["sub"]),
                               ("__imul__", "*=", RECORD["mul"]), ("__itruediv__", "/=", RECORD["div"]),
                               ("__ipow__", "**=", _pow_method)):
        setattr(Variable, dunder, _in_place(dunder, symbol, fn))
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
    if is_operand(out):
        return rec.constant(float(out))
    raise TypeError(f"{where} must be a scalar (a number or a Variable), got {type(out).__name__}")


def to_tape(rec: Recorder, inputs, outputs) -> Tape:
    op, a, b, c, lit = rec.arrays()
    return Tape(op, a, b, c, lit, inputs, outputs, list(rec.guards), list(rec.guards.values()))
