"""Which kernel runs a traced path: the tape interpreter or the tape's generated code (codegen/).

``backend="codegen"`` compiles on the path's first call (tapes up to a size cap); ``"auto"`` starts on
the interpreter and tiers up by time, compiling in a background thread once the interpreter has cost
the path as much time as the compile is predicted to take (a vmap batch's points count as calls);
``"interp"`` never compiles. vmap's batches switch with the path's calls (the compiled per-point
function at each point), then, once those batches have paid for it, to lane code.
The kernels give bit-identical results (NaNs in the same places, though their sign bit and payload,
which LLVM leaves unspecified, may differ), so switching is invisible except in speed.
"""
from __future__ import annotations

import collections
import math
import os
import threading
import time
import warnings

import numpy as np
from numba.core.compiler_lock import global_compiler_lock

from ..config import codegen_max_ops, codegen_max_tapes
from .custom_ops import uses_custom_ops
from ..core.tape import Tape
from . import codegen, compile_timings, kernels, vector
from .codegen import lanes, points
from .compile_notice import BACKGROUND_THREAD

BACKENDS = ("auto", "interp", "codegen")
# "auto" compiles a path's generated code in a background thread once the path has had
# AUTO_HOT_CALLS calls (a few milliseconds of a small path: enough to show it is in a loop), if the
# compile is predicted (compile_timings.py) to take at most CHEAP_COMPILE_SECONDS: on a spare core
# that costs the caller little. A longer compile waits, as in ski rental, until the interpreter
# has cost the path as much time as the compile will take, so a path never costs much more than
# twice the better of compiling and not compiling, in hindsight. The rent is the interpreter time of
# one call, measured at the path's second call (the first may load the interpreter). Tapes whose
# generated code would exceed codegen_max_ops() lines stay on the interpreter; whether a tape of
# ROLL_MIN_OPS or more instructions has loops that make its code short is worked out in the
# background thread, for tapes of at most AUTO_MAX_ROLLED_TAPE instructions (finding the loops is
# linear in the tape).
AUTO_HOT_CALLS = 1000
# ... or at AUTO_HOT_SECONDS of interpreter time, if that comes first (at least AUTO_MIN_HOT_CALLS
# calls): 1000 calls of a large path (Rosenbrock n = 10^4: 0.45 s) held its tier-up back past the
# first second and a half.
AUTO_HOT_SECONDS = 0.05
AUTO_MIN_HOT_CALLS = 20
CHEAP_COMPILE_SECONDS = 2.0  # the old rule's compiles (200 straight lines) took about this long
AUTO_MAX_ROLLED_TAPE = 2_000_000
INTERP_SECONDS_PER_OP = 4e-9  # the rent of a batch point when no single call was timed (bench: 4-6 ns)
# vmap runs a hot path's batches by its compiled per-point function (codegen/points.py) as soon as
# that is compiled, and compiles the path's lane code (codegen/lanes.py; up to 1.7x faster) once those
# batches have taken as long as the lane code is predicted to take to compile (compile_timings.py).
# backend="codegen" compiles code of at most config.codegen_max_ops() instruction lines and runs
# larger tapes on the interpreter, with a warning.
_COMPILING = threading.Lock()  # one background compile at a time: it competes with the caller


def _hold_compile_locks() -> None:
    """Before ``os.fork()``: wait for the compiles in flight and hold their locks (a background
    compile holds Numba's compiler lock; a child inheriting it held by a thread it does not have
    would hang at its first compile). The fork waits for at most one compile."""
    _COMPILING.acquire()
    codegen.LOCK.acquire()
    global_compiler_lock.acquire()


def _release_compile_locks() -> None:
    global_compiler_lock.release()
    codegen.LOCK.release()
    _COMPILING.release()


def _after_fork_in_child() -> None:
    _release_compile_locks()
    _VECTOR["worker"] = None  # the worker thread was not forked: the queued paths stay scalar
    _VECTOR_QUEUE.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(before=_hold_compile_locks, after_in_parent=_release_compile_locks,
                        after_in_child=_after_fork_in_child)


