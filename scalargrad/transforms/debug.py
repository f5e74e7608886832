"""NaN debugging: with ``debug_nans`` on, a call whose result is NaN or inf raises FloatingPointError
naming the instruction that produced it, its operand values and the user's file:line.

Nothing here runs while the switch is off, and ordinary tracing records no source locations. With
it on, each call (and each vmap batch: the first bad point) checks its results: the outputs of a
jit, the value and the requested gradient of a value_and_grad; a NaN the results do not depend on
(``where``'s unselected operand) passes. Only when one is not finite is the function traced again,
by a recorder that notes the user's file and line per instruction, and the reference sweeps
(``reference.py``) run over that unoptimised tape to find the culprit on the way to that result:
the first non-finite value in recording order that reaches it, else the first reverse step whose
contribution makes an adjoint it depends on non-finite.
"""
from __future__ import annotations

import linecache
import os
import sys
from array import array

import numpy as np

from .. import config
from ..core import reference
from ..core.ops import INPUT, OPS, display_name
from ..record.variable import Recorder
from ..record.pytrees import TreeShape
from ..record.tracing import keyword_path, trace_into

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # scalargrad/
# The benchmark harness is written as user code: its workloads' lines are the ones to name.
_BENCH_DIR = os.path.join(_PACKAGE_DIR, "bench") + os.sep
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__)) + os.sep
_internal_cache: dict[str, bool] = {}


def enabled(flag) -> bool:
    """The effective switch: a transform's own ``debug_nans`` unless it is None, else the global."""
    return bool(config.debug_nans) if flag is None else bool(flag)


def _internal(filename: str) -> bool:
    """True for frames inside scalargrad (its benchmark harness excepted) or NumPy."""
    hit = _internal_cache.get(filename)
    if hit is None:
        path = os.path.abspath(filename)
        hit = _internal_cache[filename] = (
            (path.startswith(_PACKAGE_DIR) and not path.startswith(_BENCH_DIR)) or path.startswith(_NUMPY_DIR))
    return hit


def user_location(depth: int = 1) -> tuple[str, int]:
    """(file, line) of the innermost caller outside scalargrad and NumPy. Code that scalargrad
    builds from the op table's expression strings runs with globals that have no ``__name__``."""
    frame = sys._getframe(depth + 1)
    while frame is not None and (_internal(frame.f_code.co_filename) or "__name__" not in frame.f_globals):
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("<unknown>", 0)


class _LocatingOps(array):
    """The opcode buffer of a locating recorder: every append (the one thing each recorded
    instruction does) also notes where the user's code recorded it, in ``where``."""

    def append(self, opcode):
        array.append(self, opcode)
        self.where.append(user_location(1))


def locating_recorder() -> Recorder:
    """A tracing Recorder whose instructions carry the user's (file, line) in ``rec.op.where``."""
    rec = Recorder(trace=True)
    rec.op = _LocatingOps("b")
    rec.op.where = []
    return rec


# --- the checks after a call ----------------------------------------------------------------------

def check(transformed, sig, x, grad=None) -> None:
    """Raise FloatingPointError if the call of ``transformed`` (a ValueAndGrad or Jit) at the flat
    inputs ``x`` (of signature ``sig``) returned a NaN or inf: an output (Jit), or the value or,
    ``grad`` being the flat gradient it returned, a requested gradient entry (ValueAndGrad).
    Non-finite values that no result depends on (the unselected operand of ``where``) pass."""
    problem = _problem(transformed, sig, x, _outputs(sig, x), grad)
    if problem is not None:
        raise FloatingPointError(f"debug_nans: {problem}")


def check_batch(vmapped: str, transformed, sig, X, results) -> None:
    """``check`` for a batch (vmap.py): ``X`` holds the points' flat inputs (points x inputs),
    ``results`` the outputs (points x outputs) of a Jit or the values and gradients (values, G)
    of a ValueAndGrad. The error names the first point with a non-finite result."""
    out, G = results if isinstance(results, tuple) else (results, None)
    out = out.reshape(len(X), -1)
    bad = ~np.isfinite(out).all(axis=1)
    if G is not None:
        bad |= ~np.isfinite(G[:, _requested_inputs(sig)]).all(axis=1)
    if bad.any():
        p = int(np.argmax(bad))
        problem = _problem(transformed, sig, X[p], out[p], None if G is None else G[p])
        raise FloatingPointError(f"debug_nans: {vmapped}, point {p} (of {len(X)}): {problem}")


def _outputs(sig, x) -> np.ndarray:
    """The outputs at ``x`` of the cached path whose guards hold (the one the call ran), by the
    interpreter (every backend computes the same values, NaN sign bits aside)."""
    from ..jit import kernels

    for path in list(sig.paths):
        p = path.program
        out = np.empty(p.n_outputs)
        if kernels.evaluate(p.ins, p.lit, p.io, x, out, p.workspace()):
            return out
    return np.zeros(0)  # only if another thread evicted the path meanwhile: the gradient is still checked


