"""Global switches, read at call time: ``sg.config.debug_nans = True`` turns on NaN debugging for
every transformed function whose own ``debug_nans`` keyword is None (the default).

The default comes from the environment variable ``SCALARGRAD_DEBUG_NANS`` (``1``, ``true``, ``yes``
or ``on`` turn it on), read once when scalargrad is imported.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_ON = ("1", "true", "yes", "on")


def env_flag(name: str) -> bool:
    """True when environment variable ``name`` is set to 1/true/yes/on (any case)."""
    return os.environ.get(name, "").strip().lower() in _ON


def env_number(name: str, default, convert=int, kind: str = "an integer"):
    """``convert`` of environment variable ``name``, or ``default`` when it is unset or empty; a
    ValueError naming the variable when it does not convert."""
    value = os.environ.get(name, "")
    try:
        return convert(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be {kind}, got {value!r}") from None


def user_cache_dir() -> Path:
    """``scalargrad`` in the user's cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``;
    ``%LOCALAPPDATA%`` on Windows): the root of the kernel and generated-code caches, which live
    outside the installed package so that ``pip uninstall`` removes every file of it."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "scalargrad"


debug_nans: bool = env_flag("SCALARGRAD_DEBUG_NANS")
