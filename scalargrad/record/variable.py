"""Variable and the recorder: each op a Variable takes part in appends an instruction to a flat tape.

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
import re
import sys
import warnings
from array import array
from contextvars import ContextVar

import numpy as np

from ..core.ops import COMPARISONS, CONST, INPUT, OPCODE, OPS

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
        self.lifts = None  # id(Variable) -> (input slot, Variable) for closed-over values (tracing.trace_at)
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


class NoGrad:
    """Marker recorder for ``with no_grad():``. Eager ops return constants; inside a traced function
    (``traced`` is its recorder) ops still record, since their values change from call to call, and
    each result passes through ``stop_gradient`` (see ``_without_grad``)."""
    __slots__ = ("traced",)
    sealed = True

    def __init__(self, traced: Recorder | None):
        self.traced = traced


active_recorder: ContextVar = ContextVar("scalargrad_recorder", default=None)


def fresh_recorder():
    """The eager recorder to use now, or None inside ``no_grad``."""
    if type(active_recorder.get()) is NoGrad:
        return None
    rec = Recorder(trace=False)
    active_recorder.set(rec)
    return rec


def in_trace() -> bool:
    """True inside a traced function (transforms called there record symbolically)."""
    rec = active_recorder.get()
    return type(rec) is Recorder and rec.trace


@contextlib.contextmanager
def no_grad():
    """Inside this block no derivative flows: eager operations compute values only and record
    nothing; inside a traced function they record with zero derivative (``stop_gradient``), so
    their values follow the inputs of every call and ``if`` on them is guarded as usual."""
    rec = active_recorder.get()
    token = active_recorder.set(NoGrad(rec.traced if type(rec) is NoGrad else rec if in_trace() else None))
    try:
        yield
    finally:
        active_recorder.reset(token)


_OBJECT_INDEX = "arrays used as indices must be of integer (or boolean) type"  # NumPy's IndexError


@contextlib.contextmanager
def recording(rec: Recorder):
    token = active_recorder.set(rec)
    try:
        yield rec
    except (IndexError, TypeError) as e:
        hidden = rec.hidden_index_error(e)
        if hidden is None and isinstance(e, IndexError) and _OBJECT_INDEX in str(e):
            hidden = TracingError(
                f"{e}: an array was indexed with an array of traced values. A comparison of traced "
                "values (x > 0) is an array of 1.0/0.0 Variables, a mask only when it indexes a traced "
                "array (x[x > 0]); for a NumPy array write a[np.asarray(mask, dtype=bool)] (a guard per "
                "element), or select branch-free with np.where(mask, a, 0.0)")
        if hidden is None:
            raise
        raise hidden.with_traceback(None) from e
    finally:
        active_recorder.reset(token)


# --- Variable ------------------------------------------------------------------------------------

def traced_error(what: str) -> TracingError:
    return TracingError(
        f"{what} of a traced value: the compiled function cannot turn a value that depends on its "
        "inputs into a Python number (it would be frozen at its first value). Use sg.<op> functions "
        "(sg.exp, sg.where, sg.maximum, ...) instead of math/int/float, and index arrays with Python ints.")


# --- provenance: the imported values a Variable depends on ---------------------------------------
# ``v._up`` is None (no imported value), an import ``(slot, Variable)`` of v's recorder, or a pair
# of provenances (the operands'), so an op costs one comparison and, rarely, one small tuple.

def joined(ux, uy):
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

    The methods derived from the op table (operators, ``__array_ufunc__``, ``sg.<op>`` as methods)
    are installed by operators.py, and ``backward()`` by eager.py: each is defined where it is
    implemented, above this module (importing scalargrad imports both).
    """

    __slots__ = ("_data", "_grad", "_rec", "_slot", "_leaf", "_requires_grad", "_up")
    __array_priority__ = 1000

    def __init__(self, data, requires_grad: bool = True):
        self._data = as_real(data, "Variable data")
        self._grad = None
        self._leaf = True
        self._requires_grad = bool(requires_grad)
        self._rec = None
        self._slot = -1
        self._up = None
        rec = active_recorder.get()
        if type(rec) is NoGrad:
            rec = rec.traced
        if isinstance(rec, Recorder) and rec.trace:  # created inside a traced function: a constant
            self._requires_grad = False
            self._rec, self._slot = rec, rec.constant(self._data)

    @property
    def data(self) -> float:
        if self._rec is not None and self._rec.trace and not self._leaf:
            raise traced_error(".data")
        return self._data

    @data.setter
    def data(self, value):
        if not self._leaf:
            raise AttributeError("only leaf Variables (made by Variable(...)) can be assigned .data")
        self._data = as_real(value, "Variable data")
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
        self._grad = None if value is None else as_real(value, "grad")

    @property
    def requires_grad(self) -> bool:
        return not self._leaf or self._requires_grad

    @property
    def is_leaf(self) -> bool:
        return self._leaf

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (``grad`` becomes None, as in PyTorch)."""
        self._grad = None

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
            raise traced_error(what)
        return self._data

    def __float__(self):
        value = self._concrete("float()")
        if self.requires_grad and type(active_recorder.get()) is not NoGrad:
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
            raise self._rec.note_index_error(traced_error("Using as an index or int"), sys._getframe(1))
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


def as_real(x, what: str) -> float:
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


# Ops whose value is 1.0 or 0.0 whatever their operands (the comparisons, isnan): by their forward.
_BOOLEAN_OPCODES = frozenset(k for k, op in enumerate(OPS) if re.fullmatch(r"1\.0 if .+ else 0\.0", op.forward))
_STOP_GRADIENT = OPCODE["stop_gradient"]


def is_boolean(v: Variable) -> bool:
    """Whether Variable ``v`` is 1.0 or 0.0 whatever the inputs: a comparison's result (or isnan's,
    also through the ``stop_gradient`` that ``no_grad`` adds in a trace), or a constant 1.0 or 0.0."""
    if v._leaf:  # not computed by an op: a constant, or a parameter (whose value may change)
        return not v._requires_grad and v._data in (0.0, 1.0)
    rec, k = v._rec, v._slot
    if rec.op[k] == _STOP_GRADIENT:
        k = rec.a[k]
    return rec.op[k] in _BOOLEAN_OPCODES


def nonleaf(value: float, rec: Recorder, k: int, up=None) -> Variable:
    """A Variable computed by instruction k (non-leaves never read _grad/_requires_grad)."""
    v = new_variable(Variable)
    v._data, v._rec, v._slot, v._leaf, v._up = value, rec, k, False, up
    return v


new_variable = object.__new__


def constant_variable(value: float) -> Variable:
    v = new_variable(Variable)
    v._data, v._grad, v._rec, v._slot, v._leaf, v._requires_grad, v._up = value, None, None, -1, True, False, None
    return v
