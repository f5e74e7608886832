"""The scalargrad table of ``scalargrad bench``: its columns and their legend, the speed targets, the
row-at-a-time ``Table`` (output.py), and ``bench_table``, which measures every row (measure.py), prints
it, adds the higher-order rows (higher.py) and the default-path table (default_path.py), and writes
the JSON and plot. A missed speed target is reported, never failed; the exit status is 1 only when a
row's check fails.
"""
from __future__ import annotations

from . import default_path, handwritten, higher as bench_higher
from .measure import EAGER_MAX_OPS, load_kernels, measure, measure_batch, run_check
from .output import Progress, Table, legend, plot, versions, write_json
from .timing import MIN_REPEATS, MIN_SECONDS
from .workloads import WORKLOADS

# (the timed row a speed target is about, None: any; text): the targets: line names those whose row ran.
TARGETS = (("random-100000", "≤15 ns/op vg on random-100000"), (None, "ratio ≤ 3"))
BATCH_TARGETS = (("random-100000", "with --batch 1024, B/single ≤ 0.25 on random-100000"),
                 ("rosenbrock-100", "B/hand ≤ 2 on rosenbrock-100"))

KERNEL = ("what ran the timed calls: interp (the tape interpreter), vector (its vector form of a loop-structured "
          "tape) or codegen (the tape's generated code)")
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
    ("B kernel", "batch_kernel", "{}", "what ran the batch"),
    ("B/hand", "batch_vs_handwritten", "{:.2f}", "batch time over hand-written Numba's prange loop (rosenbrock, mlp)"),
)
CHECK = "ok, or FAIL with the reason on the line below"
# Every row has these keys (None: not measured).
ROW_NUMBERS = [key for _, key, _, _ in COLUMNS if key != "kernel"] + ["value"]
ROW_KEYS = ROW_NUMBERS + ["kernel"]
BATCH_NUMBERS = ["batch", "batch_us", "batch_ns_per_op", "batch_ns_per_compiled_op", "batch_vs_single",
                 "batch_vs_handwritten"]
BATCH_KEYS = BATCH_NUMBERS + ["batch_kernel"]


def targets_line(ran: list[str], batch: bool) -> str | None:
    """The ``targets:`` line for the timed rows named in ``ran`` (None when no target applies)."""
    texts = [text for row, text in TARGETS + (BATCH_TARGETS if batch else ()) if (row in ran if row else ran)]
    return "targets: " + "; ".join(texts) if texts else None


def bench_table(args, rows, options, higher_order: bool) -> int:
    """The scalargrad table (and with ``higher_order`` the higher-order rows and, without --backend,
    the default-path table); the exit status."""
    header = dict(versions(), backend=args.backend or "default", batch=args.batch, repeat=args.repeat)
    header["kernel_load_ms"] = 1e3 * load_kernels(options)
    print(f"scalargrad {header['scalargrad']} bench: Python {header['python']}, NumPy {header['numpy']}, "
          f"Numba {header['numba']}, {header['cpu_count']} CPUs, {header['machine']}"
          + (f", backend {args.backend}" if args.backend else ""))
    calls = f"{args.repeat} calls" if args.repeat else f"at least {MIN_REPEATS} calls and {MIN_SECONDS} s"
    print(f"kernels loaded in {header['kernel_load_ms']:.0f} ms (first compiled calls); "
          f"fwd and vg are medians of {calls}")
    columns = COLUMNS + (BATCH_COLUMNS if args.batch else ())
    print("\n".join(legend(columns, CHECK)))
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
                    got = measure_batch(fun, x0, args.batch, row, args.repeat, options, hand)
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
    fresh = None  # the default-path table: fresh processes
    if higher_order and not args.backend:
        print()
        run = default_path.settings(args.quick, args.default_path_seconds)
        fresh = default_path.document(run, default_path.run_rows(run))
    if args.json:
        write_json(args.json, "bench", header, results, higher, fresh)
    if args.plot:
        plot([dict(r, library="scalargrad") for r in results], args.plot)
    return 0 if all(row["ok"] for row in results + (higher or []) + (fresh["rows"] if fresh else [])) else 1
