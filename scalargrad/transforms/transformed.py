"""What every function transform shares: a cache of traced paths per argument structure, and the
retrace loop that finds (or traces) the path whose guards hold for a call.
"""
from __future__ import annotations

import functools
import math
import threading
import time
import warnings

import numpy as np

from ..core import resources
from ..jit import custom_ops, kernels, tier
from ..jit.passes import optimize
from ..core.tape import Tape
from ..record.captured import Captured
from ..record.variable import Recorder, active_recorder
from ..record.tracing import VariableArguments, flatten_args, function_name, param_names, trace_into

MAX_PATHS = 32  # control-flow paths cached per argument structure
RETRACES_BEFORE_WARNING = 10  # retraces for changed closure/global values before a warning



class Path:
    """One traced control-flow path, ready for the kernels."""

    __slots__ = ("program", "structure", "tier")

    def __init__(self, tape, structure, kind=None, backend="interp"):
        resources.require_program(len(tape))  # before the passes copy the tape
        self.program = kernels.Program(optimize(tape))
        self.structure = structure
        # Which kernel runs it (jit/tier.py): the interpreter, or generated code for kind
        # "value_and_grad" / "evaluate" under backend "codegen", or "auto" once the path is hot.
        self.tier = tier.Tier(self.program.tape, kind, backend) if kind else None


class Signature:
    """What is cached for one argument structure: its traced paths (most recently used first) and
    where each argument lives in the flat input vector."""

    __slots__ = ("shapes", "paths", "offsets", "argnums", "lock", "one_vector")

    def __init__(self, shapes, argnums=()):
        self.shapes = shapes
        self.argnums = argnums  # the differentiated arguments, as non-negative indices
        self.paths: list[Path] = []
        self.lock = threading.Lock()  # guards reordering ``paths`` (calls from several threads)
        sizes = [1 if s is None else math.prod(s) for s in shapes]
        self.offsets = [sum(sizes[:i]) for i in range(len(shapes) + 1)]
        self.one_vector = len(shapes) == 1 and shapes[0] is not None and len(shapes[0]) == 1  # f(x), x 1-d


    def __getstate__(self):  # pickled (to Dask workers) without its lock
        return {name: getattr(self, name) for name in self.__slots__ if name != "lock"}

    def __setstate__(self, state):
        for name, value in state.items():
            setattr(self, name, value)
        self.lock = threading.Lock()

    def piece(self, flat, i):
        """Argument i's part of a flat vector: a float for a scalar, else an array of its shape."""
        if self.one_vector:
            return flat  # the whole vector already has the argument's shape
        shape = self.shapes[i]
        start = self.offsets[i]
        return float(flat[start]) if shape is None else flat[start:self.offsets[i + 1]].reshape(shape)

    def batch_piece(self, flat, i):
        """Argument i's part of a (points, inputs) matrix, with a leading point axis."""
        shape = self.shapes[i]
        part = flat[:, self.offsets[i]:self.offsets[i + 1]]
        return part[:, 0].copy() if shape is None else part.reshape((len(flat),) + shape)


