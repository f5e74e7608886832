"""``jvp``, ``hvp``, ``hessian``, ``jacobian``: compiled and cached per argument structure.

Each differentiates with respect to the first argument and passes the others through (SciPy's
``hessp(x, p, *args)``). ``hvp`` and ``hessian`` run tangent sweeps (``jit/tangent.py``) over the
compiled gradient tape (forward over reverse); ``jacobian`` picks tangent sweeps (x smaller than
the output) or reverse sweeps. With Variable arguments, or inside a trace, they record
symbolically through ``transforms.py``.
"""
from __future__ import annotations

import math

import numpy as np

from .api import VariableArguments, _flatten_args, _Path, _require_callable, _Signature, _Transformed
from ..jit import tangent as tangent_kernels
from ..record.trace import tracing
from ..record.symbolic import (_numeric, _shaped, _structured, _symbolic_inputs, _trace_at, grad_tape, replay,
                               reverse, tangent)


def _describe(structure):
    kind, size = structure
    return f"an array of shape {size}" if kind is np.ndarray else f"a {kind.__name__} of {size}"


class _FirstArgument(_Transformed):
    """A transform with respect to the first argument; the others are passed through (as SciPy
    passes ``args``). Variable arguments record symbolically (see ``_symbolic``)."""

    def _signature(self, shapes):
        if not shapes:
            raise TypeError(f"{self.what}({self.__name__}): the function needs an argument to differentiate")
        return _Signature(shapes, (0,))

    def _require_scalar(self, structure):
        if structure is not None:
            raise TypeError(f"{self.what}({self.__name__}): the function must return a scalar, got "
                            f"{_describe(structure)}; use sg.jacobian for vector-valued functions")

    def _gradient_path(self, sig, tape, structure):
        self._require_scalar(structure)
        return _Path(grad_tape(tape, wrt=range(sig.offsets[1]), value=False), None)

    def _direction(self, sig, v, xflat):
        """The tangent direction as a full input vector (zeros for the other arguments)."""
        shape = sig.shapes[0]
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (() if shape is None else shape):
            raise ValueError(f"{self.what}({self.__name__}): the direction v has shape {v.shape}, "
                             f"but the first argument has shape {() if shape is None else shape}")
        full = np.zeros(len(xflat))
        full[: sig.offsets[1]] = v.reshape(-1)
        return full

    def _symbolic_direction(self, v, n_block, n_total):
        """The direction as one tangent per tape input (None for the other arguments)."""
        vflat = _symbolic_inputs((v,), ["v"])[1]
        if len(vflat) != n_block:
            raise ValueError(f"{self.what}({self.__name__}): the direction v has {len(vflat)} entries, "
                             f"the first argument {n_block}")
        return vflat + [None] * (n_total - n_block)

    def _dispatch(self, args, *extra):
        """``self._compiled(args, flat, *extra)`` on the compiled path, or ``self._symbolic(args,
        *extra)`` where it must record (see ``_flatten``)."""
        flat = self._flatten(args)
        if flat is None:
            return self._symbolic(args, *extra)
        return self._compiled(args, flat, *extra)

    def _identity_seeds(self, shapes, n_total):
        """np.eye(n_total, entries of the first argument): one tangent seed per entry, cached per
        argument structure in ``self.seeds``."""
        seeds = self.seeds.get(shapes)
        if seeds is None:
            n_block = 1 if shapes[0] is None else math.prod(shapes[0])
            seeds = self.seeds[shapes] = np.eye(n_total, n_block)
        return seeds

    def _flatten(self, args):
        """(shapes, flat inputs) for the compiled path, or None where it must record symbolically
        (Variable arguments, or a call inside a traced function)."""
        try:
            shapes, xf = _flatten_args(args, self.names)
        except VariableArguments:
            return None
        return None if tracing() else (shapes, xf)

    def _tangent_run(self, args, v, flat):
        """(signature, outputs, their derivatives along v, output structure) from one compiled
        tangent sweep over the path traced for ``args``."""
        shapes, xf = flat
        sig = self.cache.get(shapes) or self.cache.setdefault(shapes, self._signature(shapes))
        full = self._direction(sig, v, xf)

        def attempt(path, xf):
            p = path.program
            out, tout = np.empty(p.n_outputs), np.empty(p.n_outputs)
            ok = tangent_kernels.jvp(p.ins, p.lit, p.io, xf, full, out, tout, p.workspace())
            return (out, tout, path.structure) if ok else None

        sig, (out, tout, structure) = self._run(args, {}, attempt)
        return sig, out, tout, structure


