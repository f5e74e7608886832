"""Compiled kernels for the user's own Numba code: ``value_and_grad(f).compile(*args)``.

The traced program's arrays are bound into a small ``njit`` closure, so the result is an ordinary
Numba function: callable from Python and passable into (and callable inside) ``@numba.njit`` code.
Inputs that would take another control-flow path than the traced one raise ValueError (no
retracing is possible inside compiled code); wrong vector lengths raise ValueError too.
"""
from __future__ import annotations

import numpy as np
import numba

from .jit import kernels
from .jit.flags import FLAGS


def _njit(fn):
    # A closure over per-tape arrays cannot be cached on disk; everything else as the project's flags.
    return numba.njit(**{**FLAGS, "cache": False})(fn)


def value_and_grad_kernel(program: kernels.Program):
    """``k(x, g) -> value``: writes the gradient with respect to the flat inputs into ``g``."""
    ins, lit, io = program.ins, program.lit, program.io
    n, n_in = ins.shape[1], program.n_inputs
    vg = kernels.value_and_grad

    @_njit
    def k(x, g):
        if x.shape[0] != n_in or g.shape[0] != n_in:
            raise ValueError("compiled value_and_grad: x and g must have the traced number of inputs")
        value, ok = vg(ins, lit, io, x, g, np.empty(4 * n + 2))
        if not ok:
            raise ValueError("compiled value_and_grad: these inputs take another control-flow path "
                             "than the traced one (use sg.where, or call the Python function)")
        return value
    return k


def evaluate_kernel(program: kernels.Program):
    """``k(x) -> value`` of the first output."""
    ins, lit, io = program.ins, program.lit, program.io
    n, n_in = ins.shape[1], program.n_inputs
    evaluate = kernels.evaluate

    @_njit
    def k(x):
        if x.shape[0] != n_in:
            raise ValueError("compiled jit: x must have the traced number of inputs")
        out = np.empty(1)
        if not evaluate(ins, lit, io, x, out, np.empty(4 * n + 2)):
            raise ValueError("compiled jit: these inputs take another control-flow path than the "
                             "traced one (use sg.where, or call the Python function)")
        return out[0]
    return k
