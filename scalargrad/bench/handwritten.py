"""Hand-written Numba value and gradient of the Rosenbrock and MLP workloads: the physical limit
scalargrad chases, as the ``numba`` peer of ``scalargrad bench --compare`` (and bench/handwritten.py).

Each is what a careful person writes by hand for one workload: one pass over the data, the
gradient accumulated in place, no tape. The random program has no hand-written version (it is a
program, not a formula); the peer says so on its rows.
"""
from __future__ import annotations

import numba
import numpy as np

from .timing import timed
from .workloads import MLP_LAYERS, two_moons


@numba.njit(cache=True)
def rosen_value(x):
    value = 0.0
    for i in range(len(x) - 1):
        t = x[i + 1] - x[i] * x[i]
        u = 1.0 - x[i]
        value += 100.0 * t * t + u * u
    return value


@numba.njit(cache=True)
def rosen_value_and_grad(x, g):
    value = 0.0
    g[:] = 0.0
    for i in range(len(x) - 1):
        t = x[i + 1] - x[i] * x[i]
        u = 1.0 - x[i]
        value += 100.0 * t * t + u * u
        g[i] += -400.0 * t * x[i] - 2.0 * u
        g[i + 1] += 200.0 * t
    return value


@numba.njit(parallel=True, cache=True)
def rosen_batch(X, values, G):
    """rosen_value_and_grad at every row of X, in parallel over the rows."""
    for p in numba.prange(X.shape[0]):
        values[p] = rosen_value_and_grad(X[p], G[p])


@numba.njit(cache=True)
def _layout(sizes):
    """(parameter offset of each layer, activation buffers (layers + 1, widest layer))."""
    n_layers = len(sizes) - 1
    offsets = np.zeros(n_layers + 1, np.int64)
    for layer in range(n_layers):
        offsets[layer + 1] = offsets[layer] + (sizes[layer] + 1) * sizes[layer + 1]
    return offsets, np.zeros((n_layers + 1, sizes.max()))


@numba.njit(cache=True)
def _mlp_forward(params, point, sizes, offsets, acts):
    """One point through the MLP (weights row-major, then biases, per layer): activations into acts,
    tanh on hidden layers, the linear output in acts[-1, 0]."""
    n_layers = len(sizes) - 1
    for i in range(sizes[0]):
        acts[0, i] = point[i]
    for layer in range(n_layers):
        w, n_in, n_out = offsets[layer], sizes[layer], sizes[layer + 1]
        for j in range(n_out):
            z = params[w + n_in * n_out + j]
            for i in range(n_in):
                z += acts[layer, i] * params[w + i * n_out + j]
            acts[layer + 1, j] = np.tanh(z) if layer < n_layers - 1 else z


@numba.njit(cache=True)
def mlp_value(params, points, labels, sizes):
    """The MLP workload's loss: mean hinge loss plus 1e-4 times the squared parameters."""
    offsets, acts = _layout(sizes)
    value = 0.0
    inv_n = 1.0 / points.shape[0]
    for p in range(points.shape[0]):
        _mlp_forward(params, points[p], sizes, offsets, acts)
        margin = 1.0 - labels[p] * acts[len(sizes) - 1, 0]
        if margin > 0.0:
            value += margin * inv_n
    return value + 1e-4 * _squares(params)


@numba.njit(cache=True)
def _squares(params):
    total = 0.0
    for i in range(len(params)):
        total += params[i] * params[i]
    return total


@numba.njit(cache=True)
def mlp_value_and_grad(params, points, labels, sizes, g):
    """The MLP workload's loss and its gradient, forward and backward written out per point."""
    n_layers = len(sizes) - 1
    offsets, acts = _layout(sizes)
    delta = np.zeros_like(acts)  # d loss / d pre-activation, per layer
    for i in range(len(params)):
        g[i] = 2e-4 * params[i]
    value = 0.0
    inv_n = 1.0 / points.shape[0]
    for p in range(points.shape[0]):
        _mlp_forward(params, points[p], sizes, offsets, acts)
        margin = 1.0 - labels[p] * acts[n_layers, 0]
        if margin <= 0.0:
            continue
        value += margin * inv_n
        delta[n_layers, 0] = -labels[p] * inv_n
        for layer in range(n_layers - 1, -1, -1):
            w, n_in, n_out = offsets[layer], sizes[layer], sizes[layer + 1]
            for j in range(n_out):
                g[w + n_in * n_out + j] += delta[layer + 1, j]
            for i in range(n_in):
                back = 0.0
                for j in range(n_out):
                    g[w + i * n_out + j] += acts[layer, i] * delta[layer + 1, j]
                    back += params[w + i * n_out + j] * delta[layer + 1, j]
                delta[layer, i] = back * (1.0 - acts[layer, i] * acts[layer, i])
    return value + 1e-4 * _squares(params)


@numba.njit(parallel=True, cache=True)
def mlp_batch(P, points, labels, sizes, values, G):
    """mlp_value_and_grad at every row of P (parameter vectors), in parallel over the rows."""
    for p in numba.prange(P.shape[0]):
        values[p] = mlp_value_and_grad(P[p], points, labels, sizes, G[p])


WORKLOADS = ("rosenbrock", "mlp")  # the workloads written by hand


def _mlp_data(size):
    """(points, labels, layer sizes) of the MLP workload on ``size`` points."""
    points, labels = two_moons(size or 100)
    return points, labels, np.array(MLP_LAYERS, dtype=np.int64)


def _unknown(workload: str) -> ValueError:
    return ValueError(f"no hand-written Numba reference for the {workload} workload (rosenbrock and mlp have one)")


def reference(workload: str, size=None):
    """(value(x), value_and_grad(x, g)) written by hand for ``workload`` at ``size``; ValueError for
    a workload without one."""
    if workload == "rosenbrock":
        return rosen_value, rosen_value_and_grad
    if workload == "mlp":
        points, labels, sizes = _mlp_data(size)
        return (lambda x: mlp_value(x, points, labels, sizes),
                lambda x, g: mlp_value_and_grad(x, points, labels, sizes, g))
    raise _unknown(workload)


def batch_reference(workload: str, size=None):
    """``value_and_grad_batch(X, values, G)`` written by hand for ``workload`` at ``size``: the
    single-point reference at every row of X, in parallel over the rows (``prange``), what
    ``scalargrad bench --batch`` holds sg.vmap against; ValueError for a workload without one."""
    if workload == "rosenbrock":
        return rosen_batch
    if workload == "mlp":
        points, labels, sizes = _mlp_data(size)
        return lambda X, values, G: mlp_batch(X, points, labels, sizes, values, G)
    raise _unknown(workload)


def numba_peer(program, n):
    """The ``numba`` peer of ``bench --compare`` (see peers.py): the hand-written reference of the
    program's workload; its compile (or load from Numba's cache) is the record step."""
    value, value_and_grad = reference(program.workload, program.size)
    g = np.empty(n)

    def record(x):
        return timed(lambda: (value(x), value_and_grad(x, g)))[1], 0.0

    return dict(record=record, fwd=value, vg=lambda x: (value_and_grad(x, g), g.copy()))
