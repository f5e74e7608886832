"""Command line: ``scalargrad bench`` times the shipped workloads (``--compare`` against other AD
libraries), ``scalargrad ops`` lists the op table, ``scalargrad info`` prints the environment.

``main(argv)`` returns the exit status: 0, 1 when a bench correctness check fails, 2 for usage
errors (argparse exits with 2 itself for bad options; no command prints help and returns 2).
"""
from __future__ import annotations

import argparse
import importlib.util
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

from . import ops as op_table
from .workloads import WORKLOADS, finite_difference_check

FD_TOLERANCE = 1e-6        # relative; correct gradients give 2e-8 or better on every workload
EAGER_TOLERANCE = 1e-9     # relative; eager backward and value_and_grad run the same tape
EAGER_MAX_OPS = 200_000    # larger rows skip the (slow, memory-hungry) eager measurement
MIN_SECONDS = 0.2          # time each per-call measurement for at least this long ...
MIN_REPEATS = 5            # ... and at least this many calls
TARGETS = "targets: ≤15 ns/op vg on random-100000; ratio ≤ 3"


# --- measuring ----------------------------------------------------------------------------------

def median_seconds(call, repeat: int | None = None) -> float:
    """Median time of one ``call()``: ``repeat`` calls, or as many as fill MIN_SECONDS (>= MIN_REPEATS)."""
    times = []
    deadline = time.perf_counter() + MIN_SECONDS
    while len(times) < (repeat or MIN_REPEATS) or (not repeat and time.perf_counter() < deadline):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed(call):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    result = call()
    return result, time.perf_counter() - t0


def eager_seconds(fun, x0) -> tuple[float, np.ndarray]:
    """(best of two) time to run ``fun`` on eager Variables and backward(); and the gradient."""
    def run():
        leaves = np.array([sg.Variable(float(v)) for v in x0.ravel()], dtype=object).reshape(x0.shape)
        fun(leaves).backward()
        # An input the output does not depend on keeps grad None (as in PyTorch).
        return np.array([v.grad or 0.0 for v in leaves.ravel()], dtype=np.float64).reshape(x0.shape)

    (grad, first), (_, second) = timed(run), timed(run)
    return min(first, second), grad


def measure(fun, x0, repeat: int | None = None) -> dict:
    """Every bench number for one workload row, plus its correctness verdict."""
    # Best of two traces: a garbage collection during one would otherwise show up as compile time.
    tape, trace_s = timed(lambda: sg.trace(fun, x0))
    trace_s = min(trace_s, timed(lambda: sg.trace(fun, x0))[1])
    ops = len(tape)
    value_and_grad = sg.value_and_grad(fun)
    (value, grad), first_s = timed(lambda: value_and_grad(x0))
    forward = sg.jit(fun)
    forward(x0)
    fwd_s = median_seconds(lambda: forward(x0), repeat)
    vg_s = median_seconds(lambda: value_and_grad(x0), repeat)
    row = dict(ops=ops, trace_ms=1e3 * trace_s, compile_ms=1e3 * (first_s - trace_s), fwd_us=1e6 * fwd_s,
               vg_us=1e6 * vg_s, ratio=vg_s / fwd_s, ns_per_op=1e9 * vg_s / ops, eager_us_per_op=None,
               value=value, fd_err=None)
    problems = []
    if ops <= EAGER_MAX_OPS:
        eager_s, eager_grad = eager_seconds(fun, x0)
        row["eager_us_per_op"] = 1e6 * eager_s / ops
        mismatch = float(np.max(np.abs(eager_grad - grad) / np.maximum(1.0, np.abs(grad)), initial=0.0))
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


def run_check(workload) -> dict:
    """The verdict of a check workload (one that is run, not timed)."""
    failures = workload.check()
    return dict(ok=not failures, detail="; ".join(failures))


# --- rows -----------------------------------------------------------------------------------------

