"""Tape -> Tape transformations: dce, cse, fold_constants, and ``optimize`` (all three).

Each is linear in tape size and never changes a result, NaN and inf included: there is no
algebraic simplification (no x - x -> 0, 0 * x -> 0, x / x -> 1); folding evaluates constant
instructions with the same compiled forward sweep that would evaluate them at run time.
"""
from __future__ import annotations

import numpy as np

from .custom_ops import kernel_literals
from ._interp import forward
from .kernels import kernel_arrays
from .rewrite import common_subexpressions, foldable, live_mask
from ..core.ops import COMMUTATIVE, CONST, INPUT
from ..core.tape import Tape


def _compact(tape: Tape, keep: np.ndarray, op, a, b, c, lit, rep=None) -> Tape:
    """The tape restricted to ``keep``, operands renumbered (through ``rep`` when merging)."""
    n = len(op)
    rep = np.arange(n) if rep is None else rep
    new_index = np.cumsum(keep) - 1
    target = new_index[rep]  # slot k's value lives at new slot target[k]

    def remap(slots):
        slots = np.asarray(slots, dtype=np.int64)
        return np.where(slots >= 0, target[np.maximum(slots, 0)], -1)

    guards, first = np.unique(remap(tape.guards), return_index=True)
    return Tape(op[keep], remap(a)[keep], remap(b)[keep], remap(c)[keep], lit[keep],
                remap(tape.inputs), remap(tape.outputs), guards, tape.guard_values[first])


def dce(tape: Tape) -> Tape:
    """Drop instructions no output or guard depends on (inputs always stay)."""
    roots = np.concatenate([tape.outputs, tape.guards, tape.inputs]).astype(np.int64)
    keep = live_mask(tape.a, tape.b, tape.c, roots)
    if keep.all():
        return tape
    return _compact(tape, keep, tape.op, tape.a, tape.b, tape.c, tape.lit)


def cse(tape: Tape) -> Tape:
    """Merge instructions that compute the same op of the same operands (and literal)."""
    rep, a, b, c = common_subexpressions(tape.op, tape.a, tape.b, tape.c, tape.lit, COMMUTATIVE, INPUT)
    keep = rep == np.arange(len(tape))
    if keep.all() and np.array_equal(a, tape.a) and np.array_equal(b, tape.b):
        return tape
    return _compact(tape, keep, tape.op, a, b, c, tape.lit, rep)


def fold_constants(tape: Tape) -> Tape:
    """Replace instructions whose operands are all constants by a constant of their value."""
    fold = foldable(tape.op, tape.a, tape.b, tape.c, INPUT, CONST)
    if not fold.any():
        return tape
    vals = np.zeros(len(tape) + 1)  # input values are irrelevant: folded slots do not read them
    op, a, b, c, lit = kernel_arrays(tape.op, tape.a, tape.b, tape.c, tape.lit)
    forward(op, a, b, c, kernel_literals(tape.op, lit), vals, len(tape))
    op, lit = tape.op.copy(), tape.lit.copy()
    a, b, c = tape.a.copy(), tape.b.copy(), tape.c.copy()
    op[fold], lit[fold] = CONST, vals[:-1][fold]
    a[fold] = b[fold] = c[fold] = -1
    return dce(Tape(op, a, b, c, lit, tape.inputs, tape.outputs, tape.guards, tape.guard_values))


def optimize(tape: Tape) -> Tape:
    """fold_constants, then cse, then dce: what runs before a tape is compiled."""
    return dce(cse(fold_constants(tape)))
