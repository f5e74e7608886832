"""Command line: ``scalargrad bench`` times the shipped workloads (``--compare`` against other AD
libraries), ``scalargrad ops`` lists the op table, ``scalargrad info`` prints the environment.

``main(argv)`` returns the exit status: 0, 1 when a bench correctness check fails (or a peer
disagrees with scalargrad; a missed speed target does not count), 2 for usage errors, found before
anything runs (argparse exits with 2 itself for bad options; no command prints help and returns 2).
Rows and options needing a package not installed are skipped with a one-line note. Op counts are
reported twice, traced and compiled (after the passes), so that ns/op is honest about what the
kernels run. ``--json`` follows docs/bench-json.md; ``--json -`` puts it alone on stdout.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import time

import numba
import numpy as np

import scalargrad as sg

from . import higher as bench_higher, handwritten, info
from ..core import ops as op_table
from .output import Progress, missing_package, plot
from ..jit import vector_math
from ..jit.tier import compiling, wait_for_compiles
from ..jit.passes import optimize
from .workloads import WORKLOADS, finite_difference_check

FD_TOLERANCE = 1e-6        # relative; correct gradients give 2e-8 or better on every workload
EAGER_TOLERANCE = 1e-9     # relative; eager backward and value_and_grad run the same tape
EAGER_MAX_OPS = 200_000    # larger rows skip the (slow, memory-hungry) eager measurement
MIN_SECONDS = 0.2          # time each per-call measurement for at least this long ...
MIN_REPEATS = 5            # ... and at least this many calls
BATCH_TOLERANCE = 1e-12    # relative; batch and single-point sweeps run the same program
HANDWRITTEN_TOLERANCE = 1e-9  # relative; hand-written code rounds differently (other operation order)
VECTOR_MATH_TOLERANCE = 1e-9  # relative; --vector-math: libmvec rounds differently from libm (≤ 4 ulp a call)
SCHEMA = 2                 # version of the --json layout documented in docs/bench-json.md
BACKENDS = ("auto", "interp", "codegen")
# (the timed row a speed target is about, None: any; text): the targets: line names those whose row ran.
TARGETS = (("random-100000", "≤15 ns/op vg on random-100000"), (None, "ratio ≤ 3"))
BATCH_TARGETS = (("random-100000", "with --batch 1024, B/single ≤ 0.25 on random-100000"),
                 ("rosenbrock-100", "B/hand ≤ 2 on rosenbrock-100"))


# --- measuring ----------------------------------------------------------------------------------

def median_seconds(call, repeat: int | None = None) -> float:
    """Median time of one ``call()``: ``repeat`` calls, or as many as fill MIN_SECONDS (>= MIN_REPEATS);
    the garbage collector is paused during each call, as in ``timeit`` (peers.py does the same)."""
    times = []
    deadline = time.perf_counter() + MIN_SECONDS
    while len(times) < (repeat or MIN_REPEATS) or (not repeat and time.perf_counter() < deadline):
        times.append(without_gc(call)[1])
    return statistics.median(times)


def timed(call):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    result = call()
    return result, time.perf_counter() - t0


def without_gc(call):
    """``timed(call)`` with the cyclic garbage collector paused, so that a collection triggered by
    earlier garbage is not charged to this call (used for one-shot timings: trace, first call)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return timed(call)
    finally:
        if enabled:
            gc.enable()


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
    """The kernel running a transformed function's compiled path (``batch``: running
    ``sg.vmap(transformed)``): "codegen" once its generated code (batch function) is in use
    (backend "codegen", or "auto" after a tier-up), else "interp"."""
    tier = getattr(_first_path(transformed), "tier", None)
    generated = None if tier is None else tier.module if batch else tier.kernel
    return "interp" if generated is None else "codegen"


def relative_error(got, want) -> float:
    """The largest ``|got - want| / max(1, |want|)`` over the elements (0 when empty; NaN when any
    element is NaN, so that a check ``err <= tolerance`` fails on it)."""
    want = np.asarray(want, dtype=float)
    return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)), initial=0.0))


