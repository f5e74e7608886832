"""The numbers and the correctness verdict of one ``scalargrad bench`` row: trace, compile, forward and
value-and-gradient timings (each one kernel's, with no background compile competing), eager backward,
the finite-difference check, and the ``--batch`` numbers checked against single-point calls and
hand-written Numba. Every check compares with ``workloads.relative_error``.
"""
from __future__ import annotations

import math
import time

import numpy as np

import scalargrad as sg

from ..jit.passes import optimize
from ..jit.tier import compiling, wait_for_compiles
from .timing import median_seconds, timed, without_gc
from .workloads import finite_difference_check, relative_error

FD_TOLERANCE = 1e-6        # relative; correct gradients give 2e-8 or better on every workload
EAGER_TOLERANCE = 1e-9     # relative; eager backward and value_and_grad run the same tape
EAGER_MAX_OPS = 200_000    # larger rows skip the (slow, memory-hungry) eager measurement
BATCH_TOLERANCE = 1e-12    # relative; batch and single-point sweeps run the same program
HANDWRITTEN_TOLERANCE = 1e-9  # relative; hand-written code rounds differently (other operation order)


def backend_options(backend: str | None) -> dict:
    """Keyword arguments selecting ``backend`` in value_and_grad and jit (none: their default)."""
    return {} if backend is None else {"backend": backend}


def load_kernels(options: dict) -> float:
    """Seconds to load (or compile) the sweeps: the first compiled calls of the process."""
    return timed(lambda: (sg.value_and_grad(lambda x: x * x, **options)(1.0),
                          sg.jit(lambda x: x * x, **options)(1.0)))[1]


def _first_path(transformed):
    """The first compiled path of a transformed function (transforms/transformed.py's Path), or None for other callables."""
    for sig in getattr(transformed, "cache", {}).values():
        for path in getattr(sig, "paths", ()):
            return path
    return None


def compiled_ops(transformed, tape) -> int:
    """Instructions the compiled kernel runs: the compiled path's tape when the transformed function
    exposes it, otherwise the traced tape after ``passes.optimize`` (what a transform compiles)."""
    program = getattr(_first_path(transformed), "program", None)
    return len(optimize(tape) if program is None else program.tape)


def kernel_name(transformed, batch: bool = False) -> str:
    """The kernel running a transformed function's compiled path: for single calls "codegen" once
    its generated code is in use (backend "codegen", or "auto" after a tier-up), "vector" on the
    interpreter's vector form (jit/vector.py), else "interp"; with ``batch``, for
    ``sg.vmap(transformed)``, "lanes" (generated lane code), "points" (the generated per-point
    function, called for each point in parallel) or "interp"."""
    tier = getattr(_first_path(transformed), "tier", None)
    if tier is None:
        return "interp"
    return tier.running_batch() if batch else tier.running()


GENERATED = ("codegen", "points", "lanes")  # kernel_name's names of generated code


def batch_settled(transformed) -> bool:
    """Whether ``sg.vmap(transformed)`` runs the last kernel its compiled path will get."""
    tier = getattr(_first_path(transformed), "tier", None)
    return tier is None or tier.batch_settled()


SETTLE_LANES_S = 20.0  # settle calls at most this long for the lane code to start compiling


def settle(call, transformed, batch: bool = False) -> None:
    """Backend auto: calls ``call`` until ``transformed``'s compiled path has no background compile
    in flight and starts none (a batch's points count as calls, so a large batch starts a tier-up
    at once) and, with ``batch`` (``call`` runs vmap), its lane code is not still to come (for at
    most SETTLE_LANES_S), so that batch rows time the kernel a program running for a while would
    use. Each call waits for any other path's compile first: one runs at a time, so while another
    path's runs, this path cannot start its own."""
    tier = getattr(_first_path(transformed), "tier", None)
    deadline = time.perf_counter() + SETTLE_LANES_S
    while tier is not None:
        wait_for_compiles()
        call()
        if not tier.settle() and not (batch and tier.lane_code_pending() and time.perf_counter() < deadline):
            break


def steady_seconds(call, kernel, repeat: int | None) -> tuple[float, str]:
    """(median seconds of ``call()``, ``kernel()``: the kernel that ran it), timed while no
    background compile competes for the cores; timed again (up to three timings) while backend
    "auto" starts one or switches kernels during the timing, so that the figure is one kernel's."""
    for _ in range(3):  # a timing can make a path hot once per kernel it tiers up to
        wait_for_compiles()
        before = kernel()
        seconds = median_seconds(call, repeat)
        if kernel() == before and not compiling():
            break
    return seconds, kernel()


def first_call(transformed, x0) -> tuple[object, float, float | None]:
    """(result, seconds, seconds spent compiling the traced tape) of the first call of a transformed
    function. The compile part is what the transform reports in ``compile_seconds`` (passes,
    program, generated code), None for a callable without it."""
    before = getattr(transformed, "compile_seconds", None)
    result, seconds = without_gc(lambda: transformed(x0))
    spent = None if before is None else transformed.compile_seconds - before
    return result, seconds, spent or None  # None also when the call made no path


def eager_seconds(fun, x0) -> tuple[float, np.ndarray]:
    """(best of two) time to run ``fun`` on eager Variables and backward(); and the gradient."""
    def run():
        leaves = np.array([sg.Variable(float(v)) for v in x0.ravel()], dtype=object).reshape(x0.shape)
        fun(leaves).backward()
        # An input the output does not depend on keeps grad None (as in PyTorch).
        return np.array([v.grad or 0.0 for v in leaves.ravel()], dtype=np.float64).reshape(x0.shape)

    (grad, first), (_, second) = timed(run), timed(run)
    return min(first, second), grad


