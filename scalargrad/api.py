"""Function transforms: ``trace``, ``value_and_grad`` (the one implementation), ``grad``, ``jit``.

A decorated function traces and compiles on its first call for each argument structure (number,
kind and shape of arguments) and afterwards goes straight to the compiled kernel. Python control
flow on traced values records guards; a call whose inputs would take another branch retraces, and
each path is cached (least recently used first out).
"""
from __future__ import annotations

import functools
import inspect
import math
import numbers
import warnings
import numpy as np

from . import embed
from .jit import kernels
from .passes import optimize
from .tape import Tape
from .trace import Recorder, TracingError, Variable, new_input, output_slot, recording, to_tape

MAX_PATHS = 32  # control-flow paths cached per argument structure


# --- arguments -------------------------------------------------------------------------------------

def _arg_name(names, i):
    return f"argument {i}" + (f" ({names[i]!r})" if names and i < len(names) else "")


def _flatten_args(args, names):
    """(structure key, flat float64 input vector) of a call's arguments; the key holds None for a
    scalar argument and the shape for an array argument."""
    if len(args) == 1 and type(args[0]) is np.ndarray and args[0].dtype == np.float64:
        return (args[0].shape,), args[0].reshape(-1)  # the common case: one float64 array
    shapes = []
    parts = []
    for i, x in enumerate(args):
        tx = type(x)
        if tx is float or tx is int:
            shapes.append(None)
            parts.append(x)
        elif isinstance(x, np.ndarray):
            if x.dtype.kind not in "fiu":
                raise TypeError(f"{_arg_name(names, i)}: arrays must have a real numeric dtype, got {x.dtype}")
            shapes.append(x.shape)
            parts.append(x.astype(np.float64, copy=False).reshape(-1))
        elif isinstance(x, (bool, np.bool_)):
            raise TypeError(f"{_arg_name(names, i)}: bool is not differentiable; pass a float")
        elif isinstance(x, numbers.Real):
            shapes.append(None)
            parts.append(float(x))
        elif isinstance(x, (complex, np.complexfloating)):
            raise TypeError(f"{_arg_name(names, i)}: complex numbers are not supported (scalargrad is real-valued)")
        elif isinstance(x, Variable):
            raise TypeError(f"{_arg_name(names, i)}: pass a float, not a Variable, to a transformed function")
        else:
            raise TypeError(f"{_arg_name(names, i)}: expected a float, an int or a numeric NumPy array, "
                            f"got {tx.__name__}")
    shapes = tuple(shapes)
    if None in shapes and all(s is None for s in shapes):
        x = np.array(parts, dtype=np.float64)
    elif parts:
        x = np.concatenate([np.atleast_1d(np.asarray(p, dtype=np.float64)) for p in parts])
    else:
        x = np.zeros(0)
    return shapes, x


def _traced_args(rec, shapes, x):
    args = []
    offset = 0
    for shape in shapes:
        if shape is None:
            args.append(new_input(rec, x[offset]))
            offset += 1
        else:
            size = int(np.prod(shape, dtype=np.int64))
            arr = np.empty(size, dtype=object)
            for j in range(size):
                arr[j] = new_input(rec, x[offset + j])
            args.append(arr.reshape(shape) if shape != () else arr[0])  # a 0-d array acts as a scalar
            offset += size
    return args


def _flatten_output(rec, out):
    """(slots, structure) of the traced function's return value."""
    if isinstance(out, (tuple, list)):
        return [output_slot(rec, o, f"output {i}") for i, o in enumerate(out)], (type(out), len(out))
    if isinstance(out, np.ndarray) and out.shape != ():
        return [output_slot(rec, o, f"output {i}") for i, o in enumerate(out.reshape(-1))], (np.ndarray, out.shape)
    return [output_slot(rec, out, "the output")], None


def _trace(fun, shapes, x):
    rec = Recorder(trace=True)
    with recording(rec):
        args = _traced_args(rec, shapes, x)
        inputs = list(range(len(rec.op)))
        out = fun(*args)
        slots, structure = _flatten_output(rec, out)
    return to_tape(rec, inputs, slots), structure


def trace(fun, *args) -> Tape:
    """Record ``fun(*args)`` and return its Tape (inputs: every float of ``args``, flattened)."""
    shapes, x = _flatten_args(args, _param_names(fun))
    return _trace(fun, shapes, x)[0]


