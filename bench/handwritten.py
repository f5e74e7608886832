"""Hand-written Numba value-and-gradient of Rosenbrock: the physical limit scalargrad chases.

Run: python bench/handwritten.py [n] [B]. Compares, in one run, single-point value-and-gradient
(scalargrad vs hand-written) and a batch of B points (sg.vmap vs a hand-written prange loop).
"""
import sys
import time

import numba
import numpy as np

import scalargrad as sg
from scalargrad.workloads import WORKLOADS


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
    for p in numba.prange(X.shape[0]):
        values[p] = rosen_value_and_grad(X[p], G[p])


def best_of(fn, repeat=7):
    fn()
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(n=10_000, B=1024):
    fun, _ = WORKLOADS["rosenbrock"].make(n)
    x = np.linspace(-1.2, 1.2, n)
    vg = sg.value_and_grad(fun)
    value, grad = vg(x)
    g = np.empty(n)
    assert np.isclose(rosen_value_and_grad(x, g), value, rtol=1e-12) and np.allclose(g, grad, rtol=1e-10)
    ours, theirs = best_of(lambda: vg(x)), best_of(lambda: rosen_value_and_grad(x, g))
    print(f"rosenbrock n={n}: scalargrad {ours * 1e6:.1f} µs, hand-written {theirs * 1e6:.1f} µs, "
          f"ratio {ours / theirs:.1f}")
    m = 100
    fun_m, _ = WORKLOADS["rosenbrock"].make(m)
    vg_m = sg.value_and_grad(fun_m)
    X = np.random.default_rng(0).uniform(-1, 1, (B, m))
    values, G = np.empty(B), np.empty((B, m))
    batched = sg.vmap(vg_m)
    v_ours, G_ours = batched(X)
    rosen_batch(X, values, G)
    assert np.allclose(values, v_ours, rtol=1e-12) and np.allclose(G, G_ours, rtol=1e-10, atol=1e-12)
    ours, theirs = best_of(lambda: batched(X)), best_of(lambda: rosen_batch(X, values, G))
    print(f"rosenbrock n={m}, B={B} points: sg.vmap {ours * 1e6:.1f} µs, hand-written prange "
          f"{theirs * 1e6:.1f} µs, ratio {ours / theirs:.1f} ({numba.get_num_threads()} threads)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
