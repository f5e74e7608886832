"""``scalargrad bench --compare``: the workloads on scalargrad and on other AD libraries (peers.py, each
in a child process with a time budget), one table with a row per library and workload, times
relative to scalargrad's.
"""
from __future__ import annotations

import sys

import scalargrad as sg

from . import handwritten, peers
from .measure import load_kernels, measure
from .output import Progress, legend, missing_package, plot, versions, write_json
from .table import KERNEL
from .workloads import WORKLOADS

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
    """The line of one --compare row (peers leave scalargrad's op counts blank), its detail below."""
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
    """The --compare table: each timed row on scalargrad, then on every installed peer that runs it
    (each checked against scalargrad first); the exit status: 1 when scalargrad's own check fails or
    a peer disagrees with it (a peer over budget or crashing does not count), 2 for an unknown peer."""
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
