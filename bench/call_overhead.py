"""What a call of value_and_grad from Python costs over its kernel: Rosenbrock n=20, best of 7 rounds
of 20,000 calls, for the codegen and interp backends.

    python bench/call_overhead.py
"""
import time, numpy as np, scalargrad as sg
def rosen(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))
x = np.linspace(-1.2, 1.2, 20)
for backend in ("codegen", "interp"):
    vg = sg.value_and_grad(rosen, backend=backend)
    vg(x)
    path = next(iter(vg.cache.values())).paths[0]
    g = np.empty(20)
    if backend == "codegen":
        k = path.tier.kernel
        kernel = lambda: k(x, g)
    else:
        from scalargrad.jit import kernels
        p = path.program; w = p.workspace()
        kernel = lambda: kernels.value_and_grad(p.ins, p.lit, p.io, x, g, w)
    N = 20000
    best_call = best_kernel = 1e9
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(N): vg(x)
        best_call = min(best_call, (time.perf_counter() - t) / N)
        t = time.perf_counter()
        for _ in range(N): kernel()
        best_kernel = min(best_kernel, (time.perf_counter() - t) / N)
    print(f"{backend}: call {1e6*best_call:.2f} us, kernel {1e6*best_kernel:.2f} us, overhead {1e6*(best_call-best_kernel):.2f} us")