def settle(call, transformed) -> None:
    """Backend auto: calls ``call`` until ``transformed``'s compiled path has no background compile
    in flight and starts none (a batch's points count as calls, so a large batch starts a tier-up
    at once), so that batch rows time the kernel a program running for a while would use. Each
    call waits for any other path's compile first: one runs at a time, so while another path's
    runs, this path cannot start its own."""
    tier = getattr(_first_path(transformed), "tier", None)
    while tier is not None:
        wait_for_compiles()
        call()
        if not tier.settle():
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
                  handwritten=None, vector_math: bool = False) -> dict:
    """Batch numbers of one row: ``sg.vmap(sg.value_and_grad(fun), vector_math=vector_math)`` over
    ``points`` points, checked against single-point value_and_grad at three of them; ``single`` is
    ``measure``'s row. With ``handwritten`` (``handwritten.batch_reference``'s function), also that
    on the same points, timed right after, and checked against ours at every point."""
    X = batch_points(x0, points)
    single_vg = sg.value_and_grad(fun, **(options or {}))
    vg = sg.value_and_grad(fun, **(options or {}))
    batched = sg.vmap(vg, vector_math=vector_math)
    (values, grads), _ = timed(lambda: batched(X))
    settle(lambda: batched(X), vg)
    batch_s, kernel = steady_seconds(lambda: batched(X), lambda: kernel_name(vg, batch=True), repeat)
    if vector_math and kernel == "interp":
        kernel = "interp vm"  # generated code calls libm either way
    problems = []
    tolerance = VECTOR_MATH_TOLERANCE if vector_math else BATCH_TOLERANCE
    for i in sorted({0, points // 2, points - 1}):
        value, grad = single_vg(X[i])
        err = relative_error(np.append(values[i], grads[i]), np.append(value, grad))
        if not err <= tolerance:
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


# --- rows -----------------------------------------------------------------------------------------

def workload_sizes(workload, quick: bool, sizes=None, growth: bool = False):
    """The sizes of a workload's rows: ``sizes`` (--size) if given, else its growth, quick or default sizes."""
    if workload.check:
        return (None,)
    if sizes:
        return tuple(sizes)
    if growth and workload.growth_sizes:
        return workload.growth_sizes[:2] if quick else workload.growth_sizes
    return (workload.quick_sizes if quick else workload.sizes) or (None,)


def default_rows(quick: bool, sizes=None, growth: bool = False) -> list[tuple[str, str, int | None]]:
    """(row name, workload name, size) of every bench row, check rows first."""
    rows = []
    for w in sorted(WORKLOADS.values(), key=lambda w: w.check is None):
        rows += [(w.name if size is None else f"{w.name}-{size}", w.name, size)
                 for size in workload_sizes(w, quick, sizes, growth)]
    return rows


def select_rows(names: list[str], quick: bool, sizes=None, growth: bool = False) -> list[tuple[str, str, int | None]]:
    """Rows chosen by ``--workload``: a workload name (all its rows), a row name, or ``name-SIZE``."""
    rows = default_rows(quick, sizes, growth)
    chosen = []
    for name in names:
        matches = [row for row in rows if name in (row[0], row[1])]
        if not matches:
            base, _, size = name.rpartition("-")
            if base not in WORKLOADS or not size.isdigit() or WORKLOADS[base].check or int(size) < 1:
                raise ValueError(f"unknown workload {name!r}; choose from {', '.join(r[0] for r in rows)}, "
                                 "a workload name, or name-SIZE")
            matches = [(name, base, int(size))]
        chosen += [row for row in matches if row not in chosen]
    return chosen


# --- output ---------------------------------------------------------------------------------------

KERNEL = "what ran the timed calls: interp (the tape interpreter) or codegen (the tape's generated code)"
# (title, row key, format, meaning for the legend); the check row leaves the numbers out.
COLUMNS = (
    ("ops", "ops", "{:d}", "traced instructions"),
    ("c-ops", "compiled_ops", "{:d}", "instructions after dce/cse/fold_constants, what the kernels run"),
    ("trace ms", "trace_ms", "{:.1f}", "sg.trace, best of two"),
    ("compile ms", "compile_ms", "{:.1f}", "first value_and_grad call less trace and one run"),
    ("fwd µs", "fwd_us", "{:.1f}", "sg.jit(f)(x)"),
    ("vg µs", "vg_us", "{:.1f}", "sg.value_and_grad(f)(x)"),
    ("ratio", "ratio", "{:.2f}", "vg µs / fwd µs"),
    ("ns/op", "ns_per_op", "{:.1f}", "vg time per op"),
    ("ns/c-op", "ns_per_compiled_op", "{:.1f}", "vg time per c-op"),
    ("eager µs/op", "eager_us_per_op", "{:.2f}", f"Variable record + backward() per op (- above {EAGER_MAX_OPS} ops)"),
    ("fd err", "fd_err", "{:.1e}", "gradient's relative error against finite differences"),
    ("kernel", "kernel", "{}", KERNEL + ", which backend auto switches to once a path is hot"),
)
BATCH_COLUMNS = (
    ("B ns/op", "batch_ns_per_op", "{:.2f}", "sg.vmap(sg.value_and_grad(f)) over the --batch points, per point per op"),
    ("B/single", "batch_vs_single", "{:.3f}", "B ns/op / ns/op"),
    ("B kernel", "batch_kernel", "{}", "what ran the batch (vm: libm calls 4 points at a time, --vector-math)"),
    ("B/hand", "batch_vs_handwritten", "{:.2f}", "batch time over hand-written Numba's prange loop (rosenbrock, mlp)"),
)
CHECK = "ok, or FAIL with the reason on the line below"
# Every row has these keys (None: not measured).
ROW_NUMBERS = [key for _, key, _, _ in COLUMNS if key != "kernel"] + ["value"]
ROW_KEYS = ROW_NUMBERS + ["kernel"]
BATCH_NUMBERS = ["batch", "batch_us", "batch_ns_per_op", "batch_ns_per_compiled_op", "batch_vs_single",
                 "batch_vs_handwritten"]
BATCH_KEYS = BATCH_NUMBERS + ["batch_kernel"]


def legend(columns, check: str = CHECK, width: int = 110) -> list[str]:
    """'title: meaning' of every column and of the check column, joined by '; ' into lines of about
    ``width`` characters (never breaking one entry across lines)."""
    lines = [""]
    for entry in [f"{title}: {meaning}" for title, _, _, meaning in columns] + [f"check: {check}"]:
        if lines[-1] and len(lines[-1]) + len(entry) + 2 > width:
            lines.append("")
        lines[-1] += ("; " if lines[-1] else "") + entry
    return lines


def targets_line(ran: list[str], batch: bool) -> str | None:
    """The ``targets:`` line for the timed rows named in ``ran`` (None when no target applies)."""
    texts = [text for row, text in TARGETS + (BATCH_TARGETS if batch else ()) if (row in ran if row else ran)]
    return "targets: " + "; ".join(texts) if texts else None


class Table:
    """Aligned plain-text table printed a row at a time: numbers right-aligned, '-' where not measured."""

    def __init__(self, names: list[str], columns=COLUMNS):
        self.columns = columns
        titles = ["workload"] + [title for title, _, _, _ in columns] + ["check"]
        self.widths = [max(len(titles[0]), *map(len, names))] + [max(len(t), 8) for t in titles[1:-1]] + [0]
        self.lines = [self._line(titles)]

    def _line(self, cells: list[str]) -> str:
        last = len(cells) - 1
        return "  ".join(c.ljust(w) if i in (0, last) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, self.widths))).rstrip()

    def add(self, row: dict) -> list[str]:
        """The new lines for ``row`` (its detail, if any, on an indented line below)."""
        cells = [row["name"]] + ["-" if row.get(key) is None else fmt.format(row[key])
                                 for _, key, fmt, _ in self.columns]
        new = [self._line(cells + ["ok" if row["ok"] else "FAIL"])]
        if row["detail"]:
            new.append(f"    {row['detail']}")
        self.lines += new
        return new


