"""Compiled tangent (forward-mode) sweeps and Jacobian kernels over a ``Program``.

After the forward sweep with partials (``kernels.forward_sweep``), the tangent of instruction k is ``pa[k] * tan[ra[k]] + pb[k] * tan[rb[k]]``
(``ra``/``rb`` are n where an op carries fewer derivatives). A term is skipped when either factor is
zero, so an infinite partial on a branch ``where`` did not select never turns into NaN, as the
reverse sweep's zero-adjoint skip does. Each kernel returns False when a guard fails.
"""
from __future__ import annotations

import numpy as np

from ..core.ops import INPUT
# inlined-sources stamp (jit/generate.py writes it; Numba's cache depends on it): bf44acf1f7e0de17
from .flags import njit
from .kernels import split_workspace, forward_sweep, reverse


@njit
def tangent_sweep(op, ra, rb, pa, pb, tan, n, input_code):
    """tan[k] for every non-input instruction, from the input tangents already in ``tan``."""
    for k in range(n):
        if op[k] == input_code:
            continue
        t = 0.0
        i = ra[k]
        if i != n:
            ti = tan[i]
            if ti != 0.0:
                p = pa[k]
                if p != 0.0:
                    t = p * ti
            j = rb[k]
            if j != n:
                tj = tan[j]
                if tj != 0.0:
                    p = pb[k]
                    if p != 0.0:
                        t += p * tj
        tan[k] = t


@njit
def jvp(ins, lit, io, x, v, out, tout, work):
    """Outputs and their tangents in direction ``v`` (one entry per input). False if a guard failed."""
    if not jacobian_forward(ins, lit, io, x, v.reshape((-1, 1)), tout.reshape((-1, 1)), work):
        return False
    n_in, n_out = io[0], io[1]
    vals = split_workspace(work, ins.shape[1])[0]  # the forward values jacobian_forward left in work
    for i in range(n_out):
        out[i] = vals[io[3 + n_in + i]]
    return True


@njit
def jacobian_forward(ins, lit, io, x, seeds, jac, work):
    """jac[:, j] = tangents of the outputs for input tangents ``seeds[:, j]`` (inputs x columns):
    one forward sweep, then one tangent sweep per column (compressed when columns are colours)."""
    n = ins.shape[1]
    _, pa, pb, tan, ok = forward_sweep(ins, lit, io, x, work)
    if not ok:
        return False
    n_in, n_out = io[0], io[1]
    for j in range(seeds.shape[1]):
        tan[:] = 0.0
        for i in range(n_in):
            tan[io[3 + i]] = seeds[i, j]
        tangent_sweep(ins[0], ins[4], ins[5], pa, pb, tan, n, INPUT)
        for i in range(n_out):
            jac[i, j] = tan[io[3 + n_in + i]]
    return True


@njit
def jacobian_reverse(ins, lit, io, x, jac, work):
    """jac[i, :] = gradient of output i with respect to every input: one forward sweep, then one
    reverse sweep per output."""
    n = ins.shape[1]
    _, pa, pb, adj, ok = forward_sweep(ins, lit, io, x, work)
    if not ok:
        return False
    n_in, n_out = io[0], io[1]
    for i in range(n_out):
        adj[:] = 0.0
        adj[io[3 + n_in + i]] = 1.0
        reverse(ins[4], ins[5], pa, pb, adj, n)
        for j in range(n_in):
            jac[i, j] = adj[io[3 + j]]
    return True


@njit
def dependency_pairs(ins, io, n_block, input_code):
    """(rows, cols): output ``rows[i]`` depends on input ``cols[i]`` (one of the first ``n_block``)
    through operands that carry a derivative. One pass over the tape per 64 inputs, propagating
    bit masks (the ``ra``/``rb`` operands; slot n stays 0)."""
    n = ins.shape[1]
    n_in, n_out = io[0], io[1]
    mask = np.zeros(n + 1, np.uint64)
    rows = np.empty(16, np.int64)
    words = np.empty(16, np.int64)
    bits = np.empty(16, np.uint64)
    count = 0
    for w in range((n_block + 63) // 64):
        mask[:] = 0
        for i in range(w * 64, min(n_block, w * 64 + 64)):
            mask[io[3 + i]] |= np.uint64(1) << np.uint64(i - w * 64)
        for k in range(n):
            if ins[0, k] != input_code:
                mask[k] = mask[ins[4, k]] | mask[ins[5, k]]
        for r in range(n_out):
            m = mask[io[3 + n_in + r]]
            if m != 0:
                if count == len(rows):
                    rows, words, bits = _grow(rows, count), _grow(words, count), _grow(bits, count)
                rows[count], words[count], bits[count] = r, w, m
                count += 1
    total = 0
    for t in range(count):
        m = bits[t]
        while m != 0:
            m &= m - np.uint64(1)
            total += 1
    out_rows = np.empty(total, np.int64)
    out_cols = np.empty(total, np.int64)
    j = 0
    for t in range(count):
        m = bits[t]
        for b in range(64):
            if (m >> np.uint64(b)) & np.uint64(1):
                out_rows[j] = rows[t]
                out_cols[j] = words[t] * 64 + b
                j += 1
    return out_rows, out_cols


@njit
def _grow(arr, count):
    out = np.empty(2 * len(arr), arr.dtype)
    out[:count] = arr[:count]
    return out
