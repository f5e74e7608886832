"""One line on stderr when compiling scalargrad's kernels keeps a caller waiting: with a cold cache
the first ``backward()`` or ``grad`` call compiles the interpreter (seconds), the first ``vmap`` the
batch kernels. Said once per kind of kernel and process, after a second of compiling that kind.

Listens to Numba's ``numba:compile`` events, which fire on real compiles only (never on loads from
the disk cache). Compiles in tier.py's background thread make nobody wait and are not announced.
The line is an INFO record of the ``scalargrad`` logger, written to stderr when logging has no
handlers (else to them); ``logging.getLogger("scalargrad").setLevel(logging.WARNING)`` silences it.
"""
from __future__ import annotations

import logging
import sys
import threading
import time

from numba.core import event

DELAY_S = 1.0  # compile seconds of one kind before the notice
BACKGROUND_THREAD = "scalargrad-codegen"  # the name of tier.py's compile thread
# Kind of kernel by defining module (the last part of its name); generated modules start with
# GENERATED. Modules not listed here, in scalargrad, count as the interpreter.
KINDS = {"batch": "batch kernels for vmap", "lanes": "batch kernels for vmap", "tangent": "forward-mode kernels",
         "handwritten": "the benchmark's hand-written kernels"}
INTERPRETER = "the tape interpreter"
GENERATED = "_scalargrad_codegen_"

log = logging.getLogger("scalargrad")


def kind(dispatcher) -> str | None:
    """What a Numba dispatcher compiles, in words; None when it is not scalargrad's."""
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", None) or ""
    if module.startswith(GENERATED):
        return "generated code for a traced function"
    if module.partition(".")[0] != "scalargrad":
        return None
    return KINDS.get(module.rpartition(".")[2], INTERPRETER)


class CompileNotice(event.Listener):
    """Sums each kind's compile seconds on the calling threads; a timer says so once the sum would
    pass DELAY_S during a compile (nested compiles count once, with their outermost kind)."""

    def __init__(self):
        self.spent: dict[str, float] = {}
        self.said: set[str] = set()
        self.local = threading.local()
        self.lock = threading.Lock()

    def on_start(self, ev):
        self.local.depth = depth = getattr(self.local, "depth", 0) + 1
        what = kind(ev.data.get("dispatcher"))
        if (depth > 1 and getattr(self.local, "what", None)) or what is None or what in self.said \
                or threading.current_thread().name == BACKGROUND_THREAD:
            return
        with self.lock:
            remaining = DELAY_S - self.spent.get(what, 0.0)
        timer = threading.Timer(max(remaining, 0.0), self.say, (what,))
        timer.daemon = True
        self.local.what, self.local.start, self.local.timer, self.local.open_depth = what, time.perf_counter(), timer, depth
        timer.start()

    def on_end(self, ev):
        depth = self.local.depth
        self.local.depth = depth - 1
        if getattr(self.local, "what", None) and depth == self.local.open_depth:
            self.local.timer.cancel()
            with self.lock:
                self.spent[self.local.what] = self.spent.get(self.local.what, 0.0) + time.perf_counter() - self.local.start
            self.local.what = None

    def say(self, what: str) -> None:
        with self.lock:
            if what in self.said:
                return
            self.said.add(what)
        message = f"compiling {what} (once: later processes load it from the disk cache)..."
        if log.hasHandlers():  # logging is configured: leave the output to it
            log.info(message)
        elif log.isEnabledFor(logging.INFO):
            print(f"scalargrad: {message}", file=sys.stderr, flush=True)


def install() -> CompileNotice:
    """Register the listener (once per process); INFO is the ``scalargrad`` logger's default level."""
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    notice = CompileNotice()
    event.register("numba:compile", notice)
    return notice
