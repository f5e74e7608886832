"""Figures for issue 5 (higher-order transforms), measured as ratios in one run.

Run: python bench/higher_order.py [--quick]
  hvp / value_and_grad on Rosenbrock n = 10^4 and the MLP workload, two ways: (A) sg.hvp, a tangent
  sweep over the compiled gradient tape; (B) the symbolic jvp-of-grad tape run by the forward sweep.
  sparse Hessian / value_and_grad on Rosenbrock n = 10^4 (and its colour count).
  size of grad(x -> grad(f)(x) @ v)'s tape after passes.optimize / f's tape on the MLP workload.
Times are the best of repeated calls after a warm-up call.
"""
import sys

import numpy as np

import scalargrad as sg
from scalargrad.jit import kernels
from scalargrad.jit.passes import optimize
from scalargrad.record.symbolic import grad_tape, jvp_tape, with_outputs
from scalargrad.bench.timing import interleaved_seconds
from scalargrad.bench.workloads import make_mlp, make_rosenbrock


def main(quick=False):
    n = 1000 if quick else 10_000
    for name, make, size in [(f"rosenbrock-{n}", make_rosenbrock, n), ("mlp", make_mlp, 20 if quick else None)]:
        f, x = make(size)
        v = np.random.default_rng(0).standard_normal(x.shape)
        vg, hvp = sg.value_and_grad(f), sg.hvp(f)
        ft = optimize(sg.trace(f, x))
        g = optimize(grad_tape(ft, value=False))
        jt = optimize(jvp_tape(g))
        jt = optimize(with_outputs(jt, jt.outputs[len(g.outputs):]))  # the tangents only: H v
        p = kernels.Program(jt)
        xv, out = np.concatenate([x, v]), np.empty(p.n_outputs)
        evaluate_b = lambda: kernels.evaluate(p.ins, p.lit, p.io, xv, out, p.workspace())  # noqa: E731
        t_vg, t_hvp, t_b = interleaved_seconds(lambda: vg(x), lambda: hvp(x, v), evaluate_b, rounds=30, best=True)
        if not np.allclose(out, hvp(x, v), rtol=1e-10, atol=1e-10):
            raise AssertionError(f"{name}: the two Hessian-vector products disagree")
        print(f"{name}: tapes f {len(ft)}, gradient {len(g)} ({len(g) / len(ft):.2f}x), "
              f"jvp-of-gradient {len(jt)} ({len(jt) / len(ft):.2f}x)")
        print(f"  value_and_grad {t_vg * 1e6:.0f} us; hvp A (tangent sweep over gradient tape) {t_hvp * 1e6:.0f} us "
              f"= {t_hvp / t_vg:.2f}x; hvp B (forward sweep of jvp-of-gradient tape) {t_b * 1e6:.0f} us "
              f"= {t_b / t_vg:.2f}x")
        if name == "mlp":
            gg = optimize(sg.trace(sg.grad(lambda z: sg.grad(f)(z) @ v), x))
            print(f"  grad(x -> grad(f)(x) @ v) tape after optimize: {len(gg)} = {len(gg) / len(ft):.2f}x f's tape")
        else:
            sparse = sg.hessian(f, sparse=True)
            t_vg, t_sh = interleaved_seconds(lambda: vg(x), lambda: sparse(x), rounds=15, best=True)
            print(f"  sparse hessian {t_sh * 1e6:.0f} us = {t_sh / t_vg:.2f}x value_and_grad "
                  f"({sparse.colours(x)} colours, nnz {sparse(x).nnz})")


if __name__ == "__main__":
    main("--quick" in sys.argv)