def _problem(transformed, sig, x, out, grad) -> str | None:
    """None if the outputs ``out`` and the requested entries of the flat gradient ``grad`` (None
    for a Jit) are finite, else what made the first bad one non-finite."""
    bad_outputs = np.flatnonzero(~np.isfinite(out))
    bad_inputs = np.zeros(0, np.int64)
    if grad is not None:
        requested = _requested_inputs(sig)
        bad_inputs = requested[~np.isfinite(grad[requested])]
    if not bad_outputs.size and not bad_inputs.size:
        return None
    return locate(transformed, sig, x, int(bad_outputs[0]) if bad_outputs.size else None, bad_inputs)


def _requested_inputs(sig) -> np.ndarray:
    """Flat input positions of the differentiated arguments."""
    return sig.positions()


def _describe_input(sig, names, position, x) -> str:
    if position >= sig.offsets[-1]:  # a traced keyword value
        for j, start, stop, shape in sig.keywords.traced_positions():
            if start <= position - sig.offsets[-1] < stop:
                what = "keyword argument " + keyword_path(sig.keywords.treedef.paths()[j])
                return f"{float(x[position])!r} in {_at(what, shape, position - sig.offsets[-1] - start)}: " \
                       "the input was already non-finite before any op ran"
    i = next(j for j in range(len(sig.shapes)) if sig.offsets[j] <= position < sig.offsets[j + 1])
    what = f"argument {i}" + (f" ({names[i]!r})" if names and i < len(names) else "")
    shape, offset = sig.shapes[i], position - sig.offsets[i]
    if type(shape) is TreeShape:  # the leaf holding it
        paths = shape.treedef.paths()
        j, (start, _, shape) = next((j, span) for j, span in enumerate(shape.spans()) if span[0] <= offset < span[1])
        what, offset = what + paths[j], offset - start
    what = _at(what, shape, offset)
    return f"{float(x[position])!r} in {what}: the input was already non-finite before any op ran"


def _at(what, shape, offset) -> str:
    """``what`` with the index of entry ``offset`` of an array of ``shape`` (nothing for a scalar)."""
    if shape is None:
        return what
    return what + f" at index {tuple(int(j) for j in np.unravel_index(offset, shape))}"


# --- finding the culprit ------------------------------------------------------------------------

def locate(transformed, sig, x, output=None, bad_inputs=()) -> str:
    """What made output ``output`` non-finite (None: the gradient entries at flat input positions
    ``bad_inputs``), found by the reference sweeps over the function traced again at ``x`` with
    source locations: the first instruction, in recording order, of those that pass a non-finite
    value on to that output, else the first reverse step that makes the adjoint of a slot those
    gradient entries depend on non-finite."""
    name = getattr(transformed, "__name__", "the function")
    rec = locating_recorder()
    tape, _ = trace_into(transformed.fun, sig.shapes, x, rec, sig.keywords)
    where = rec.op.where
    vals = reference.forward(tape, x)
    if output is not None:
        k = _origin(tape, vals, int(tape.outputs[output]))
        if k is not None:
            reaching = f" (reaching output {output})" if len(tape.outputs) > 1 else ""
            if tape.op[k] == INPUT:
                position = int(np.flatnonzero(tape.inputs == k)[0])
                return f"{name} was called with {_describe_input(sig, transformed.names, position, x)}{reaching}"
            return (f"{name} produced {float(vals[k])!r} in the forward sweep{reaching} at "
                    f"{_instruction(tape, k, where)}: {_forward_text(tape, k, vals)}")
    else:
        found = _first_bad_reverse_step(tape, vals, tape.inputs[np.asarray(bad_inputs, dtype=np.int64)])
        if found is not None:
            k, j, partial, g, before, after = found
            op = OPS[tape.op[k]]
            slot = int((tape.a, tape.b, tape.c)[j][k])
            return (f"{name} produced {after!r} in the reverse sweep at "
                    f"{_instruction(tape, k, where)}: its partial d{_name(tape, k)}/d{'abc'[j]} = {partial!r} "
                    f"at {_operand_text(tape, k, vals)} (value {float(vals[k])!r}), times its adjoint "
                    f"{g!r}, made the adjoint of %{slot} {after!r} (it was {before!r})"
                    + (f"; note: {op.note}" if op.note else ""))
    return (f"{name} produced a non-finite value in the compiled sweeps that the reference "
            "sweeps over the unoptimised tape do not reproduce (a different summation order of "
            "adjoints after common-subexpression elimination can overflow differently)")