def measure(fun, x0, repeat: int | None = None, options: dict | None = None, eager: bool = True) -> dict:
    """Every bench number for one workload row, plus its correctness verdict. ``options`` go to
    value_and_grad and jit (the backend); ``eager=False`` leaves the eager measurement out."""
    options = options or {}
    # Best of two traces: a garbage collection during one would otherwise show up as compile time.
    tape, trace_s = without_gc(lambda: sg.trace(fun, x0))
    trace_s = min(trace_s, without_gc(lambda: sg.trace(fun, x0))[1])
    ops = len(tape)
    value_and_grad = sg.value_and_grad(fun, **options)
    (value, grad), first_s, compile_s = first_call(value_and_grad, x0)
    compiled = compiled_ops(value_and_grad, tape)
    forward = sg.jit(fun, **options)
    forward(x0)
    fwd_s, fwd_kernel = steady_seconds(lambda: forward(x0), lambda: kernel_name(forward), repeat)
    vg_s, kernel = steady_seconds(lambda: value_and_grad(x0), lambda: kernel_name(value_and_grad), repeat)
    if compile_s is None:  # the first call traces, compiles and runs once: compile is the rest
        compile_s = max(0.0, first_s - trace_s - vg_s)
    row = dict(ops=ops, compiled_ops=compiled, trace_ms=1e3 * trace_s, compile_ms=1e3 * compile_s, fwd_us=1e6 * fwd_s, vg_us=1e6 * vg_s,
               ratio=vg_s / fwd_s, ns_per_op=1e9 * vg_s / ops, ns_per_compiled_op=1e9 * vg_s / compiled,
               eager_us_per_op=None, value=value, fd_err=None,
               kernel=kernel if fwd_kernel == kernel else f"{kernel} (fwd {fwd_kernel})")
    problems = []
    if eager and ops <= EAGER_MAX_OPS:
        eager_s, eager_grad = eager_seconds(fun, x0)
        row["eager_us_per_op"] = 1e6 * eager_s / ops
        mismatch = relative_error(eager_grad, grad)
        if not mismatch <= EAGER_TOLERANCE:
            problems.append(f"eager gradient differs from value_and_grad by {mismatch:.1e}")
    if not (math.isfinite(value) and np.isfinite(grad).all()):
        problems.append(f"non-finite value {value!r} or gradient")
    else:
        row["fd_err"] = finite_difference_check(fun, x0, grad)
        if not row["fd_err"] <= FD_TOLERANCE:
            problems.append(f"finite-difference error {row['fd_err']:.1e} > {FD_TOLERANCE:.0e}")
    row["ok"] = not problems
    row["detail"] = "; ".join(problems)
    return row


def batch_points(x0: np.ndarray, points: int, seed: int = 0) -> np.ndarray:
    """``points`` rows near ``x0`` (each coordinate scaled by up to ±1 %; row 0 is ``x0`` itself), so
    every workload stays inside its ops' domains and on the traced control-flow path."""
    scale = 1.0 + 0.01 * np.random.default_rng(seed).uniform(-1.0, 1.0, (points,) + x0.shape)
    scale[0] = 1.0
    return x0 * scale


def measure_batch(fun, x0, points: int, single: dict, repeat: int | None = None, options: dict | None = None,
                  handwritten=None) -> dict:
    """Batch numbers of one row: ``sg.vmap(sg.value_and_grad(fun))`` over ``points`` points, checked
    against single-point value_and_grad at three of them; ``single`` is ``measure``'s row. With
    ``handwritten`` (``handwritten.batch_reference``'s function), also that on the same points,
    timed right after, and checked against ours at every point."""
    X = batch_points(x0, points)
    single_vg = sg.value_and_grad(fun, **(options or {}))
    vg = sg.value_and_grad(fun, **(options or {}))
    batched = sg.vmap(vg)
    (values, grads), _ = timed(lambda: batched(X))
    settle(lambda: batched(X), vg, batch=True)
    batch_s, kernel = steady_seconds(lambda: batched(X), lambda: kernel_name(vg, batch=True), repeat)
    problems = []
    for i in sorted({0, points // 2, points - 1}):
        value, grad = single_vg(X[i])
        err = relative_error(np.append(values[i], grads[i]), np.append(value, grad))
        if not err <= BATCH_TOLERANCE:
            problems.append(f"batch point {i} differs from value_and_grad by {err:.1e}")
    vs_handwritten = None
    if handwritten is not None:
        X2 = X.reshape(points, -1)
        hand_values, hand_grads = np.empty(points), np.empty(X2.shape)
        handwritten(X2, hand_values, hand_grads)  # compiles, or loads from Numba's cache
        vs_handwritten = batch_s / median_seconds(lambda: handwritten(X2, hand_values, hand_grads), repeat)
        err = relative_error(np.column_stack((values, grads.reshape(X2.shape))),
                             np.column_stack((hand_values, hand_grads)))
        if not err <= HANDWRITTEN_TOLERANCE:
            problems.append(f"the hand-written batch differs from sg.vmap by {err:.1e}")
    per_point = batch_s / points
    return dict(batch=points, batch_us=1e6 * batch_s, batch_ns_per_op=1e9 * per_point / single["ops"],
                batch_ns_per_compiled_op=1e9 * per_point / single["compiled_ops"],
                batch_vs_single=per_point / (1e-6 * single["vg_us"]), batch_kernel=kernel,
                batch_vs_handwritten=vs_handwritten, batch_detail="; ".join(problems))


def run_check(workload) -> dict:
    """The verdict of a check workload (one that is run, not timed)."""
    failures = workload.check()
    return dict(ok=not failures, detail="; ".join(failures))
