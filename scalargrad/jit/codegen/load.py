"""Generated modules imported from the cache directory (written there first if missing) and their
functions compiled: ``load_module(tape)`` and ``load_module(tape, batch=True)``, ``compile_kernel``
and ``compile_batch`` (loading Numba's disk cache, repairing a damaged entry), and the batch runners
vmap calls. A process loads code for at most ``config.codegen_max_tapes()`` distinct tapes.
"""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
from numba import types

from ...config import cache_max_bytes, codegen_max_tapes as max_tapes
from ...core.tape import Tape
from ..custom_ops import ops_in, uses_custom_ops
from .cache import LOCK, cache_dir, holds_text, module_name, module_path, prune_cache, tape_key, write_atomic
from .text import batch_source, source

KERNEL_ARGS = (types.float64[::1], types.float64[::1])  # the one signature compiled: C-contiguous x, out/grad

_MODULES: dict[str, object] = {}  # module name -> the imported generated module (under cache.LOCK)
# Numba never frees compiled code (about 1 MiB per tape), so a process compiles generated code for
# at most config.codegen_max_tapes() distinct tapes; later ones stay on the interpreter.


def loaded_tapes() -> set[str]:
    """Module names (``cache.module_name``) of the tapes whose generated code this process loaded."""
    return {name.removesuffix("_batch") for name in _MODULES}


def room_for(tape: Tape) -> bool:
    """Whether generated code for ``tape`` is loaded already or fits under the per-process cap."""
    loaded = loaded_tapes()
    return module_name(tape_key(tape)) in loaded or len(loaded) < max_tapes()


def _import(name: str, path: Path, text: str, key: str):
    """Import ``text`` as module ``name`` from ``path`` (written first unless it holds ``text``)."""
    if not holds_text(path, text):
        try:
            write_atomic(path, text)
        except OSError as exc:
            raise OSError(f"cannot write generated code to {path} ({exc}); set SCALARGRAD_CACHE_DIR "
                          "to a writable directory, or use backend='interp'") from exc
        loaded = {Path(module.__file__).stem for module in _MODULES.values()}
        prune_cache(path.parent, cache_max_bytes(), loaded | {path.stem})
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    if getattr(module, "KEY", None) != key:
        raise RuntimeError(f"generated module {path} does not hold key {key}")
    return module


def load_module(tape: Tape, batch: bool = False):
    """The generated module for ``tape`` (``batch``: its batch module, ``batch_source``; the
    per-point module is loaded first, since a batch module may import from it), imported from the
    cache directory (written first if missing). Its functions are Numba dispatchers, compiled lazily
    (``compile_kernel`` and ``compile_batch`` compile)."""
    if uses_custom_ops(tape.op):
        raise ValueError(f"generated code (backend='codegen') cannot run custom op "
                         f"{ops_in(tape.op, tape.lit)[0].name!r}; use backend='auto' or 'interp'")
    key = tape_key(tape)
    with LOCK:
        for is_batch in ((False, True) if batch else (False,)):
            name = module_name(key, is_batch)
            module = _MODULES.get(name)
            if module is None:
                text = (batch_source if is_batch else source)(tape, key)
                module = _MODULES[name] = _import(name, module_path(key, is_batch), text, key)
        return module


def value_and_grad_batch(module, X, n_inputs: int):
    """(values, G, ok) at every row of the C-contiguous matrix X, by a tape's generated batch
    ``module`` (``load_module(tape, batch=True)``) run in parallel over the rows (compiled on first
    use, then from Numba's disk cache)."""
    B = len(X)
    values, G, ok = np.empty(B), np.empty((B, n_inputs)), np.empty(B, dtype=np.bool_)
    module.value_and_grad_batch(X, values, G, ok)
    return values, G, ok


def evaluate_batch(module, X, n_outputs: int):
    """(out, ok): every output at every row of X, by a tape's generated ``module`` (as above)."""
    out, ok = np.empty((len(X), n_outputs)), np.empty(len(X), dtype=np.bool_)
    module.evaluate_batch(X, out, ok)
    return out, ok


BATCH_ARGS = {  # the one signature of each batch function, as value_and_grad_batch and evaluate_batch call them
    "value_and_grad": (types.float64[:, ::1], types.float64[::1], types.float64[:, ::1], types.boolean[::1]),
    "evaluate": (types.float64[:, ::1], types.float64[:, ::1], types.boolean[::1]),
}


def _compile(dispatcher, signature) -> None:
    """``dispatcher.compile(signature)``, loading from Numba's disk cache when it can. A damaged cache
    entry (a disk error, a file changed by hand) makes Numba's load raise in every later process:
    the generated file's cache entries are then deleted, with a warning, and the function compiled
    anew (an error that remains comes from the compile itself, and propagates)."""
    try:
        dispatcher.compile(signature)
        return
    except Exception as exc:
        stem = Path(dispatcher.py_func.__code__.co_filename).stem
        damaged = [p for p in (cache_dir() / "__pycache__").glob(f"{stem}.*") if p.suffix in (".nbi", ".nbc")]
        if not damaged:
            raise
        for path in damaged:
            path.unlink(missing_ok=True)
        warnings.warn(f"scalargrad: Numba's cache of generated code {stem}.py could not be read "
                      f"({type(exc).__name__}: {exc}); deleted {len(damaged)} cache files and compiling "
                      "again", RuntimeWarning, stacklevel=3)
    dispatcher.compile(signature)


def compile_batch(module, kind: str) -> None:
    """Compile (or load from Numba's disk cache) the batch function of ``kind`` in ``module``."""
    _compile(getattr(module, f"{kind}_batch"), BATCH_ARGS[kind])


def compile_kernel(tape: Tape, kind: str):
    """The compiled generated function ``kind`` ("value_and_grad" or "evaluate") for ``tape``:
    loaded from Numba's disk cache when a process compiled it before, else compiled now."""
    if kind not in ("value_and_grad", "evaluate"):
        raise ValueError(f"kind must be 'value_and_grad' or 'evaluate', got {kind!r}")
    dispatcher = getattr(load_module(tape), kind)
    _compile(dispatcher, KERNEL_ARGS)
    return dispatcher
