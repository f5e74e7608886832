"""What every function transform shares: a cache of traced paths per argument structure, and the
retrace loop that finds (or traces) the path whose guards hold for a call.
"""
from __future__ import annotations

import functools
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
from ..record.pytrees import TreeShape, size_of
from ..record.tracing import (VariableArguments, flatten_args, flatten_keywords, function_name, param_names, trace,
                              trace_into)

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
    where each argument lives in the flat input vector (positional arguments, then the traced
    keyword values, if any)."""

    __slots__ = ("shapes", "keywords", "paths", "offsets", "argnums", "lock", "one_vector", "n_inputs")

    def __init__(self, shapes, argnums=(), keywords=None):
        self.shapes = shapes
        self.keywords = keywords  # None, or the Keywords of the call's keyword arguments
        self.argnums = argnums  # the differentiated arguments, as non-negative indices
        self.paths: list[Path] = []
        self.lock = threading.Lock()  # guards reordering ``paths`` (calls from several threads)
        sizes = [size_of(s) for s in shapes]
        self.offsets = [sum(sizes[:i]) for i in range(len(shapes) + 1)]
        self.n_inputs = self.offsets[-1] + (keywords.size if keywords is not None else 0)
        self.one_vector = (len(shapes) == 1 and type(shapes[0]) is tuple and len(shapes[0]) == 1
                           and keywords is None)  # f(x), x 1-d


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
        if shape is None:
            return float(flat[start])
        if type(shape) is TreeShape:  # the same pytree, of floats and arrays
            return shape.build_flat(flat[start:self.offsets[i + 1]])
        return flat[start:self.offsets[i + 1]].reshape(shape)

    def batch_piece(self, flat, i):
        """Argument i's part of a (points, inputs) matrix, with a leading point axis."""
        shape = self.shapes[i]
        part = flat[:, self.offsets[i]:self.offsets[i + 1]]
        if type(shape) is TreeShape:
            return shape.build_batch(part)
        return part[:, 0].copy() if shape is None else part.reshape((len(flat),) + shape)

    def positions(self, argnums=None) -> np.ndarray:
        """Flat input positions of the arguments ``argnums`` (default: the differentiated ones), in order."""
        argnums = self.argnums if argnums is None else argnums
        return np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in argnums]
                              or [np.zeros(0, np.int64)]).astype(np.int64)


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
        rec = active_recorder.get()
        if type(rec) is Recorder and rec.trace:  # in_trace(), inlined: this runs at every call
            raise VariableArguments(f"{self.__name__} called inside a traced function")
        captured = self.captured
        if captured is not None and captured.entries:
            self._check_captured(captured)
        shapes, x = flatten_args(args, self.names)
        if kwargs:  # part of the key: their structure, shapes and static values
            keywords, xk = flatten_keywords(kwargs, self.fun)
            key = (shapes, keywords)
            x = np.concatenate([x, xk])
        else:
            key, keywords = shapes, None
        sig = self.cache.get(key)
        if sig is None:
            sig = self.cache[key] = self._signature(shapes, keywords)
        return sig, x

    def _run(self, args, kwargs, attempt):
        """(signature, result of ``attempt(path, x)`` for the first path whose guards hold)."""
        sig, x = self._prepare(args, kwargs)
        return sig, self._attempt(sig, x, attempt)

    def _attempt(self, sig, x, attempt):
        """The result of ``attempt(path, x)`` for the first path of ``sig`` whose guards hold."""
        paths = sig.paths
        if paths:  # the last call's path: the common case, tried without a search
            result = attempt(paths[0], x)
            if result is not None:
                return result
        return self._search(sig, x, attempt)

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
        tape, structure = trace_into(self.fun, sig.shapes, x, keywords=sig.keywords)
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

    def _signature(self, shapes, keywords=None):
        return Signature(shapes, (), keywords)

    def batch_transform(self):
        """The transform whose batch kernel vmap runs for this one."""
        return self

    def _check_structure(self, structure):
        """TypeError unless a freshly traced path returns what the transform needs."""

    def _make_path(self, sig, tape, structure):
        """The compiled path for a freshly traced tape (derived transforms compile another tape)."""
        return Path(tape, structure, self.kernel_kind, self.backend)

    def tape(self, *args, **kwargs) -> Tape:
        """The Tape recorded for these arguments."""
        return trace(self.fun, *args, **kwargs)


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
