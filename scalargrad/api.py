"""Function transforms: ``trace``, ``value_and_grad`` (the one implementation), ``grad``, ``jit``.

A decorated function traces and compiles on its first call for each argument structure (number,
kind and shape of arguments) and afterwards goes straight to the compiled kernel. Python control
flow on traced values records guards; a call whose inputs would take another branch retraces, and
each path is cached (least recently used first out).
"""
from __future__ import annotations

import functools
import inspect
import itertools
import numbers
import warnings
from collections import OrderedDict

import numpy as np

from .jit import kernels
from .tape import Tape
from .trace import Recorder, TracingError, Variable, new_input, output_slot, recording, to_tape

MAX_PATHS = 32  # control-flow paths cached per argument structure


# --- arguments -------------------------------------------------------------------------------------

def _arg_name(names, i):
    return f"argument {i}" + (f" ({names[i]!r})" if names and i < len(names) else "")


def _flatten_args(args, names):
    """(structure key, flat float64 input vector) of a call's arguments."""
    shapes = []
    parts = []
    for i, x in enumerate(args):
        tx = type(x)
        if tx is float or tx is int or (isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))):
            shapes.append(None)
            parts.append(float(x))
            continue
        if isinstance(x, np.ndarray):
            if x.dtype.kind not in "fiu":
                raise TypeError(f"{_arg_name(names, i)}: arrays must have a real numeric dtype, got {x.dtype}")
            shapes.append(x.shape)
            parts.append(np.asarray(x, dtype=np.float64).reshape(-1))
            continue
        if isinstance(x, (bool, np.bool_)):
            raise TypeError(f"{_arg_name(names, i)}: bool is not differentiable; pass a float")
        if isinstance(x, (complex, np.complexfloating)):
            raise TypeError(f"{_arg_name(names, i)}: complex numbers are not supported (scalargrad is real-valued)")
        if isinstance(x, Variable):
            raise TypeError(f"{_arg_name(names, i)}: pass a float, not a Variable, to a transformed function")
        raise TypeError(f"{_arg_name(names, i)}: expected a float, an int or a numeric NumPy array, "
                        f"got {tx.__name__}")
    if len(parts) == 1 and shapes[0] is not None:
        x = parts[0]
    elif all(s is None for s in shapes):
        x = np.array(parts, dtype=np.float64)
    else:
        x = np.concatenate([np.atleast_1d(p) for p in parts]) if parts else np.zeros(0)
    return tuple(shapes), np.ascontiguousarray(x, dtype=np.float64)


def _unflatten(flat, shapes, which):
    """Per-argument pieces of a flat vector: floats for scalars, arrays with the argument's shape."""
    out = []
    offset = 0
    for i, shape in enumerate(shapes):
        size = 1 if shape is None else int(np.prod(shape, dtype=np.int64))
        if i in which:
            out.append(float(flat[offset]) if shape is None else flat[offset:offset + size].reshape(shape))
        offset += size
    return out


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
            args.append(arr.reshape(shape))
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
        self.program = kernels.Program(tape)
        self.structure = structure


class _Transformed:
    """Shared machinery: per-structure cache of traced paths and the retrace loop."""

    def __init__(self, fun):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.names = _param_names(fun)
        self.cache: dict[tuple, OrderedDict] = {}
        self.path_ids = itertools.count()

    def _paths(self, shapes):
        paths = self.cache.get(shapes)
        if paths is None:
            paths = self.cache[shapes] = OrderedDict()
        return paths

    def _run(self, args, kwargs, attempt):
        if kwargs:
            raise TypeError(f"{self.__name__}: keyword arguments are not supported by transformed "
                            "functions; bind them with functools.partial")
        shapes, x = _flatten_args(args, self.names)
        paths = self._paths(shapes)
        for key in reversed(paths):
            result = attempt(paths[key], x)
            if result is not None:
                paths.move_to_end(key)
                return shapes, result
        tape, structure = _trace(self.fun, shapes, x)
        path = _Path(tape, structure)
        self._check_path(path)
        result = attempt(path, x)
        if result is None:
            raise RuntimeError(f"{self.__name__}: a freshly traced path failed its own guards; the "
                               "function's control flow is not deterministic in its inputs")
        paths[next(self.path_ids)] = path
        if len(paths) > MAX_PATHS:
            paths.popitem(last=False)
            warnings.warn(f"{self.__name__}: more than {MAX_PATHS} control-flow paths for one argument "
                          "structure; retracing often. Use sg.where instead of if on traced values.",
                          RuntimeWarning, stacklevel=3)
        return shapes, result

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

    def __call__(self, *args, **kwargs):
        for i in self.argnums:
            if not -len(args) <= i < len(args):
                raise ValueError(f"{self.__name__}: argnums={i} but it was called with {len(args)} positional arguments")
        which = tuple(sorted(i % len(args) for i in self.argnums))

        def attempt(path, x):
            g = np.empty(len(x))
            p = path.program
            value, ok = kernels.value_and_grad(p.ins, p.lit, p.io, x, g)
            return (value, g) if ok else None

        shapes, (value, g) = self._run(args, kwargs, attempt)
        pieces = dict(zip(which, _unflatten(g, shapes, which)))
        grads = tuple(pieces[i % len(args)] for i in self.argnums)
        return value, grads[0] if self.single else grads


class Grad:
    """``grad(fun, argnums)``: the gradient part of ``value_and_grad``."""

    def __init__(self, fun, argnums=0):
        self.value_and_grad = ValueAndGrad(fun, argnums)
        functools.update_wrapper(self, fun)

    def __call__(self, *args, **kwargs):
        return self.value_and_grad(*args, **kwargs)[1]

    def tape(self, *args) -> Tape:
        return self.value_and_grad.tape(*args)


class Jit(_Transformed):
    """``jit(fun)``: the same results as ``fun`` from the compiled forward sweep."""

    def __call__(self, *args, **kwargs):
        def attempt(path, x):
            out = np.empty(path.program.n_outputs)
            p = path.program
            return (out, path.structure) if kernels.evaluate(p.ins, p.lit, p.io, x, out) else None

        _, (out, structure) = self._run(args, kwargs, attempt)
        if structure is None:
            return float(out[0])
        kind, size = structure
        if kind is np.ndarray:
            return out.reshape(size)
        return kind(float(v) for v in out)


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
