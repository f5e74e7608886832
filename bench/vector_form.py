"""The interpreter's vector form (scalargrad/jit/vector.py) against its scalar sweeps, in one process.

For each workload: the time to find the runs and build the vector form, whether it gives the
scalar sweeps' bits, and value-and-gradient per call (best of 30) with the scalar sweeps, the vector
form, and hand-written Numba where there is one. Run ``python bench/vector_form.py``.
"""
from __future__ import annotations

import time

import numpy as np

import scalargrad as sg
from scalargrad.bench import handwritten, workloads
from scalargrad.jit import kernels, vector
from scalargrad.jit.passes import optimize

CASES = [("rosenbrock", 1000), ("rosenbrock", 10000), ("mlp", None), ("random", 100000)]


def best_us(call, repeat: int = 30) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times) * 1e6


def main() -> None:
    vector.warm_up()
    print(f"{'workload':18s} {'ops':>7s} {'build ms':>9s} {'covered':>8s} {'same bits':>9s} "
          f"{'scalar us':>10s} {'vector us':>10s} {'speed-up':>9s} {'numba us':>9s} {'vector/numba':>13s}")
    for name, size in CASES:
        fun, x = getattr(workloads, "make_" + name)(size)
        tape = optimize(sg.trace(fun, x))
        program = kernels.Program(tape)
        started = time.perf_counter()
        form = vector.build(tape)
        build = (time.perf_counter() - started) * 1e3
        label = f"{name}-{size}" if size else name
        grad, grad_v = np.empty(len(x)), np.empty(len(x))
        scalar = best_us(lambda: kernels.value_and_grad(program.ins, program.lit, program.io, x, grad,
                                                        program.workspace()))
        if form is None:
            print(f"{label:18s} {len(tape):7d} {build:9.0f}   (no vector form: too few instructions in runs)"
                  f"  scalar {scalar:.0f} us")
            continue
        value, _ = kernels.value_and_grad(program.ins, program.lit, program.io, x, grad, program.workspace())
        value_v, _ = form.value_and_grad(x, grad_v)
        same = value == value_v and np.array_equal(grad.view(np.uint64), grad_v.view(np.uint64))
        fast = best_us(lambda: form.value_and_grad(x, grad_v))
        try:
            _, reference = handwritten.reference(name, size)
            reference(x, grad)
            numba = best_us(lambda: reference(x, grad))
        except ValueError:
            numba = float("nan")
        print(f"{label:18s} {len(tape):7d} {build:9.0f} {form.covered:8.2f} {str(same):>9s} {scalar:10.0f} "
              f"{fast:10.0f} {scalar / fast:8.2f}x {numba:9.1f} {fast / numba:12.1f}x")


if __name__ == "__main__":
    main()
