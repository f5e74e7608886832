"""``jvp``, ``hvp``, ``hessian``, ``jacobian``: compiled and cached per argument structure.

Each differentiates with respect to the first argument and passes the others through (SciPy's
``hessp(x, p, *args)``). ``hvp`` and ``hessian`` run tangent sweeps (``jit/tangent.py``) over the
compiled gradient tape (forward over reverse); ``jacobian`` picks tangent sweeps (x smaller than
the output) or reverse sweeps. With Variable arguments, or inside a trace, they record
symbolically (``record/symbolic.py``).
"""
from __future__ import annotations

import math

import numpy as np

from ..jit import tangent as tangent_kernels
from ..record.symbolic import grad_tape, replay, reverse, tangent
from ..record.tracing import numeric, shaped, structured, trace_at
from .first_argument import FirstArgument
from .sparsity import SparseHessian, SparseJacobian
from .transformed import require_callable


class Jvp(FirstArgument):
    """``jvp(fun)(x, v, *args)``: ``(fun(x, *args), directional derivative along v)``."""

    what = "jvp"

    def __call__(self, x, v, *args):
        return self._dispatch((x, *args), v)

    def _symbolic(self, args, v):
        return self._symbolic_along(args, (v,))

    def along(self, primals, tangents):
        """JAX's ``jvp(fun, primals, tangents)``: ``(fun(*primals), its derivative along tangents)``,
        one tangent per primal, each of its primal's shape."""
        if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
            raise TypeError(f"jvp({self.__name__}, primals, tangents): primals and tangents must be tuples "
                            f"(or lists), one entry per argument, got {type(primals).__name__} and "
                            f"{type(tangents).__name__}")
        if len(primals) != len(tangents):
            raise ValueError(f"jvp({self.__name__}, primals, tangents): {len(primals)} primals but "
                             f"{len(tangents)} tangents; give one tangent per primal")
        primals, tangents = tuple(primals), tuple(tangents)
        flat = self._flatten(primals)
        if flat is None:
            return self._symbolic_along(primals, tangents)
        return self._outputs(*self._tangent_run(primals, tangents, flat)[1:])

    def _compiled(self, args, flat, v):
        return self._outputs(*self._tangent_run(args, (v,), flat)[1:])

    @staticmethod
    def _outputs(out, tout, structure):
        if structure is None:
            return float(out[0]), float(tout[0])
        kind, size = structure
        if kind is np.ndarray:
            return out.reshape(size), tout.reshape(size)
        return kind(float(o) for o in out), kind(float(t) for t in tout)

    def _symbolic_along(self, args, tangents):
        shapes, flat, tape, structure = trace_at(self, args)
        vals = replay(tape, flat)
        touts = tangent(tape, vals, self._symbolic_direction(tangents, shapes, len(flat)))
        return structured([vals[s] for s in tape.outputs.tolist()], structure), structured(touts, structure)


class Hvp(FirstArgument):
    """``hvp(fun)(x, v, *args)``: Hessian of scalar ``fun`` (in x) times v, by a tangent sweep over
    the compiled gradient tape (forward over reverse). Usable as SciPy's ``hessp``."""

    what = "hvp"

    def _make_path(self, sig, tape, structure):
        return self._gradient_path(sig, tape, structure)

    def __call__(self, x, v, *args):
        return self._dispatch((x, *args), v)

    def _compiled(self, args, flat, v):
        sig, _, hv, _ = self._tangent_run(args, (v,), flat)
        return sig.piece(hv, 0)

    def _symbolic(self, args, v):
        shapes, flat, tape, structure = trace_at(self, args)
        self._require_scalar(structure)
        n_block = 1 if shapes[0] is None else math.prod(shapes[0])
        g = grad_tape(tape, wrt=range(n_block), value=False)
        vals = replay(g, flat)
        return shaped(tangent(g, vals, self._symbolic_direction((v,), shapes, len(flat))), shapes[0])


class Hessian(FirstArgument):
    """``hessian(fun)(x, *args)``: the dense Hessian of scalar ``fun`` in x (shape x.shape * 2):
    one tangent sweep per entry of x over the compiled gradient tape."""

    what = "hessian"

    def __init__(self, fun):
        super().__init__(fun)
        self.seeds = {}

    def _make_path(self, sig, tape, structure):
        return self._gradient_path(sig, tape, structure)

    def __call__(self, x, *args):
        return self._dispatch((x, *args))

    def _compiled(self, args, flat):
        shapes, xf = flat
        seeds = self._identity_seeds(shapes, len(xf))

        def attempt(path, xf):
            p = path.program
            h = np.empty((p.n_outputs, seeds.shape[1]))
            return h if tangent_kernels.jacobian_forward(p.ins, p.lit, p.io, xf, seeds, h, p.workspace()) else None

        sig, h = self._run(args, {}, attempt)
        shape = sig.shapes[0]
        return float(h[0, 0]) if shape is None else h.reshape(shape + shape)

    def _symbolic(self, args):
        shapes, flat, tape, structure = trace_at(self, args)
        self._require_scalar(structure)
        n_block = 1 if shapes[0] is None else math.prod(shapes[0])
        g = grad_tape(tape, wrt=range(n_block), value=False)
        vals = replay(g, flat)
        cols = [tangent(g, vals, [1.0 if i == j else None for i in range(len(flat))]) for j in range(n_block)]
        h = np.empty((n_block, n_block), dtype=object)
        for j, col in enumerate(cols):
            h[:, j] = col
        return h[0, 0] if shapes[0] is None else numeric(h.reshape(shapes[0] + shapes[0]))