def versions() -> dict:
    return dict(scalargrad=sg.__version__, python=platform.python_version(), numpy=np.__version__,
                numba=numba.__version__, cpu_count=os.cpu_count(), machine=platform.machine(),
                platform=platform.platform())


def write_json(target, command: str, header: dict, rows: list[dict], higher_order=None) -> None:
    """The results in the documented schema (docs/bench-json.md), to a path or an open stream."""
    document = dict(schema=SCHEMA, command=command, header=header, rows=rows, higher_order=higher_order)
    if hasattr(target, "write"):
        json.dump(document, target, indent=1)
        target.write("\n")
        target.flush()
        return
    with open(target, "w") as f:
        json.dump(document, f, indent=1)


def check_writable(option: str, path: str | None) -> None:
    """ValueError naming ``option`` and ``path`` when the file could not be written after the run
    (missing or read-only directory, a directory); the file itself is not touched."""
    if not path:
        return
    parent = os.path.dirname(path) or "."
    if os.path.isdir(path):
        why = "is a directory"
    elif not os.path.isdir(parent):
        why = f"directory {parent} does not exist" if not os.path.exists(parent) else f"{parent} is not a directory"
    elif os.path.exists(path) and not os.access(path, os.W_OK):
        why = "the file is read-only"
    elif not os.path.exists(path) and not os.access(parent, os.W_OK):
        why = f"directory {parent} is not writable"
    else:
        return
    raise ValueError(f"{option} {path}: {why}")


