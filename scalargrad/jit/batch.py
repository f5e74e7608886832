"""Batched kernels: one tape evaluated at many points, in parallel across cores.

Points are split into chunks of ``m``; each chunk is one ``prange`` task with (instruction, point)
buffers, so every instruction runs a short loop over the chunk's points that LLVM vectorises and
the opcode dispatch is paid once per chunk rather than once per point. ``ok[p]`` reports whether
point p took the traced control-flow path (its guards held); other points are evaluated apart.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._interp import forward_batch, forward_partials_batch
from .flags import njit

WORKING_SET = 1 << 15  # floats per instruction-row budget: keeps a chunk's buffers near L2 size


def chunk_size(n: int) -> int:
    """Points per chunk for an n-instruction tape (8 to 256)."""
    return int(min(256, max(8, WORKING_SET // max(n, 1))))


@njit
def _load(io, X, p0, m, vals):
    for i in range(io[0]):
        slot = io[3 + i]
        for j in range(m):
            vals[slot, j] = X[p0 + j, i]


@njit
def _check_guards(io, vals, p0, m, ok):
    n_in, n_out, n_guard = io[0], io[1], io[2]
    start = 3 + n_in + n_out
    for j in range(m):
        ok[p0 + j] = True
    for i in range(n_guard):
        slot = io[start + i]
        expect = io[start + n_guard + i] != 0
        for j in range(m):
            if (vals[slot, j] != 0.0) != expect:
                ok[p0 + j] = False


@njit
def reverse_batch(ra, rb, pa, pb, adj, n, m):
    """The reverse sweep for a chunk of points; a zero adjoint contributes nothing (see reverse)."""
    for k in range(n - 1, -1, -1):
        x, y = ra[k], rb[k]
        for j in range(m):
            g = adj[k, j]
            adj[x, j] += pa[k, j] * g if g != 0.0 else 0.0
            adj[y, j] += pb[k, j] * g if g != 0.0 else 0.0


@njit(parallel=True)
def evaluate_batch(ins, lit, io, X, out, ok, chunk):
    """out[p, i] = output i at point X[p]; ok[p] = guards held."""
    n = ins.shape[1]
    B = X.shape[0]
    n_in, n_out = io[0], io[1]
    for c in prange((B + chunk - 1) // chunk):
        p0 = c * chunk
        m = min(chunk, B - p0)
        vals = np.empty((n + 1, m))
        _load(io, X, p0, m, vals)
        forward_batch(ins[0], ins[1], ins[2], ins[3], lit, vals, n, m)
        _check_guards(io, vals, p0, m, ok)
        for i in range(n_out):
            slot = io[3 + n_in + i]
            for j in range(m):
                out[p0 + j, i] = vals[slot, j]


@njit(parallel=True)
def value_and_grad_batch(ins, lit, io, X, values, G, ok, chunk):
    """values[p] = output 0 at X[p]; G[p] = its gradient; ok[p] = guards held."""
    n = ins.shape[1]
    B = X.shape[0]
    n_in = io[0]
    out = io[3 + n_in]
    for c in prange((B + chunk - 1) // chunk):
        p0 = c * chunk
        m = min(chunk, B - p0)
        vals = np.empty((n + 1, m))
        pa = np.empty((n, m))
        pb = np.empty((n, m))
        adj = np.zeros((n + 1, m))
        _load(io, X, p0, m, vals)
        forward_partials_batch(ins[0], ins[1], ins[2], ins[3], lit, vals, pa, pb, n, m)
        _check_guards(io, vals, p0, m, ok)
        for j in range(m):
            values[p0 + j] = vals[out, j]
            adj[out, j] = 1.0
        reverse_batch(ins[4], ins[5], pa, pb, adj, n, m)
        for i in range(n_in):
            slot = io[3 + i]
            for j in range(m):
                G[p0 + j, i] = adj[slot, j]