class Jacobian(FirstArgument):
    """``jacobian(fun, mode)(x, *args)``: d fun / d x for ``fun`` returning a scalar, a tuple, a list
    or an array (shape: output shape + x's shape). ``mode="auto"`` uses one tangent sweep per
    entry of x when x is smaller than the output, else one reverse sweep per output."""

    what = "jacobian"

    def __init__(self, fun, mode="auto"):
        if mode not in ("auto", "forward", "reverse"):
            raise ValueError(f"jacobian: mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
        super().__init__(fun)
        self.mode = mode
        self.seeds = {}

    def _forward(self, n_block, m):
        return self.mode == "forward" or (self.mode == "auto" and n_block < m)

    def __call__(self, x, *args):
        return self._dispatch((x, *args))

    def _compiled(self, args, flat):
        shapes, xf = flat
        nb = 1 if shapes[0] is None else math.prod(shapes[0])

        def attempt(path, xf):
            p = path.program
            m = p.n_outputs
            if self._forward(nb, m):
                seeds = self._identity_seeds(shapes, len(xf))
                jac = np.empty((m, nb))
                ok = tangent_kernels.jacobian_forward(p.ins, p.lit, p.io, xf, seeds, jac, p.workspace())
            else:
                jac = np.empty((m, len(xf)))
                ok = tangent_kernels.jacobian_reverse(p.ins, p.lit, p.io, xf, jac, p.workspace())
                jac = jac[:, :nb]
            return (jac, path.structure) if ok else None

        sig, (jac, structure) = self._run(args, {}, attempt)
        out_shape = _out_shape(structure)
        x_shape = () if sig.shapes[0] is None else sig.shapes[0]
        if not out_shape and not x_shape:
            return float(jac[0, 0])
        return np.ascontiguousarray(jac).reshape(out_shape + x_shape)

    def _symbolic(self, args):
        shapes, flat, tape, structure = trace_at(self, args)
        nb = 1 if shapes[0] is None else math.prod(shapes[0])
        vals = replay(tape, flat)
        m = len(tape.outputs)
        jac = np.empty((m, nb), dtype=object)
        if self._forward(nb, m):
            for j in range(nb):
                jac[:, j] = tangent(tape, vals, [1.0 if i == j else None for i in range(len(flat))])
        else:
            for i in range(m):
                jac[i, :] = reverse(tape, vals, i, range(nb))
        x_shape = () if shapes[0] is None else shapes[0]
        out = jac.reshape(_out_shape(structure) + x_shape)
        return out[()] if out.shape == () else numeric(out)


def _out_shape(structure):
    if structure is None:
        return ()
    kind, size = structure
    return size if kind is np.ndarray else (size,)


def jvp(fun, primals=None, tangents=None):
    """Forward mode, in two spellings:

    - ``jvp(fun, primals, tangents)``, as JAX: ``(fun(*primals), d/dt fun(*(p + t v)) at t = 0)``
      for tuples of primals and of tangents (one per primal, of its shape);
    - ``jvp(fun)(x, v, *args)``: the same along v in the first argument only, the others passed
      through (SciPy's style, and what ``vmap`` maps).
    """
    require_callable(fun, "jvp")
    if primals is None and tangents is None:
        return Jvp(fun)
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


def hvp(fun):
    """``hvp(fun)(x, v, *args)``: the Hessian of scalar ``fun`` with respect to x, times v (SciPy's
    ``hessp`` signature)."""
    require_callable(fun, "hvp")
    return Hvp(fun)


def hessian(fun, sparse: bool = False):
    """``hessian(fun)(x, *args)``: the Hessian of scalar ``fun`` with respect to x."""
    require_callable(fun, "hessian")
    if sparse:
        return SparseHessian(fun)
    return Hessian(fun)


def jacobian(fun, mode: str = "auto", sparse: bool = False):
    """``jacobian(fun)(x, *args)``: the Jacobian of ``fun`` (scalar, tuple, list or array valued)
    with respect to x; ``mode`` 'forward', 'reverse' or 'auto' (by shape)."""
    require_callable(fun, "jacobian")
    if sparse:
        return SparseJacobian(fun)
    return Jacobian(fun, mode)


__all__ = ["jvp", "hvp", "hessian", "jacobian", "Jvp", "Hvp", "Hessian", "Jacobian"]
