"""The base of ``jvp``, ``hvp``, ``hessian`` and ``jacobian`` (and their sparse forms): transforms
with respect to the first argument, compiled per argument structure, recording symbolically on
Variable arguments or inside a trace.
"""
from __future__ import annotations

import math

import numpy as np

from ..jit import tangent as tangent_kernels
from ..record.symbolic import grad_tape
from ..record.variable import in_trace
from ..record.tracing import VariableArguments, describe_structure, flatten_args, symbolic_inputs
from .transformed import Path, Signature, Transformed


class FirstArgument(Transformed):
    """A transform with respect to the first argument; the others are passed through (as SciPy
    passes ``args``). Variable arguments record symbolically (see ``_symbolic``)."""

    vmap_mode = "pointwise"  # no batched tangent kernels yet

    def _signature(self, shapes):
        if not shapes:
            raise TypeError(f"{self.what}({self.__name__}): the function needs an argument to differentiate")
        return Signature(shapes, (0,))

    def _require_scalar(self, structure):
        if structure is not None:
            raise TypeError(f"{self.what}({self.__name__}): the function must return a scalar, got "
                            f"{describe_structure(structure)}; use sg.jacobian for vector-valued functions")

    def _gradient_path(self, sig, tape, structure):
        self._require_scalar(structure)
        return Path(grad_tape(tape, wrt=range(sig.offsets[1]), value=False), None)

    def _direction(self, sig, tangents, xflat):
        """The tangent direction as a full input vector: ``tangents`` holds one tangent for each
        leading argument (the first only, for ``f(x, v, *args)``); zeros for the others."""
        full = np.zeros(len(xflat))
        for i, v in enumerate(tangents):
            shape = () if sig.shapes[i] is None else sig.shapes[i]
            v = np.asarray(v, dtype=np.float64)
            if v.shape != shape:
                tangent, primal = _names(i, len(tangents))
                raise ValueError(f"{self.what}({self.__name__}): {tangent} has shape {v.shape}, but {primal} "
                                 f"has shape {shape}")
            full[sig.offsets[i]: sig.offsets[i + 1]] = v.reshape(-1)
        return full

    def _symbolic_direction(self, tangents, shapes, n_total):
        """The direction as one tangent per tape input: ``tangents`` for the leading arguments (of
        ``shapes``), None for the others."""
        direction = []
        for i, v in enumerate(tangents):
            vflat = symbolic_inputs((v,), ["v"])[1]
            n_block = 1 if shapes[i] is None else math.prod(shapes[i])
            if len(vflat) != n_block:
                tangent, primal = _names(i, len(tangents))
                raise ValueError(f"{self.what}({self.__name__}): {tangent} has {len(vflat)} entries, "
                                 f"{primal} {n_block}")
            direction += vflat
        return direction + [None] * (n_total - len(direction))

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
            shapes, xf = flatten_args(args, self.names)
        except VariableArguments:
            return None
        return None if in_trace() else (shapes, xf)

    def _tangent_run(self, args, tangents, flat):
        """(signature, outputs, their derivatives along ``tangents`` (one per leading argument),
        output structure) from one compiled tangent sweep over the path traced for ``args``."""
        shapes, xf = flat
        sig = self.cache.get(shapes) or self.cache.setdefault(shapes, self._signature(shapes))
        full = self._direction(sig, tangents, xf)

        def attempt(path, xf):
            p = path.program
            out, tout = np.empty(p.n_outputs), np.empty(p.n_outputs)
            ok = tangent_kernels.jvp(p.ins, p.lit, p.io, xf, full, out, tout, p.workspace())
            return (out, tout, path.structure) if ok else None

        sig, (out, tout, structure) = self._run(args, {}, attempt)
        return sig, out, tout, structure


def _names(i: int, count: int) -> tuple[str, str]:
    """How messages name tangent ``i`` of ``count`` and its argument (one: ``f(x, v, *args)``'s v)."""
    return ("the direction v", "the first argument") if count == 1 else (f"tangent {i}", f"primal {i}")
