"""The default-path table of ``scalargrad bench`` (scalargrad/bench/default_path.py, first_calls.py):
its rows, ratios and targets from injected numbers, its printed table and JSON, and the child
process that measures a row, which must start with an empty generated-code cache. No assertion here
depends on how fast anything ran."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from scalargrad.bench import default_path, first_calls, higher as bench_higher, cli
from scalargrad.bench.cli import main
from scalargrad.bench.default_path import ROWS, Row, Settings
from helpers import documented_keys, fake_first_calls

FULL, QUICK = default_path.settings(False, None), default_path.settings(True, None)
ROSEN, MLP, BATCH, SMALL = ROWS


@pytest.fixture
def no_children(monkeypatch):
    """Rows measured by fake_first_calls instead of child processes."""
    monkeypatch.setattr(default_path, "run_child", fake_first_calls)
    monkeypatch.setattr(default_path, "warm_kernels", lambda rows: None)


# --- settings, ratios and targets -------------------------------------------------------------------

def test_rows_and_targets_are_the_issues():
    assert [(r.name, r.workload, r.size, r.batch) for r in ROWS] == [
        ("rosenbrock-10000", "rosenbrock", 10_000, None), ("mlp", "mlp", None, None),
        ("rosenbrock-100 vmap 1024", "rosenbrock", 100, 1024), ("rosenbrock-20", "rosenbrock", 20, None)]
    assert [(r.first_window_target, r.after_tier_up_target) for r in ROWS] == [(3, 2), (3, 1.5), (3, 2), (None, 2.5)]


def test_settings_of_a_full_and_a_quick_run():
    assert (FULL.first_window_s, FULL.tier_up_wait_s, FULL.after_window_s) == (1.5, 30.0, 1.0)
    assert (QUICK.first_window_s, QUICK.tier_up_wait_s) == (0.5, 0.0)  # no after-tier-up window
    assert default_path.settings(True, 7.0).tier_up_wait_s == 7.0     # --default-path-seconds wins
    assert default_path.settings(False, 0.0).tier_up_wait_s == 0.0


def test_ratios_and_targets_from_injected_timings():
    got = fake_first_calls(ROSEN, FULL)  # first call 0.1 s, windows 40 and 20 µs, hand-written 10 µs
    row = default_path.result_row(ROSEN, got)
    assert set(row) == set(documented_keys()["default_path rows"])
    assert row["first_call_ms"] == pytest.approx(100.0) and row["handwritten_us"] == pytest.approx(10.0)
    assert row["first_window_us"] == pytest.approx(40.0) and row["after_tier_up_us"] == pytest.approx(20.0)
    assert row["first_call_vs_handwritten"] == pytest.approx(1e4)
    assert row["first_window_vs_handwritten"] == pytest.approx(4.0)
    assert row["after_tier_up_vs_handwritten"] == pytest.approx(2.0)
    assert (row["first_window_target"], row["first_window_met"]) == (3.0, False)  # 4 > 3: MISSED
    assert (row["after_tier_up_target"], row["after_tier_up_met"]) == (2.0, True)  # at the target: met
    assert default_path.result_row(MLP, got)["after_tier_up_met"] is False        # 2 > 1.5
    small = default_path.result_row(SMALL, got)
    assert small["first_window_target"] is None and small["first_window_met"] is None
    assert (row["first_window_kernel"], row["first_window_calls"], row["first_window_codegen_calls"],
            row["tier_up_s"]) == ("interp→codegen", 1000, 600, 0.5)
    assert default_path.result_row(BATCH, got)["batch"] == 1024 and row["batch"] is None


def test_a_failed_row_keeps_every_key_with_null_numbers():
    row = default_path.result_row(ROSEN, dict(ok=False, detail="the child process failed (exit code 1): boom"))
    assert set(row) == set(documented_keys()["default_path rows"])
    assert not row["ok"] and row["first_call_ms"] is None and row["first_window_met"] is None
    assert row["first_window_target"] == 3.0
    quick = default_path.result_row(ROSEN, fake_first_calls(ROSEN, QUICK))
    assert quick["after_tier_up_us"] is None and quick["after_tier_up_met"] is None
    assert quick["first_window_met"] is False


def test_target_cells_are_printed_as_the_other_tables_print_them():
    assert default_path.verdict(3.0, True) == "≤ 3"
    assert default_path.verdict(1.5, False) == "≤ 1.5 MISSED"
    assert default_path.verdict(2.0, None) == "≤ 2"  # not measured: the ratio cell says '-'
    assert default_path.verdict(None, None) is None


# --- the printed table and the JSON -----------------------------------------------------------------

def test_table_prints_every_row_with_its_ratios_targets_and_kernels(no_children, capsys):
    results = default_path.run_rows(FULL)
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if line.startswith("default path  "))
    for title in ("first call ms", "×hand", "first 1.5 s µs", "target", "kernel", "tier-up s", "after µs", "hand µs"):
        assert title in header
    lines = {line.split("  ")[0]: line for line in out[out.index(header) + 1:]}
    assert list(lines) == [row.name for row in ROWS] and len(results) == 4
    assert "≤ 3 MISSED" in lines["rosenbrock-10000"] and "≤ 2 " in lines["rosenbrock-10000"]
    assert "≤ 1.5 MISSED" in lines["mlp"]
    assert "interp→codegen" in lines["mlp"] and lines["mlp"].split()[-2:] == ["10.0", "ok"]  # hand µs, check
    assert "4.00" in lines["mlp"] and "2.00" in lines["mlp"]
    assert any("empty generated-code cache" in line for line in out[:out.index(header)])


def test_quick_table_leaves_out_the_after_tier_up_window_and_says_so(no_children, capsys):
    default_path.run_rows(QUICK)
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("default path  "))
    assert "first 0.5 s µs" in header and "after µs" not in header and header.count("target") == 1
    assert "the after-tier-up window is skipped (--quick" in " ".join(out.split())


def test_bench_json_has_the_default_path_table(no_children, monkeypatch, capsys):
    monkeypatch.setattr(cli, "default_rows", lambda *args: [("seed", "seed", None)])
    monkeypatch.setattr(bench_higher, "rows", lambda quick: [bench_higher._row("hvp", "hvp / vg", 1.0, 4.0)])
    assert main(["bench", "--default-path-seconds", "7", "--json", "-"]) == 0
    results, doc = json.loads(capsys.readouterr().out), documented_keys()
    assert results["schema"] == 4 and set(results) == set(doc["Top level"])
    table = results["default_path"]
    assert set(table) == set(doc["default_path"])
    assert (table["first_window_s"], table["tier_up_wait_s"], table["after_window_s"]) == (1.5, 7.0, 1.0)
    assert [row["name"] for row in table["rows"]] == [row.name for row in ROWS]
    assert all(set(row) == set(doc["default_path rows"]) for row in table["rows"])
    assert [row["after_tier_up_met"] for row in table["rows"]] == [True, False, True, True]


def test_a_failed_row_fails_the_run_and_a_missed_target_does_not(monkeypatch, capsys):
    monkeypatch.setattr(cli, "default_rows", lambda *args: [("seed", "seed", None)])
    monkeypatch.setattr(bench_higher, "rows", lambda quick: [bench_higher._row("hvp", "hvp / vg", 1.0, 4.0)])
    monkeypatch.setattr(default_path, "warm_kernels", lambda rows: None)
    monkeypatch.setattr(default_path, "run_child", fake_first_calls)  # misses targets
    assert main(["bench"]) == 0
    monkeypatch.setattr(default_path, "run_child",
                        lambda row, run: dict(fake_first_calls(row, run), ok=row.name != "mlp", detail="differs"))
    assert main(["bench"]) == 1
    assert "    differs" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--workload", "seed"], ["--size", "10"], ["--backend", "interp"],
                                  ["--compare", "numba"]])
def test_default_path_seconds_without_the_table_is_a_usage_error(argv, capsys):
    assert main(["bench", "--default-path-seconds", "5", *argv]) == 2
    assert "--default-path-seconds applies to the default-path table" in capsys.readouterr().err


def test_runs_without_the_table_leave_it_out(no_children, capsys):
    assert main(["bench", "--workload", "seed", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["default_path"] is None


# --- the child process ------------------------------------------------------------------------------

CHILD_JSON = json.dumps(dict(fake_first_calls(ROSEN, FULL), cache_files_at_start=0))


def fake_run(seen, stdout=CHILD_JSON + "\n", stderr="", returncode=0):
    """subprocess.run as the child would answer, noting the command, its environment and the cache
    directory's files at the start."""
    def run(command, env, **kwargs):
        cache = env["SCALARGRAD_CACHE_DIR"]
        seen.update(command=command, cache=cache, files=os.listdir(cache), kwargs=kwargs)
        return subprocess.CompletedProcess(command, returncode, stdout, stderr)
    return run


