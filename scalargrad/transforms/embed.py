"""Compiled kernels for the user's own Numba code: ``value_and_grad(f).compile(*args)``.

The traced program's arrays are bound into a small ``njit`` closure, so the result is an ordinary
Numba function: callable from Python and passable into (and callable inside) ``@numba.njit`` code.
Inputs that would take another control-flow path than the traced one raise ValueError (no
retracing is possible inside compiled code); wrong vector lengths raise ValueError too, and
anything but a 1-d float64 array for ``x``, ``g`` or ``work`` raises TypeError.

Each call needs a scratch buffer (``k.workspace_size`` floats). By default the kernel allocates it
per call; a hot loop passes its own as the last argument (``k(x, g, work)``, one buffer per thread)
and calls then allocate nothing.
"""
from __future__ import annotations

import numpy as np
import numba
from numba import types
from numba.extending import overload

from ..jit import kernels
from ..jit.flags import FLAGS


_OTHER_PATH = ("these inputs take another control-flow path than the traced one (use sg.where, or call "
               "the Python function)")
VG_OTHER_PATH = "compiled value_and_grad: " + _OTHER_PATH
JIT_OTHER_PATH = "compiled jit: " + _OTHER_PATH
VG_LENGTH = "compiled value_and_grad: x and g must have the traced number of inputs"
JIT_LENGTH = "compiled jit: x must have the traced number of inputs"
VG_WORK = "compiled value_and_grad: work is smaller than k.workspace_size"
JIT_WORK = "compiled jit: work is smaller than k.workspace_size"


def _njit(fn):
    # A closure over per-tape arrays cannot be cached on disk; everything else as the project's flags.
    return numba.njit(**{**FLAGS, "cache": False})(fn)


def _float64_vector(a, what):
    """``a``, typed as a 1-d float64 array (None, an omitted ``work``, stays None); for any other
    type TypeError naming ``what`` (a string literal: kernel and argument) and the type given."""


@overload(_float64_vector, prefer_literal=True)
def _float64_vector_typed(a, what):
    # Decided while typing. No conversion: an int g or work would be written to by truncating (the
    # gradient [0.5] came back as [0]), and converting x would hide an allocation in every call
    # of a kernel made for hot loops; other types failed deep inside Numba (generated code, int x).
    if not isinstance(what, types.StringLiteral):
        return None
    if isinstance(a, (types.NoneType, types.Omitted)) or (
            isinstance(a, types.Array) and a.ndim == 1 and a.dtype == types.float64):
        return lambda a, what: a
    message = f"{what.literal_value} must be a 1-d float64 array, got {a}"

    def refuse(a, what):
        if len(what) >= 0:  # always: a condition Numba cannot prune, so that the return is typed
            raise TypeError(message)
        return np.empty(0)
    return refuse


@numba.njit(**FLAGS)
def _scratch(work, size):
    """The caller's buffer, or (``work`` None: not passed) a new one of ``size`` floats."""
    if work is None:
        return np.empty(size)
    return work


def value_and_grad_kernel(program: kernels.Program):
    """``k(x, g[, work]) -> value``: writes the gradient with respect to the flat inputs into ``g``."""
    ins, lit, io = program.ins, program.lit, program.io
    n_in, size = program.n_inputs, program.workspace_size
    vg = kernels.value_and_grad

    @_njit
    def k(x, g, work=None):
        x, g = _float64_vector(x, "compiled value_and_grad: x"), _float64_vector(g, "compiled value_and_grad: g")
        if x.shape[0] != n_in or g.shape[0] != n_in:
            raise ValueError(VG_LENGTH)
        w = _scratch(_float64_vector(work, "compiled value_and_grad: work"), size)
        if w.shape[0] < size:
            raise ValueError(VG_WORK)
        value, ok = vg(ins, lit, io, x, g, w)
        if not ok:
            raise ValueError(VG_OTHER_PATH)
        return value
    k.workspace_size = size
    return k


def evaluate_kernel(program: kernels.Program):
    """``k(x[, work]) -> value`` of the first output."""
    ins, lit, io = program.ins, program.lit, program.io
    n_in, n_out = program.n_inputs, program.n_outputs
    base = program.workspace_size
    size = base + n_out  # the sweep's scratch, then every output (the sweep writes them all)
    evaluate = kernels.evaluate

    @_njit
    def k(x, work=None):
        x = _float64_vector(x, "compiled jit: x")
        if x.shape[0] != n_in:
            raise ValueError(JIT_LENGTH)
        w = _scratch(_float64_vector(work, "compiled jit: work"), size)
        if w.shape[0] < size:
            raise ValueError(JIT_WORK)
        out = w[base:size]
        if not evaluate(ins, lit, io, x, out, w):
            raise ValueError(JIT_OTHER_PATH)
        return out[0]
    k.workspace_size = size
    return k


def generated_value_and_grad_kernel(generated, n_in: int):
    """As ``value_and_grad_kernel``, calling the tape's generated code (``jit/codegen/``), which
    needs no scratch: ``work`` is accepted, for the same call forms, and unused."""
    @_njit
    def k(x, g, work=None):
        x, g = _float64_vector(x, "compiled value_and_grad: x"), _float64_vector(g, "compiled value_and_grad: g")
        _float64_vector(work, "compiled value_and_grad: work")  # unused, but the same call forms
        if x.shape[0] != n_in or g.shape[0] != n_in:
            raise ValueError(VG_LENGTH)
        value, ok = generated(x, g)
        if not ok:
            raise ValueError(VG_OTHER_PATH)
        return value
    k.workspace_size = 0
    return k


def generated_evaluate_kernel(generated, n_in: int, n_out: int):
    """As ``evaluate_kernel``, calling the tape's generated code; ``work`` holds every output."""
    @_njit
    def k(x, work=None):
        x = _float64_vector(x, "compiled jit: x")
        if x.shape[0] != n_in:
            raise ValueError(JIT_LENGTH)
        out = _scratch(_float64_vector(work, "compiled jit: work"), n_out)
        if out.shape[0] < n_out:
            raise ValueError(JIT_WORK)
        if not generated(x, out[:n_out]):
            raise ValueError(JIT_OTHER_PATH)
        return out[0]
    k.workspace_size = n_out
    return k
