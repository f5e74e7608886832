"""Buffer rows for the batch sweeps: a tape's values packed into as few rows as their lifetimes allow.

Value k lives from instruction k to its last use; inputs, outputs and guards live to the end.
A row freed by a value's last use is reused by a later value (the most recently freed first), so
a sweep's values and adjoints stay in cache however long the tape when lifetimes are short: the
random workload's 35,140 instructions (operands from the last 32 results) need 366 rows. The
adjoint of a value lives over the same interval, walked backwards, so the reverse sweep uses the
same rows: it reads row ``dst[k]`` and zeroes it (``clear[k]``) before the row's previous owner
accumulates there.
A value never shares a row with its own operands, so an instruction never reads the row it writes.
"""
from __future__ import annotations

import numpy as np

from ..core.ops import INPUT
from .flags import njit


def packed_ins(program) -> tuple[np.ndarray, np.ndarray, int]:
    """(ins, io, rows): the program's instructions as 8 x n int32 rows (op, a, b, c, ra, rb, dst,
    clear) and its io array, every slot replaced by its buffer row; ``rows`` buffer rows hold them
    all, the last one a scratch row (where unused and non-carried operands point)."""
    ins, io = program.ins, program.io
    n_in, n_out, n_guard = io[0], io[1], io[2]
    pinned = io[3: 3 + n_in + n_out + n_guard]
    row, rows = _allocate(ins[0], ins[1], ins[2], ins[3], pinned)
    sink = rows - 1
    packed = np.empty((8, ins.shape[1]), np.int32)
    packed[0] = ins[0]
    for i in range(1, 6):  # operand slots: -1 (unused) and n (not carried) map to the scratch row
        packed[i] = np.where(ins[i] < 0, sink, row[ins[i]])
    packed[6] = row[:-1]
    packed[7] = np.where(ins[0] == INPUT, sink, row[:-1])  # an input's adjoint is the gradient: kept
    packed_io = io.copy()
    packed_io[3: 3 + n_in + n_out + n_guard] = row[pinned]
    return packed, packed_io, rows


@njit
def _allocate(op, a, b, c, pinned):
    """(row of each slot 0..n, rows used): slot n, the scratch slot, gets the last row."""
    n = len(op)
    last_use = np.arange(n)  # a value nobody reads dies where it is made
    for k in range(n):
        for x in (a[k], b[k], c[k]):
            if x >= 0:
                last_use[x] = k
    for s in pinned:
        last_use[s] = n
    row = np.empty(n + 1, np.int32)
    free = np.empty(n, np.int32)
    n_free = 0
    rows = 0
    for k in range(n):
        if n_free > 0:
            n_free -= 1
            row[k] = free[n_free]
        else:
            row[k] = rows
            rows += 1
        # Free after allocating, so that k never writes a row it reads.
        for x in (a[k], b[k], c[k]):
            if x >= 0 and last_use[x] == k:
                free[n_free] = row[x]
                n_free += 1
                last_use[x] = -1  # freed: the same slot in another operand frees nothing
        if last_use[k] == k:
            free[n_free] = row[k]
            n_free += 1
    row[n] = rows
    return row, rows + 1
