"""Batch value-and-gradient on the GPU (sg.vmap(..., device="cuda")) against the CPU batch kernel
and single-point calls. Run: python bench/gpu_batch.py [B]. Needs a CUDA GPU for the GPU column."""
import sys

import numpy as np

import scalargrad as sg
from scalargrad.jit.cuda import unavailable_reason
from scalargrad.bench.timing import best_seconds, timed
from scalargrad.bench.workloads import WORKLOADS


def main(B=1024):
    gpu = unavailable_reason()
    print(f"B = {B}; GPU: {'usable' if gpu is None else gpu}")
    print(f"{'workload':18s} {'ops':>8s} {'single ns/op':>13s} {'cpu batch ns/op/pt':>19s} {'gpu ns/op/pt':>13s} {'gpu first s':>12s}  agree")
    for name, size in (("rosenbrock", 100), ("mlp", None), ("random", 100_000)):
        fun, x0 = WORKLOADS[name].make(size)
        vg = sg.value_and_grad(fun)
        vg(x0)
        n = len(vg.cache[(x0.shape,)].paths[0].program.tape)
        X = x0 + 0.01 * np.random.default_rng(0).standard_normal((B, x0.size))
        single = best_seconds(lambda: vg(X[0]), 5) / n * 1e9
        cpu = sg.vmap(vg)
        t_cpu = best_seconds(lambda: cpu(X), 3) / n / B * 1e9
        row = f"{name + '-' + str(size or x0.size):18s} {n:8d} {single:13.2f} {t_cpu:19.3f}"
        if gpu is None:
            g = sg.vmap(vg, device="cuda")
            (v_gpu, G_gpu), first = timed(lambda: g(X))
            t_gpu = best_seconds(lambda: g(X), 3) / n / B * 1e9
            v_cpu, G_cpu = cpu(X)
            agree = np.allclose(v_gpu, v_cpu, rtol=1e-12) and np.allclose(G_gpu, G_cpu, rtol=1e-10, atol=1e-12)
            row += f" {t_gpu:13.3f} {first:12.2f}  {agree}"
        print(row, flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1024)
