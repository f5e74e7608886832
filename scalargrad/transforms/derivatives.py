"""``jvp``, ``hvp``, ``hessian``, ``jacobian``: compiled and cached per argument structure.

Each differentiates with respect to the positional arguments ``argnums`` (the first by default) and
passes the others through (SciPy's ``hessp(x, p, *args)``), keyword arguments too. ``hvp`` and
``hessian`` run tangent sweeps (``jit/tangent.py``) over the compiled gradient tape (forward over
reverse); ``jacobian`` picks tangent sweeps (x smaller than the output) or reverse sweeps. With Variable arguments, or inside a trace, they record
symbolically (``record/symbolic.py``).
"""
from __future__ import annotations

import numpy as np

from ..jit import tangent as tangent_kernels
from ..record.symbolic import grad_tape, replay, reverse, tangent
from ..record.pytrees import TreeShape
from ..record.tracing import structured, trace_at
from .first_argument import FirstArgument, Layout
from .sparsity import SparseHessian, SparseJacobian
from .transformed import require_callable


class Jvp(FirstArgument):
    """``jvp(fun)(x, v, *args)``: ``(fun(x, *args), directional derivative along v)``; with
    ``argnums``, v comes right after the last differentiated argument (see ``FirstArgument._split``)."""

    what = "jvp"

    def __call__(self, *call, **kwargs):
        args, tangents = self._split(call)
        return self._dispatch(args, kwargs, tangents)

    def along(self, primals, tangents, kwargs=None):
        """JAX's ``jvp(fun, primals, tangents)``: ``(fun(*primals), its derivative along tangents)``,
        one tangent per primal, each of its primal's shape (the same pytree for a pytree)."""
        if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
            raise TypeError(f"jvp({self.__name__}, primals, tangents): primals and tangents must be tuples "
                            f"(or lists), one entry per argument, got {type(primals).__name__} and "
                            f"{type(tangents).__name__}")
        if len(primals) != len(tangents):
            raise ValueError(f"jvp({self.__name__}, primals, tangents): {len(primals)} primals but "
                             f"{len(tangents)} tangents; give one tangent per primal")
        return self._dispatch(tuple(primals), kwargs, list(enumerate(tangents)))

    def _compiled(self, sig, x, tangents):
        return self._outputs(*self._tangent_run(sig, x, tangents))

    @staticmethod
    def _outputs(out, tout, structure):
        if structure is None:
            return float(out[0]), float(tout[0])
        if type(structure) is TreeShape:
            return structure.build_flat(out), structure.build_flat(tout)
        kind, size = structure
        if kind is np.ndarray:
            return out.reshape(size), tout.reshape(size)
        return kind(float(o) for o in out), kind(float(t) for t in tout)

    def _symbolic(self, args, kwargs, tangents):
        shapes, flat, tape, structure = trace_at(self, args, kwargs)
        vals = replay(tape, flat)
        touts = tangent(tape, vals, self._symbolic_direction(tangents, shapes, len(flat)))
        return structured([vals[s] for s in tape.outputs.tolist()], structure), structured(touts, structure)


class Hvp(FirstArgument):
    """``hvp(fun)(x, v, *args)``: Hessian of scalar ``fun`` (in x) times v, by a tangent sweep over
    the compiled gradient tape (forward over reverse). Usable as SciPy's ``hessp``. With
    ``argnums``, v comes right after the last differentiated argument; the result has the structure
    of the differentiated arguments."""

    what = "hvp"

    def _make_path(self, sig, tape, structure):
        return self._gradient_path(sig, tape, structure)

    def __call__(self, *call, **kwargs):
        args, tangents = self._split(call)
        return self._dispatch(args, kwargs, tangents)

    def _compiled(self, sig, x, tangents):
        _, hv, _ = self._tangent_run(sig, x, tangents)
        shape = self._one_plain_argument(sig)
        if shape is not False:
            return float(hv[0]) if shape is None else hv.reshape(shape)
        return Layout.of_arguments(sig, self.single).vector(hv)

    def _symbolic(self, args, kwargs, tangents):
        shapes, flat, tape, structure = trace_at(self, args, kwargs)
        self._require_scalar(structure)
        sig = self._signature(shapes)
        g = grad_tape(tape, wrt=sig.positions().tolist(), value=False)
        vals = replay(g, flat)
        hv = tangent(g, vals, self._symbolic_direction(tangents, shapes, len(flat)))
        return Layout.of_arguments(sig, self.single).vector(hv, symbolic=True)


