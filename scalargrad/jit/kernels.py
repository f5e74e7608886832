"""Compiled kernels over a tape's arrays: value, value-and-gradient, eager backward.

A tape is handed to the kernels as a ``Program``: ``ins`` (int32, 6 x n: op, a, b, c, ra, rb) and
``lit`` (the literals, then any custom ops' function addresses: jit/custom_call.py). ``ra``/``rb``
are the slots that receive the two derivatives a reverse step carries, or the scratch slot n where
an op carries fewer, so the reverse sweep has no dispatch. ``io`` packs the
input, output and guard slots. Each thread gets its own workspace per program (reused across
calls: fresh large buffers would page-fault on every call), so there is no shared scratch.
"""
from __future__ import annotations

import threading

import numpy as np

from . import custom_ops
from ..core import resources
from ..core.ops import DIFF_MASK, INPUT
from ..core.tape import Tape
# inlined-sources stamp (jit/generate.py writes it; Numba's cache depends on it): 63fd2eb90ac32d58
from ._interp import forward_partials
from .flags import njit


NO_OUTPUT = "value_and_grad: the program has no outputs (the value and gradient are those of output 0)"


def kernel_arrays(*arrays):
    """Writable C-contiguous copies, int32 for integer arrays: the one set of argument types the
    sweeps are compiled for (each other combination would cost another multi-second compile)."""
    return [np.array(x, dtype=np.float64 if x.dtype.kind == "f" else np.int32, order="C") for x in arrays]


class Program:
    """A validated tape in the kernels' layout."""

    __slots__ = ("ins", "lit", "io", "n_inputs", "n_outputs", "n_guards", "tape", "local", "batch_layout",
                 "__weakref__")

    def __init__(self, tape: Tape):
        n = len(tape)
        resources.require_program(n)  # MemoryError now, not after allocating half of it
        ra, rb = reverse_operands(tape.op, tape.a, tape.b, tape.c)
        self.ins = np.ascontiguousarray(np.stack([tape.op.astype(np.int32), tape.a, tape.b, tape.c, ra, rb]),
                                        dtype=np.int32)
        self.lit = custom_ops.kernel_literals(tape.op, kernel_arrays(tape.lit)[0])
        if custom_ops.uses_custom_ops(tape.op):
            custom_ops.track(self)  # its pool is rebuilt if a custom op is registered again
        self.n_inputs, self.n_outputs, self.n_guards = len(tape.inputs), len(tape.outputs), len(tape.guards)
        self.io = np.concatenate([[self.n_inputs, self.n_outputs, self.n_guards], tape.inputs, tape.outputs,
                                  tape.guards, tape.guard_values != 0.0]).astype(np.int32)
        self.tape = tape
        self.local = threading.local()
        self.batch_layout = None  # made by the first batch call (batch.py)

    def __reduce__(self):
        """Pickled as its tape (plain arrays, e.g. shipped to Dask workers) and rebuilt there: the
        literal pool holds this process's function addresses, and workspaces are per process."""
        return Program, (self.tape,)

    def require_output(self) -> None:
        """ValueError unless the program has an output: the gradient kernels read output 0."""
        if not self.n_outputs:
            raise ValueError(NO_OUTPUT)

    @property
    def workspace_size(self) -> int:
        """Floats in a workspace: vals (n + 1), two partials (n each), adjoints (n + 1); see
        ``split_workspace``."""
        return 4 * self.ins.shape[1] + 2

    def workspace(self) -> np.ndarray:
        """This thread's buffer for vals, partials and adjoints (``workspace_size`` floats), zeroed
        once: the reverse sweep multiplies every instruction's second partial, which ops carrying
        fewer derivatives never write, so those must hold 0.0, not leftover bytes. Leftover int32
        indices read as float64 are subnormal, and a subnormal product costs about a hundred cycles:
        Rosenbrock 10^4's reverse sweep took 2,055 us instead of 196 (/tmp/s/prof.py, 2026-12-06)."""
        try:
            return self.local.work
        except AttributeError:
            size = self.workspace_size
            resources.require(8 * size, f"a workspace for a program of {self.ins.shape[1]:,} instructions")
            work = self.local.work = np.zeros(size)
            return work


def reverse_operands(op, a, b, c):
    """Slots receiving the first and second carried derivative of each instruction (n if none)."""
    return _reverse_operands(op, a, b, c, DIFF_MASK)


@njit
def _reverse_operands(op, a, b, c, diff_mask):
    n = len(op)
    ra = np.full(n, n, np.int32)
    rb = np.full(n, n, np.int32)
    for k in range(n):
        carried = 0
        for j in range(3):
            if diff_mask[op[k], j]:
                slot = a[k] if j == 0 else (b[k] if j == 1 else c[k])
                if carried == 0:
                    ra[k] = slot
                else:
                    rb[k] = slot
                carried += 1
    return ra, rb