def default_rows(quick: bool) -> list[tuple[str, str, int | None]]:
    """(row name, workload name, size) of every bench row, check rows first."""
    rows = []
    for w in sorted(WORKLOADS.values(), key=lambda w: w.check is None):
        sizes = (w.quick_sizes if quick else w.sizes) or (None,)
        rows += [(w.name if size is None else f"{w.name}-{size}", w.name, size) for size in sizes]
    return rows


def select_rows(names: list[str], quick: bool) -> list[tuple[str, str, int | None]]:
    """Rows chosen by ``--workload``: a workload name (all its rows), a row name, or ``name-SIZE``."""
    rows = default_rows(quick)
    chosen = []
    for name in names:
        matches = [row for row in rows if name in (row[0], row[1])]
        if not matches:
            base, _, size = name.rpartition("-")
            if base not in WORKLOADS or not size.isdigit() or WORKLOADS[base].check:
                raise ValueError(f"unknown workload {name!r}; choose from {', '.join(r[0] for r in rows)}, "
                                 "a workload name, or name-SIZE")
            matches = [(name, base, int(size))]
        chosen += [row for row in matches if row not in chosen]
    return chosen


# --- output ---------------------------------------------------------------------------------------

# (title, row key, format); the check row leaves the numbers out.
COLUMNS = (
    ("ops", "ops", "{:d}"), ("trace ms", "trace_ms", "{:.1f}"), ("compile ms", "compile_ms", "{:.1f}"),
    ("fwd µs", "fwd_us", "{:.1f}"), ("vg µs", "vg_us", "{:.1f}"), ("ratio", "ratio", "{:.2f}"),
    ("ns/op", "ns_per_op", "{:.1f}"), ("eager µs/op", "eager_us_per_op", "{:.2f}"),
    ("fd err", "fd_err", "{:.1e}"),
)
ROW_NUMBERS = [key for _, key, _ in COLUMNS] + ["value"]  # every row has these keys (None: not measured)


class Table:
    """Aligned plain-text table printed a row at a time: numbers right-aligned, '-' where not measured."""

    def __init__(self, names: list[str]):
        titles = ["workload"] + [title for title, _, _ in COLUMNS] + ["check"]
        self.widths = [max(len(titles[0]), *map(len, names))] + [max(len(t), 8) for t in titles[1:-1]] + [0]
        self.lines = [self._line(titles)]

    def _line(self, cells: list[str]) -> str:
        last = len(cells) - 1
        return "  ".join(c.ljust(w) if i in (0, last) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, self.widths))).rstrip()

    def add(self, row: dict) -> list[str]:
        """The new lines for ``row`` (its detail, if any, on an indented line below)."""
        cells = [row["name"]] + ["-" if row[key] is None else fmt.format(row[key]) for _, key, fmt in COLUMNS]
        new = [self._line(cells + ["ok" if row["ok"] else "FAIL"])]
        if row["detail"]:
            new.append(f"    {row['detail']}")
        self.lines += new
        return new


def versions() -> dict:
    return dict(scalargrad=sg.__version__, python=platform.python_version(), numpy=np.__version__,
                numba=numba.__version__, cpu_count=os.cpu_count(), machine=platform.machine(),
                platform=platform.platform())


