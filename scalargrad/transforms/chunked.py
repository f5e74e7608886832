"""``vmap`` over Dask arrays: the compiled batch kernel mapped over the chunks of the batch axis.

The arguments become one (points, inputs) Dask matrix chunked along the points only; each chunk runs
through ``VMap._sweep`` (the same kernels and per-point guard fallback as a NumPy batch) inside
``map_blocks``, so a Dask scheduler (threads, processes or a cluster) spreads the chunks over its
workers; what a worker receives is the traced program as plain arrays plus the Python function for
points that take another branch. Results are Dask arrays: nothing runs until ``.compute()``.
Dask is optional (``pip install scalargrad[dask]``).
"""
from __future__ import annotations

import numpy as np


def is_dask(x) -> bool:
    """Whether ``x`` is a Dask array (checked without importing Dask)."""
    return type(x).__module__.startswith("dask.") and hasattr(x, "map_blocks") and hasattr(x, "chunks")


def _dask_array():
    try:
        import dask.array
    except ImportError as error:  # is_dask saw a Dask array, so this means a broken install
        raise ImportError("vmap over Dask arrays needs dask[array]: pip install scalargrad[dask]") from error
    return dask.array


def _columns(da, x, batched: bool, B: int, chunks):
    """Argument ``x`` as a (B, size) block of the input matrix, chunked like the batch axis."""
    if batched:
        x = da.asarray(x).astype(np.float64)
        return x.rechunk((chunks,) + (-1,) * (x.ndim - 1)).reshape(B, -1)
    x = np.asarray(x, dtype=np.float64).reshape(1, -1)
    return da.broadcast_to(da.from_array(x), (B, x.shape[1]), chunks=(chunks, x.shape[1]))


def vmap_dask(vm, args):
    """``vm(*args)`` where some batched arguments are Dask arrays; returns Dask arrays."""
    da = _dask_array()
    B, moved, batched = vm._points(args)
    first = next(x for x, b in zip(moved, batched) if b and is_dask(x))
    chunks = first.chunks[0]
    transformed = vm.fn.batch_transform()
    point0 = [np.asarray(x[0].compute() if is_dask(x) else x[0]) if b else x for x, b in zip(moved, batched)]
    sig = transformed.flat(point0)[0]  # traces and compiles here, once; the chunks reuse it
    path = sig.paths[0]
    X = da.concatenate([_columns(da, x, b, B, chunks) for x, b in zip(moved, batched)], axis=1)
    X = X.rechunk((chunks, -1))
    n_in = X.shape[1]
    if transformed.kernel_kind == "value_and_grad":
        def block(Xb):
            values, G = vm._sweep(transformed, sig, path, np.ascontiguousarray(Xb, dtype=np.float64))
            return np.concatenate([values[:, None], G], axis=1)

        packed = X.map_blocks(block, chunks=(chunks, (1 + n_in,)), dtype=np.float64)
        return vm.fn.batched(sig, packed[:, 0], packed[:, 1:])

    out = X.map_blocks(lambda Xb: vm._sweep(transformed, sig, path, np.ascontiguousarray(Xb, dtype=np.float64)),
                       chunks=(chunks, (path.program.n_outputs,)), dtype=np.float64)
    return transformed.batched(path.structure, out)