class Hessian(FirstArgument):
    """``hessian(fun)(x, *args)``: the dense Hessian of scalar ``fun`` in x (shape x.shape * 2):
    one tangent sweep per entry of x over the compiled gradient tape. With a tuple ``argnums``, a
    tuple of tuples of blocks (``H[i][j]`` of shape x_i.shape + x_j.shape); for a pytree argument,
    the pytree of pytrees of blocks."""

    what = "hessian"

    def __init__(self, fun, argnums=0):
        super().__init__(fun, argnums)
        self.seeds = {}

    def _make_path(self, sig, tape, structure):
        return self._gradient_path(sig, tape, structure)

    def __call__(self, *args, **kwargs):
        return self._dispatch(args, kwargs)

    def _compiled(self, sig, x):
        seeds = self._identity_seeds(sig)

        def attempt(path, x):
            p = path.program
            h = np.empty((p.n_outputs, seeds.shape[1]))
            return h if tangent_kernels.jacobian_forward(p.ins, p.lit, p.io, x, seeds, h, p.workspace()) else None

        h = self._attempt(sig, x, attempt)
        shape = self._one_plain_argument(sig)
        if shape is not False:
            return float(h[0, 0]) if shape is None else h.reshape(shape + shape)
        layout = Layout.of_arguments(sig, self.single)
        return layout.blocks(h, layout)

    def _symbolic(self, args, kwargs):
        shapes, flat, tape, structure = trace_at(self, args, kwargs)
        self._require_scalar(structure)
        sig = self._signature(shapes)
        positions = sig.positions().tolist()
        g = grad_tape(tape, wrt=positions, value=False)
        vals = replay(g, flat)
        h = np.empty((len(positions), len(positions)), dtype=object)
        for j, p in enumerate(positions):
            h[:, j] = tangent(g, vals, [1.0 if i == p else None for i in range(len(flat))])
        layout = Layout.of_arguments(sig, self.single)
        return layout.blocks(h, layout, symbolic=True)