def bench(args) -> int:
    """Usage checks (status 2, before anything runs), then the --compare or the scalargrad table. With
    ``--json -`` the JSON alone goes to stdout, everything else to stderr."""
    plot_skipped = args.plot and missing_package("matplotlib")
    try:
        check_writable("--json", None if args.json == "-" else args.json)
        check_writable("--plot", args.plot)
        sizes = parse_sizes(args.size)
        options = backend_options(args.backend)
        if args.batch and args.compare:
            raise ValueError("--batch applies to the scalargrad table; leave --compare out")
        if args.vector_math and not args.batch:
            raise ValueError("--vector-math applies to the batch rows: give --batch B")
        if args.vector_math and not vector_math.AVAILABLE:
            raise ValueError(f"--vector-math: {vector_math.UNAVAILABLE_REASON}")
        growth = bool(args.plot) and not plot_skipped and not sizes
        names = [n for item in args.workload or () for n in item.split(",") if n]
        rows = select_rows(names, args.quick, sizes, growth) if names else default_rows(args.quick, sizes, growth)
    except ValueError as error:
        print(f"scalargrad bench: {error}", file=sys.stderr)
        return 2
    stdout = sys.stdout
    args = argparse.Namespace(**dict(vars(args), json=stdout if args.json == "-" else args.json,
                                     plot=None if plot_skipped else args.plot))
    with contextlib.redirect_stdout(sys.stderr if args.json is stdout else stdout):
        if plot_skipped:
            print(f"--plot: skipped: {plot_skipped}")
        if args.compare:
            return compare(args, rows, options)
        return bench_table(args, rows, options, higher_order=not names and not sizes)


def bench_table(args, rows, options, higher_order: bool) -> int:
    """The scalargrad table (and with ``higher_order`` the higher-order rows); the exit status."""
    header = dict(versions(), backend=args.backend or "default", batch=args.batch, vector_math=args.vector_math,
                  repeat=args.repeat)
    header["kernel_load_ms"] = 1e3 * load_kernels(options)
    print(f"scalargrad {header['scalargrad']} bench: Python {header['python']}, NumPy {header['numpy']}, "
          f"Numba {header['numba']}, {header['cpu_count']} CPUs, {header['machine']}"
          + (f", backend {args.backend}" if args.backend else ""))
    calls = f"{args.repeat} calls" if args.repeat else f"at least {MIN_REPEATS} calls and {MIN_SECONDS} s"
    print(f"kernels loaded in {header['kernel_load_ms']:.0f} ms (first compiled calls); "
          f"fwd and vg are medians of {calls}")
    columns = COLUMNS + (BATCH_COLUMNS if args.batch else ())
    print("\n".join(legend(columns)))
    table = Table([name for name, _, _ in rows], columns)
    print(table.lines[0], flush=True)
    results = []
    progress = Progress(len(rows))
    try:
        for name, workload_name, size in rows:
            progress.update(name)
            workload = WORKLOADS[workload_name]
            row = dict(name=name, workload=workload_name, size=size, **dict.fromkeys(ROW_KEYS))
            if args.batch:
                row.update(dict.fromkeys(BATCH_KEYS))
            if workload.check:
                row.update(run_check(workload))
            else:
                fun, x0 = workload.make(size)
                row.update(measure(fun, x0, repeat=args.repeat, options=options))
                if args.batch:
                    progress.update(f"{name} --batch {args.batch}")
                    hand = (handwritten.batch_reference(workload_name, size)
                            if workload_name in handwritten.WORKLOADS else None)
                    got = measure_batch(fun, x0, args.batch, row, args.repeat, options, hand, args.vector_math)
                    problem = got.pop("batch_detail")
                    if problem:
                        row.update(ok=False, detail="; ".join(filter(None, [row["detail"], problem])))
                    row.update(got)
            results.append(row)
            progress.advance()
            progress.print("\n".join(table.add(row)))
    finally:
        progress.close()
    targets = targets_line([r["name"] for r in results if not WORKLOADS[r["workload"]].check], bool(args.batch))
    if targets:
        print(targets)
    higher = None
    if higher_order:
        print()
        higher = bench_higher.rows(args.quick)
        print("\n".join(bench_higher.lines(higher)), flush=True)
    if args.json:
        write_json(args.json, "bench", header, results, higher)
    if args.plot:
        plot([dict(r, library="scalargrad") for r in results], args.plot)
    return 0 if all(row["ok"] for row in results + (higher or [])) else 1


