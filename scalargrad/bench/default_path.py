"""The default-path table of ``scalargrad bench``: what a user gets from a fresh process with the
default backend (``sg.value_and_grad(f)``, no backend argument) and an empty generated-code cache:
the first call, the calls of the first seconds, and the calls after the tier-up to generated code,
each over hand-written Numba timed in the same process. Each row runs ``first_calls.py`` in a child
process whose ``SCALARGRAD_CACHE_DIR`` is a new empty directory; the interpreter's kernels load from
Numba's disk cache, warmed by this process first. Targets are reported (MISSED), never failed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass

import numpy as np

import scalargrad as sg

from ..jit import vector
from ..jit.codegen import points
from ..jit.tier import wait_for_compiles
from .handwritten import batch_reference, reference
from .output import Progress, Table, legend
from .workloads import WORKLOADS

FIRST_WINDOW_S = 1.5        # the first window: every call in this long from the first call's start
QUICK_FIRST_WINDOW_S = 0.5
TIER_UP_WAIT_S = 30.0       # the longest a row calls, from its first call, waiting for generated code
# (the MLP's tier-up came at 12-22 s on the 2-core development machine)
AFTER_WINDOW_S = 1.0        # the window after tier-up (interleaved with hand-written Numba)
CHILD_SLACK_S = 300.0       # a child running this much longer than its windows is stopped (a hang)


@dataclass(frozen=True)
class Row:
    """A row: a workload at a size (None: its default), optionally under ``sg.vmap`` over ``batch``
    points; the targets (at most, times hand-written Numba) of its two windows, None for none."""

    name: str
    workload: str
    size: int | None
    batch: int | None = None
    first_window_target: float | None = None
    after_tier_up_target: float | None = None


# The targets (issue 21): the first window, and after tier-up; rosenbrock-20 is the cost of a
# call from Python, so its target is on the calls after tier-up.
ROWS = (
    Row("rosenbrock-10000", "rosenbrock", 10_000, None, 3.0, 2.0),
    Row("mlp", "mlp", None, None, 3.0, 1.5),
    Row("rosenbrock-100 vmap 1024", "rosenbrock", 100, 1024, 3.0, 2.0),
    Row("rosenbrock-20", "rosenbrock", 20, None, None, 2.5),
)


@dataclass(frozen=True)
class Settings:
    """The windows of a run, in seconds: the first window, the wait for tier-up (0: no after-tier-up
    window) and the window after it."""

    first_window_s: float
    tier_up_wait_s: float
    after_window_s: float = AFTER_WINDOW_S


def settings(quick: bool, wait: float | None) -> Settings:
    """The windows of ``bench`` (``--quick``: a short first window and, unless ``wait`` is given, no
    after-tier-up window); ``wait``: --default-path-seconds."""
    if wait is None:
        wait = 0.0 if quick else TIER_UP_WAIT_S
    return Settings(QUICK_FIRST_WINDOW_S if quick else FIRST_WINDOW_S, wait)


# --- a row in a child process ---------------------------------------------------------------------

def child_command(row: Row, run: Settings) -> list[str]:
    """The child's command line: this Python running first_calls.py for the row."""
    command = [sys.executable, "-m", "scalargrad.bench.first_calls", "--workload", row.workload,
               "--window", str(run.first_window_s), "--wait", str(run.tier_up_wait_s), "--after", str(run.after_window_s)]
    if row.size is not None:
        command += ["--size", str(row.size)]
    if row.batch is not None:
        command += ["--batch", str(row.batch)]
    return command