def bench(args) -> int:
    try:
        rows = select_rows([n for item in args.workload for n in item.split(",") if n], args.quick) \
            if args.workload else default_rows(args.quick)
    except ValueError as error:
        print(f"scalargrad bench: {error}", file=sys.stderr)
        return 2
    if args.compare:
        return compare(args, rows)
    header = versions()
    _, load_s = timed(lambda: (sg.value_and_grad(lambda x: x * x)(1.0), sg.jit(lambda x: x * x)(1.0)))
    header["kernel_load_ms"] = 1e3 * load_s
    print(f"scalargrad {header['scalargrad']} bench: Python {header['python']}, NumPy {header['numpy']}, "
          f"Numba {header['numba']}, {header['cpu_count']} CPUs, {header['machine']}")
    calls = f"{args.repeat} calls" if args.repeat else f"at least {MIN_REPEATS} calls and {MIN_SECONDS} s"
    print(f"kernels loaded in {header['kernel_load_ms']:.0f} ms (first compiled calls); "
          f"fwd and vg are medians of {calls}")
    table = Table([name for name, _, _ in rows])
    print(table.lines[0], flush=True)
    results = []
    for name, workload_name, size in rows:
        workload = WORKLOADS[workload_name]
        row = dict(name=name, workload=workload_name, size=size, **dict.fromkeys(ROW_NUMBERS))
        if workload.check:
            row.update(run_check(workload))
        else:
            row.update(measure(*workload.make(size), repeat=args.repeat))
        results.append(row)
        print("\n".join(table.add(row)), flush=True)
    print(TARGETS)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(header=header, rows=results), f, indent=1)
    return 0 if all(row["ok"] for row in results) else 1


# --- compare against other libraries ------------------------------------------------------------

# (title, row key, format) of the --compare table; "× sg" is the peer's vg time over scalargrad's.
COMPARE_COLUMNS = (
    ("record ms", "record_ms", "{:.1f}"), ("compile ms", "compile_ms", "{:.1f}"), ("fwd µs", "fwd_us", "{:.1f}"),
    ("vg µs", "vg_us", "{:.1f}"), ("ratio", "ratio", "{:.2f}"), ("ns/op", "ns_per_op", "{:.1f}"),
    ("× sg", "vs_scalargrad", "{:.3g}"),
)


def compare_lines(row: dict, widths: list[int]) -> list[str]:
    cells = [row["name"], row["library"]] + [
        "-" if row.get(key) is None else fmt.format(row[key]) for _, key, fmt in COMPARE_COLUMNS]
    check = "ok" if row["ok"] else ("over budget" if row.get("over_budget") else "FAIL")
    line = "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    lines = [f"{line}  {check}"]
    if row.get("detail") and not row.get("over_budget"):
        lines.append(f"    {row['detail']}")
    return lines