# --- compare against other libraries ------------------------------------------------------------

# (title, row key, format, meaning) of the --compare table, as COLUMNS.
COMPARE_COLUMNS = (
    ("ops", "ops", "{:d}", "scalargrad's traced instructions (the count for every library)"),
    ("c-ops", "compiled_ops", "{:d}", "scalargrad's instructions after dce/cse/fold_constants"),
    ("record ms", "record_ms", "{:.1f}", "building the graph once (tracing for scalargrad, jax, casadi)"),
    ("compile ms", "compile_ms", "{:.1f}", "one-time work after recording"),
    ("warm ms", "compile_warm_ms", "{:.1f}", "compiling again from the library's compilation cache"),
    ("fwd µs", "fwd_us", "{:.1f}", "value only"),
    ("vg µs", "vg_us", "{:.1f}", "value and gradient (eager libraries rebuild the graph each call)"),
    ("ratio", "ratio", "{:.2f}", "vg µs / fwd µs"),
    ("ns/op", "ns_per_op", "{:.1f}", "vg time per op"),
    ("ns/c-op", "ns_per_compiled_op", "{:.1f}", "vg time per c-op"),
    ("× sg", "vs_scalargrad", "{:.3g}", "vg time over scalargrad's"),
    ("kernel", "kernel", "{}", "scalargrad's row only: " + KERNEL),
)
COMPARE_CHECK = "ok (value and gradient match scalargrad's), over budget, or FAIL with the reason below"
COMPARE_KEYS = [key for _, key, _, _ in COMPARE_COLUMNS] + ["calls", "over_budget"]


def compare_lines(row: dict, widths: list[int]) -> list[str]:
    cells = [row["name"], row["library"]] + [
        "" if row["library"] != "scalargrad" and key in ("ops", "compiled_ops") else
        "-" if row.get(key) is None else fmt.format(row[key]) for _, key, fmt, _ in COMPARE_COLUMNS]
    check = "ok" if row["ok"] else ("over budget" if row.get("over_budget") else "FAIL")
    line = "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    lines = [f"{line}  {check}"]
    if row.get("detail"):
        lines.append(f"    {row['detail']}")
    return lines