class Transformed:
    """Shared machinery: per-structure cache of traced paths and the retrace loop."""

    kernel_kind = None  # the generated function a path runs (jit/codegen/), if any
    # How vmap maps it: "batch" (one batch kernel over the points, kernel_kind says which),
    # "pointwise" (the single-point path per point, on a thread pool), or None (vmap refuses it).
    vmap_mode = "batch"
    differentiates = True  # its kernels need every op's derivatives (not so for jit)
    what = "transform"     # its name in messages: what(f)

    def __init__(self, fun, debug_nans=None, backend="auto"):
        wrap(self, fun)
        self.fun = fun
        self.backend = tier.check_backend(backend)
        self.debug_nans = debug_nans  # None: follow sg.config.debug_nans
        self.names = param_names(fun)
        self.cache: dict[tuple, Signature] = {}
        self.captured = None  # the closure and global values the cached paths were traced with
        self.retraces_for_captured = 0
        self.compile_seconds = 0.0  # spent making paths (passes, program, generated code): for the bench

    def _prepare(self, args, kwargs):
        """(signature, flat float64 inputs) of a call; VariableArguments where the call must record
        symbolically instead (Variable arguments, or a call inside a traced function)."""
        if kwargs:
            raise TypeError(f"{self.__name__}: keyword arguments are not supported by transformed "
                            "functions; bind them with functools.partial")
        rec = active_recorder.get()
        if type(rec) is Recorder and rec.trace:  # in_trace(), inlined: this runs at every call
            raise VariableArguments(f"{self.__name__} called inside a traced function")
        captured = self.captured
        if captured is not None and captured.entries:
            self._check_captured(captured)
        shapes, x = flatten_args(args, self.names)
        sig = self.cache.get(shapes)
        if sig is None:
            sig = self.cache[shapes] = self._signature(shapes)
        return sig, x

    def _run(self, args, kwargs, attempt):
        """(signature, result of ``attempt(path, x)`` for the first path whose guards hold)."""
        sig, x = self._prepare(args, kwargs)
        paths = sig.paths
        if paths:  # the last call's path: the common case, tried without a search
            result = attempt(paths[0], x)
            if result is not None:
                return sig, result
        return sig, self._search(sig, x, attempt)

    def _search(self, sig, x, attempt):
        """The result of the first cached path after the most recent one whose guards hold for
        ``x`` (moved to the front), else of a path traced now."""
        paths = sig.paths
        for path in tuple(paths)[1:]:  # a snapshot: other threads may reorder the list
            result = attempt(path, x)
            if result is not None:
                with sig.lock:
                    if path in paths:
                        paths.remove(path)
                    paths.insert(0, path)
                return result
        return self._retrace(sig, x, attempt)

    def _check_captured(self, captured):
        """Drop every traced path when a value the traces read from the function's closure or
        globals has changed since (captured.py): the next call traces with the new value."""
        name = captured.changed()
        if name is None:
            return
        self.cache.clear()
        self.captured = None
        self.retraces_for_captured += 1
        if self.retraces_for_captured == RETRACES_BEFORE_WARNING:
            warnings.warn(f"{self.__name__}: {name!r}, read from outside the function, has changed "
                          f"{RETRACES_BEFORE_WARNING} times, and each change retraces it; pass it as "
                          "an argument instead", RuntimeWarning, stacklevel=5)

    def _retrace(self, sig, x, attempt):
        tape, structure = trace_into(self.fun, sig.shapes, x)
        # Noted after each trace: this call found them unchanged (_run), so what differs now is
        # state the function itself updates (a call counter), which must not retrace every call.
        self.captured = Captured.of(self.fun)
        started = time.perf_counter()
        path = self._make_path(sig, tape, structure)
        self.compile_seconds += time.perf_counter() - started
        if self.differentiates:
            custom_ops.require_derivatives(path.program.tape.op, path.program.tape.lit, f"{self.what}({self.__name__})")
        self._check_structure(path.structure)
        result = attempt(path, x)
        if result is None:
            raise RuntimeError(f"{self.__name__}: a freshly traced path failed its own guards; the "
                               "function's control flow is not deterministic in its inputs")
        with sig.lock:
            # Threads that failed every guard at once each traced the same new path: cache it once.
            if any(p.program.tape == path.program.tape for p in sig.paths):
                return result
            sig.paths.insert(0, path)
            evicted = len(sig.paths) > MAX_PATHS
            if evicted:
                sig.paths.pop()
        if evicted:
            warnings.warn(f"{self.__name__}: more than {MAX_PATHS} control-flow paths for one argument "
                          "structure; retracing often. Use sg.where instead of if on traced values.",
                          RuntimeWarning, stacklevel=4)
        return result

    def _signature(self, shapes):
        return Signature(shapes)

    def batch_transform(self):
        """The transform whose batch kernel vmap runs for this one."""
        return self

    def _check_structure(self, structure):
        """TypeError unless a freshly traced path returns what the transform needs."""

    def _make_path(self, sig, tape, structure):
        """The compiled path for a freshly traced tape (derived transforms compile another tape)."""
        return Path(tape, structure, self.kernel_kind, self.backend)

    def tape(self, *args) -> Tape:
        """The Tape recorded for these arguments."""
        shapes, x = flatten_args(args, self.names)
        return trace_into(self.fun, shapes, x)[0]


def argnums_tuple(argnums):
    if isinstance(argnums, (int, np.integer)) and not isinstance(argnums, bool):
        return (int(argnums),), True
    if isinstance(argnums, (tuple, list)) and all(isinstance(i, (int, np.integer)) for i in argnums):
        return tuple(int(i) for i in argnums), False
    raise TypeError(f"argnums must be an int or a tuple of ints, got {argnums!r}")


def wrap(wrapper, fun, updated=functools.WRAPPER_UPDATES):
    """``functools.update_wrapper``, and a ``__name__`` for messages even where ``fun`` has none."""
    functools.update_wrapper(wrapper, fun, updated=updated)
    wrapper.__name__ = function_name(fun)


def require_callable(fun, name):
    if not callable(fun):
        raise TypeError(f"{name} expects a function, got {type(fun).__name__}")