def _param_names(fun):
    try:
        return [p.name for p in inspect.signature(fun).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []


# --- compiled paths ---------------------------------------------------------------------------------

class _Path:
    """One traced control-flow path, ready for the kernels."""

    __slots__ = ("program", "structure")

    def __init__(self, tape, structure):
        self.program = kernels.Program(optimize(tape))
        self.structure = structure


class _Signature:
    """What is cached for one argument structure: its traced paths (most recently used first) and
    where each argument lives in the flat input vector."""

    __slots__ = ("shapes", "paths", "offsets", "argnums")

    def __init__(self, shapes, argnums=()):
        self.shapes = shapes
        self.argnums = argnums  # the differentiated arguments, as non-negative indices
        self.paths: list[_Path] = []
        sizes = [1 if s is None else math.prod(s) for s in shapes]
        self.offsets = [sum(sizes[:i]) for i in range(len(shapes) + 1)]

    def piece(self, flat, i):
        """Argument i's part of a flat vector: a float for a scalar, else an array of its shape."""
        shape = self.shapes[i]
        start = self.offsets[i]
        return float(flat[start]) if shape is None else flat[start:self.offsets[i + 1]].reshape(shape)

    def batch_piece(self, flat, i):
        """Argument i's part of a (points, inputs) matrix, with a leading point axis."""
        shape = self.shapes[i]
        part = flat[:, self.offsets[i]:self.offsets[i + 1]]
        return part[:, 0].copy() if shape is None else part.reshape((len(flat),) + shape)


class _Transformed:
    """Shared machinery: per-structure cache of traced paths and the retrace loop."""

    def __init__(self, fun):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.names = _param_names(fun)
        self.cache: dict[tuple, _Signature] = {}

    def _run(self, args, kwargs, attempt):
        """(signature, result of ``attempt(path, x)`` for the first path whose guards hold)."""
        if kwargs:
            raise TypeError(f"{self.__name__}: keyword arguments are not supported by transformed "
                            "functions; bind them with functools.partial")
        shapes, x = _flatten_args(args, self.names)
        sig = self.cache.get(shapes)
        if sig is None:
            sig = self.cache[shapes] = self._signature(shapes)
        paths = sig.paths
        for i, path in enumerate(paths):
            result = attempt(path, x)
            if result is not None:
                if i:
                    paths.insert(0, paths.pop(i))
                return sig, result
        return sig, self._retrace(sig, x, attempt)

    def _retrace(self, sig, x, attempt):
        tape, structure = _trace(self.fun, sig.shapes, x)
        path = _Path(tape, structure)
        self._check_path(path)
        result = attempt(path, x)
        if result is None:
            raise RuntimeError(f"{self.__name__}: a freshly traced path failed its own guards; the "
                               "function's control flow is not deterministic in its inputs")
        sig.paths.insert(0, path)
        if len(sig.paths) > MAX_PATHS:
            sig.paths.pop()
            warnings.warn(f"{self.__name__}: more than {MAX_PATHS} control-flow paths for one argument "
                          "structure; retracing often. Use sg.where instead of if on traced values.",
                          RuntimeWarning, stacklevel=4)
        return result

    def _signature(self, shapes):
        return _Signature(shapes)

    def _check_path(self, path):
        pass

    def tape(self, *args) -> Tape:
        """The Tape recorded for these arguments."""
        shapes, x = _flatten_args(args, self.names)
        return _trace(self.fun, shapes, x)[0]


def _argnums_tuple(argnums):
    if isinstance(argnums, (int, np.integer)) and not isinstance(argnums, bool):
        return (int(argnums),), True
    if isinstance(argnums, (tuple, list)) and all(isinstance(i, (int, np.integer)) for i in argnums):
        return tuple(int(i) for i in argnums), False
    raise TypeError(f"argnums must be an int or a tuple of ints, got {argnums!r}")


class ValueAndGrad(_Transformed):
    """``value_and_grad(fun, argnums)``: called like ``fun``, returns ``(value, gradient)``."""

    def __init__(self, fun, argnums=0):
        super().__init__(fun)
        self.argnums, self.single = _argnums_tuple(argnums)

    def _check_path(self, path):
        if path.structure is not None:
            kind, size = path.structure
            raise TypeError(f"{self.__name__} must return a scalar to be differentiated, got "
                            f"{'an array of shape ' + str(size) if kind is np.ndarray else f'a {kind.__name__} of {size}'}")

    def _signature(self, shapes):
        for i in self.argnums:
            if not -len(shapes) <= i < len(shapes):
                raise ValueError(f"{self.__name__}: argnums={i} but it was called with {len(shapes)} "
                                 "positional arguments")
        return _Signature(shapes, tuple(i % len(shapes) for i in self.argnums))

    def flat(self, args, kwargs=None):
        """(signature, value, flat gradient with respect to every input)."""
        g = None

        def attempt(path, x):
            nonlocal g
            if g is None:
                g = np.empty(len(x))
            p = path.program
            value, ok = kernels.value_and_grad(p.ins, p.lit, p.io, x, g, p.workspace())
            return value if ok else None

        sig, value = self._run(args, kwargs, attempt)
        return sig, value, g

    def compile(self, *args):
        """A Numba function ``k(x, g[, work]) -> value`` for the path traced at ``args``: ``x`` is the flat
        float64 vector of all inputs (arguments concatenated), the gradient is written into ``g``;
        ``work`` (``k.workspace_size`` floats, one per thread) saves an allocation per call.
        Callable from Python and from the user's ``@numba.njit`` code."""
        sig = self.flat(args)[0]
        return embed.value_and_grad_kernel(sig.paths[0].program)

    def __call__(self, *args, **kwargs):
        sig, value, g = self.flat(args, kwargs)
        if self.single:
            return value, sig.piece(g, sig.argnums[0])
        return value, tuple(sig.piece(g, i) for i in sig.argnums)

    def batched(self, sig, values, G):
        """``__call__``'s result for a batch: a leading point axis on the value and gradients."""
        grads = tuple(sig.batch_piece(G, i) for i in sig.argnums)
        return values, grads[0] if self.single else grads


class Grad:
    """``grad(fun, argnums)``: the gradient part of ``value_and_grad``."""

    def __init__(self, fun, argnums=0):
        self.value_and_grad = ValueAndGrad(fun, argnums)
        functools.update_wrapper(self, fun)

    def __call__(self, *args, **kwargs):
        return self.value_and_grad(*args, **kwargs)[1]

    def batched(self, sig, values, G):
        return self.value_and_grad.batched(sig, values, G)[1]

    def compile(self, *args):
        """As ``value_and_grad(f).compile``: ``k(x, g) -> value`` writing the gradient into ``g``."""
        return self.value_and_grad.compile(*args)

    def tape(self, *args) -> Tape:
        return self.value_and_grad.tape(*args)


class Jit(_Transformed):
    """``jit(fun)``: the same results as ``fun`` from the compiled forward sweep."""

    def flat(self, args, kwargs=None):
        """(signature, flat outputs, output structure)."""
        def attempt(path, x):
            out = np.empty(path.program.n_outputs)
            p = path.program
            return (out, path.structure) if kernels.evaluate(p.ins, p.lit, p.io, x, out, p.workspace()) else None

        sig, (out, structure) = self._run(args, kwargs, attempt)
        return sig, out, structure

    def compile(self, *args):
        """A Numba function ``k(x[, work]) -> value`` (first output) over the flat float64 input vector."""
        sig = self.flat(args)[0]
        return embed.evaluate_kernel(sig.paths[0].program)

    def __call__(self, *args, **kwargs):
        _, out, structure = self.flat(args, kwargs)
        if structure is None:
            return float(out[0])
        kind, size = structure
        return out.reshape(size) if kind is np.ndarray else kind(float(v) for v in out)

    def batched(self, structure, out):
        """``__call__``'s result for a batch (out is points x outputs): a leading point axis."""
        if structure is None:
            return out[:, 0].copy()
        kind, size = structure
        return out.reshape((len(out),) + size) if kind is np.ndarray else kind(out[:, i].copy() for i in range(size))


def value_and_grad(fun=None, argnums=0):
    """Return a function computing ``(fun(*args), gradient)`` with respect to ``argnums``.

    Gradients of scalar arguments are floats; of array arguments, float64 arrays of the same shape.
    With a tuple ``argnums`` the gradient is a tuple. Usable as a decorator.
    """
    if fun is None:
        return lambda f: value_and_grad(f, argnums)
    _require_callable(fun, "value_and_grad")
    return ValueAndGrad(fun, argnums)


def grad(fun=None, argnums=0):
    """Return a function computing the gradient of scalar ``fun`` with respect to ``argnums``."""
    if fun is None:
        return lambda f: grad(f, argnums)
    _require_callable(fun, "grad")
    return Grad(fun, argnums)


def jit(fun):
    """Return a function with ``fun``'s results, computed by the compiled forward sweep."""
    _require_callable(fun, "jit")
    return Jit(fun)


def _require_callable(fun, name):
    if not callable(fun):
        raise TypeError(f"{name} expects a function, got {type(fun).__name__}")


__all__ = ["trace", "value_and_grad", "grad", "jit", "TracingError"]