def compare(args, rows, options) -> int:
    from . import handwritten, peers
    wanted = [p for item in args.compare for p in item.split(",") if p]
    unknown = [p for p in wanted if p not in peers.PEERS and ":" not in p]
    if unknown:
        print(f"scalargrad bench: unknown peer {unknown[0]!r}; choose from {', '.join(peers.PEERS)}", file=sys.stderr)
        return 2
    rows = [row for row in rows if not WORKLOADS[row[1]].check]
    header = dict(versions(), backend=args.backend or "default", budget_s=args.budget, repeat=args.repeat,
                  peers={})
    header["kernel_load_ms"] = 1e3 * load_kernels(options)
    print(f"scalargrad {header['scalargrad']} bench --compare: Python {header['python']}, NumPy {header['numpy']}, "
          f"Numba {header['numba']}, {header['cpu_count']} CPUs, {header['machine']}")
    available = []
    for peer in dict.fromkeys(wanted):
        why = missing_package(peers.module_of(peer))
        if why:
            print(f"{peer}: skipped: {why}")
        else:
            available.append(peer)
            header["peers"][peer] = peers.version(peer)
    if "numba" in available:
        print("numba: hand-written Numba code (scalargrad/bench/handwritten.py) for the "
              f"{' and '.join(handwritten.WORKLOADS)} workloads, the physical limit; not run on the others")
    if available:
        print("peers: " + ", ".join(f"{p} {header['peers'][p]}" for p in available) +
              f"; each checked against scalargrad (rtol {peers.RTOL:g}) before it is timed; "
              f"budget {args.budget:g} s per workload (child process; imports not counted)")
    print("\n".join(legend(COMPARE_COLUMNS, COMPARE_CHECK)))
    titles = ["workload", "library"] + [t for t, _, _, _ in COMPARE_COLUMNS]
    widths = [max(len("workload"), *(len(r[0]) for r in rows)), max(len("scalargrad"), *map(len, available or [""]))] \
        + [max(len(t), 8) for t in titles[2:]]
    print("  ".join(t.ljust(w) if i < 2 else t.rjust(w) for i, (t, w) in enumerate(zip(titles, widths))) + "  check",
          flush=True)
    results, status = [], 0
    progress = Progress(sum(1 + sum(peers.applies(peer, row[1]) for peer in available) for row in rows))
    try:
        for name, workload_name, size in rows:
            fun, x0 = WORKLOADS[workload_name].make(size)
            progress.update(f"{name}: scalargrad")
            own = measure(fun, x0, repeat=args.repeat, options=options, eager=False)
            value, grad = sg.value_and_grad(fun, **options)(x0)
            base = dict(name=name, workload=workload_name, size=size, ops=own["ops"],
                        compiled_ops=own["compiled_ops"])
            row = dict(base, library="scalargrad", record_ms=own["trace_ms"], compile_ms=own["compile_ms"],
                       compile_warm_ms=None, fwd_us=own["fwd_us"], vg_us=own["vg_us"], ratio=own["ratio"], ns_per_op=own["ns_per_op"],
                       ns_per_compiled_op=own["ns_per_compiled_op"], vs_scalargrad=1.0, kernel=own["kernel"], calls=None,
                       over_budget=False, ok=own["ok"], detail=own["detail"])
            status |= not row["ok"]
            results.append(row)
            progress.advance()
            progress.print("\n".join(compare_lines(row, widths)))
            for peer in filter(lambda peer: peers.applies(peer, workload_name), available):
                progress.update(f"{name}: {peer}")
                got = peers.run_peer(peer, workload_name, size, x0, value, grad, budget=args.budget)
                prow = dict(base, library=peer, **{k: None for k in COMPARE_KEYS if k not in base})
                prow.update({k: v for k, v in got.items() if k in COMPARE_KEYS or k in ("ok", "detail")})
                prow["over_budget"] = bool(got.get("over_budget"))
                if prow.get("vg_us") is not None:
                    prow["ns_per_op"] = 1e3 * prow["vg_us"] / row["ops"]
                    prow["ns_per_compiled_op"] = 1e3 * prow["vg_us"] / row["compiled_ops"]
                    prow["vs_scalargrad"] = prow["vg_us"] / row["vg_us"]
                status |= bool(got.get("mismatch"))
                results.append(prow)
                progress.advance()
                progress.print("\n".join(compare_lines(prow, widths)))
    finally:
        progress.close()
    if args.json:
        write_json(args.json, "compare", header, results)
    if args.plot:
        plot(results, args.plot)
    return status


# --- ops ------------------------------------------------------------------------------------------

def op_lines() -> list[str]:
    """The op table as aligned text: name, arity, forward and partials over operands a, b, c, the
    op's value y and the instruction's literal lit; each note on a line below its op."""
    names = dict(a="a", b="b", c="c", y="y", lit="lit")
    rows = [("op", "arity", "forward", "partials")]
    notes = {}
    for op in op_table.OPS:
        forward = "(argument value)" if op.name == "input" else op_table.substitute(op.forward, **names)
        partials = ", ".join(f"d/d{operand} = {op_table.substitute(p, **names)}"
                             for operand, p in zip("abc", op.partials))
        rows.append((op.name, str(op.arity) if op.arity else "leaf", forward, partials))
        notes[len(rows) - 1] = op.note
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, (name, arity, forward, partials) in enumerate(rows):
        line = f"{name:<{widths[0]}}  {arity:>{widths[1]}}  {forward:<{widths[2]}}  {partials}"
        lines.append(line.rstrip())
        if notes.get(i):
            lines.append(" " * (widths[0] + widths[1] + 4) + f"note: {notes[i]}")
    return lines


def list_ops(args) -> int:
    print("a, b, c: operands; y: the op's value; lit: the instruction's literal")
    print("\n".join(op_lines()))
    return 0


