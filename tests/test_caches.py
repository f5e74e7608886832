"""Where compiled kernels are cached (never inside the installed package, so that pip uninstall
leaves nothing behind), and the one-line notice while a cold cache compiles."""
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import scalargrad as sg
from scalargrad.jit import batch, compile_notice, kernel_cache

FIRST_CALL = "import scalargrad as sg; print(sg.value_and_grad(lambda x: x * x)(3.0))"


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env}, cwd=Path(__file__).parent)


def cache_files(directory: Path, since: float = 0.0) -> list[Path]:
    return [p for p in directory.rglob("*") if p.suffix in (".nbi", ".nbc") and p.stat().st_mtime >= since]


def test_kernels_cache_under_the_user_cache_dir_and_a_cold_compile_says_so(tmp_path):
    started = time.time() - 1.0
    env = dict(XDG_CACHE_HOME=str(tmp_path), NUMBA_CACHE_DIR="")
    cold = run_python(FIRST_CALL, **env)
    assert cold.returncode == 0, cold.stderr
    assert cold.stdout.strip() == "(9.0, 6.0)"
    ours = tmp_path / "scalargrad" / "kernels"
    assert cache_files(ours), "no kernel was cached in the user cache directory"
    assert not cache_files(kernel_cache.PACKAGE_DIR, since=started), "a kernel was cached inside the package"
    assert cold.stderr.count("scalargrad: compiling the tape interpreter") == 1, cold.stderr
    warm = run_python(FIRST_CALL, **env)  # loads from the disk cache: nothing compiles, nothing said
    assert warm.returncode == 0 and warm.stdout == cold.stdout
    assert "compiling" not in warm.stderr, warm.stderr


def test_numba_cache_dir_when_set_decides(tmp_path):
    code = "from scalargrad.jit import kernel_cache; print(kernel_cache.directory())"
    got = run_python(code, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == str(tmp_path / "numba")


def test_directory_is_per_installation_under_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(kernel_cache, "NUMBA_CACHE_DIR", "")
    directory = kernel_cache.directory()
    assert directory.parent == tmp_path / "scalargrad" / "kernels"
    assert len(directory.name) == 16


def test_the_locator_takes_only_this_packages_files(monkeypatch, tmp_path):
    # Whatever NUMBA_CACHE_DIR this run has: unset, the package's files are placed under our directory.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(kernel_cache, "NUMBA_CACHE_DIR", "")
    locator = kernel_cache.PackageCacheLocator.from_function(batch.reverse_batch.py_func, batch.__file__)
    assert locator is not None
    assert Path(locator.get_cache_path()).is_relative_to(tmp_path / "scalargrad" / "kernels")
    monkeypatch.setattr(kernel_cache, "NUMBA_CACHE_DIR", str(tmp_path / "numba"))  # set: Numba's locators decide
    assert kernel_cache.PackageCacheLocator.from_function(batch.reverse_batch.py_func, batch.__file__) is None
    monkeypatch.setattr(kernel_cache, "NUMBA_CACHE_DIR", "")
    outside = tmp_path / "user_code.py"
    outside.write_text("def f(x):\n    return x\n")
    assert kernel_cache.PackageCacheLocator.from_function(lambda x: x, str(outside)) is None


def test_kinds_name_the_kernels():
    assert compile_notice.kind(batch.reverse_batch) == "batch kernels for vmap"
    assert compile_notice.kind(sg.jit(lambda x: x)) is None  # not a Numba dispatcher

    class Foreign:
        def py_func(self):
            pass
    assert compile_notice.kind(Foreign()) is None


def test_the_notice_is_said_once_and_can_be_silenced(capsys, monkeypatch):
    monkeypatch.setattr(compile_notice.log, "propagate", False)  # as if logging had no handlers (pytest adds one)
    notice = compile_notice.CompileNotice()
    notice.say("the tape interpreter")
    notice.say("the tape interpreter")
    assert capsys.readouterr().err.count("scalargrad: compiling the tape interpreter") == 1
    compile_notice.log.setLevel(logging.WARNING)  # what the module docstring tells users
    try:
        compile_notice.CompileNotice().say("batch kernels for vmap")
    finally:
        compile_notice.log.setLevel(logging.INFO)
    assert capsys.readouterr().err == ""


def test_the_notice_goes_to_configured_logging(caplog):
    with caplog.at_level(logging.INFO, logger="scalargrad"):
        compile_notice.CompileNotice().say("forward-mode kernels")
    assert "compiling forward-mode kernels" in caplog.text
