"""Tracing a function: its arguments flattened into one float64 vector and traced as tape inputs,
its return value flattened into output slots, and the recording turned into a Tape.

``trace_into`` is the one way a function is traced into a fresh recorder; ``trace`` (``sg.trace``),
the transforms, ``debug_nans`` and transforms called on Variables (``trace_at``) all go through it.
"""
from __future__ import annotations

import functools
import inspect
import numbers

import numpy as np

from ..core import resources
from ..core.ops import INPUT
from ..core.tape import Tape
from ..jit.passes import optimize
from .variable import Recorder, TracingError, Variable, as_real, is_operand, nonleaf, recording


# --- the tape's inputs and outputs ---------------------------------------------------------------

def new_input(rec: Recorder, value: float) -> Variable:
    """A fresh traced input Variable holding ``value`` (used for the values of the first call)."""
    k = rec.emit(INPUT)
    v = nonleaf(float(value), rec, k)
    v._leaf = False
    return v


def output_slot(rec: Recorder, out, where: str) -> int:
    """Slot holding an output of the traced function (a Variable or a real number)."""
    if type(out) is Variable:
        if out._rec is not rec:
            raise TracingError(f"{where} is a Variable that was not computed from the traced inputs")
        return out._slot
    if isinstance(out, np.ndarray) and out.shape == ():
        return output_slot(rec, out[()], where)
    if is_operand(out):
        return rec.constant(float(out))
    raise TypeError(f"{where} must be a scalar (a number or a Variable), got {type(out).__name__}")


def to_tape(rec: Recorder, inputs, outputs) -> Tape:
    op, a, b, c, lit = rec.arrays()
    return Tape(op, a, b, c, lit, inputs, outputs, list(rec.guards), list(rec.guards.values()))



def arg_name(names, i):
    return f"argument {i}" + (f" ({names[i]!r})" if names and i < len(names) else "")


class VariableArguments(TypeError):
    """Raised by ``flatten_args`` for Variable arguments: the transform then records symbolically
    into the caller's recorder (each transform's ``_symbolic``) instead of running a kernel."""


FLOAT64 = np.dtype(np.float64)