# --- main -----------------------------------------------------------------------------------------

def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def parse_sizes(text: str | None) -> tuple[int, ...] | None:
    """``--size 100,1000`` -> (100, 1000); ValueError naming the bad item."""
    if not text:
        return None
    sizes = []
    for item in text.split(","):
        if not item.strip().isdigit() or int(item) < 1:
            raise ValueError(f"--size expects positive integers separated by commas, got {item!r}")
        sizes.append(int(item))
    return tuple(dict.fromkeys(sizes))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalargrad", description="scalargrad: fast reverse-mode "
                                     "automatic differentiation of scalar Python code.")
    commands = parser.add_subparsers(dest="command", metavar="{bench,ops,info}")
    bench_parser = commands.add_parser(
        "bench", help="time and check the shipped workloads",
        description="Time tracing, compiling, the forward sweep, value_and_grad and eager backward on the "
                    "shipped workloads, and check every gradient against finite differences. "
                    "Exit status 1 only if a correctness check fails (or, with --compare, a peer disagrees with "
                    "scalargrad). A speed target printed MISSED is reported but leaves the exit status 0: timings "
                    "on a shared machine are noisy. Rows and options needing a package that is not installed "
                    "(the sparse Hessian: SciPy; --plot: matplotlib; --compare peers) are skipped with a note. "
                    "--json writes the layout documented in docs/bench-json.md (schema 2).")
    bench_parser.add_argument("--quick", action="store_true", help="smaller sizes, for CI")
    bench_parser.add_argument("--workload", action="append", metavar="NAME",
                              help="rows to run: a workload (" + ", ".join(WORKLOADS) + "), a row name "
                              "such as rosenbrock-1000, or name-SIZE; repeatable or comma-separated")
    bench_parser.add_argument("--repeat", type=positive_int, metavar="N",
                              help=f"calls per timing (default: >= {MIN_REPEATS} and >= {MIN_SECONDS} s)")
    bench_parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (- for stdout; the table then goes to stderr)")
    bench_parser.add_argument("--compare", action="append", metavar="PEERS",
                              help="also run the workloads on other AD libraries that are installed: a "
                              "comma-separated list of micrograd, autograd, torch, jax, casadi; numba is "
                              "hand-written Numba code (rosenbrock and mlp), the physical limit")
    bench_parser.add_argument("--budget", type=float, default=10.0, metavar="SECONDS",
                              help="with --compare: seconds per peer and workload before it is reported "
                              "over budget (default 10)")
    bench_parser.add_argument("--size", metavar="N[,N...]",
                              help="sizes for every timed workload instead of its own (rosenbrock: dimensions, "
                              "mlp: data points, random: instructions), e.g. --size 1000,10000")
    bench_parser.add_argument("--batch", type=positive_int, metavar="B",
                              help="also time sg.vmap(sg.value_and_grad(f)) on B points per row: ns per op per "
                              "point and its ratio to the single-point ns/op")
    bench_parser.add_argument("--vector-math", action="store_true",
                              help="with --batch: sg.vmap(..., vector_math=True), whose batch interpreter calls "
                              "libm functions 4 points at a time through glibc's libmvec (Linux, AVX2; results "
                              "within a few ulp of the single-point ones instead of identical)")
    bench_parser.add_argument("--backend", choices=BACKENDS,
                              help="the compiled backend passed to value_and_grad and jit (default: theirs)")
    bench_parser.add_argument("--plot", metavar="PATH",
                              help="write a figure (needs matplotlib): ns/op per library and row, and time against "
                              "tape size; without --size each workload runs at its growth sizes "
                              "(rosenbrock 100-10000, mlp 10-100, random 1000-100000)")
    bench_parser.set_defaults(run=bench)
    ops_parser = commands.add_parser("ops", help="list the op table", description="List every op: arity, "
                                     "forward expression, partial derivatives and notes.")
    ops_parser.set_defaults(run=list_ops)
    info_parser = commands.add_parser("info", help="print versions, threading layer, caches and GPU",
                                      description="Print the versions of Python, NumPy, Numba and llvmlite, "
                                      "the Numba threading layer, where scalargrad caches its compiled kernels "
                                      "and generated per-tape code and how much space each takes, and whether a "
                                      "CUDA GPU is usable.")
    info_parser.set_defaults(run=info.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader went away (scalargrad bench --json - | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 1
