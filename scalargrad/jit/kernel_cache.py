"""Where Numba caches scalargrad's own compiled kernels: ``kernels/<install>/`` under
``config.user_cache_dir()``, never beside the sources in site-packages.

Numba's default writes ``__pycache__/*.nbi`` and ``*.nbc`` next to each source file. pip does not own
those files, so ``pip uninstall`` left a ``site-packages/scalargrad/`` holding only them, and that
directory shadowed a later editable install as an empty namespace package. ``install()`` puts a
cache locator in front of Numba's own for the files of this package only; it must run before the
first ``cache=True`` function of the package is defined (``scalargrad/__init__.py`` calls it first).
``<install>`` is a hash of the package directory, so several environments never share entries.
When ``NUMBA_CACHE_DIR`` is set, or our directory cannot be written, Numba's own locators decide.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from numba.core import caching
from numba.core.config import CACHE_DIR as NUMBA_CACHE_DIR

from ..config import user_cache_dir

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Numba 0.68 made these classes public; earlier releases name them with a leading underscore.
_USER_WIDE = getattr(caching, "UserWideCacheLocator", None) or getattr(caching, "_UserWideCacheLocator")
_CACHE_IMPL = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")


def directory() -> Path:
    """The directory holding this installation's cached kernels (``NUMBA_CACHE_DIR`` when set)."""
    if NUMBA_CACHE_DIR:
        return Path(NUMBA_CACHE_DIR)
    install = hashlib.sha1(str(PACKAGE_DIR).encode()).hexdigest()[:16]
    return user_cache_dir() / "kernels" / install


def _in_package(py_file: str) -> bool:
    try:
        return Path(py_file).resolve().is_relative_to(PACKAGE_DIR)
    except OSError:
        return False


class PackageCacheLocator(_USER_WIDE):
    """Numba's user-wide locator, pointed at ``directory()``, for source files of this package."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        relative = Path(py_file).resolve().parent.relative_to(PACKAGE_DIR)
        self._cache_path = os.fspath(directory() / relative)

    @classmethod
    def from_function(cls, py_func, py_file):
        if NUMBA_CACHE_DIR or not _in_package(py_file):
            return None  # not ours to place: Numba's own locators decide
        return super().from_function(py_func, py_file)  # None when the directory is not writable


def install() -> None:
    """Put ``PackageCacheLocator`` first in Numba's locator list (idempotent)."""
    locators = _CACHE_IMPL._locator_classes
    if PackageCacheLocator not in locators:
        locators.insert(0, PackageCacheLocator)
