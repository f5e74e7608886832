"""Cost of calling a compiled gradient from the user's own @njit loop, over the bare sweep.

    python bench/embed_overhead.py

Three loops over the same 3-variable Rosenbrock tape: ``k(x, g)`` (allocates its scratch per call),
``k(x, g, work)`` (caller's scratch) and the sweep kernel itself. Issue target: <= 50 ns per call.
"""
import time

import numba
import numpy as np

import scalargrad as sg
from scalargrad.jit import kernels


def rosen(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))

vg = sg.value_and_grad(rosen)
x0 = np.full(3, 0.5)
k = vg.compile(x0)
sig = vg.flat((x0,))[0]
p = sig.paths[0].program
print("ops", p.ins.shape[1])


@numba.njit
def loop_k(k, x, g, steps):
    s = 0.0
    for i in range(steps):
        x[0] = 0.5 + 1e-9 * i
        s += k(x, g)
    return s


@numba.njit
def loop_kw(k, x, g, work, steps):
    s = 0.0
    for i in range(steps):
        x[0] = 0.5 + 1e-9 * i
        s += k(x, g, work)
    return s


@numba.njit
def loop_raw(ins, lit, io, x, g, work, steps):
    s = 0.0
    for i in range(steps):
        x[0] = 0.5 + 1e-9 * i
        s += kernels.value_and_grad(ins, lit, io, x, g, work)[0]
    return s

x = x0.copy(); g = np.empty(3); work = np.empty(4 * p.ins.shape[1] + 2)
N = 2_000_000
loop_k(k, x, g, 10); loop_kw(k, x, g, work, 10); loop_raw(p.ins, p.lit, p.io, x, g, work, 10)
for rep in range(3):
    t = time.perf_counter(); loop_k(k, x, g, N); tk = (time.perf_counter() - t) / N
    t = time.perf_counter(); loop_kw(k, x, g, work, N); tw = (time.perf_counter() - t) / N
    t = time.perf_counter(); loop_raw(p.ins, p.lit, p.io, x, g, work, N); tr = (time.perf_counter() - t) / N
    print(f"k(x,g) {tk*1e9:.1f} ns  k(x,g,work) {tw*1e9:.1f} ns  raw sweep {tr*1e9:.1f} ns  overhead {1e9*(tk-tr):.1f} / {1e9*(tw-tr):.1f} ns")
