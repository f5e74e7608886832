"""Where generated files live and what they are named: ``cache_dir()``, a tape's key (a hash of the tape,
the op table, the Numba flags and this package's sources), atomic writes that never touch an existing
file (its time stamps Numba's cache of it), and pruning to a size cap, oldest first.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from ...config import codegen_cache_dir
from ...core import float_math
from ...core.ops import FUNCTIONS, OPS
from ...core.tape import Tape
from ..flags import FLAGS

# Guards the tables of loaded modules (load.py) and of loop plans (text.py); tier.py holds it
# across os.fork().
LOCK = threading.RLock()


def cache_dir() -> Path:
    """Where generated files live: ``config.codegen_cache_dir()`` (``$SCALARGRAD_CACHE_DIR``, read
    at every call)."""
    return codegen_cache_dir()


def generator_files() -> list[Path]:
    """Every module of this package: the writers of generated code and the intrinsics it calls
    (Numba's cache of a generated file does not notice a change to them), and, to keep the rule
    simple, the loader and this module too; and core/float_math.py, whose functions it calls."""
    return sorted(Path(__file__).parent.glob("*.py")) + [Path(float_math.__file__)]


def generator_text() -> str:
    """Everything the generated code depends on besides the tape: the op table, the Numba flags and
    the sources of every module of this package (so editing any of them can never reuse a stale
    cache file)."""
    sources = "".join(path.read_text("utf-8") for path in generator_files())
    return repr(OPS) + repr(sorted(FLAGS.items())) + repr(sorted(FUNCTIONS)) + sources


_GENERATOR_HASH = hashlib.sha256(generator_text().encode()).hexdigest()


def tape_key(tape: Tape) -> str:
    """Hex digest naming a tape's generated code: its arrays, the op table, the Numba flags and the
    generators' sources (any change to these gives another file, never a stale one)."""
    h = hashlib.sha256(f"scalargrad-codegen {_GENERATOR_HASH}".encode())
    for name, arr in tape.arrays().items():
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:40]


def write_atomic(path: Path, text: str) -> None:
    """Create ``path`` holding ``text`` such that no reader ever sees a partial file: write a temp
    file in the same directory, then link it into place (losing a race to another process that
    wrote the same key is fine: the text is the same)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; it is source code, like any module
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if the file exists: an existing file's mtime (Numba's
        except FileExistsError:  # cache stamp) is never touched, so its compiled code stays valid
            if not holds_text(path, text):
                os.replace(tmp, path)  # a damaged or foreign file under our name
                tmp = None
        except OSError:  # no hard links on this file system
            os.replace(tmp, path)
            tmp = None
    finally:
        if tmp is not None:
            os.unlink(tmp)


def holds_text(path: Path, text: str) -> bool:
    """Whether the file at ``path`` reads as ``text`` (False if it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def module_path(key: str, batch: bool = False) -> Path:
    """The file of a tape's per-point module (``batch``: its batch module)."""
    return cache_dir() / f"sg_{key}{'_batch' if batch else ''}.py"


def module_name(key: str, batch: bool = False) -> str:
    """The name a tape's generated module (``batch``: its batch module) is imported under."""
    return f"_scalargrad_codegen_{key}{'_batch' if batch else ''}"


def prune_cache(directory: Path, max_bytes: int, keep=frozenset()) -> list[Path]:
    """Remove the oldest generated modules, with their compiled files, until ``directory`` holds at
    most ``max_bytes``; never a module whose stem is in ``keep``. Age is the file time, which is
    the creation time: files are never rewritten (that would invalidate Numba's cache). Returns the
    removed sources. Files another process removes meanwhile are skipped."""
    def size(path):
        try:
            return path.stat().st_size
        except OSError:
            return 0

    compiled: dict[str, list[Path]] = {}
    for path in (directory / "__pycache__").glob("sg_*"):
        compiled.setdefault(path.name.split(".")[0], []).append(path)
    modules = []
    for path in directory.glob("sg_*.py"):
        try:
            modules.append((path.stat().st_mtime, path))
        except OSError:
            pass
    group = {path.stem: [path] + compiled.get(path.stem, []) for _, path in modules}
    total = sum(size(f) for files in group.values() for f in files)
    removed = []
    for _, path in sorted(modules):
        if total <= max_bytes:
            break
        if path.stem in keep:
            continue
        for f in group[path.stem]:
            total -= size(f)
            try:
                f.unlink()
            except OSError:
                pass
        removed.append(path)
    return removed