class Jacobian(FirstArgument):
    """``jacobian(fun, mode)(x, *args)``: d fun / d x for ``fun`` returning a scalar, a tuple, a list,
    an array (shape: output shape + x's shape, a tuple or list counting as a vector) or another
    pytree (the output's pytree of blocks). ``mode="auto"`` uses one tangent sweep per entry of x
    when x is smaller than the output, else one reverse sweep per output. With a tuple ``argnums``,
    each block is a tuple, one per argument; for a pytree argument, that argument's pytree."""

    what = "jacobian"

    def __init__(self, fun, mode="auto", argnums=0):
        if mode not in ("auto", "forward", "reverse"):
            raise ValueError(f"jacobian: mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
        super().__init__(fun, argnums)
        self.mode = mode
        self.seeds = {}

    def _forward(self, n_block, m):
        return self.mode == "forward" or (self.mode == "auto" and n_block < m)

    def __call__(self, *args, **kwargs):
        return self._dispatch(args, kwargs)

    def _compiled(self, sig, x):
        positions = sig.positions()
        nb = len(positions)
        i = sig.argnums[0]
        wrt = slice(sig.offsets[i], sig.offsets[i + 1]) if self.single else positions

        def attempt(path, x):
            p = path.program
            m = p.n_outputs
            if self._forward(nb, m):
                seeds = self._identity_seeds(sig)
                jac = np.empty((m, nb))
                ok = tangent_kernels.jacobian_forward(p.ins, p.lit, p.io, x, seeds, jac, p.workspace())
            else:
                jac = np.empty((m, len(x)))
                ok = tangent_kernels.jacobian_reverse(p.ins, p.lit, p.io, x, jac, p.workspace())
                jac = jac[:, wrt]
            return (jac, path.structure) if ok else None

        jac, structure = self._attempt(sig, x, attempt)
        shape = self._one_plain_argument(sig)
        if shape is not False and type(structure) is not TreeShape:
            out_shape = _out_shape(structure)
            x_shape = () if shape is None else shape
            if not out_shape and not x_shape:
                return float(jac[0, 0])
            return np.ascontiguousarray(jac).reshape(out_shape + x_shape)
        return Layout.of_outputs(structure).blocks(jac, Layout.of_arguments(sig, self.single))

    def _symbolic(self, args, kwargs):
        shapes, flat, tape, structure = trace_at(self, args, kwargs)
        sig = self._signature(shapes)
        positions = sig.positions().tolist()
        nb = len(positions)
        vals = replay(tape, flat)
        m = len(tape.outputs)
        jac = np.empty((m, nb), dtype=object)
        if self._forward(nb, m):
            for j, p in enumerate(positions):
                jac[:, j] = tangent(tape, vals, [1.0 if i == p else None for i in range(len(flat))])
        else:
            for i in range(m):
                jac[i, :] = reverse(tape, vals, i, positions)
        return Layout.of_outputs(structure).blocks(jac, Layout.of_arguments(sig, self.single), symbolic=True)


def _out_shape(structure):
    if structure is None:
        return ()
    kind, size = structure
    return size if kind is np.ndarray else (size,)


def jvp(fun, primals=None, tangents=None, argnums=0):
    """Forward mode, in two spellings:

    - ``jvp(fun, primals, tangents)``, as JAX: ``(fun(*primals), d/dt fun(*(p + t v)) at t = 0)``
      for tuples of primals and of tangents (one per primal, of its structure);
    - ``jvp(fun, argnums=0)(x, v, *args, **kwargs)``: the same along v in the arguments ``argnums``
      only (v right after the last of them; a tuple of tangents for a tuple ``argnums``), the others
      and the keyword arguments passed through (SciPy's style, and what ``vmap`` maps).
    """
    require_callable(fun, "jvp")
    if primals is None and tangents is None:
        return Jvp(fun, argnums)
    if argnums != 0:
        raise TypeError("jvp(fun, primals, tangents) takes a tangent for every primal; argnums belongs to "
                        "the other spelling, jvp(fun, argnums)(*args, v)")
    if primals is None or tangents is None:
        raise TypeError("jvp(fun, primals, tangents) needs both primals and tangents (or neither: jvp(fun))")
    try:  # the traced paths are kept for the most recent functions, as a decorated function keeps them
        transform = _JVPS.pop(fun, None) or Jvp(fun)
        _JVPS[fun] = transform
        while len(_JVPS) > MAX_JVP_FUNCTIONS:
            _JVPS.pop(next(iter(_JVPS)), None)
    except TypeError:  # an unhashable callable: traced afresh at each call
        transform = Jvp(fun)
    return transform.along(primals, tangents)


# jvp(fun, primals, tangents): fun -> its Jvp, least recently used first. Bounded, since each Jvp
# holds its function (a weak-keyed cache would keep every one alive through that reference).
MAX_JVP_FUNCTIONS = 32
_JVPS: dict = {}


def hvp(fun, argnums=0):
    """``hvp(fun)(x, v, *args, **kwargs)``: the Hessian of scalar ``fun`` with respect to x, times v
    (SciPy's ``hessp`` signature). With ``argnums``, v comes right after the last differentiated
    argument (a tuple of tangents for a tuple ``argnums``) and the result has their structure."""
    require_callable(fun, "hvp")
    return Hvp(fun, argnums)


def hessian(fun, sparse: bool = False, argnums=0):
    """``hessian(fun)(x, *args, **kwargs)``: the Hessian of scalar ``fun`` with respect to x (with
    ``argnums``: to those arguments; a tuple of tuples of blocks for a tuple)."""
    require_callable(fun, "hessian")
    if sparse:
        _sparse_argnums(argnums, "hessian")
        return SparseHessian(fun)
    return Hessian(fun, argnums)


def jacobian(fun, mode: str = "auto", sparse: bool = False, argnums=0):
    """``jacobian(fun)(x, *args, **kwargs)``: the Jacobian of ``fun`` (valued a scalar, tuple, list,
    array or pytree) with respect to x (with ``argnums``: to those arguments; a tuple of blocks for
    a tuple); ``mode`` 'forward', 'reverse' or 'auto' (by shape)."""
    require_callable(fun, "jacobian")
    if sparse:
        _sparse_argnums(argnums, "jacobian")
        return SparseJacobian(fun)
    return Jacobian(fun, mode, argnums)


def _sparse_argnums(argnums, what):
    if not (isinstance(argnums, int) and not isinstance(argnums, bool) and argnums == 0):
        raise NotImplementedError(f"{what}(fun, sparse=True) differentiates with respect to the first "
                                  f"argument only, got argnums={argnums!r}; reorder the arguments")


__all__ = ["jvp", "hvp", "hessian", "jacobian", "Jvp", "Hvp", "Hessian", "Jacobian"]