def progress(text: str) -> None:
    """A one-line progress note on stderr, only when stderr is a terminal (the table stays clean)."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + text if text else "\r\033[K")
        sys.stderr.flush()


def compare(args, rows) -> int:
    from . import peers
    wanted = [p for item in args.compare for p in item.split(",") if p]
    unknown = [p for p in wanted if p not in peers.PEERS]
    if unknown:
        print(f"scalargrad bench: unknown peer {unknown[0]!r}; choose from {', '.join(peers.PEERS)}", file=sys.stderr)
        return 2
    rows = [row for row in rows if not WORKLOADS[row[1]].check]
    header = versions()
    print(f"scalargrad {header['scalargrad']} bench --compare: Python {header['python']}, NumPy {header['numpy']}, "
          f"Numba {header['numba']}, {header['cpu_count']} CPUs, {header['machine']}")
    available = []
    for peer in dict.fromkeys(wanted):
        why = peers.missing(peer)
        if why:
            print(f"note: {peer} skipped: {why}")
        else:
            available.append(peer)
            header[peer] = peers.version(peer)
    if available:
        print("peers: " + ", ".join(f"{p} {header[p]}" for p in available) +
              f"; each checked against scalargrad (rtol {peers.RTOL:g}) before it is timed; "
              f"budget {args.budget:g} s per workload (child process; imports not counted)")
    print("ns/op is vg time over scalargrad's instruction count; × sg is vg time over scalargrad's vg time")
    titles = ["workload", "library"] + [t for t, _, _ in COMPARE_COLUMNS]
    widths = [max(len("workload"), *(len(r[0]) for r in rows)), max(len("scalargrad"), *map(len, available or [""]))] \
        + [max(len(t), 8) for t in titles[2:]]
    print("  ".join(t.ljust(w) if i < 2 else t.rjust(w) for i, (t, w) in enumerate(zip(titles, widths))) + "  check",
          flush=True)
    results, status = [], 0
    for name, workload_name, size in rows:
        fun, x0 = WORKLOADS[workload_name].make(size)
        progress(f"{name}: scalargrad")
        own = measure(fun, x0, repeat=args.repeat)
        value, grad = sg.value_and_grad(fun)(x0)
        ops = own["ops"]
        base = dict(name=name, workload=workload_name, size=size)
        row = dict(base, library="scalargrad", record_ms=own["trace_ms"], compile_ms=own["compile_ms"],
                   fwd_us=own["fwd_us"], vg_us=own["vg_us"], ratio=own["ratio"], ns_per_op=own["ns_per_op"],
                   vs_scalargrad=1.0, ok=own["ok"], detail=own["detail"], ops=ops)
        status |= not row["ok"]
        progress("")
        print("\n".join(compare_lines(row, widths)), flush=True)
        results.append(row)
        for peer in available:
            progress(f"{name}: {peer}")
            got = peers.run_peer(peer, workload_name, size, x0, value, grad, budget=args.budget)
            prow = dict(base, library=peer, ops=ops, **{k: None for _, k, _ in COMPARE_COLUMNS})
            prow.update(got)
            if prow.get("vg_us") is not None:
                prow["ns_per_op"] = 1e3 * prow["vg_us"] / ops
                prow["vs_scalargrad"] = prow["vg_us"] / row["vg_us"]
            status |= bool(prow.get("mismatch"))
            progress("")
            print("\n".join(compare_lines(prow, widths)), flush=True)
            results.append(prow)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(header=header, rows=results), f, indent=1)
    if args.plot:
        plot(results, args.plot)
    return status


def plot(results: list[dict], path: str) -> None:
    """ns/op per library per workload row, log axis (needs matplotlib: pip install scalargrad[plot])."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: --plot needs matplotlib (pip install matplotlib); no plot written", file=sys.stderr)
        return
    names = list(dict.fromkeys(r["name"] for r in results))
    libraries = list(dict.fromkeys(r["library"] for r in results))
    fig, ax = plt.subplots(figsize=(1.5 + 1.4 * len(names), 4))
    width = 0.8 / len(libraries)
    for j, library in enumerate(libraries):
        xs, ys = [], []
        for i, name in enumerate(names):
            hit = [r for r in results if r["name"] == name and r["library"] == library and r.get("ns_per_op")]
            if hit:
                xs.append(i + (j - (len(libraries) - 1) / 2) * width)
                ys.append(hit[0]["ns_per_op"])
        ax.bar(xs, ys, width, label=library)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("ns per scalargrad instruction (value and gradient)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"plot written to {path}")


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


# --- info -----------------------------------------------------------------------------------------

THREADING_LAYERS = (("tbb", "tbbpool"), ("omp", "omppool"), ("workqueue", "workqueue"))


def threading_layer() -> str:
    """The Numba threading layer in use, or (before any parallel kernel ran) the configured choice and
    the layers that load here; never raises."""
    try:
        return numba.threading_layer()
    except Exception:  # ValueError until a parallel kernel has run
        pass
    available = []
    for name, module in THREADING_LAYERS:
        try:
            __import__(f"numba.np.ufunc.{module}")
            available.append(name)
        except Exception:  # a missing shared library (libtbb, libgomp) raises ImportError or OSError
            pass
    return (f"not started yet (NUMBA_THREADING_LAYER={numba.config.THREADING_LAYER}; "
            f"available: {', '.join(available) or 'none'})")


def kernel_cache_dir() -> str:
    """Where Numba caches scalargrad's compiled kernels: NUMBA_CACHE_DIR if set, else the
    ``__pycache__`` next to ``scalargrad/jit/_interp.py``."""
    if numba.config.CACHE_DIR:
        return numba.config.CACHE_DIR
    interp = importlib.util.find_spec("scalargrad.jit._interp").origin
    return os.path.join(os.path.dirname(os.path.abspath(interp)), "__pycache__")


def cache_size(path: str) -> tuple[int, int]:
    """(bytes, files) of Numba cache files (.nbi index, .nbc code) under ``path``."""
    total = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            if name.endswith((".nbi", ".nbc")):
                try:
                    total += os.path.getsize(os.path.join(root, name))
                    files += 1
                except OSError:
                    pass
    return total, files


def cuda_status() -> str:
    """Whether Numba can use a CUDA GPU here; never raises."""
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from numba import cuda
            if not cuda.is_available():
                return "no (numba.cuda.is_available() is False)"
            name = cuda.get_current_device().name
            return f"yes ({name.decode() if isinstance(name, bytes) else name})"
    except Exception as error:  # no driver, no numba-cuda, broken install: report, never crash
        return f"no ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"


def info_lines() -> list[str]:
    try:
        import llvmlite
        llvmlite_version = llvmlite.__version__
    except Exception:
        llvmlite_version = "not importable"
    cache = kernel_cache_dir()
    size, files = cache_size(cache)
    exists = "" if os.path.isdir(cache) else " (does not exist yet)"
    rows = [
        ("scalargrad", f"{sg.__version__} ({os.path.dirname(os.path.abspath(sg.__file__))})"),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("numpy", np.__version__),
        ("numba", numba.__version__),
        ("llvmlite", llvmlite_version),
        ("platform", f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs"),
        ("threading layer", threading_layer()),
        ("kernel cache", cache + exists),
        ("cache size", f"{size} bytes ({size / 2**20:.1f} MiB) in {files} files"),
        ("cuda gpu", cuda_status()),
    ]
    width = max(len(name) for name, _ in rows)
    return [f"{name + ':':<{width + 1}} {value}" for name, value in rows]


def info(args) -> int:
    print("\n".join(info_lines()))
    return 0


# --- main -----------------------------------------------------------------------------------------

def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalargrad", description="scalargrad: fast reverse-mode "
                                     "automatic differentiation of scalar Python code.")
    commands = parser.add_subparsers(dest="command", metavar="{bench,ops,info}")
    bench_parser = commands.add_parser(
        "bench", help="time and check the shipped workloads",
        description="Time tracing, compiling, the forward sweep, value_and_grad and eager backward on the "
                    "shipped workloads, and check every gradient against finite differences. "
                    "Exit status 1 if a check fails.")
    bench_parser.add_argument("--quick", action="store_true", help="smaller sizes, for CI")
    bench_parser.add_argument("--workload", action="append", metavar="NAME",
                              help="rows to run: a workload (" + ", ".join(WORKLOADS) + "), a row name "
                              "such as rosenbrock-1000, or name-SIZE; repeatable or comma-separated")
    bench_parser.add_argument("--repeat", type=positive_int, metavar="N",
                              help=f"calls per timing (default: >= {MIN_REPEATS} and >= {MIN_SECONDS} s)")
    bench_parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench_parser.add_argument("--compare", action="append", metavar="PEERS",
                              help="also run the workloads on other AD libraries that are installed: a "
                              "comma-separated list of micrograd, autograd, torch, jax, casadi")
    bench_parser.add_argument("--budget", type=float, default=10.0, metavar="SECONDS",
                              help="with --compare: seconds per peer and workload before it is reported "
                              "over budget (default 10)")
    bench_parser.add_argument("--plot", metavar="PATH", help="with --compare: bar chart of ns/op (matplotlib)")
    bench_parser.set_defaults(run=bench)
    ops_parser = commands.add_parser("ops", help="list the op table", description="List every op: arity, "
                                     "forward expression, partial derivatives and notes.")
    ops_parser.set_defaults(run=list_ops)
    info_parser = commands.add_parser("info", help="print versions, threading layer, kernel cache and GPU",
                                      description="Print the versions of Python, NumPy, Numba and llvmlite, "
                                      "the Numba threading layer, where scalargrad's compiled kernels are "
                                      "cached and how much space they take, and whether a CUDA GPU is usable.")
    info_parser.set_defaults(run=info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.run(args)