def _origin(tape, vals, out):
    """The first instruction, in recording order, of those that pass a non-finite value on to slot
    ``out`` (None if its value is finite). A non-finite instruction passes on those of its
    non-finite operands that matter: each whose replacement by 1.0 would change its value (the
    selected operand of ``where``; the NaN, not the inf, of ``nan + inf``), or all of them where
    no single one would (``inf * nan``). A value absorbed on the way (``exp(-inf) = 0``, a
    comparison, the unselected operand of ``where``) passes nothing on."""
    if np.isfinite(vals[out]):
        return None
    on_path = np.zeros(len(tape), dtype=bool)
    on_path[out] = True
    for k in range(out, -1, -1):
        if on_path[k]:
            on_path[_passed_on(tape, vals, k)] = True
    return int(np.argmax(on_path))


def _passed_on(tape, vals, k) -> list[int]:
    """The operand slots through which instruction k's non-finite value came (see ``_origin``)."""
    op = OPS[tape.op[k]]
    slots = [int(s) for s in (tape.a[k], tape.b[k], tape.c[k])[: op.arity]]
    bad = [j for j, s in enumerate(slots) if not np.isfinite(vals[s])]
    literal = [tape.lit[k]] if op.literal else []

    def matters(j):
        operands = [vals[s] for s in slots]
        operands[j] = np.float64(1.0)
        value = np.float64(reference.FORWARD[tape.op[k]](*operands, *literal))
        return not (value == vals[k] or (np.isnan(value) and np.isnan(vals[k])))

    with np.errstate(all="ignore"):
        return [slots[j] for j in ([j for j in bad if matters(j)] or bad)]


def _name(tape, k) -> str:
    return display_name(int(tape.op[k]), float(tape.lit[k]))


def _instruction(tape, k, where) -> str:
    op = OPS[tape.op[k]]
    listing = f"%{k} = {_name(tape, k)} " + " ".join(
        f"%{int(s)}" for s in (tape.a[k], tape.b[k], tape.c[k])[: op.arity])
    if op.literal and op.public:  # a custom op's literal is its id
        listing += f" {float(tape.lit[k])!r}"
    filename, line = where[k] if k < len(where) else ("<unknown>", 0)
    source = linecache.getline(filename, line).strip()
    return f"instruction {listing.rstrip()} recorded at {filename}:{line}" + (f" ({source})" if source else "")


def _operand_text(tape, k, vals) -> str:
    op = OPS[tape.op[k]]
    parts = [f"{'abc'[j]}={float(vals[s])!r}" for j, s in enumerate((tape.a[k], tape.b[k], tape.c[k])[: op.arity])]
    if op.literal and op.public:
        parts.append(f"lit={float(tape.lit[k])!r}")
    return ", ".join(parts)


def _forward_text(tape, k, vals) -> str:
    op = OPS[tape.op[k]]
    if op.name == "const":
        return f"the constant {float(vals[k])!r} (a literal in the code)"
    text = f"{_name(tape, k)}({_operand_text(tape, k, vals)}) = {float(vals[k])!r}"
    return text + (f"; note: {op.note}" if op.note else "")


def _first_bad_reverse_step(tape, vals, targets):
    """(k, operand j, partial, adjoint of k, operand adjoint before, after) of the first reverse
    step that makes an adjoint non-finite, among the slots that depend on the inputs ``targets``
    (slots) through differentiable operands: the adjoints those inputs' gradient entries sum."""
    n = len(tape)
    slots_of = [(tape.a[k], tape.b[k], tape.c[k]) for k in range(n)]
    cone = np.zeros(n, dtype=bool)
    cone[np.asarray(targets, dtype=np.int64)] = True
    for k in range(n):
        op = OPS[tape.op[k]]
        if op.arity and not cone[k]:
            cone[k] = any(op.differentiable[j] and cone[slots_of[k][j]] for j in range(op.arity))
    adj = [np.float64(0.0)] * n
    out = int(tape.outputs[0])
    adj[out] = np.float64(1.0)
    with np.errstate(all="ignore"):
        for k in range(n - 1, -1, -1):
            g = adj[k]
            if g == 0.0 or not cone[k]:  # the kernels' convention: a zero adjoint carries nothing
                continue
            op = OPS[tape.op[k]]
            operands = [vals[s] for s in slots_of[k][: op.arity]] + [None] * (3 - op.arity)
            for j in range(op.arity):
                slot = int(slots_of[k][j])
                if not (op.differentiable[j] and cone[slot]):
                    continue
                partial = np.float64(reference.PARTIALS[tape.op[k]][j](*operands, vals[k], tape.lit[k]))
                before = adj[slot]
                adj[slot] = before + partial * g
                if not np.isfinite(adj[slot]):
                    return k, j, float(partial), float(g), float(before), float(adj[slot])
    return None
