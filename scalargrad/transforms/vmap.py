"""``vmap``: evaluate a transformed function at many points with one compiled batch kernel.

The function is traced at the first point; all points run through that path in parallel
(``jit/batch.py``). Points whose guards fail (they would take another branch) are evaluated one
by one through the single-point path, which retraces as needed: never silently wrong. Dask arrays
chunked along the batch axis are mapped chunk by chunk (``chunked.py``) and give Dask arrays back.
``jvp``, ``hvp``, ``hessian`` and ``jacobian`` are mapped point by point over a thread pool (no
batched tangent kernels yet).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from ..core.tree import is_node, tree_flatten, tree_leaves, tree_map
from ..jit import batch, codegen, cuda
from ..record.tracing import describe_structure
from . import chunked, debug
from .api import jit


class VMap:
    """``vmap(fn, in_axes)(*args)``: ``fn`` at each point along the batch axes of ``args``.

    A VMap can itself be mapped (``vmap(vmap(f, in_axes=(None, 0)), in_axes=(0, None))``): the outer
    one calls the inner one per point, one after the other, since the inner batch kernels already
    use every core (and Numba's workqueue threading layer cannot nest parallel launches)."""

    vmap_mode = "pointwise"
    map_in_threads = False

    def __init__(self, fn, in_axes=0, device="cpu"):
        if callable(fn) and not hasattr(fn, "vmap_mode") and not hasattr(fn, "vmap_refusal"):
            fn = jit(fn)  # a plain function maps as its sg.jit, as JAX's vmap maps any function
        mode = getattr(fn, "vmap_mode", None)  # each transform says how it is mapped (transformed.py)
        if mode is None:
            raise TypeError(getattr(fn, "vmap_refusal", None) or "vmap expects a function (plain, or made by "
                            "sg.jit, sg.grad, sg.value_and_grad, sg.jvp, sg.hvp, sg.hessian, sg.jacobian or "
                            f"sg.vmap), got {type(fn).__name__}")
        self.pointwise = mode == "pointwise"  # jvp, hvp, hessian, jacobian, and a vmap
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and self.pointwise:
            raise ValueError(f"device='cuda' maps jit, grad and value_and_grad; {type(fn).__name__.lower()} "
                             "runs on the CPU")
        if device == "cuda":
            cuda.require_gpu()
        self.fn = fn
        self.in_axes = in_axes
        self.device = device
        self.__name__ = f"vmap({getattr(fn, '__name__', 'fn')})"

    def _axes(self, args):
        axes = self.in_axes if isinstance(self.in_axes, (tuple, list)) else (self.in_axes,) * len(args)
        if len(axes) != len(args):
            raise ValueError(f"{self.__name__}: in_axes has {len(axes)} entries for {len(args)} arguments")
        for i, ax in enumerate(axes):
            if ax is not None and not isinstance(ax, (int, np.integer)):
                raise TypeError(f"in_axes[{i}] must be an int or None, got {ax!r}")
        return axes

    def _points(self, args):
        """(number of points, args with the batch axis first, which args are batched). A pytree
        argument is mapped along its in_axes in every leaf."""
        axes = self._axes(args)
        moved, sizes = [], set()
        for i, (x, ax) in enumerate(zip(args, axes)):
            if ax is None:
                moved.append(x)
            elif is_node(x):
                leaves, treedef = tree_flatten(x)
                moved.append(treedef.unflatten([_moved(leaf, ax, f"argument {i}{path}", sizes)
                                                for leaf, path in zip(leaves, treedef.paths())]))
            else:
                moved.append(_moved(x, ax, f"argument {i}", sizes))
        if len(sizes) != 1:
            raise ValueError(f"{self.__name__}: batched arguments need one common size along their "
                             f"mapped axes, got {sorted(sizes) or 'none (every in_axes is None)'}")
        if 0 in sizes:  # the function is traced at point 0, so there must be one
            raise ValueError(f"{self.__name__}: the mapped axes have length 0; there is no point to evaluate")
        return sizes.pop(), moved, [ax is not None for ax in axes]

    @staticmethod
    def _point(moved, batched, p):
        return [(tree_map(lambda leaf: leaf[p], x) if is_node(x) else x[p]) if b else x
                for x, b in zip(moved, batched)]

    def _matrix(self, moved, batched, B):
        """The (points, inputs) matrix of every point's flat input vector (a pytree's leaves in
        ``tree_flatten``'s order, as the transforms flatten them)."""
        cols = []
        for arg, b in zip(moved, batched):
            for x in (tree_leaves(arg) if is_node(arg) else [arg]):
                x = np.asarray(x, dtype=np.float64)
                cols.append(x.reshape(B, -1) if b else np.broadcast_to(x.reshape(1, -1), (B, x.size)))
        if len(cols) == 1:
            return np.ascontiguousarray(cols[0])  # no copy when it already is one (kernels only read it)
        return np.ascontiguousarray(np.concatenate(cols, axis=1))

    def _sweep(self, transformed, sig, path, X):
        """Every point (row of X) through ``path``: (values, G) for value_and_grad, else the
        (points, outputs) matrix. Points whose guards fail go through the single-point path."""
        module = None
        if self.device == "cpu" and path.tier is not None:
            path.tier.count(len(X), batch=True)  # B points are B evaluations: a large batch makes a path hot at once
            module = path.tier.generated_module()
        program = path.program
        backend = cuda if self.device == "cuda" else batch
        if transformed.kernel_kind == "value_and_grad":
            if module is not None:  # the tape's own code (codegen, or auto after tier-up), in parallel
                values, G, ok = codegen.value_and_grad_batch(module, X, program.n_inputs)
            else:
                values, G, ok = backend.value_and_grad(program, X)
            for i in np.flatnonzero(~ok):
                _, values[i], G[i] = transformed.flat(self._unflatten(sig, X[i]))
            return values, G
        if module is not None:
            out, ok = codegen.evaluate_batch(module, X, program.n_outputs)
        else:
            out, ok = backend.evaluate(program, X)
        for i in np.flatnonzero(~ok):
            _, point_out, structure = transformed.flat(self._unflatten(sig, X[i]))
            if structure != path.structure:  # out[i] would broadcast one into the other's slots
                raise ValueError(f"{self.__name__}: point {i} returns {describe_structure(structure)}, but "
                                 f"point 0 returns {describe_structure(path.structure)}; every point must "
                                 "return the same structure")
            out[i] = point_out
        return out

    @staticmethod
    def _unflatten(sig, row):
        """The arguments of one point from its flat input vector."""
        return [sig.piece(row, i) for i in range(len(sig.shapes))]

    def _map_points(self, B, moved, batched):
        """Each point through the transform's single-point compiled path, on a pool of threads (the
        sweeps release the GIL and each thread has its own workspace); results stacked."""
        points = [self._point(moved, batched, p) for p in range(B)]
        first = self.fn(*points[0])  # traces and compiles once, before the threads start
        if getattr(self.fn, "map_in_threads", True):
            with ThreadPoolExecutor(max_workers=numba.get_num_threads()) as pool:
                results = [first, *pool.map(lambda point: self.fn(*point), points[1:])]
        else:  # a nested vmap: its batch kernels run in parallel already
            results = [first, *(self.fn(*point) for point in points[1:])]
        return tree_map(lambda *leaves: np.stack(leaves), first, *results[1:])  # each leaf gains the point axis

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise TypeError(f"{self.__name__} takes positional arguments only (in_axes says how each is "
                            f"mapped), got keyword arguments {sorted(kwargs)}; bind them with functools.partial")
        if any(chunked.is_dask(x) for x in args):
            if self.pointwise:
                raise TypeError(f"{self.__name__}: Dask arrays are mapped for jit, grad and value_and_grad only")
            return chunked.vmap_dask(self, args)
        B, moved, batched = self._points(args)
        if self.pointwise:
            return self._map_points(B, moved, batched)
        transformed = self.fn.batch_transform()
        sig = transformed.flat(self._point(moved, batched, 0))[0]  # traces point 0's path if new
        path = sig.paths[0]
        X = self._matrix(moved, batched, B)
        results = self._sweep(transformed, sig, path, X)
        if debug.enabled(transformed.debug_nans):
            debug.check_batch(self.__name__, transformed, sig, X, results)
        if transformed.kernel_kind == "value_and_grad":
            return self.fn.batched(sig, *results)
        return transformed.batched(path.structure, results)


def _moved(x, ax, where, sizes):
    """Array ``x`` (a NumPy or Dask array, or what np.asarray takes) with its mapped axis ``ax`` first;
    its length is added to ``sizes``."""
    x = x if chunked.is_dask(x) else np.asarray(x)
    if x.ndim == 0:
        raise ValueError(f"{where} has in_axes={ax} but is a scalar (no axis to map over)")
    if not -x.ndim <= ax < x.ndim:
        raise ValueError(f"{where} has in_axes={ax} but only {x.ndim} dimensions")
    if ax != 0 and ax != -x.ndim:
        x = np.moveaxis(x, int(ax), 0)
    sizes.add(x.shape[0])
    return x


def vmap(fn, in_axes=0, device="cpu"):
    """Map a function made by ``jit``/``grad``/``value_and_grad`` (or ``jvp``/``hvp``/``hessian``/
    ``jacobian``, or another ``vmap``, each level with its own ``in_axes``; a plain function is mapped
    as its ``jit``) over a leading batch axis of its arguments (``in_axes``: an int or None per
    argument, as in JAX); outputs gain that axis.
    ``device="cuda"`` evaluates the points on an NVIDIA GPU (one thread per point)."""
    return VMap(fn, in_axes, device)
