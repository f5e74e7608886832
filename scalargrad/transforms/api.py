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
import threading
import warnings
import numpy as np

from ..jit import custom_ops
from . import debug, embed
from ..core import resources
from ..record.captured import Captured
from ..jit import kernels, tier
from ..jit.passes import optimize
from ..core.tape import Tape
from ..record.trace import Recorder, TracingError, Variable, new_input, output_slot, recording, to_tape, tracing

MAX_PATHS = 32  # control-flow paths cached per argument structure
RETRACES_BEFORE_WARNING = 10  # retraces for changed closure/global values before a warning


# --- arguments -------------------------------------------------------------------------------------

def _arg_name(names, i):
    return f"argument {i}" + (f" ({names[i]!r})" if names and i < len(names) else "")


class VariableArguments(TypeError):
    """Raised by ``_flatten_args`` for Variable arguments: the transform then records symbolically
    into the caller's recorder (``transforms.call_symbolic``) instead of running a kernel."""


_FLOAT64 = np.dtype(np.float64)


def _flatten_args(args, names):
    """(structure key, flat float64 input vector) of a call's arguments; the key holds None for a
    scalar argument and the shape for an array argument."""
    if len(args) == 1:  # the common case, one float64 array: checked in ~0.1 us rather than ~0.6
        x = args[0]
        if type(x) is np.ndarray and x.dtype is _FLOAT64:
            return (x.shape,), (x if x.ndim == 1 else x.reshape(-1))
    shapes = []
    parts = []
    for i, x in enumerate(args):
        tx = type(x)
        if tx is float or tx is int:
            shapes.append(None)
            parts.append(x)
        elif isinstance(x, np.ndarray):
            if isinstance(x, (np.ma.MaskedArray, np.matrix)):  # a mask would be ignored; a matrix stays 2-d
                raise TypeError(f"{_arg_name(names, i)}: {tx.__name__} is not supported; pass a plain "
                                "array (np.asarray(x), or x.filled(value) for a masked array)")
            if x.dtype.kind not in "fiu":
                if x.dtype == object and any(type(v) is Variable for v in x.flat):
                    raise VariableArguments(f"{_arg_name(names, i)}: an array of Variables")
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
            raise VariableArguments(f"{_arg_name(names, i)}: pass a float, not a Variable, to a transformed function")
        else:
            raise TypeError(f"{_arg_name(names, i)}: expected a float, an int or a numeric NumPy array, "
                            f"got {tx.__name__}")
    shapes = tuple(shapes)
    try:
        if None in shapes and all(s is None for s in shapes):
            x = np.array(parts, dtype=np.float64)
        elif parts:
            x = np.concatenate([np.atleast_1d(np.asarray(p, dtype=np.float64)) for p in parts])
        else:
            x = np.zeros(0)
    except OverflowError:
        i = next(i for i, p in enumerate(parts) if type(p) is int and p.bit_length() > 1023)
        raise OverflowError(f"{_arg_name(names, i)}: an int of {parts[i].bit_length()} bits is too large "
                            "for a float64 (at most about 1.8e308)") from None
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


def _flatten_output(rec, out, fun):
    """(slots, structure) of ``fun``'s return value ``out``."""
    if isinstance(out, (tuple, list)):
        if not out:  # nothing to compute, and compile() and the gradient kernels return output 0
            raise ValueError(f"{function_name(fun)} returned an empty {type(out).__name__}: "
                             "a traced function must return at least one output")
        return [output_slot(rec, o, f"output {i}") for i, o in enumerate(out)], (type(out), len(out))
    if isinstance(out, np.ndarray) and out.shape != ():
        return [output_slot(rec, o, f"output {i}") for i, o in enumerate(out.reshape(-1))], (np.ndarray, out.shape)
    return [output_slot(rec, out, "the output")], None


def describe_structure(structure) -> str:
    """An output structure of ``_flatten_output`` (None: a scalar, else (kind, size)) in words."""
    if structure is None:
        return "a scalar"
    kind, size = structure
    return f"an array of shape {size}" if kind is np.ndarray else f"a {kind.__name__} of {size}"


def _trace(fun, shapes, x, rec=None):
    rec = Recorder(trace=True) if rec is None else rec  # debug.py passes a locating one
    resources.require(len(x) * resources.TRACE_BYTES_PER_INPUT,
                      f"tracing {function_name(fun)} at {len(x):,} inputs")
    with recording(rec):
        args = _traced_args(rec, shapes, x)
        inputs = list(range(len(rec.op)))
        out = fun(*args)
        slots, structure = _flatten_output(rec, out, fun)
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

    __slots__ = ("program", "structure", "tier")

    def __init__(self, tape, structure, kind=None, backend="interp"):
        resources.require_program(len(tape))  # before the passes copy the tape
        self.program = kernels.Program(optimize(tape))
        self.structure = structure
        # Which kernel runs it (jit/tier.py): the interpreter, or generated code for kind
        # "value_and_grad" / "evaluate" under backend "codegen", or "auto" once the path is hot.
        self.tier = tier.Tier(self.program.tape, kind, backend) if kind else None


