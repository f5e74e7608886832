"""Custom ops inside tapes and programs: which ones an opcode array uses, and the literal pool that
hands the compiled sweeps their C function addresses (see custom_call.py for the call itself).

Reads the registry (core/registry.py) only; the ops themselves are made by record/custom.py.
"""
from __future__ import annotations

import functools
import weakref

import numba
import numpy as np
from numba import float64

from ..core.ops import CUSTOM_ROWS
from ..core.registry import custom_op_by_id

C_SIGNATURE = float64(float64, float64)  # every function of a custom op, unary ones ignoring b


def _custom_slots(op) -> np.ndarray:
    op = np.asarray(op)
    return np.flatnonzero((op == CUSTOM_ROWS[1]) | (op == CUSTOM_ROWS[2]))


def ops_in(op, lit) -> list:
    """The custom ops (CustomOp) used by instructions (op, lit), each once; ValueError naming the first
    instruction whose op is not registered here or whose operand count does not match."""
    slots = _custom_slots(op)
    found = {}
    for k in slots.tolist():
        key = float(lit[k])
        if key in found:
            continue
        try:
            entry = custom_op_by_id(key)
        except ValueError as e:
            raise ValueError(f"instruction {k}: {e}") from None
        if CUSTOM_ROWS[entry.arity] != op[k]:
            raise ValueError(f"instruction {k}: custom op {entry.name!r} takes {entry.arity} operand(s), "
                             f"the instruction has {3 - entry.arity}")
        found[key] = entry
    return list(found.values())


def kernel_literals(op, lit) -> np.ndarray:
    """The literal pool the sweeps read: ``lit`` itself when no custom op is used, else a read-only
    copy whose custom instructions hold the index of their op's function addresses, appended at
    the end (forward, partial a, partial b; see jit/custom_call.py)."""
    if not uses_custom_ops(op):
        return lit
    used = ops_in(op, lit)
    if not used:
        return lit
    slots = _custom_slots(op)
    start = {}
    addresses = []
    for entry in used:
        start[entry.id] = len(lit) + len(addresses)
        derivatives = [_not_differentiable().address] * 2
        if entry.partials is not None:  # by id: the definition registered now under the partial's name
            derivatives[: entry.arity] = [custom_op_by_id(p.id).address for p in entry.partials]
        addresses += [entry.address, *derivatives]
    pool = np.concatenate([lit, np.array(addresses, dtype=np.int64).view(np.float64)])
    pool[slots] = [start[int(lit[k])] for k in slots.tolist()]
    pool.flags.writeable = False  # the sweeps' mark of a pool with custom ops (jit/generate.py)
    return pool


_PROGRAMS = weakref.WeakSet()  # live programs whose literal pools hold custom ops' addresses


def track(program) -> None:
    """Remember ``program`` (a kernels.Program with custom ops) for ``refresh_programs``."""
    _PROGRAMS.add(program)


def refresh_programs() -> None:
    """Rebuild the literal pools of the live programs with custom ops after an op was registered again
    under its name, so that their next call runs the new definition."""
    for program in list(_PROGRAMS):
        program.lit = kernel_literals(program.tape.op, np.array(program.tape.lit, dtype=np.float64))


def require_derivatives(op, lit, what: str) -> None:
    """NotImplementedError (naming the op) unless every custom op used can be differentiated."""
    for entry in ops_in(op, lit):
        try:
            entry.partial(0)
        except NotImplementedError as e:
            raise NotImplementedError(f"{what}: {e}") from None


_UNARY, _BINARY = (np.int8(code).tobytes() for code in CUSTOM_ROWS.values())


def uses_custom_ops(op) -> bool:
    """Whether an opcode array (int8, as in tapes and recorders) holds a custom op; a byte search,
    so that an eager backward of a few ops pays well under a microsecond for it."""
    data = (op if type(op) is np.ndarray and op.dtype == np.int8 else np.asarray(op, dtype=np.int8)).tobytes()
    return data.find(_UNARY) >= 0 or data.find(_BINARY) >= 0


@functools.cache
def _not_differentiable():
    """What the sweeps call for the partials of an op that has none: they are computed with every
    forward sweep and never used, because differentiating such a tape is refused beforehand."""
    return numba.cfunc(C_SIGNATURE)(lambda a, b: np.nan)