def flatten_args(args, names):
    """(structure key, flat float64 input vector) of a call's arguments; the key holds None for a
    scalar argument and the shape for an array argument."""
    if len(args) == 1:  # the common case, one float64 array: checked in ~0.1 us rather than ~0.6
        x = args[0]
        if type(x) is np.ndarray and x.dtype is FLOAT64:
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
                raise TypeError(f"{arg_name(names, i)}: {tx.__name__} is not supported; pass a plain "
                                "array (np.asarray(x), or x.filled(value) for a masked array)")
            if x.dtype.kind not in "fiu":
                if x.dtype == object and any(type(v) is Variable for v in x.flat):
                    raise VariableArguments(f"{arg_name(names, i)}: an array of Variables")
                raise TypeError(f"{arg_name(names, i)}: arrays must have a real numeric dtype, got {x.dtype}")
            shapes.append(x.shape)
            parts.append(x.astype(np.float64, copy=False).reshape(-1))
        elif isinstance(x, (bool, np.bool_)):
            raise TypeError(f"{arg_name(names, i)}: bool is not differentiable; pass a float")
        elif isinstance(x, numbers.Real):
            shapes.append(None)
            parts.append(float(x))
        elif isinstance(x, (complex, np.complexfloating)):
            raise TypeError(f"{arg_name(names, i)}: complex numbers are not supported (scalargrad is real-valued)")
        elif isinstance(x, Variable):
            raise VariableArguments(f"{arg_name(names, i)}: pass a float, not a Variable, to a transformed function")
        else:
            raise TypeError(f"{arg_name(names, i)}: expected a float, an int or a numeric NumPy array, "
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
        raise OverflowError(f"{arg_name(names, i)}: an int of {parts[i].bit_length()} bits is too large "
                            "for a float64 (at most about 1.8e308)") from None
    return shapes, x


def traced_args(rec, shapes, x):
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


def flatten_output(rec, out, fun):
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
    """An output structure of ``flatten_output`` (None: a scalar, else (kind, size)) in words."""
    if structure is None:
        return "a scalar"
    kind, size = structure
    return f"an array of shape {size}" if kind is np.ndarray else f"a {kind.__name__} of {size}"


def trace_into(fun, shapes, x, rec=None):
    """(tape, output structure) of ``fun`` traced at the flat inputs ``x`` (argument ``shapes`` as
    ``flatten_args`` gives them) into ``rec``, by default a fresh trace recorder (debug.py passes
    one that notes source locations; ``trace_at`` one that lifts closed-over Variables, whose
    slots become inputs after the arguments')."""
    rec = Recorder(trace=True) if rec is None else rec
    resources.require(len(x) * resources.TRACE_BYTES_PER_INPUT,
                      f"tracing {function_name(fun)} at {len(x):,} inputs")
    with recording(rec):
        args = traced_args(rec, shapes, x)
        inputs = list(range(len(rec.op)))
        out = fun(*args)
        slots, structure = flatten_output(rec, out, fun)
    lifted = [k for k, _ in rec.lifts.values()] if rec.lifts else []
    return to_tape(rec, inputs + lifted, slots), structure


def trace(fun, *args) -> Tape:
    """Record ``fun(*args)`` and return its Tape (inputs: every float of ``args``, flattened)."""
    shapes, x = flatten_args(args, param_names(fun))
    return trace_into(fun, shapes, x)[0]


def param_names(fun):
    try:
        return [p.name for p in inspect.signature(fun).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []


def function_name(fun) -> str:
    """``fun.__name__``; for a functools.partial ``partial(<its function's name>)``, for another
    callable object the name of its type (neither has a ``__name__``)."""
    name = getattr(fun, "__name__", None)
    if isinstance(name, str):
        return name
    if isinstance(fun, functools.partial):
        return f"partial({function_name(fun.func)})"
    return type(fun).__name__


# --- Variable arguments: transforms called on Variables record into the caller's recorder ---


def value_of(v) -> float:
    """The float value of a Variable or a number."""
    return v._data if type(v) is Variable else float(v)


def symbolic_inputs(args, names):
    """(shapes, flat list of Variables and floats) of arguments that may hold Variables."""
    shapes, flat = [], []
    for i, x in enumerate(args):
        if type(x) is Variable:
            shapes.append(None)
            flat.append(x)
        elif isinstance(x, np.ndarray) and x.dtype == object:
            shapes.append(x.shape)
            flat.extend(v if type(v) is Variable else as_real(v, f"{arg_name(names, i)}: an element")
                        for v in x.flat)
        else:
            s, xf = flatten_args((x,), names[i:i + 1])
            shapes.append(s[0])
            flat.extend(xf.tolist())
    return tuple(shapes), flat


def trace_at(transformed, args):
    """Trace ``transformed.fun`` at the current values of ``args``: (shapes, flat, tape, structure).
    Variables the function closes over (an enclosing trace's values) become extra tape inputs,
    appended to ``flat`` after the arguments, so that replaying the tape connects them."""
    shapes, flat = symbolic_inputs(args, transformed.names)
    x = np.array([value_of(v) for v in flat], dtype=np.float64)
    rec = Recorder(trace=True)
    rec.lifts = {}
    tape, structure = trace_into(transformed.fun, shapes, x, rec)
    return shapes, flat + [v for _, v in rec.lifts.values()], optimize(tape), structure


def shaped(chunk, shape):
    if shape is None:
        return chunk[0]
    arr = np.empty(len(chunk), dtype=object)
    arr[:] = chunk
    return numeric(arr).reshape(shape)


def numeric(arr):
    """An object array as float64 when it holds no Variable (e.g. called inside a trace on floats)."""
    return arr if any(type(v) is Variable for v in arr.flat) else arr.astype(np.float64)


def structured(outs, structure):
    if structure is None:
        return outs[0]
    kind, size = structure
    return shaped(outs, size) if kind is np.ndarray else kind(outs)
