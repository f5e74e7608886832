"""The higher-order part of ``scalargrad bench``: cost ratios of hvp, sparse Hessians and nested
gradients against one value-and-gradient, measured in one run (issue targets: hvp ≤ 4x, sparse
Hessian of Rosenbrock ≤ 15x, tape of grad(grad(f)) ≤ 10x f's on the MLP).

Each row is also checked: hvp against central differences of the gradient, the sparse Hessian
against hvp. A missed speed target is reported, not failed (timings on a shared machine are noisy);
a failed check fails the run. A row needing a package not installed here (the sparse Hessian: SciPy)
is reported skipped, with ratio and ``met`` None.
"""
from __future__ import annotations

import numpy as np

import scalargrad as sg

from .output import missing_package
from ..jit.passes import optimize
from .timing import interleaved_seconds
from .workloads import make_mlp, make_rosenbrock, relative_error

FD_STEP = 1e-5
# Both relative (workloads.relative_error, element by element). Central differences of the gradient
# give 1e-7 or better on every row (rounding eps * |g| / FD_STEP on elements that cancel to ~0.1).
FD_TOLERANCE = 1e-5
# The sparse Hessian's H @ v and hvp sum the same terms (up to ~1e4 on Rosenbrock) in another order;
# on elements that cancel, rounding reaches ~1e-13 here (1e-12 at worst): a wrong entry gives ~1.
SPARSE_TOLERANCE = 1e-10


def _row(name, measure, ratio, target, ok=True, detail=""):
    met = None if ratio is None else ratio <= target
    return dict(name=name, measure=measure, ratio=ratio, target=target, met=met, ok=ok, detail=detail)


def _interpreted_value_and_grad(f):
    """The value-and-gradient the rows divide by: on the interpreter, as hvp and the sparse Hessian
    run (their tangent sweeps have no generated code), or a ratio would depend on whether
    value_and_grad happened to tier up within the timing window."""
    return sg.value_and_grad(f, backend="interp")


def hvp_row(name, f, x, v) -> dict:
    vg, hvp, g = _interpreted_value_and_grad(f), sg.hvp(f), sg.grad(f)
    t_vg, t_hvp = interleaved_seconds(lambda: vg(x), lambda: hvp(x, v), min_seconds=0.3)
    fd = (g(x + FD_STEP * v) - g(x - FD_STEP * v)) / (2 * FD_STEP)
    err = relative_error(hvp(x, v), fd)
    return _row(f"hvp {name}", "hvp / value_and_grad", t_hvp / t_vg, 4.0, err <= FD_TOLERANCE,
                f"fd err {err:.1e}")


def sparse_hessian_row(name, f, x, v) -> dict:
    name, measure, target = f"sparse hessian {name}", "hessian(sparse) / value_and_grad", 15.0
    why = missing_package("scipy.sparse")
    if why:
        return _row(name, measure, None, target, detail=f"skipped: {why}")
    vg, sparse = _interpreted_value_and_grad(f), sg.hessian(f, sparse=True)
    t_vg, t_h = interleaved_seconds(lambda: vg(x), lambda: sparse(x), min_seconds=0.3)
    err = relative_error(sparse(x) @ v, sg.hvp(f)(x, v))
    return _row(name, measure, t_h / t_vg, target, err <= SPARSE_TOLERANCE,
                f"{sparse.colours(x)} colours; vs hvp {err:.1e}")


def nested_tape_row(name, f, x, v) -> dict:
    inner = sg.grad(f)
    nested = optimize(sg.trace(sg.grad(lambda z: inner(z) @ v), x))
    plain = optimize(sg.trace(f, x))
    return _row(f"grad(grad) tape {name}", "ops after passes / f's", len(nested) / len(plain), 10.0,
                detail=f"{len(nested)} / {len(plain)} ops")


def rows(quick: bool) -> list[dict]:
    """Every higher-order row (smaller sizes when ``quick``)."""
    n = 1000 if quick else 10_000
    rosen, x_rosen = make_rosenbrock(n)
    mlp, x_mlp = make_mlp(20 if quick else None)
    rng = np.random.default_rng(0)
    v_rosen, v_mlp = rng.standard_normal(x_rosen.shape), rng.standard_normal(x_mlp.shape)
    return [
        hvp_row(f"rosenbrock-{n}", rosen, x_rosen, v_rosen),
        hvp_row("mlp", mlp, x_mlp, v_mlp),
        sparse_hessian_row(f"rosenbrock-{n}", rosen, x_rosen, v_rosen),
        nested_tape_row("mlp", mlp, x_mlp, v_mlp),
    ]


def lines(results: list[dict]) -> list[str]:
    width = max(len(r["name"]) for r in results)
    out = [f"{'higher order':<{width}}  {'measure':<34}  {'ratio':>6}  {'target':>7}  check"]
    for r in results:
        if r["ratio"] is None:  # skipped: its detail says why
            out.append(f"{r['name']:<{width}}  {r['detail']}")
            continue
        target = f"≤ {r['target']:g}" + ("" if r["met"] else " MISSED")
        check = "ok" if r["ok"] else "FAIL"
        out.append(f"{r['name']:<{width}}  {r['measure']:<34}  {r['ratio']:6.2f}  {target:>7}  {check}  {r['detail']}")
    return out
