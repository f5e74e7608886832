"""Settings: ``sg.config.debug_nans`` and every ``SCALARGRAD_*`` environment variable, in one table.

``sg.config.debug_nans = True`` turns on NaN debugging for every transformed function whose own
``debug_nans`` keyword is None (the default); its default comes from ``SCALARGRAD_DEBUG_NANS``
(``1``, ``true``, ``yes`` or ``on``), read once when scalargrad is imported. The other variables
are read when they are used, so a test or a long-running process can change them. A value that
does not convert raises ValueError naming the variable.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

_ON = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default and what it does (``scalargrad info`` lists them)."""

    name: str
    default: object
    meaning: str


SETTINGS = {s.name: s for s in (
    Setting("SCALARGRAD_DEBUG_NANS", False,
            "debug_nans=True for every transform whose own debug_nans is None (sg.config.debug_nans)"),
    Setting("SCALARGRAD_CACHE_DIR", None,
            "where generated code and its compiled form are cached (default: codegen/ in the user cache "
            "directory, $XDG_CACHE_HOME/scalargrad or ~/.cache/scalargrad)"),
    # Generated sources and Numba's compiled files; writing a new module removes the oldest beyond it.
    Setting("SCALARGRAD_CACHE_MAX_MB", 256, "size at which the oldest generated files are removed"),
    # Compile time grows faster than linearly in the generated lines (4.6 s at 832, 21 s at 2000,
    # bench/codegen_tier.py); a tape written with loops counts the lines of its loop bodies.
    Setting("SCALARGRAD_CODEGEN_MAX_OPS", 1000,
            "largest generated code (instruction lines) that backend='codegen' compiles"),
    # Numba never frees compiled code (about 1 MiB per tape).
    Setting("SCALARGRAD_CODEGEN_MAX_TAPES", 100, "distinct tapes one process compiles generated code for"),
)}


def env_flag(name: str) -> bool:
    """True when environment variable ``name`` is set to 1/true/yes/on (any case)."""
    return os.environ.get(name, "").strip().lower() in _ON


def env_number(name: str, convert=int, kind: str = "an integer"):
    """``convert`` of environment variable ``name`` (one of SETTINGS), or its default when it is unset
    or empty; a ValueError naming the variable when it does not convert."""
    value = os.environ.get(name, "")
    try:
        return convert(value) if value else SETTINGS[name].default
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


def codegen_cache_dir() -> Path:
    """``$SCALARGRAD_CACHE_DIR``, else ``codegen`` in ``user_cache_dir()``."""
    explicit = os.environ.get("SCALARGRAD_CACHE_DIR")
    return Path(explicit) if explicit else user_cache_dir() / "codegen"


def cache_max_bytes() -> int:
    """``$SCALARGRAD_CACHE_MAX_MB`` in bytes."""
    return int(float(env_number("SCALARGRAD_CACHE_MAX_MB", float, "a number")) * (1 << 20))


def codegen_max_ops() -> int:
    """The size cap of backend="codegen" in generated instruction lines."""
    return env_number("SCALARGRAD_CODEGEN_MAX_OPS")


def codegen_max_tapes() -> int:
    """How many distinct tapes one process compiles generated code for."""
    return env_number("SCALARGRAD_CODEGEN_MAX_TAPES")


debug_nans: bool = env_flag("SCALARGRAD_DEBUG_NANS")
