"""The command line (bench, ops, help) and the shipped workloads."""
import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import scalargrad as sg
from scalargrad import cli
from scalargrad.cli import main
from scalargrad.ops import USER_OPS
from scalargrad.workloads import WORKLOADS, check_textbook_examples, finite_difference_check, make_random

QUICK_ROWS = ["seed", "rosenbrock-100", "rosenbrock-1000", "mlp", "random-10000"]
SMALL_SIZES = {"seed": None, "rosenbrock": 50, "mlp": None, "random": 2000}


# --- bench ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    """(exit status, JSON results) of one ``bench --quick`` run shared by the tests below."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    status = main(["bench", "--quick", "--repeat", "3", "--json", str(path)])
    return status, json.loads(path.read_text())


def test_bench_quick_passes_and_writes_json(quick_bench):
    status, results = quick_bench
    assert status == 0
    assert {"python", "numpy", "numba", "cpu_count"} <= set(results["header"])
    assert [row["name"] for row in results["rows"]] == QUICK_ROWS
    assert all(row["ok"] and row["detail"] == "" for row in results["rows"])


def test_bench_rows_have_every_number(quick_bench):
    _, results = quick_bench
    keys = {"name", "workload", "size", "ok", "detail", *cli.ROW_NUMBERS}
    for row in results["rows"]:
        assert set(row) == keys
    for row in results["rows"][1:]:
        assert row["ops"] > 0
        assert all(math.isfinite(row[key]) for key in cli.ROW_NUMBERS), row
        assert min(row["trace_ms"], row["fwd_us"], row["vg_us"], row["eager_us_per_op"]) > 0
        assert row["fd_err"] < cli.FD_TOLERANCE


def test_bench_prints_table_and_targets(capsys):
    assert main(["bench", "--quick", "--repeat", "1", "--workload", "seed,random-300"]) == 0
    out = capsys.readouterr().out
    assert "ns/op" in out and "random-300" in out and "rosenbrock" not in out
    assert out.rstrip().endswith(cli.TARGETS)


def test_bench_workload_selection():
    assert [row[0] for row in cli.select_rows(["rosenbrock", "mlp"], quick=False)] == \
        ["rosenbrock-1000", "rosenbrock-10000", "mlp"]
    assert cli.select_rows(["random-123"], quick=True) == [("random-123", "random", 123)]
    with pytest.raises(ValueError, match="unknown workload 'nope'"):
        cli.select_rows(["nope"], quick=True)


def test_bench_unknown_workload_is_a_usage_error(capsys):
    assert main(["bench", "--workload", "nope"]) == 2
    assert "unknown workload" in capsys.readouterr().err


def test_bench_exits_1_when_a_gradient_check_fails(monkeypatch, capsys):
    monkeypatch.setattr(cli, "finite_difference_check", lambda fun, x, grad: 1.0)
    assert main(["bench", "--repeat", "1", "--workload", "random-300"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_bench_exits_1_when_the_seed_check_fails(monkeypatch, capsys):
    broken = dataclasses.replace(WORKLOADS["seed"], check=lambda: ["apple: wrong"])
    monkeypatch.setitem(WORKLOADS, "seed", broken)
    assert main(["bench", "--workload", "seed"]) == 1
    assert "apple: wrong" in capsys.readouterr().out


# --- ops, help, python -m -------------------------------------------------------------------------

def test_ops_lists_every_op(capsys):
    assert main(["ops"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[2:] if line[:1].strip()}
    assert {op.name for op in USER_OPS} <= listed


@pytest.mark.parametrize("argv, expected", [(["--help"], "bench"), (["bench", "--help"], "--quick"),
                                            (["ops", "--help"], "partial derivatives")])
def test_help(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert expected in capsys.readouterr().out


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    assert "bench" in capsys.readouterr().out


def test_python_m_scalargrad_ops():
    result = subprocess.run([sys.executable, "-m", "scalargrad", "ops"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "tanh" in result.stdout


# --- workloads ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_gradient_matches_finite_differences(name):
    fun, x0 = WORKLOADS[name].make(SMALL_SIZES[name])
    assert x0.dtype == np.float64
    value, grad = sg.value_and_grad(fun)(x0)
    assert math.isfinite(value) and grad.shape == x0.shape and np.isfinite(grad).all()
    assert math.isclose(value, float(fun(x0)), rel_tol=1e-12)  # compiled vs plain Python floats
    assert finite_difference_check(fun, x0, grad) < cli.FD_TOLERANCE


def test_finite_difference_check_detects_a_wrong_gradient():
    fun, x0 = WORKLOADS["rosenbrock"].make(50)
    grad = sg.grad(fun)(x0)
    assert finite_difference_check(fun, x0, grad * 1.01) > 1e-3


def test_random_program_is_deterministic_and_sized():
    size = 2000
    first, second = (sg.trace(*WORKLOADS["random"].make(size)) for _ in range(2))
    assert abs(len(first) - size) < 0.1 * size
    for field in ("op", "a", "b", "c", "lit", "outputs"):
        assert np.array_equal(getattr(first, field), getattr(second, field))
    other_seed = sg.trace(*make_random(size, seed=1))
    assert not np.array_equal(first.op[:len(other_seed)], other_seed.op[:len(first)])


def test_mlp_has_337_parameters():
    _, x0 = WORKLOADS["mlp"].make()
    assert x0.shape == (337,)


def test_textbook_examples_pass():
    assert check_textbook_examples() == []


# --- info -----------------------------------------------------------------------------------------

def test_info_prints_versions_cache_and_gpu(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("python:", "numpy:", "numba:", "llvmlite:", "threading layer:", "kernel cache:", "cache size:",
                "cuda gpu:"):
        assert key in out
    assert np.__version__ in out and "MiB" in out


def test_info_uses_numba_cache_dir(monkeypatch, tmp_path):
    (tmp_path / "x.nbi").write_bytes(b"12345")
    monkeypatch.setattr(cli.numba.config, "CACHE_DIR", str(tmp_path))
    assert cli.kernel_cache_dir() == str(tmp_path)
    assert cli.cache_size(str(tmp_path)) == (5, 1)


def test_info_never_crashes_without_cuda(monkeypatch, capsys):
    import numba.cuda
    def broken():
        raise RuntimeError("driver exploded")
    monkeypatch.setattr(numba.cuda, "is_available", broken)
    assert cli.cuda_status().startswith("no (RuntimeError: driver exploded")
    assert main(["info"]) == 0
