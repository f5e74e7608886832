"""10^5 gradient-descent steps inside the user's @njit loop, with the kernel .compile() hands out under
the default backend, the interpreter's kernel (backend="interp") and backend="codegen"; and how long
compile() took. A fresh cache shows the first compile:

    SCALARGRAD_CACHE_DIR=$(mktemp -d) python bench/compile_loop.py
"""
import time, numba, numpy as np, scalargrad as sg

@numba.njit
def descend(k, x, steps, lr):
    g = np.empty_like(x)
    for _ in range(steps):
        k(x, g)
        x -= lr * g
    return x

def rosen(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))

for n in (2, 20):
    x0 = np.zeros(n)
    t = time.perf_counter(); k_default = sg.value_and_grad(rosen).compile(x0); t_compile = time.perf_counter() - t
    kernels = {"default": k_default, "interp": sg.value_and_grad(rosen, backend="interp").compile(x0),
               "codegen": sg.value_and_grad(rosen, backend="codegen").compile(x0)}
    best = {}
    for name, k in kernels.items():
        descend(k, x0.copy(), 10, 1e-4)
    for _ in range(5):
        for name, k in kernels.items():
            t = time.perf_counter(); descend(k, x0.copy(), 100_000, 1e-4)
            best[name] = min(best.get(name, 1e9), time.perf_counter() - t)
    print(f"rosenbrock n={n}: compile() under the default backend took {t_compile:.2f} s; 10^5 steps: "
          + ", ".join(f"{name} {1e3 * s:.1f} ms" for name, s in best.items())
          + f"; default/codegen {best['default'] / best['codegen']:.2f}")