class _Signature:
    """What is cached for one argument structure: its traced paths (most recently used first) and
    where each argument lives in the flat input vector."""

    __slots__ = ("shapes", "paths", "offsets", "argnums", "lock", "one_vector")

    def __init__(self, shapes, argnums=()):
        self.shapes = shapes
        self.argnums = argnums  # the differentiated arguments, as non-negative indices
        self.paths: list[_Path] = []
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


class _Transformed:
    """Shared machinery: per-structure cache of traced paths and the retrace loop."""

    kernel_kind = None  # the generated function a path runs (jit/codegen.py), if any
    differentiates = True  # its kernels need every op's derivatives (not so for jit)
    what = "transform"     # its name in messages: what(f)

    def __init__(self, fun, debug_nans=None, backend="auto"):
        _wrap(self, fun)
        self.fun = fun
        self.backend = tier.check_backend(backend)
        self.debug_nans = debug_nans  # None: follow sg.config.debug_nans
        self.names = _param_names(fun)
        self.cache: dict[tuple, _Signature] = {}
        self.captured = None  # the closure and global values the cached paths were traced with
        self.retraces_for_captured = 0

    def _run(self, args, kwargs, attempt):
        """(signature, result of ``attempt(path, x)`` for the first path whose guards hold)."""
        if kwargs:
            raise TypeError(f"{self.__name__}: keyword arguments are not supported by transformed "
                            "functions; bind them with functools.partial")
        if tracing():  # inside a trace: record symbolically, so closed-over traced values connect
            raise VariableArguments(f"{self.__name__} called inside a traced function")
        captured = self.captured
        if captured is not None and captured.entries:
            self._check_captured(captured)
        shapes, x = _flatten_args(args, self.names)
        sig = self.cache.get(shapes)
        if sig is None:
            sig = self.cache[shapes] = self._signature(shapes)
        paths = sig.paths
        for i, path in enumerate(tuple(paths)):  # a snapshot: other threads may reorder the list
            result = attempt(path, x)
            if result is not None:
                if i:
                    with sig.lock:
                        if path in paths:
                            paths.remove(path)
                        paths.insert(0, path)
                return sig, result
        return sig, self._retrace(sig, x, attempt)

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
        tape, structure = _trace(self.fun, sig.shapes, x)
        # Noted after each trace: this call found them unchanged (_run), so what differs now is
        # state the function itself updates (a call counter), which must not retrace every call.
        self.captured = Captured.of(self.fun)
        path = self._make_path(sig, tape, structure)
        if self.differentiates:
            custom_ops.require_derivatives(path.program.tape.op, path.program.tape.lit, f"{self.what}({self.__name__})")
        self._check_path(path)
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
        return _Signature(shapes)

    def _check_path(self, path):
        pass

    def _make_path(self, sig, tape, structure):
        """The compiled path for a freshly traced tape (derived transforms compile another tape)."""
        return _Path(tape, structure, self.kernel_kind, self.backend)

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

    kernel_kind = "value_and_grad"
    what = "value_and_grad"

    def __init__(self, fun, argnums=0, debug_nans=None, backend="auto"):
        super().__init__(fun, debug_nans, backend)
        self.argnums, self.single = _argnums_tuple(argnums)

    def _check_path(self, path):
        if path.structure is not None:
            raise TypeError(f"{self.__name__} must return a scalar to be differentiated, got "
                            f"{describe_structure(path.structure)}")

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
            value, ok = path.tier.value_and_grad(path.program, x, g)
            return value if ok else None

        sig, value = self._run(args, kwargs, attempt)
        return sig, value, g

    def compile(self, *args):
        """A Numba function ``k(x, g[, work]) -> value`` for the path traced at ``args``: ``x`` is the flat
        float64 vector of all inputs (arguments concatenated), the gradient is written into ``g``;
        ``work`` (``k.workspace_size`` floats, one per thread) saves an allocation per call.
        Callable from Python and from the user's ``@numba.njit`` code. With backend "codegen" it
        runs the tape's generated code (``k.workspace_size`` is then 0: no scratch needed)."""
        sig = self.flat(args)[0]
        path = sig.paths[0]
        generated = path.tier.generated()
        if generated is not None:
            return embed.generated_value_and_grad_kernel(generated, path.program.n_inputs)
        return embed.value_and_grad_kernel(path.program)

    def __call__(self, *args, **kwargs):
        try:
            sig, value, g = self.flat(args, kwargs)
        except VariableArguments:
            from ..record.symbolic import call_symbolic
            return call_symbolic(self, args, kwargs)
        if debug.enabled(self.debug_nans):
            debug.check(self, args, g)
        if self.single:
            return value, sig.piece(g, sig.argnums[0])
        return value, tuple(sig.piece(g, i) for i in sig.argnums)

    def batched(self, sig, values, G):
        """``__call__``'s result for a batch: a leading point axis on the value and gradients."""
        grads = tuple(sig.batch_piece(G, i) for i in sig.argnums)
        return values, grads[0] if self.single else grads


