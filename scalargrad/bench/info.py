"""``scalargrad info``: versions, the Numba threading layer, scalargrad's two caches (Numba's compiled
kernels, generated per-tape code) with their sizes, and whether a CUDA GPU is usable. It reports what
it finds and never raises on a missing driver, library or directory.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numba
import numpy as np

import scalargrad as sg

from .. import config
from ..jit import codegen, kernel_cache

THREADING_LAYERS = (("tbb", "tbbpool"), ("omp", "omppool"), ("workqueue", "workqueue"))
NUMBA_FILES = (".nbi", ".nbc")  # Numba's cache index and code files


def threading_layer() -> str:
    """The Numba threading layer in use, or (before any parallel kernel ran) the configured choice and
    the layers that load here."""
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


def cache_size(path: Path, suffixes: tuple[str, ...] | None = None) -> tuple[int, int]:
    """(bytes, files) of the files under ``path`` (only those ending in ``suffixes`` when given)."""
    total = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            if suffixes is None or name.endswith(suffixes):
                try:
                    total += os.path.getsize(os.path.join(root, name))
                    files += 1
                except OSError:  # removed while we walk
                    pass
    return total, files


def cache_description(path: Path, suffixes: tuple[str, ...] | None = None) -> str:
    """``path`` and the size of its files, or that it does not exist yet."""
    if not path.is_dir():
        return f"{path} (does not exist yet)"
    size, files = cache_size(path, suffixes)
    return f"{path} ({files} file{'' if files == 1 else 's'}, {size / 2**20:.1f} MiB)"


def cuda_status() -> str:
    """Whether Numba can use a CUDA GPU here."""
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
    rows = [
        ("scalargrad", f"{sg.__version__} ({os.path.dirname(os.path.abspath(sg.__file__))})"),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("numpy", np.__version__),
        ("numba", numba.__version__),
        ("llvmlite", llvmlite_version),
        ("platform", f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs"),
        ("threading layer", threading_layer()),
        ("kernel cache", cache_description(kernel_cache.directory(), NUMBA_FILES)),
        ("codegen cache", cache_description(codegen.cache_dir())),
        ("clear caches", "delete these two directories; scalargrad rebuilds them on demand"),
        ("cuda gpu", cuda_status()),
    ]
    width = max(len(name) for name, _ in rows)
    settings = [(name, f"{os.environ[name]} (set)" if os.environ.get(name)
                 else "unset" if setting.default is None else f"{setting.default} (default)")
                for name, setting in config.SETTINGS.items()]
    setting_width = max(len(name) for name, _ in settings)
    return ([f"{name + ':':<{width + 1}} {value}" for name, value in rows]
            + ["settings (environment variables, docs/guide.md#settings):"]
            + [f"  {name:<{setting_width}}  {value}" for name, value in settings])


def run(args) -> int:
    print("\n".join(info_lines()))
    return 0
