"""Batched kernels: one tape evaluated at many points, in parallel across cores.

Points are split into chunks of ``m``; each chunk runs with (row, point) buffers, so every
instruction runs a short loop over the chunk's points that LLVM vectorises and the opcode dispatch
is paid once per chunk rather than once per point. Values and adjoints are packed into rows by
lifetime (liveness.py), so they stay in cache; the partials take one row per instruction. Each of
the T ``prange`` workers takes every T-th chunk and reuses one buffer set, held by the Program
between calls (fresh buffers per chunk would page-fault on every call: on 2 cores that made a
batch slower than single points). ``ok[p]`` reports whether point p took the traced control-flow
path (its guards held); other points are evaluated apart.
"""
from __future__ import annotations

import numpy as np
from numba import prange

import numba

from ..core import resources
from . import liveness
# inlined-sources stamp (jit/generate.py writes it; Numba's cache depends on it): bf44acf1f7e0de17
from ._interp import forward_batch, forward_partials_batch
from .flags import njit

WORKING_SET = 1 << 15  # a chunk is as wide as keeps a partials buffer (n x chunk) within this many floats,
MIN_CHUNK = 16         # and at least this wide: long tapes stream their partials through L3 at any width,
# and 16 points a chunk ran the random 10^5 program and the MLP 1.1-1.3x faster than 8 (Numba 0.68,
# 2-core AMD EPYC, 1 and 2 threads), 32 no faster than 16.


def chunk_size(n: int) -> int:
    """Points per chunk for an n-instruction tape (16 to 256)."""
    return int(min(256, max(MIN_CHUNK, WORKING_SET // max(n, 1))))


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
def reverse_batch(ins, pa, pb, adj, n, m):
    """The reverse sweep for a chunk of points; a zero adjoint contributes nothing (see reverse).
    Instruction k's adjoint row is cleared once read, for the value that held the row before it."""
    ra, rb, dst, clear = ins[4], ins[5], ins[6], ins[7]
    for k in range(n - 1, -1, -1):
        x, y, r, z = ra[k], rb[k], dst[k], clear[k]
        for j in range(m):
            g = adj[r, j]
            adj[z, j] = 0.0
            adj[x, j] += pa[k, j] * g if g != 0.0 else 0.0
            adj[y, j] += pb[k, j] * g if g != 0.0 else 0.0


def _prepared(program):
    """(ins, io, rows, chunk, work): the program's packed layout for the batch sweeps (liveness.py,
    made once per program) and this Python thread's (workers, 2 (rows + n) chunk) buffers, reused
    across calls."""
    if program.batch_layout is None:
        program.batch_layout = liveness.packed_ins(program)
    ins, io, rows = program.batch_layout
    n, workers = ins.shape[1], numba.get_num_threads()
    chunk = chunk_size(n)
    shape = (workers, 2 * (rows + n) * chunk)
    work = getattr(program.local, "batch_work", None)
    if work is None or work.shape != shape:
        resources.require(8 * shape[0] * shape[1], f"batch buffers for {workers} workers of {chunk} points")
        work = program.local.batch_work = np.zeros(shape)  # partials never written must be 0.0: see Program.workspace
    return ins, io, rows, chunk, work


def value_and_grad(program, X):
    """(values, G, ok) of output 0 and its gradient at every row of X (ok: the guards held)."""
    program.require_output()
    B = len(X)
    values, G, ok = np.empty(B), np.empty((B, program.n_inputs)), np.empty(B, dtype=np.bool_)
    ins, io, rows, chunk, work = _prepared(program)
    _value_and_grad(ins, program.lit, io, rows, X, values, G, ok, chunk, work)
    return values, G, ok


def evaluate(program, X):
    """(out, ok): every output at every row of X (ok: the guards held)."""
    B = len(X)
    out, ok = np.empty((B, program.n_outputs)), np.empty(B, dtype=np.bool_)
    ins, io, rows, chunk, work = _prepared(program)
    _evaluate(ins, program.lit, io, rows, X, out, ok, chunk, work)
    return out, ok


@njit
def _buffers(work, t, rows, n, chunk):
    """Worker t's vals and adj ((rows, chunk) each), pa and pb ((n, chunk) each): views of ``work``."""
    w = work[t]
    big, small = n * chunk, rows * chunk
    return (w[:small].reshape((rows, chunk)), w[small:2 * small].reshape((rows, chunk)),
            w[2 * small:2 * small + big].reshape((n, chunk)), w[2 * small + big:2 * (small + big)].reshape((n, chunk)))


@njit(parallel=True)
def _evaluate(ins, lit, io, rows, X, out, ok, chunk, work):
    n = ins.shape[1]
    B = X.shape[0]
    n_in, n_out = io[0], io[1]
    workers = work.shape[0]
    n_chunks = (B + chunk - 1) // chunk
    for t in prange(workers):
        vals = _buffers(work, t, rows, n, chunk)[0]
        for c in range(t, n_chunks, workers):
            p0 = c * chunk
            m = min(chunk, B - p0)
            _load(io, X, p0, m, vals)
            forward_batch(ins[0], ins[1], ins[2], ins[3], ins[6], lit, vals, n, m)
            _check_guards(io, vals, p0, m, ok)
            for i in range(n_out):
                slot = io[3 + n_in + i]
                for j in range(m):
                    out[p0 + j, i] = vals[slot, j]


@njit(parallel=True)
def _value_and_grad(ins, lit, io, rows, X, values, G, ok, chunk, work):
    n = ins.shape[1]
    B = X.shape[0]
    n_in = io[0]
    out = io[3 + n_in]
    workers = work.shape[0]
    n_chunks = (B + chunk - 1) // chunk
    for t in prange(workers):
        vals, adj, pa, pb = _buffers(work, t, rows, n, chunk)
        for c in range(t, n_chunks, workers):
            p0 = c * chunk
            m = min(chunk, B - p0)
            _load(io, X, p0, m, vals)
            forward_partials_batch(ins[0], ins[1], ins[2], ins[3], ins[6], lit, vals, pa, pb, n, m)
            _check_guards(io, vals, p0, m, ok)
            adj[:, :] = 0.0
            for j in range(m):
                values[p0 + j] = vals[out, j]
                adj[out, j] = 1.0
            reverse_batch(ins, pa, pb, adj, n, m)
            for i in range(n_in):
                slot = io[3 + i]
                for j in range(m):
                    G[p0 + j, i] = adj[slot, j]