class Grad:
    """``grad(fun, argnums)``: the gradient part of ``value_and_grad``."""

    def __init__(self, fun, argnums=0, debug_nans=None, backend="auto"):
        self.value_and_grad = ValueAndGrad(fun, argnums, debug_nans, backend)
        _wrap(self, fun, updated=())  # copying fun's __dict__ would clobber the above

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

    kernel_kind = "evaluate"
    differentiates = False

    def flat(self, args, kwargs=None):
        """(signature, flat outputs, output structure)."""
        def attempt(path, x):
            out = np.empty(path.program.n_outputs)
            return (out, path.structure) if path.tier.evaluate(path.program, x, out) else None

        sig, (out, structure) = self._run(args, kwargs, attempt)
        return sig, out, structure

    def compile(self, *args):
        """A Numba function ``k(x[, work]) -> value`` (first output) over the flat float64 input vector
        (generated code as for ``value_and_grad(f).compile``)."""
        sig = self.flat(args)[0]
        path = sig.paths[0]
        if not path.program.n_outputs:  # an empty array: the kernel would return garbage
            raise ValueError(f"jit({self.__name__}).compile: the function has no outputs at these "
                             "arguments (an empty array), and the compiled kernel returns the first")
        generated = path.tier.generated()
        if generated is not None:
            return embed.generated_evaluate_kernel(generated, path.program.n_inputs, path.program.n_outputs)
        return embed.evaluate_kernel(path.program)

    def __call__(self, *args, **kwargs):
        try:
            _, out, structure = self.flat(args, kwargs)
        except VariableArguments:
            from ..record.symbolic import call_symbolic
            return call_symbolic(self, args, kwargs)
        if debug.enabled(self.debug_nans):
            debug.check(self, args)
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


def value_and_grad(fun=None, argnums=0, debug_nans=None, backend="auto"):
    """Return a function computing ``(fun(*args), gradient)`` with respect to ``argnums``.

    Gradients of scalar arguments are floats; of array arguments, float64 arrays of the same shape.
    With a tuple ``argnums`` the gradient is a tuple. Usable as a decorator. ``debug_nans=True``
    raises FloatingPointError naming the first op that made a NaN or inf (None: follow
    ``sg.config.debug_nans``; see ``scalargrad/transforms/debug.py``). ``backend``: "interp" runs the tape
    interpreter; "codegen" compiles straight-line code for the tape on the first call (seconds
    per few hundred ops; cached on disk, see ``scalargrad/jit/codegen.py``); "auto" (default)
    starts on the interpreter and moves small tapes that are called often to generated code,
    compiled in the background. All three give bit-identical results, except for the sign bit and
    payload of NaNs, which LLVM leaves unspecified (NaNs appear in the same places).
    """
    if fun is None:
        return lambda f: value_and_grad(f, argnums, debug_nans, backend)
    _require_callable(fun, "value_and_grad")
    return ValueAndGrad(fun, argnums, debug_nans, backend)


def grad(fun=None, argnums=0, debug_nans=None, backend="auto"):
    """Return a function computing the gradient of scalar ``fun`` with respect to ``argnums``
    (``debug_nans`` and ``backend`` as for ``value_and_grad``)."""
    if fun is None:
        return lambda f: grad(f, argnums, debug_nans, backend)
    _require_callable(fun, "grad")
    return Grad(fun, argnums, debug_nans, backend)


def jit(fun=None, debug_nans=None, backend="auto"):
    """Return a function with ``fun``'s results, computed by the compiled forward sweep
    (``debug_nans`` and ``backend`` as for ``value_and_grad``)."""
    if fun is None:
        return lambda f: jit(f, debug_nans, backend)
    _require_callable(fun, "jit")
    return Jit(fun, debug_nans, backend)


def function_name(fun) -> str:
    """``fun.__name__``; for a functools.partial ``partial(<its function's name>)``, for another
    callable object the name of its type (neither has a ``__name__``)."""
    name = getattr(fun, "__name__", None)
    if isinstance(name, str):
        return name
    if isinstance(fun, functools.partial):
        return f"partial({function_name(fun.func)})"
    return type(fun).__name__


def _wrap(wrapper, fun, updated=functools.WRAPPER_UPDATES):
    """``functools.update_wrapper``, and a ``__name__`` for messages even where ``fun`` has none."""
    functools.update_wrapper(wrapper, fun, updated=updated)
    wrapper.__name__ = function_name(fun)


def _require_callable(fun, name):
    if not callable(fun):
        raise TypeError(f"{name} expects a function, got {type(fun).__name__}")


__all__ = ["trace", "value_and_grad", "grad", "jit", "TracingError"]
