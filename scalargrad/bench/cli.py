"""Command line: ``scalargrad bench`` times the shipped workloads (``--compare`` against other AD
libraries), ``scalargrad ops`` lists the op table, ``scalargrad info`` prints the environment.

``main(argv)`` returns the exit status: 0, 1 when a bench correctness check fails (or a peer
disagrees with scalargrad; a missed speed target does not count), 2 for usage errors, found before
anything runs (argparse exits with 2 itself for bad options; no command prints help and returns 2).
Rows and options needing a package not installed are skipped with a one-line note. Op counts are
reported twice, traced and compiled (after the passes), so that ns/op is honest about what the
kernels run. ``--json`` follows docs/bench-json.md; ``--json -`` puts it alone on stdout.

This module holds the parser, the choice of rows, the usage checks and the dispatch; the tables are
table.py (scalargrad's) and compare.py (--compare), the measuring measure.py over timing.py's clocks.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys

from . import info
from ..core import ops as op_table
from ..jit.tier import BACKENDS
from .compare import compare
from .default_path import FIRST_WINDOW_S, QUICK_FIRST_WINDOW_S, TIER_UP_WAIT_S
from .measure import backend_options
from .output import check_writable, missing_package
from .table import bench_table
from .timing import MIN_REPEATS, MIN_SECONDS
from .workloads import WORKLOADS


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


# --- bench ----------------------------------------------------------------------------------------

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
        if args.default_path_seconds is not None and (args.compare or args.workload or sizes or args.backend):
            raise ValueError("--default-path-seconds applies to the default-path table, which a plain run prints; "
                             "leave --workload, --size, --backend and --compare out")
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


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text}")
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
                    "A default run (no --workload, --size or --backend) ends with the default-path table: per "
                    "workload, a fresh process with the default backend and an empty generated-code cache, its first "
                    "call, its calls in the first 1.5 s and after the tier-up to generated code, each over hand-written "
                    "Numba. --json writes the layout documented in docs/bench-json.md (schema 4).")
    bench_parser.add_argument("--quick", action="store_true", help="smaller sizes, for CI")
    bench_parser.add_argument("--workload", action="append", metavar="NAME",
                              help="rows to run: a workload (" + ", ".join(WORKLOADS) + "), a row name "
                              "such as rosenbrock-1000, or name-SIZE; repeatable or comma-separated")
    bench_parser.add_argument("--repeat", type=positive_int, metavar="N",
                              help=f"calls per timing (default: >= {MIN_REPEATS} and >= {MIN_SECONDS} s)")
    bench_parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (- for stdout; the table then goes to stderr)")
    bench_parser.add_argument("--compare", action="append", metavar="PEERS",
                              help="also run the workloads on other AD libraries that are installed: a "
                              "comma-separated list of micrograd, autograd, torch, jax, casadi; jax-jnp is the "
                              "vectorised jax.numpy rewrite of rosenbrock and mlp, numba hand-written Numba "
                              "code for them, the physical limit")
    bench_parser.add_argument("--budget", type=float, default=10.0, metavar="SECONDS",
                              help="with --compare: seconds per peer and workload before it is reported "
                              "over budget (default 10)")
    bench_parser.add_argument("--size", metavar="N[,N...]",
                              help="sizes for every timed workload instead of its own (rosenbrock: dimensions, "
                              "mlp: data points, random: instructions), e.g. --size 1000,10000")
    bench_parser.add_argument("--batch", type=positive_int, metavar="B",
                              help="also time sg.vmap(sg.value_and_grad(f)) on B points per row: ns per op per "
                              "point and its ratio to the single-point ns/op")
    bench_parser.add_argument("--backend", choices=BACKENDS,
                              help="the compiled backend passed to value_and_grad and jit (default: theirs)")
    bench_parser.add_argument("--default-path-seconds", type=non_negative_float, metavar="S",
                              help="default-path table: how long each row keeps calling, from its first call, for "
                              "the default backend to switch to generated code before it times the calls after "
                              f"the tier-up (default {TIER_UP_WAIT_S:g}; with --quick 0, and its first window is "
                              f"{QUICK_FIRST_WINDOW_S:g} s instead of {FIRST_WINDOW_S:g}); 0 skips the after-tier-up window")
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