class Jvp(_FirstArgument):
    """``jvp(fun)(x, v, *args)``: ``(fun(x, *args), directional derivative along v)``."""

    what = "jvp"

    def __call__(self, x, v, *args):
        return self._dispatch((x, *args), v)

    def _compiled(self, args, flat, v):
        _, out, tout, structure = self._tangent_run(args, v, flat)
        if structure is None:
            return float(out[0]), float(tout[0])
        kind, size = structure
        if kind is np.ndarray:
            return out.reshape(size), tout.reshape(size)
        return kind(float(o) for o in out), kind(float(t) for t in tout)

    def _symbolic(self, args, v):
        shapes, flat, tape, structure = _trace_at(self, args)
        vals = replay(tape, flat)
        n_block = 1 if shapes[0] is None else math.prod(shapes[0])
        touts = tangent(tape, vals, self._symbolic_direction(v, n_block, len(flat)))
        return _structured([vals[s] for s in tape.outputs.tolist()], structure), _structured(touts, structure)


class Hvp(_FirstArgument):
    """``hvp(fun)(x, v, *args)``: Hessian of scalar ``fun`` (in x) times v, by a tangent sweep over
    the compiled gradient tape (forward over reverse). Usable as SciPy's ``hessp``."""

    what = "hvp"

    def _make_path(self, sig, tape, structure):
        return self._gradient_path(sig, tape, structure)

    def __call__(self, x, v, *args):
        return self._dispatch((x, *args), v)

    def _compiled(self, args, flat, v):
        sig, _, hv, _ = self._tangent_run(args, v, flat)
        return sig.piece(hv, 0)

    def _symbolic(self, args, v):
        shapes, flat, tape, structure = _trace_at(self, args)
        self._require_scalar(structure)
        n_block = 1 if shapes[0] is None else math.prod(shapes[0])
        g = grad_tape(tape, wrt=range(n_block), value=False)
        vals = replay(g, flat)
        return _shaped(tangent(g, vals, self._symbolic_direction(v, n_block, len(flat))), shapes[0])


class Hessian(_FirstArgument):
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
        shapes, flat, tape, structure = _trace_at(self, args)
        self._require_scalar(structure)
        n_block = 1 if shapes[0] is None else math.prod(shapes[0])
        g = grad_tape(tape, wrt=range(n_block), value=False)
        vals = replay(g, flat)
        cols = [tangent(g, vals, [1.0 if i == j else None for i in range(len(flat))]) for j in range(n_block)]
        h = np.empty((n_block, n_block), dtype=object)
        for j, col in enumerate(cols):
            h[:, j] = col
        return h[0, 0] if shapes[0] is None else _numeric(h.reshape(shapes[0] + shapes[0]))


class Jacobian(_FirstArgument):
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
        shapes, flat, tape, structure = _trace_at(self, args)
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
        return out[()] if out.shape == () else _numeric(out)


def _out_shape(structure):
    if structure is None:
        return ()
    kind, size = structure
    return size if kind is np.ndarray else (size,)


def jvp(fun):
    """``jvp(fun)(x, v, *args) -> (fun(x, *args), d/dt fun(x + t v, *args) at t = 0)``."""
    _require_callable(fun, "jvp")
    return Jvp(fun)


def hvp(fun):
    """``hvp(fun)(x, v, *args)``: the Hessian of scalar ``fun`` with respect to x, times v (SciPy's
    ``hessp`` signature)."""
    _require_callable(fun, "hvp")
    return Hvp(fun)


def hessian(fun, sparse: bool = False):
    """``hessian(fun)(x, *args)``: the Hessian of scalar ``fun`` with respect to x."""
    _require_callable(fun, "hessian")
    if sparse:
        from .sparsity import SparseHessian
        return SparseHessian(fun)
    return Hessian(fun)


def jacobian(fun, mode: str = "auto", sparse: bool = False):
    """``jacobian(fun)(x, *args)``: the Jacobian of ``fun`` (scalar, tuple, list or array valued)
    with respect to x; ``mode`` 'forward', 'reverse' or 'auto' (by shape)."""
    _require_callable(fun, "jacobian")
    if sparse:
        from .sparsity import SparseJacobian
        return SparseJacobian(fun)
    return Jacobian(fun, mode)


__all__ = ["jvp", "hvp", "hessian", "jacobian", "Jvp", "Hvp", "Hessian", "Jacobian"]
