"""scalargrad against hand-written Numba value-and-gradient (scalargrad/bench/handwritten.py, also the
``numba`` peer of ``scalargrad bench --compare``) of Rosenbrock and of the MLP workload.

Run: python bench/handwritten.py [n] [B]. Compares, in one run, single-point value-and-gradient
(scalargrad vs hand-written) of Rosenbrock (with the interpreter and with generated code, which
rolls the tape's repeated block into a loop) and of the MLP (both backends), and a batch of B
Rosenbrock points (sg.vmap with the interpreter and with generated code vs a hand-written prange
loop).
"""
import sys

import numba
import numpy as np

import scalargrad as sg
from scalargrad.bench.handwritten import mlp_value_and_grad, rosen_batch, rosen_value_and_grad
from scalargrad.bench.timing import best_seconds, timed
from scalargrad.bench.workloads import MLP_LAYERS, WORKLOADS, two_moons


def main(n=10_000, B=1024):
    fun, _ = WORKLOADS["rosenbrock"].make(n)
    x = np.linspace(-1.2, 1.2, n)
    g = np.empty(n)
    for backend in ("interp", "codegen"):  # codegen: the tape's generated code, written with loops
        vg = sg.value_and_grad(fun, backend=backend)
        (value, grad), first = timed(lambda: vg(x))
        assert np.isclose(rosen_value_and_grad(x, g), value, rtol=1e-12) and np.allclose(g, grad, rtol=1e-10)
        ours, theirs = best_seconds(lambda: vg(x)), best_seconds(lambda: rosen_value_and_grad(x, g))
        print(f"rosenbrock n={n}: scalargrad (backend {backend}, first call {first:.1f} s) {ours * 1e6:.1f} µs, "
              f"hand-written {theirs * 1e6:.1f} µs, ratio {ours / theirs:.1f}")
    loss, params = WORKLOADS["mlp"].make(None)
    points, labels = two_moons(100)
    sizes = np.array(MLP_LAYERS, dtype=np.int64)
    g = np.empty(len(params))
    for backend in ("interp", "codegen"):
        vg_mlp = sg.value_and_grad(loss, backend=backend)
        (value, grad), first = timed(lambda: vg_mlp(params))
        assert np.isclose(mlp_value_and_grad(params, points, labels, sizes, g), value, rtol=1e-12)
        assert np.allclose(g, grad, rtol=1e-9, atol=1e-13)
        ours = best_seconds(lambda: vg_mlp(params))
        theirs = best_seconds(lambda: mlp_value_and_grad(params, points, labels, sizes, g))
        print(f"mlp ({len(params)} parameters, 100 points): scalargrad (backend {backend}, first call {first:.1f} s) "
              f"{ours * 1e6:.1f} µs, hand-written {theirs * 1e6:.1f} µs, ratio {ours / theirs:.1f}")
    m = 100
    fun_m, _ = WORKLOADS["rosenbrock"].make(m)
    X = np.random.default_rng(0).uniform(-1, 1, (B, m))
    values, G = np.empty(B), np.empty((B, m))
    rosen_batch(X, values, G)
    for backend in ("interp", "codegen"):
        batched = sg.vmap(sg.value_and_grad(fun_m, backend=backend))
        (v_ours, G_ours), first = timed(lambda: batched(X))
        assert np.allclose(values, v_ours, rtol=1e-12) and np.allclose(G, G_ours, rtol=1e-10, atol=1e-12)
        ours, theirs = best_seconds(lambda: batched(X)), best_seconds(lambda: rosen_batch(X, values, G))
        print(f"rosenbrock n={m}, B={B} points: sg.vmap (backend {backend}, first call {first:.1f} s) "
              f"{ours * 1e6:.1f} µs, hand-written prange {theirs * 1e6:.1f} µs, ratio {ours / theirs:.1f} "
              f"({numba.get_num_threads()} threads)")

if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
