"""GPU batch kernels (numba-cuda): one thread per point walking the tape.

Buffers are (instruction, point) arrays, so at each instruction neighbouring threads read and
write neighbouring memory. The per-op code is the generated ``*_column`` sweeps of ``_interp.py``
compiled as device functions. Built lazily: importing numba.cuda is slow, and fails without CUDA.
"""
from __future__ import annotations

import functools

import numpy as np

from .custom_ops import ops_in, uses_custom_ops

THREADS_PER_BLOCK = 128
cuda = None  # numba.cuda, bound on first use; kernels look it up as a global (the simulator needs that)


def unavailable_reason() -> str | None:
    """None if a CUDA device (or Numba's CUDA simulator) is usable, else why not."""
    try:
        from numba import cuda as numba_cuda
    except Exception as exc:  # noqa: BLE001 - any import failure means no GPU path
        return f"numba.cuda cannot be imported ({exc})"
    try:
        if numba_cuda.is_available():
            return None
    except Exception as exc:  # noqa: BLE001
        return f"numba.cuda reports an error ({exc})"
    return "no CUDA GPU and driver are visible to numba.cuda"


def _reverse_column(ra, rb, pa, pb, adj, n, p):
    for k in range(n - 1, -1, -1):
        g = adj[k, p]
        if g != 0.0:
            adj[ra[k], p] += pa[k, p] * g
            adj[rb[k], p] += pb[k, p] * g


@functools.lru_cache(maxsize=None)
def _kernels():
    global cuda
    from numba import cuda

    from . import _interp
    forward = cuda.jit(device=True)(_interp.forward_column)
    forward_partials = cuda.jit(device=True)(_interp.forward_partials_column)
    reverse = cuda.jit(device=True)(_reverse_column)

    @cuda.jit(device=True)
    def load(io, XT, vals, p):
        for i in range(io[0]):
            vals[io[3 + i], p] = XT[i, p]

    @cuda.jit(device=True)
    def guards_hold(io, vals, p):
        n_in, n_out, n_guard = io[0], io[1], io[2]
        start = 3 + n_in + n_out
        for i in range(n_guard):
            if (vals[io[start + i], p] != 0.0) != (io[start + n_guard + i] != 0):
                return False
        return True

    @cuda.jit
    def evaluate(ins, lit, io, XT, out, ok, vals):
        p = cuda.grid(1)
        if p >= XT.shape[1]:
            return
        n = ins.shape[1]
        load(io, XT, vals, p)
        forward(ins[0], ins[1], ins[2], ins[3], lit, vals, n, p)
        ok[p] = guards_hold(io, vals, p)
        n_in, n_out = io[0], io[1]
        for i in range(n_out):
            out[i, p] = vals[io[3 + n_in + i], p]

    @cuda.jit
    def value_and_grad(ins, lit, io, XT, values, GT, ok, vals, pa, pb, adj):
        p = cuda.grid(1)
        if p >= XT.shape[1]:
            return
        n = ins.shape[1]
        load(io, XT, vals, p)
        forward_partials(ins[0], ins[1], ins[2], ins[3], lit, vals, pa, pb, n, p)
        ok[p] = guards_hold(io, vals, p)
        n_in = io[0]
        out = io[3 + n_in]
        values[p] = vals[out, p]
        for k in range(n + 1):
            adj[k, p] = 0.0
        adj[out, p] = 1.0
        reverse(ins[4], ins[5], pa, pb, adj, n, p)
        for i in range(n_in):
            GT[i, p] = adj[io[3 + i], p]

    return cuda, evaluate, value_and_grad


def require_gpu(program=None):
    """RuntimeError without a usable GPU; ValueError for a program it cannot run."""
    if program is not None and uses_custom_ops(program.tape.op):
        raise ValueError(f"device='cuda' cannot run custom op {ops_in(program.tape.op, program.tape.lit)[0].name!r} "
                         "(its functions are compiled for the CPU); use the CPU batch (device='cpu')")
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"device='cuda' needs an NVIDIA GPU with its driver and the numba-cuda "
                           f"package (pip install 'scalargrad[cuda]'): {reason}")


def _launch(kernel, B, *args):
    blocks = (B + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    kernel[blocks, THREADS_PER_BLOCK](*args)


def value_and_grad(program, X):
    """(values, G, ok) for the points X (points x inputs), computed on the GPU."""
    program.require_output()
    require_gpu(program)
    cuda, _, kernel = _kernels()
    n, B = program.ins.shape[1], X.shape[0]
    d = cuda.to_device
    XT, values, GT, ok = d(np.ascontiguousarray(X.T)), cuda.device_array(B), \
        cuda.device_array((X.shape[1], B)), cuda.device_array(B, dtype=np.bool_)
    vals, adj = cuda.device_array((n + 1, B)), cuda.device_array((n + 1, B))
    pa, pb = cuda.device_array((n, B)), cuda.device_array((n, B))
    _launch(kernel, B, d(program.ins), d(program.lit), d(program.io), XT, values, GT, ok, vals, pa, pb, adj)
    return values.copy_to_host(), np.ascontiguousarray(GT.copy_to_host().T), ok.copy_to_host()


def evaluate(program, X):
    """(outputs (points x outputs), ok) for the points X, computed on the GPU."""
    require_gpu(program)
    cuda, kernel, _ = _kernels()
    n, B = program.ins.shape[1], X.shape[0]
    d = cuda.to_device
    out, ok = cuda.device_array((program.n_outputs, B)), cuda.device_array(B, dtype=np.bool_)
    vals = cuda.device_array((n + 1, B))
    _launch(kernel, B, d(program.ins), d(program.lit), d(program.io), d(np.ascontiguousarray(X.T)), out, ok, vals)
    return np.ascontiguousarray(out.copy_to_host().T), ok.copy_to_host()
