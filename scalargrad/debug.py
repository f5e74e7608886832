"""NaN debugging: with ``debug_nans`` on, a call that makes a NaN or inf raises FloatingPointError
naming the first instruction that produced it, its operand values and the user's file:line.

Nothing here runs while the switch is off, and ordinary tracing records no source locations. With
it on, each call checks its inputs, the forward values of the path it ran and the requested
gradient. Only when one is not finite is the function traced again, by a recorder that notes the
user's file and line per instruction, and the reference sweeps (``reference.py``) run over that
unoptimised tape to find the culprit: the first non-finite value in recording order, else the
first reverse step whose contribution makes an adjoint non-finite.
"""
from __future__ import annotations

import linecache
import os
import sys
from array import array

import numpy as np

from . import config, reference
from .ops import OPS, display_name
from .trace import Recorder

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__)) + os.sep
_internal_cache: dict[str, bool] = {}


def enabled(flag) -> bool:
    """The effective switch: a transform's own ``debug_nans`` unless it is None, else the global."""
    return bool(config.debug_nans) if flag is None else bool(flag)


def _internal(filename: str) -> bool:
    """True for frames inside scalargrad (its shipped workloads excepted) or NumPy."""
    hit = _internal_cache.get(filename)
    if hit is None:
        path = os.path.abspath(filename)
        hit = _internal_cache[filename] = (
            (path.startswith(_PACKAGE_DIR) and os.path.basename(path) != "workloads.py")
            or path.startswith(_NUMPY_DIR))
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


# --- the check after each call -------------------------------------------------------------------

def check(transformed, args, grad=None) -> None:
    """Raise FloatingPointError if the call of ``transformed`` (a ValueAndGrad or Jit) at ``args``
    saw a NaN or inf: in an input, a forward value, or (``grad``: the flat gradient it returned)
    the requested gradient."""
    from .api import _flatten_args
    from .jit import kernels

    shapes, x = _flatten_args(args, transformed.names)
    sig = transformed.cache[shapes]
    name = getattr(transformed, "__name__", "the function")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        where = _describe_input(sig, transformed.names, int(bad[0]), x)
        raise FloatingPointError(f"debug_nans: {name} was called with {where}")
    requested = _requested_inputs(sig) if grad is not None else np.zeros(0, np.int64)
    trouble = grad is not None and not np.isfinite(grad[requested]).all()
    if not trouble:
        for path in list(sig.paths):  # the path whose guards hold is the one the call ran
            p = path.program
            n = p.ins.shape[1]
            work = p.workspace()  # this thread's scratch: nothing else uses it meanwhile
            if kernels.evaluate(p.ins, p.lit, p.io, x, np.empty(p.n_outputs), work):
                trouble = not np.isfinite(work[:n]).all()  # vals come first (kernels._split)
                break
    if trouble:
        raise FloatingPointError(locate(transformed.fun, name, sig, x, requested if grad is not None else None))


def _requested_inputs(sig) -> np.ndarray:
    """Flat input positions of the differentiated arguments."""
    return np.concatenate([np.arange(sig.offsets[i], sig.offsets[i + 1]) for i in sig.argnums]
                          or [np.zeros(0, np.int64)]).astype(np.int64)


def _describe_input(sig, names, position, x) -> str:
    i = next(j for j in range(len(sig.shapes)) if sig.offsets[j] <= position < sig.offsets[j + 1])
    what = f"argument {i}" + (f" ({names[i]!r})" if names and i < len(names) else "")
    shape = sig.shapes[i]
    if shape is not None:
        what += f" at index {tuple(int(j) for j in np.unravel_index(position - sig.offsets[i], shape))}"
    return f"{float(x[position])!r} in {what}: the input was already non-finite before any op ran"


# --- finding the culprit ------------------------------------------------------------------------

def locate(fun, name, sig, x, requested=None) -> str:
    """The message naming the first instruction that produced a non-finite value, found by the
    reference sweeps over ``fun`` traced again at ``x`` with source locations."""
    from .api import _trace

    rec = locating_recorder()
    tape, _ = _trace(fun, sig.shapes, x, rec)
    where = rec.op.where
    vals = reference.forward(tape, x)
    for k in range(len(tape)):
        if not np.isfinite(vals[k]):
            return (f"debug_nans: {name} produced {float(vals[k])!r} in the forward sweep at "
                    f"{_instruction(tape, k, where)}: {_forward_text(tape, k, vals)}")
    if requested is not None:
        found = _first_bad_reverse_step(tape, vals, tape.inputs[requested])
        if found is not None:
            k, j, partial, g, before, after = found
            op = OPS[tape.op[k]]
            slot = int((tape.a, tape.b, tape.c)[j][k])
            return (f"debug_nans: {name} produced {after!r} in the reverse sweep at "
                    f"{_instruction(tape, k, where)}: its partial d{_name(tape, k)}/d{'abc'[j]} = {partial!r} "
                    f"at {_operand_text(tape, k, vals)} (value {float(vals[k])!r}), times its adjoint "
                    f"{g!r}, made the adjoint of %{slot} {after!r} (it was {before!r})"
                    + (f"; note: {op.note}" if op.note else ""))
    return (f"debug_nans: {name} produced a non-finite value in the compiled sweeps that the reference "
            "sweeps over the unoptimised tape do not reproduce (a different summation order of "
            "adjoints after common-subexpression elimination can overflow differently)")


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
    step that makes an adjoint non-finite, among slots the requested inputs depend on."""
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
                partial = np.float64(reference._PARTIALS[tape.op[k]][j](*operands, vals[k], tape.lit[k]))
                before = adj[slot]
                adj[slot] = before + partial * g
                if not np.isfinite(adj[slot]):
                    return k, j, float(partial), float(g), float(before), float(adj[slot])
    return None
