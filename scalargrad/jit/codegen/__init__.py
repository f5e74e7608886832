"""The compiled-code tier: a tape as Numba source code, generated from the op table.

``source(tape)`` is the text of a module with ``evaluate(x, out) -> ok`` and ``value_and_grad(x,
grad) -> (value, ok)``, bit-identical to the interpreter; ``load_module(tape)`` writes it to a real
file in ``cache_dir()`` named by ``tape_key`` (Numba caches compiled code only for real files) and
imports it, and ``compile_kernel`` loads the machine code from Numba's disk cache when it can. The
lane code vmap runs is a second module (``batch_source``, ``load_module(tape, batch=True)``); batches
can also call the compiled per-point function at each point (points.py).
Which backend runs a path is decided in ``jit/tier.py``. Modules, lowest first:

  cache.py        where generated files live, their key, atomic writes, pruning; ``LOCK``
  intrinsics.py   the LLVM helpers generated code imports (select, acc, acc0, muladd, transpose4)
  expressions.py  op-table expressions, literals and module constants as source text
  straight.py     straight-line bodies, one line per instruction
  loops.py        periodic runs of a tape (``Loop``, ``Plan``, ``plan``)
  rolled.py       a plan's loops written as code
  lanes.py        per-point bodies rewritten to run POINTS_PER_LOOP points at once (batch code)
  points.py       batches by a compiled per-point function's address, from one cached parallel driver
  text.py         the generated modules' text: ``source``, ``batch_source``, ``rolled_plan``
  load.py         importing generated modules, compiling them, repairing a damaged Numba cache
"""
from .cache import LOCK, cache_dir, module_path, prune_cache, tape_key, write_atomic
from .expressions import branchless
from .load import (compile_batch, compile_kernel, evaluate_batch, load_module, room_for,
                   value_and_grad_batch)
from .text import batch_source, generated_size, rolled_plan, source

__all__ = ["LOCK", "batch_source", "branchless", "cache_dir", "compile_batch", "compile_kernel",
           "evaluate_batch", "generated_size", "load_module", "module_path", "prune_cache",
           "rolled_plan", "room_for", "source", "tape_key", "value_and_grad_batch", "write_atomic"]
