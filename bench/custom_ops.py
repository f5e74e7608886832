"""Cost of a user-defined op (sg.custom_op) against the same function built from table ops.

    python bench/custom_ops.py

f(x) = sum_i softplus(x_i) * x_{i+1} over n = 10,000, value and gradient, single point. The
built-in version records softplus as log1p(exp(x)) (two ops, partials from the table); the custom
version records one op whose forward and partial are user functions called through C pointers.
"""
import math

import numba
import numpy as np

import scalargrad as sg
from scalargrad.bench.timing import median_seconds
from scalargrad.bench.workloads import relative_error


@numba.njit
def _logistic(x):
    return 1.0 / (1.0 + math.exp(-x))


softplus = sg.custom_op("bench_softplus", lambda x: math.log1p(math.exp(x)), [_logistic])


def with_custom(x):
    return sum(softplus(x[i]) * x[i + 1] for i in range(len(x) - 1))


def with_builtins(x):
    return sum(sg.log1p(sg.exp(x[i])) * x[i + 1] for i in range(len(x) - 1))


def main():
    n = 10_000
    x = np.linspace(-2.0, 2.0, n)
    rows = {}
    for name, fun in (("custom", with_custom), ("built-in", with_builtins)):
        vg, jit = sg.value_and_grad(fun, backend="interp"), sg.jit(fun, backend="interp")
        value, g = vg(x)
        jit(x)
        ops = len(vg.flat((x,))[0].paths[0].program.tape)
        rows[name] = (median_seconds(lambda: vg(x), 200), median_seconds(lambda: jit(x), 200), ops, value, g)
    (vg_c, _, ops_c, v_c, g_c), (vg_b, _, ops_b, v_b, g_b) = rows["custom"], rows["built-in"]
    assert relative_error(v_c, v_b) <= 1e-9 and np.allclose(g_c, g_b, rtol=1e-12, atol=1e-14)
    print(f"n = {n:,}: custom tape {ops_c:,} ops, built-in tape {ops_b:,} ops (results agree)")
    print(f"{'':10} {'vg us':>9} {'fwd us':>9} {'vg/fwd':>7} {'vg ns/op':>9}")
    for name, (vg_s, f_s, ops, _, _) in rows.items():
        print(f"{name:10} {vg_s * 1e6:9.1f} {f_s * 1e6:9.1f} {vg_s / f_s:7.2f} {vg_s / ops * 1e9:9.2f}")
    print(f"custom / built-in, value and gradient: {vg_c / vg_b:.2f}")


if __name__ == "__main__":
    main()