def test_the_child_runs_first_calls_with_a_new_empty_codegen_cache(monkeypatch):
    seen = {}
    monkeypatch.setattr(default_path.subprocess, "run", fake_run(seen))
    got = default_path.run_child(BATCH, FULL)
    assert got["ok"] and got["detail"] == ""
    assert seen["files"] == [] and seen["cache"] != os.environ.get("SCALARGRAD_CACHE_DIR")
    assert not os.path.exists(seen["cache"])  # removed afterwards
    assert seen["command"][:3] == [sys.executable, "-m", "scalargrad.bench.first_calls"]
    command = " ".join(seen["command"][3:])
    assert "--workload rosenbrock" in command and "--size 100" in command and "--batch 1024" in command
    assert "--window 1.5" in command and "--wait 30.0" in command and "--after 1.0" in command
    assert seen["kwargs"]["timeout"] > FULL.tier_up_wait_s
    first = seen["cache"]
    default_path.run_child(BATCH, FULL)
    assert seen["cache"] != first  # a new directory per row


def test_a_child_that_fails_or_finds_files_in_its_cache_fails_its_row(monkeypatch):
    seen = {}
    monkeypatch.setattr(default_path.subprocess, "run", fake_run(seen, stdout="", returncode=1,
                                                                 stderr="Traceback\nValueError: boom\n"))
    got = default_path.run_child(ROSEN, FULL)
    assert not got["ok"] and got["detail"] == "the child process failed (exit code 1): ValueError: boom"
    dirty = json.dumps(dict(json.loads(CHILD_JSON), cache_files_at_start=3))
    monkeypatch.setattr(default_path.subprocess, "run", fake_run(seen, stdout=dirty))
    got = default_path.run_child(ROSEN, FULL)
    assert not got["ok"] and "the codegen cache held 3 files at the start" in got["detail"]
    notice = "scalargrad: compiling batch kernels for vmap (once: later processes load it from the disk cache)...\n"
    monkeypatch.setattr(default_path.subprocess, "run", fake_run(seen, stderr=notice))
    got = default_path.run_child(ROSEN, FULL)
    assert got["ok"] and got["detail"] == "the child process compiled batch kernels for vmap"

    def hangs(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(default_path.subprocess, "run", hangs)
    assert "still running" in default_path.run_child(ROSEN, FULL)["detail"]


def test_window_kernel_says_whether_the_tier_up_came_within_it():
    assert first_calls.window_kernel(["interp", "interp"]) == "interp"
    assert first_calls.window_kernel(["interp", "codegen", "codegen"]) == "interp→codegen"
    assert first_calls.window_kernel(["codegen"]) == "codegen"
    assert first_calls.window_kernel([]) is None


def test_time_calls_notes_the_kernel_before_each_call():
    """A fake path that runs 'generated code' from its 50th call on, and its last kernel from its 80th."""
    calls = []

    def call():
        calls.append(1)
        return len(calls)

    def kernel():
        return "codegen" if len(calls) >= 50 else "interp"

    got = first_calls.time_calls(call, kernel, lambda: len(calls) >= 80, lambda: None, window=0.05, wait=0.5,
                                 after=0.01)
    assert got["result"] == 1 and got["first_call_kernel"] == "interp"
    if got["first_window_calls"] > 50:  # the 51st call ran generated code
        assert got["first_window_kernel"] == "interp→codegen"
        assert got["first_window_codegen_calls"] == got["first_window_calls"] - 50
    assert got["tier_up_s"] is not None and got["after_tier_up_kernel"] == "codegen" and len(calls) >= 80
    assert got["after_tier_up_s"] > 0 and got["handwritten_s"] > 0
    never = first_calls.time_calls(call, lambda: "interp", lambda: False, lambda: None, window=0.01, wait=0.03,
                                   after=0.01)
    assert never["tier_up_s"] is None and never["after_tier_up_kernel"] == "interp"
    skipped = first_calls.time_calls(call, lambda: "interp", lambda: False, lambda: None, window=0.01, wait=0.0,
                                     after=1.0)
    assert skipped["after_tier_up_s"] is None and skipped["after_tier_up_kernel"] is None
    assert skipped["first_window_calls"] >= 5 and skipped["handwritten_s"] > 0


def test_a_real_row_in_a_child_process():
    """rosenbrock-20 in a real child process (about 2 s): numbers in place, checked against
    hand-written Numba, and measured with an empty generated-code cache that is gone afterwards."""
    got = default_path.run_child(Row("rosenbrock-20", "rosenbrock", 20), Settings(0.2, 0.0))
    assert got["ok"], got["detail"]
    assert got["cache_files_at_start"] == 0 and not os.path.exists(got["cache_dir"])
    assert got["cache_dir"] != os.environ.get("SCALARGRAD_CACHE_DIR")
    row = default_path.result_row(SMALL, got)
    assert row["first_call_kernel"] == "interp" and row["first_window_kernel"] in ("interp", "interp→codegen")
    assert min(row["first_call_ms"], row["first_window_us"], row["handwritten_us"]) > 0
    assert row["first_window_calls"] >= 5 and row["after_tier_up_us"] is None


@pytest.mark.slow  # 8 s (more with cold Numba caches): the --quick table for real, four child processes
def test_the_quick_table_for_real(capsys):
    results = default_path.run_rows(QUICK)
    assert all(row["ok"] for row in results), [row["detail"] for row in results]
    assert all(row["first_window_vs_handwritten"] > 0 for row in results)
    assert results[2]["batch"] == 1024 and np.isfinite(results[2]["first_call_ms"])