# The interpreter's vector form of loop-structured tapes (vector.py) is prepared in a background
# thread, one path after another: the vector sweeps are compiled first (15-40 s once per
# installation on a 2-core machine, holding Numba's compiler lock; later loaded from the disk cache in
# 0.1 s), then each path's runs are found (linear in the tape: 0.2-0.5 s for Rosenbrock n = 10^4).
# Paths run the scalar sweeps meanwhile; a failure leaves every path on them, with a warning. Until
# the sweeps are in the disk cache, a path asks for its vector form only once it has cost
# COLD_VECTOR_SECONDS of interpreter time: a short script would otherwise wait at exit for the compile.
COLD_VECTOR_SECONDS = 2.0
_VECTOR = {"state": "cold", "worker": None}  # state: cold, ready or failed
_VECTOR_QUEUE = collections.deque()
_VECTOR_LOCK = threading.Lock()


def _request_vector_form(tier) -> None:
    with _VECTOR_LOCK:
        if _VECTOR["state"] == "failed":
            return
        _VECTOR_QUEUE.append(tier)
        if _VECTOR["worker"] is None:
            _VECTOR["worker"] = threading.Thread(target=_vector_worker, name=BACKGROUND_THREAD)
            _VECTOR["worker"].start()


def _vector_worker() -> None:
    while True:
        with _VECTOR_LOCK:
            if not _VECTOR_QUEUE:
                _VECTOR["worker"] = None
                return
            tier = _VECTOR_QUEUE.popleft()
        try:
            if _VECTOR["state"] == "cold":
                with _COMPILING:  # one background compile at a time
                    vector.warm_up()
                _VECTOR["state"] = "ready"
            tier.vector = vector.build(tier.tape)
        except Exception as exc:  # the scalar sweeps give the same results
            with _VECTOR_LOCK:
                _VECTOR["state"] = "failed"
                _VECTOR_QUEUE.clear()
            warnings.warn(f"scalargrad: the interpreter's vector form failed ({exc!r}); loop-structured "
                          "tapes run on the scalar sweeps", RuntimeWarning)


def compiling() -> bool:
    """Whether a background compile (of any path), or the preparation of a vector form, is in flight."""
    return _COMPILING.locked() or _VECTOR["worker"] is not None


def wait_for_compiles() -> None:
    """Return once no background compile is in flight and every vector form asked for is prepared
    (the bench times nothing while they compete for the cores and may switch kernels, and a path
    can start its own compile only then)."""
    while True:
        with _COMPILING:
            pass
        worker = _VECTOR["worker"]
        if worker is None:
            return
        worker.join()


def check_backend(backend) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    return backend


def predicted_compile_seconds(tape: Tape, batch: bool = False) -> float:
    """Seconds the tape's generated code (``batch``: its lane code) would take to be ready
    (compile_timings.py)."""
    return compile_timings.predicted_seconds(tape, batch)