def run_child(row: Row, run: Settings) -> dict:
    """first_calls.py's numbers for the row, measured in a fresh process whose generated-code cache
    is a new empty directory (removed afterwards); a failed or hung child gives ok False and why."""
    limit = run.first_window_s + run.tier_up_wait_s + run.after_window_s + CHILD_SLACK_S
    with tempfile.TemporaryDirectory(prefix="scalargrad-default-path-") as cache:
        env = dict(os.environ, SCALARGRAD_CACHE_DIR=cache)
        try:
            done = subprocess.run(child_command(row, run), env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return dict(ok=False, detail=f"the child process was still running after {limit:.0f} s; stopped")
    try:
        got = json.loads(done.stdout.strip().splitlines()[-1])
        if done.returncode != 0 or not isinstance(got, dict):
            raise ValueError
    except (IndexError, ValueError):  # json.JSONDecodeError is a ValueError
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(ok=False, detail=f"the child process failed (exit code {done.returncode}): {last}")
    notes = [got["detail"]] if got["detail"] else []
    if got.get("cache_files_at_start"):
        notes.append(f"the codegen cache held {got['cache_files_at_start']} files at the start")
        got["ok"] = False
    compiled = [line.split("compiling ", 1)[1].split(" (once")[0] for line in done.stderr.splitlines()
                if line.startswith("scalargrad: compiling ")]
    if compiled:  # Numba's cache was cold after all (warm_kernels): the child's times include compiles
        notes.append("the child process compiled " + ", ".join(compiled))
    return dict(got, detail="; ".join(notes))


def warm_kernels(rows) -> None:
    """Load (or compile into Numba's disk cache) the interpreter's single-point, vector and batch
    kernels, the drivers of batches by generated per-point functions, and the rows' hand-written code,
    so that no child compiles them: the table is about a fresh process, not a fresh install."""
    vg = sg.value_and_grad(lambda x: x[0] * x[1])
    vg(np.ones(2))
    sg.vmap(vg)(np.ones((2, 2)))  # two points: far from a tier-up
    vector.warm_up()  # the sweeps of the interpreter's vector form (jit/vector.py)
    for kind in ("value_and_grad", "evaluate"):
        points.warm_up(kind)  # the drivers of batches by generated per-point functions
    for row in rows:
        _, x0 = WORKLOADS[row.workload].make(row.size)
        if row.batch:
            X = np.stack([x0, x0])
            batch_reference(row.workload, row.size)(X, np.empty(2), np.empty(X.shape))
        else:
            reference(row.workload, row.size)[1](x0, np.empty(x0.shape))


# --- numbers, targets and lines -------------------------------------------------------------------

ROW_KEYS = ("batch", "ok", "detail", "first_call_ms", "first_call_kernel", "first_window_us", "first_window_calls",
            "first_window_codegen_calls", "first_window_kernel", "tier_up_s", "after_tier_up_us",
            "after_tier_up_kernel", "handwritten_us", "first_call_vs_handwritten", "first_window_vs_handwritten",
            "after_tier_up_vs_handwritten", "first_window_target", "first_window_met", "after_tier_up_target",
            "after_tier_up_met")


def met(ratio: float | None, target: float | None) -> bool | None:
    return None if ratio is None or target is None else ratio <= target


def result_row(row: Row, got: dict) -> dict:
    """The JSON row (docs/bench-json.md) from the child's numbers in seconds: times in ms/µs, each
    over hand-written Numba's, and whether each window met its target."""
    out = dict(name=row.name, workload=row.workload, size=row.size, **dict.fromkeys(ROW_KEYS))
    out.update(batch=row.batch, ok=got["ok"], detail=got["detail"], first_window_target=row.first_window_target,
               after_tier_up_target=row.after_tier_up_target)
    for key in ("first_call_kernel", "first_window_calls", "first_window_codegen_calls", "first_window_kernel",
                "tier_up_s", "after_tier_up_kernel"):
        out[key] = got.get(key)
    hand = got.get("handwritten_s")
    for name, scale, unit in (("first_call", 1e3, "ms"), ("first_window", 1e6, "us"), ("after_tier_up", 1e6, "us")):
        seconds = got.get(f"{name}_s")
        out[f"{name}_{unit}"] = None if seconds is None else scale * seconds
        out[f"{name}_vs_handwritten"] = None if seconds is None or not hand else seconds / hand
    out["handwritten_us"] = None if hand is None else 1e6 * hand
    out["first_window_met"] = met(out["first_window_vs_handwritten"], row.first_window_target)
    out["after_tier_up_met"] = met(out["after_tier_up_vs_handwritten"], row.after_tier_up_target)
    return out


def verdict(target: float | None, met_: bool | None) -> str | None:
    """A target cell as the other tables print it: ``≤ 3``, or ``≤ 3 MISSED``; None without one."""
    return None if target is None else f"≤ {target:g}" + ("" if met_ in (True, None) else " MISSED")


def columns(run: Settings):
    """(title, key, format, meaning) of the table's columns; the windows' lengths are in the titles.
    Without a wait for tier-up the after-tier-up columns are left out."""
    first = (
        ("first call ms", "first_call_ms", "{:.1f}", "the first call: tracing, passes, loading the kernels, the run"),
        ("×hand", "first_call_vs_handwritten", "{:.0f}", "the time to its left over hand µs"),
        (f"first {run.first_window_s:g} s µs", "first_window_us", "{:.1f}",
         f"median of every call in the {run.first_window_s:g} s from the first call's start"),
        ("×hand", "first_window_vs_handwritten", "{:.2f}", ""),
        ("target", "first_window_verdict", "{}", "the issue's target for the ratio to its left (MISSED: over it)"),
        ("kernel", "first_window_kernel", "{}", "what ran the window to its left: interp, vector (the "
         "interpreter's vector form), codegen (generated code); for vmap, points (the generated per-point "
         "function at each point, in parallel) or lanes (generated lane code); or their sequence "
         "(interp→vector→codegen) when it changed within it"),
        ("tier-up s", "tier_up_s", "{:.1f}", "from the first call's start to the first call on generated code"),
    )
    after = (
        ("after µs", "after_tier_up_us", "{:.1f}", f"median of {run.after_window_s:g} s of calls once the path "
         f"runs its last kernel (waited for up to {run.tier_up_wait_s:g} s from the first call), interleaved "
         "with hand-written Numba"),
        ("×hand", "after_tier_up_vs_handwritten", "{:.2f}", ""),
        ("target", "after_tier_up_verdict", "{}", ""),
        ("kernel", "after_tier_up_kernel", "{}", ""),
    )
    hand = (("hand µs", "handwritten_us", "{:.1f}", "hand-written Numba (scalargrad/bench/handwritten.py), median, "
             "in the same process after its compile"),)
    return first + (after if run.tier_up_wait_s > 0 else ()) + hand


CHECK = "ok (value and gradient match hand-written Numba's), or FAIL with the reason below"
MIN_WIDTHS = {"target": len("≤ 1.5 MISSED"), "kernel": len("interp→codegen")}


def display(row: dict) -> dict:
    """The row with its target cells, for the Table."""
    return dict(row, first_window_verdict=verdict(row["first_window_target"], row["first_window_met"]),
                after_tier_up_verdict=verdict(row["after_tier_up_target"], row["after_tier_up_met"]))


def intro(run: Settings) -> list[str]:
    """The lines above the table: what was run, how, and the legend."""
    after = (f"then calls until it runs its last kernel (at most {run.tier_up_wait_s:g} s from the first call) "
             f"and {run.after_window_s:g} s of calls after it" if run.tier_up_wait_s > 0 else
             "the after-tier-up window is skipped (--quick; --default-path-seconds S waits up to S s for it)")
    text = ("default path: sg.value_and_grad(f) with the default backend, each row in a fresh process "
            "(python -m scalargrad.bench.first_calls) with an empty generated-code cache (SCALARGRAD_CACHE_DIR); "
            "the interpreter's kernels load from Numba's disk cache (warm). First call, "
            f"{run.first_window_s:g} s of calls from its start, {after}.")
    return textwrap.wrap(text, 110) + legend([c for c in columns(run) if c[3]], CHECK)


def run_rows(run: Settings, rows=ROWS) -> list[dict]:
    """Every row, each in its child process, printed as it comes."""
    for line in intro(run):
        print(line)
    table = Table([row.name for row in rows], columns(run), MIN_WIDTHS, first="default path")
    print(table.lines[0], flush=True)
    warm_kernels(rows)
    wait_for_compiles()  # a compile of this process's paths in flight would compete with the children
    results = []
    progress = Progress(len(rows))
    try:
        for row in rows:
            progress.update(f"default path: {row.name}")
            results.append(result_row(row, run_child(row, run)))
            progress.advance()
            progress.print("\n".join(table.add(display(results[-1]))))
    finally:
        progress.close()
    return results


def document(run: Settings, rows: list[dict]) -> dict:
    """The ``default_path`` object of the --json document."""
    return dict(first_window_s=run.first_window_s, tier_up_wait_s=run.tier_up_wait_s,
                after_window_s=run.after_window_s if run.tier_up_wait_s > 0 else None, rows=rows)