@njit
def reverse(ra, rb, pa, pb, adj, n):
    """adj[operand] += partial * adj[k] for k = n-1..0. A zero adjoint is skipped, so an infinite
    or NaN partial on a branch the output does not depend on (``where``) never leaks in."""
    for k in range(n - 1, -1, -1):
        g = adj[k]
        if g != 0.0:
            adj[ra[k]] += pa[k] * g
            adj[rb[k]] += pb[k] * g


@njit
def load_inputs(io, x, vals):
    """vals[input slot i] = x[i]."""
    n_in = io[0]
    for i in range(n_in):
        vals[io[3 + i]] = x[i]


@njit
def store_gradient(io, adj, grad):
    """grad[i] = adj[input slot i], once the reverse sweep has filled the adjoints."""
    for i in range(io[0]):
        grad[i] = adj[io[3 + i]]


@njit
def guards_hold(io, vals):
    """Whether every guard slot holds the truth value it had when traced."""
    n_in, n_out, n_guard = io[0], io[1], io[2]
    start = 3 + n_in + n_out
    for i in range(n_guard):
        if (vals[io[start + i]] != 0.0) != (io[start + n_guard + i] != 0):
            return False
    return True


@njit
def split_workspace(work, n):
    """vals (n + 1), pa (n), pb (n), adj (n + 1) views of a workspace."""
    return work[: n + 1], work[n + 1: 2 * n + 1], work[2 * n + 1: 3 * n + 1], work[3 * n + 1: 4 * n + 2]


@njit
def forward_sweep(ins, lit, io, x, work):
    """The inputs loaded and the sweep with partials run: (vals, pa, pb, scratch, guards hold), views
    of ``work``; ``scratch`` (n + 1) is free for adjoints or tangents."""
    n = ins.shape[1]
    vals, pa, pb, scratch = split_workspace(work, n)
    load_inputs(io, x, vals)
    forward_partials(ins[0], ins[1], ins[2], ins[3], lit, vals, pa, pb, n)
    return vals, pa, pb, scratch, guards_hold(io, vals)


@njit
def evaluate(ins, lit, io, x, out, work):
    """Forward sweep: writes the outputs to ``out``; returns False if a guard failed."""
    # The sweep with partials, whose partials nobody reads: measured faster than the plain forward
    # sweep (MLP 499 -> 264 us, Rosenbrock 10^4 382 -> 241 us, random 10^5 equal; Numba 0.68).
    vals, _, _, _, ok = forward_sweep(ins, lit, io, x, work)
    n_in, n_out = io[0], io[1]
    for i in range(n_out):
        out[i] = vals[io[3 + n_in + i]]
    return ok


@njit
def value_and_grad(ins, lit, io, x, grad, work):
    """Value of output 0 and its gradient with respect to every input (written into ``grad``).
    Returns (value, guards_hold)."""
    if io[1] == 0:  # else io[3 + n_in] is out of bounds; reached only by a tape built by hand
        raise ValueError(NO_OUTPUT)
    vals, pa, pb, adj, ok = forward_sweep(ins, lit, io, x, work)
    n_in = io[0]
    out = io[3 + n_in]
    if not ok:
        return vals[out], False
    adj[:] = 0.0
    adj[out] = 1.0
    reverse(ins[4], ins[5], pa, pb, adj, ins.shape[1])
    store_gradient(io, adj, grad)
    return vals[out], True


def kernel_array(x, dtype) -> np.ndarray:
    """``x`` itself if it already has the kernels' argument type (writable, C-contiguous, ``dtype``),
    else such a copy: a recorder's buffers go to the sweeps without copying."""
    if type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous and x.flags.writeable:
        return x
    return np.array(x, dtype=dtype, order="C")


def eager_backward(op, a, b, c, lit, seed_slots, seed_values):
    """Adjoints of every slot of an eager recording, seeded at ``seed_slots``. Input instructions
    hold their recorded value in ``lit``. One compiled call (a small graph's backward costs little
    more than Numba's dispatch)."""
    i32 = np.int32
    lit = kernel_array(lit, np.float64)
    if custom_ops.uses_custom_ops(op):
        custom_ops.require_derivatives(op, lit, "backward()")
        lit = custom_ops.kernel_literals(op, lit)
    return _eager_backward(kernel_array(op, i32), kernel_array(a, i32), kernel_array(b, i32), kernel_array(c, i32),
                           lit, DIFF_MASK, seed_slots, seed_values, INPUT)


@njit
def _eager_backward(op, a, b, c, lit, diff_mask, seed_slots, seed_values, input_code):
    n = len(op)
    ra, rb = _reverse_operands(op, a, b, c, diff_mask)
    vals = np.empty(n + 1)
    pa = np.zeros(n)  # zeroed: see Program.workspace
    pb = np.zeros(n)
    for k in range(n):
        if op[k] == input_code:
            vals[k] = lit[k]
    forward_partials(op, a, b, c, lit, vals, pa, pb, n)
    adj = np.zeros(n + 1)
    for i in range(len(seed_slots)):
        adj[seed_slots[i]] += seed_values[i]
    reverse(ra, rb, pa, pb, adj, n)
    return adj[:n]