class Tier:
    """The kernel for one traced path: the interpreter, or the generated function once compiled.

    ``backend="codegen"`` compiles now; ``"auto"`` counts interpreter calls and, for a small tape
    that gets hot, compiles in a background thread and switches when it is ready (no call waits;
    results are bit-identical, so the switch is invisible); ``"interp"`` never compiles."""

    __slots__ = ("tape", "kind", "backend", "calls", "kernel", "module", "started", "lane_code", "error",
                 "compile_times", "threads", "rent", "hot_calls", "predicted", "lane_code_predicted", "vector",
                 "vector_after", "batched")

    def __init__(self, tape: Tape, kind: str, backend: str = "auto"):
        self.tape, self.kind, self.backend = tape, kind, check_backend(backend)
        self.kernel = None
        self.module = None  # what runs vmap's batches on generated code (generated_module)
        self.started = False
        self.lane_code = None  # vmap's lane code: None (not asked for yet), "compiling", "ready" or "none"
        self.batched = False  # vmap has run the path: its tier-up prepares the per-point batches too
        self.error = None
        self.calls = 0
        self.rent = None  # interpreter seconds of one call, measured at the second call
        self.hot_calls = AUTO_HOT_CALLS  # calls at which to look again at tiering up
        self.predicted = None  # predicted compile seconds, worked out once (_predicted)
        self.lane_code_predicted = None  # the same for the lane code, once vmap runs the per-point function
        self.compile_times = None  # (wall seconds, CPU seconds of the compiling thread)
        self.threads = []  # background compiles started and not yet waited for (settle)
        self.vector = None  # the interpreter's vector form, once prepared in the background
        self.vector_after = None  # interpreter seconds after which to ask for it
        if backend != "codegen" and vector.MIN_OPS <= len(tape) <= AUTO_MAX_ROLLED_TAPE and not uses_custom_ops(tape.op):
            if _VECTOR["state"] == "ready" or vector.cached():
                _request_vector_form(self)
            else:
                self.vector_after = COLD_VECTOR_SECONDS
        if backend == "codegen":
            cap, size = codegen_max_ops(), codegen.generated_size(tape)
            if size > cap:
                why = (f"compiles code of at most {cap:,} instruction lines (set SCALARGRAD_CODEGEN_MAX_OPS to "
                       f"change it); this {len(tape):,}-instruction path would need {size:,}")
            elif not codegen.room_for(tape):
                why = (f"compiles code for at most {codegen_max_tapes()} distinct tapes per process, since Numba "
                       "never frees compiled code (set SCALARGRAD_CODEGEN_MAX_TAPES to change it)")
            else:
                why = None
                self.kernel = codegen.compile_kernel(tape, kind)
            if why:
                self.started = True
                warnings.warn(f"scalargrad: backend='codegen' {why}, so this path runs on the interpreter, "
                              "with the same results", RuntimeWarning, stacklevel=2)
        elif (backend == "interp" or uses_custom_ops(tape.op)
              or codegen_max_ops() < len(tape) < codegen.text.ROLL_MIN_OPS or len(tape) > AUTO_MAX_ROLLED_TAPE):
            self.started = True  # never tiers up (generated code cannot call custom ops)

    def __reduce__(self):
        """Pickled (to Dask workers) as what makes it: kernels, vector forms and compile threads belong
        to this process, so the copy starts afresh on the interpreter and tiers up on its own."""
        return Tier, (self.tape, self.kind, self.backend)

    def count(self, calls: int = 1, batch: bool = False) -> None:
        """``calls`` interpreter evaluations (one call, or a batch's points); starts the background
        compile at AUTO_HOT_CALLS calls or AUTO_HOT_SECONDS of them (``_timed``), or for a long
        compile once the calls have paid for it."""
        self.calls += calls
        self.batched |= batch
        if self.calls >= self.hot_calls and not self.started:
            self._consider()
        if self.vector_after is not None and self.rent is not None and self.calls * self.rent >= self.vector_after:
            self.vector_after = None
            _request_vector_form(self)

    def _consider(self) -> None:
        """Start the background compile unless it must wait to be paid for. A tape that may have
        loops is looked at in the background thread (finding them takes a while)."""
        if len(self.tape) < codegen.text.ROLL_MIN_OPS and self._unpaid(self._predicted()):
            return
        if _COMPILING.acquire(blocking=False):
            if self.started:  # another thread calling this path got here first
                _COMPILING.release()
                return
            self.started = True
            self._start(self._compile)

    def _predicted(self) -> float:
        """The predicted compile seconds, worked out once: it hashes the tape and reads the cache,
        and ``_consider`` may run at every call while another path's compile holds the lock."""
        if self.predicted is None:
            self.predicted = predicted_compile_seconds(self.tape)
        return self.predicted

    def _unpaid(self, predicted: float) -> bool:
        """Whether a compile predicted to take ``predicted`` seconds must wait for more calls; if so,
        ``hot_calls`` becomes the call at which the interpreter will have cost that much."""
        rent = self.rent if self.rent is not None else len(self.tape) * INTERP_SECONDS_PER_OP
        if predicted <= CHEAP_COMPILE_SECONDS or self.calls * rent >= predicted:
            return False
        self.hot_calls = max(self.calls + 1, math.ceil(predicted / max(rent, 1e-9)))
        return True

    def _start(self, compile_) -> None:
        # Not a daemon: interpreter exit waits for a compile in flight rather than killing it.
        thread = threading.Thread(target=compile_, name=BACKGROUND_THREAD)
        self.threads.append(thread)
        thread.start()

    def settle(self) -> bool:
        """Wait for the background compiles started so far; whether there were any (the bench
        calls until there are none, then times the steady state)."""
        threads, self.threads = self.threads, []
        for thread in threads:
            thread.join()
        return bool(threads)

    def _compile(self) -> None:
        try:
            if codegen.generated_size(self.tape) > codegen_max_ops() or not codegen.room_for(self.tape):
                return  # a large tape without loops that would make its code short, or too many tapes
            if self._unpaid(self._predicted()):  # a long compile, not yet paid for
                self.started = False
                return
            wall, cpu = time.perf_counter(), time.thread_time()
            on_disk = compile_timings.compiled_on_disk(self.tape)
            kernel = codegen.compile_kernel(self.tape, self.kind)
            self.compile_times = (time.perf_counter() - wall, time.thread_time() - cpu)
            if not on_disk:
                compile_timings.record(self.tape, self.compile_times[0])
            if self.batched and self.module is None:  # vmap has run the path: its batches switch too
                self.module = self._point_batches(kernel)
            self.kernel = kernel
        except Exception as exc:  # stay on the interpreter, which gives the same results
            self.error = exc
            warnings.warn(f"scalargrad: generated code for a {len(self.tape)}-instruction tape failed to "
                          f"compile ({exc!r}); this path stays on the interpreter", RuntimeWarning)
        finally:
            _COMPILING.release()

    def value_and_grad(self, program, x, grad):
        """(value, guards hold) of ``program`` at ``x``, the gradient written into ``grad``."""
        kernel = self.kernel
        if kernel is not None:
            return kernel(x if x.flags.c_contiguous else np.ascontiguousarray(x), grad)
        vp = self.vector
        if self.calls != 1:  # every interpreter call but the second, which is timed (_timed)
            self.count()
            if vp is not None:
                return vp.value_and_grad(x, grad)
            return kernels.value_and_grad(program.ins, program.lit, program.io, x, grad, program.workspace())
        if vp is not None:
            return self._timed(lambda: vp.value_and_grad(x, grad))
        return self._timed(lambda: kernels.value_and_grad(program.ins, program.lit, program.io, x, grad,
                                                          program.workspace()))

    def evaluate(self, program, x, out) -> bool:
        """Writes the outputs of ``program`` at ``x`` into ``out``; returns whether guards hold."""
        kernel = self.kernel
        if kernel is not None:
            return kernel(x if x.flags.c_contiguous else np.ascontiguousarray(x), out)
        vp = self.vector
        if self.calls != 1:  # every interpreter call but the second, which is timed (_timed)
            self.count()
            if vp is not None:
                return vp.evaluate(x, out)
            return kernels.evaluate(program.ins, program.lit, program.io, x, out, program.workspace())
        if vp is not None:
            return self._timed(lambda: vp.evaluate(x, out))
        return self._timed(lambda: kernels.evaluate(program.ins, program.lit, program.io, x, out, program.workspace()))

    def _timed(self, sweep):
        """The interpreter's ``sweep()``, counted, its time kept as the path's rent: the second call
        (the first may load the interpreter)."""
        started = time.perf_counter()
        result = sweep()
        self.rent = rent = time.perf_counter() - started
        self.hot_calls = min(self.hot_calls, max(AUTO_MIN_HOT_CALLS, math.ceil(AUTO_HOT_SECONDS / max(rent, 1e-9))))
        self.count()
        return result

    def running(self) -> str:
        """The kernel the path's single calls run now: "codegen", "vector" (the interpreter's vector
        form, vector.py) or "interp"."""
        return "codegen" if self.kernel is not None else "interp" if self.vector is None else "vector"

    def generated(self):
        """The compiled generated function under backend "codegen", else None."""
        return self.kernel if self.backend == "codegen" else None

    def best_kernel(self):
        """The generated function for a kernel handed out by ``compile()``: under "codegen" the one
        compiled at the first call; under "auto" compiled now (or taken from a background compile of
        this path, waited for) when the tape qualifies, whatever the number of calls so far, since
        the caller is about to run it in a loop of its own. None under "interp" and for tapes that
        stay on the interpreter: custom ops, generated code over ``codegen_max_ops()`` lines, or a
        process that has compiled ``codegen_max_tapes()`` tapes."""
        if self.backend != "auto":
            return self.generated()
        self.settle()
        if (self.kernel is None and self.error is None and not uses_custom_ops(self.tape.op)
                and codegen.generated_size(self.tape) <= codegen_max_ops() and codegen.room_for(self.tape)):
            self.started = True  # nothing left for the background to compile
            try:
                self.kernel = codegen.compile_kernel(self.tape, self.kind)
            except Exception as exc:  # the interpreter's kernel, which gives the same results
                self.error = exc
                warnings.warn(f"scalargrad: generated code for a {len(self.tape)}-instruction tape failed to "
                              f"compile ({exc!r}); compile() hands out the interpreter's kernel", RuntimeWarning)
        return self.kernel

    def running_batch(self) -> str:
        """The kernel vmap's batches of this path (on the CPU) run now: "lanes" (lane code),
        "points" (the compiled per-point function, codegen/points.py) or "interp"."""
        module = self.module
        return "interp" if module is None else "points" if isinstance(module, points.PointBatches) else "lanes"

    def lane_code_pending(self) -> bool:
        """Whether more vmap calls will start the compile of this path's lane code (under "auto",
        once its batches on the per-point function have paid for it)."""
        return self.backend == "auto" and self.kernel is not None and self.lane_code is None

    def batch_settled(self) -> bool:
        """Whether vmap's batches run generated code and no faster kernel is to come (the lane code
        is compiled, or this tape has none)."""
        return self.module is not None and (self.backend != "auto" or self.lane_code in ("ready", "none"))

    def generated_module(self):
        """What runs vmap's batches on generated code, else None (the batch interpreter): the lane
        code's batch module (``codegen.batch_source``), or ``points.PointBatches`` of the compiled
        per-point function for tapes without lane code. Under "codegen" the lane code (compiled by
        its first call). Under "auto", from the tier-up on, the per-point batches; then the lane code,
        compiled in a background thread once those batches have taken as long as it is predicted to
        take to compile. Every kernel gives the batch interpreter's results, bit for bit, so the
        switches are invisible."""
        if self.module is None and self.kernel is not None and self.lane_code is None:
            if self.backend == "codegen":
                self._lane_module()
            else:
                self.module = self._point_batches(self.kernel)
        module = self.module
        if (self.backend == "auto" and self.kernel is not None and self.lane_code is None
                and (module is None or module.seconds >= self._lane_code_predicted())
                and _COMPILING.acquire(blocking=False)):
            self.lane_code = "compiling"
            self._start(self._compile_lanes)
        return self.module

    def _lane_code_predicted(self) -> float:
        """The lane code's predicted compile seconds, worked out once (it reads the cache)."""
        if self.lane_code_predicted is None:
            self.lane_code_predicted = predicted_compile_seconds(self.tape, batch=True)
        return self.lane_code_predicted

    def _point_batches(self, kernel):
        """``points.PointBatches`` of the compiled per-point ``kernel``, or None (with a warning when
        its driver failed to compile: the batch interpreter gives the same results)."""
        try:
            return points.PointBatches.of(kernel, self.kind)
        except Exception as exc:
            warnings.warn(f"scalargrad: the per-point batch driver failed to compile ({exc!r}); vmap runs the "
                          "batch interpreter (or lane code, once compiled), with the same results", RuntimeWarning)
            return None

    def _compile_lanes(self) -> None:
        try:
            self._lane_module()
        finally:
            _COMPILING.release()

    def _lane_module(self) -> None:
        """Compile the lane code's batch module, which vmap then runs. A tape without lane code keeps
        the per-point batches; a failed compile keeps them too (or the batch interpreter), with a
        warning: they give the same results."""
        try:
            module = codegen.load_module(self.tape, batch=True)
            codegen.compile_batch(module, self.kind)
        except lanes.Unsupported:  # its buffers would not fit in a core's cache (lanes.MAX_ROWS)
            module = None
        except Exception as exc:
            module = None
            warnings.warn(f"scalargrad: the lane code for a {len(self.tape)}-instruction tape failed to compile "
                          f"({exc!r}); vmap runs its batches as before, with the same results", RuntimeWarning)
        if module is None:
            self.lane_code = "none"
            if self.module is None:
                self.module = self._point_batches(self.kernel)
        else:
            self.module, self.lane_code = module, "ready"
