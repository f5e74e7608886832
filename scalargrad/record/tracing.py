"""Tracing a function: its arguments (pytrees leaf by leaf, then the traced keyword values) flattened
into one float64 vector and traced as tape inputs, its return value (a number, an array or a pytree)
flattened into output slots, and the recording turned into a Tape.

``trace_into`` is the one way a function is traced into a fresh recorder; ``trace`` (``sg.trace``),
the transforms, ``debug_nans`` and transforms called on Variables (``trace_at``) all go through it.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers

import numpy as np

from ..core import resources
from ..core.ops import INPUT
from ..core.tape import Tape
from ..core.tree import is_node, tree_flatten
from ..jit.passes import optimize
from .arrays import TracedArray
from .pytrees import Keywords, Static, TreeShape, size_of, static_leaf
from .variable import Recorder, TracingError, Variable, as_real, in_trace, is_operand, nonleaf, recording


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
    """(structure key, flat float64 input vector) of a call's positional arguments; the key holds,
    per argument, None for a scalar, the shape for an array and a TreeShape for a pytree."""
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
        elif tx is np.ndarray and x.dtype.kind in "fiu":
            shapes.append(x.shape)
            parts.append(x.astype(np.float64, copy=False).reshape(-1))
        else:  # everything else, pytrees and errors included, off the common path
            shape, part = flat_value(x, names, i)
            shapes.append(shape)
            parts.append(part)
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


def flat_value(x, names, i, path=""):
    """(structure-key entry, flat values) of argument ``i`` (or its leaf at ``path``) that is not a
    plain float, int or numeric ndarray: NumPy scalars, subclasses, pytrees; else the error naming it."""
    tx = type(x)
    if isinstance(x, np.ndarray):
        if isinstance(x, (np.ma.MaskedArray, np.matrix)):  # a mask would be ignored; a matrix stays 2-d
            raise TypeError(f"{arg_name(names, i)}{path}: {tx.__name__} is not supported; pass a plain "
                            "array (np.asarray(x), or x.filled(value) for a masked array)")
        if x.dtype.kind not in "fiu":
            if x.dtype == object and any(type(v) is Variable for v in x.flat):
                raise VariableArguments(f"{arg_name(names, i)}{path}: an array of Variables")
            raise TypeError(f"{arg_name(names, i)}{path}: arrays must have a real numeric dtype, got {x.dtype}")
        return x.shape, x.astype(np.float64, copy=False).reshape(-1)
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{arg_name(names, i)}{path}: bool is not differentiable; pass a float")
    if isinstance(x, numbers.Real):
        if tx is int and x.bit_length() > 1023:
            raise OverflowError(f"{arg_name(names, i)}{path}: an int of {x.bit_length()} bits is too large "
                                "for a float64 (at most about 1.8e308)")
        return None, float(x)
    if isinstance(x, (complex, np.complexfloating)):
        raise TypeError(f"{arg_name(names, i)}{path}: complex numbers are not supported (scalargrad is real-valued)")
    if tx is Variable:
        raise VariableArguments(f"{arg_name(names, i)}{path}: pass a float, not a Variable, to a transformed function")
    if not path and is_node(x):
        return flat_tree(x, names, i)
    hint = ("; register its class with sg.register_dataclass to use it as a pytree"
            if dataclasses.is_dataclass(x) else "")
    raise TypeError(f"{arg_name(names, i)}{path}: expected a float, an int or a numeric NumPy array, or a "
                    f"pytree of them (tuple, list, dict, namedtuple, None, registered dataclass), "
                    f"got {tx.__name__}{hint}")


def flat_tree(tree, names, i):
    """(TreeShape, flat values) of pytree argument ``i``: its leaves' values one after the other."""
    leaves, treedef = tree_flatten(tree)
    shapes, sizes, values = [], [], []
    for j, leaf in enumerate(leaves):
        t = type(leaf)
        if t is float:
            shape, size = None, 1
        elif t is np.ndarray and leaf.dtype.kind in "fiu":
            shape, size = leaf.shape, leaf.size
        else:  # NumPy scalars, ints (which may not fit a float64), subclasses, and the errors
            shape, leaf = flat_value(leaf, names, i, treedef.paths()[j])
            size = size_of(shape)
        shapes.append(shape)
        sizes.append(size)
        values.append(leaf)
    flat = np.empty(sum(sizes))
    pos = 0
    for shape, size, value in zip(shapes, sizes, values):
        if shape is None:
            flat[pos] = value
        else:
            flat[pos:pos + size] = value.reshape(-1)
        pos += size
    return TreeShape(treedef, shapes, sizes), flat


def flatten_keywords(kwargs, fun, symbolic=False):
    """(Keywords, flat float64 vector of its traced leaves) of a call's keyword arguments: floats and
    real numeric arrays are traced, any other leaf is static (see ``pytrees.static_leaf``). With
    ``symbolic`` (a call that records into the caller's tape), Variables and arrays of them are
    traced too, and the flat values are a list of Variables and floats."""
    leaves, treedef = tree_flatten(kwargs)
    spec, parts = [], []
    for j, leaf in enumerate(leaves):
        t = type(leaf)
        if t is float or isinstance(leaf, (float, np.floating)):
            spec.append(None)
            parts.append([float(leaf)])
        elif t is np.ndarray and leaf.dtype.kind in "fiu":
            spec.append(leaf.shape)
            parts.append(leaf.astype(np.float64, copy=False).reshape(-1))
        elif t is int or t is str or t is bool:  # static, and hashable: no checks needed
            spec.append(Static(leaf, (t, leaf)))
        else:
            where = f"{function_name(fun)}: keyword argument {keyword_path(treedef.paths()[j])}"
            holds_variables = type(leaf) is Variable or (isinstance(leaf, np.ndarray) and leaf.dtype == object
                                                         and any(type(v) is Variable for v in leaf.flat))
            if holds_variables and symbolic:
                if type(leaf) is Variable:
                    spec.append(None)
                    parts.append([leaf])
                else:
                    spec.append(leaf.shape)
                    parts.append([v if type(v) is Variable else as_real(v, f"{where}: an element") for v in leaf.flat])
            elif holds_variables:
                raise VariableArguments(f"{where}: a Variable")
            elif isinstance(leaf, (np.ma.MaskedArray, np.matrix)):
                raise TypeError(f"{where}: {type(leaf).__name__} is not supported; pass a plain array")
            elif isinstance(leaf, np.ndarray) and leaf.dtype.kind in "fiu":  # another ndarray subclass
                spec.append(leaf.shape)
                parts.append(np.asarray(leaf, dtype=np.float64).reshape(-1))
            elif isinstance(leaf, (complex, np.complexfloating)):
                raise TypeError(f"{where}: complex numbers are not supported (scalargrad is real-valued)")
            else:
                spec.append(static_leaf(leaf, where))
    if symbolic:
        flat = [v for part in parts for v in (part.tolist() if isinstance(part, np.ndarray) else part)]
    else:
        flat = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]) if parts else np.zeros(0)
    return Keywords(treedef, spec), flat


def keyword_path(path: str) -> str:
    """A leaf path in the keyword arguments' dict (``['scale'][0]``) as ``'scale'[0]``."""
    end = path.find("]")
    return path[1:end] + path[end + 1:] if path.startswith("[") else path


def traced_value(rec, shape, x, offset):
    """A traced input (a Variable, a TracedArray of them, or a pytree of both) for one entry of a
    structure key, its values read from ``x`` at ``offset``."""
    if shape is None:
        return new_input(rec, x[offset])
    if type(shape) is tuple:
        size = math.prod(shape)
        arr = np.empty(size, dtype=object)
        for j in range(size):
            arr[j] = new_input(rec, x[offset + j])
        return arr.reshape(shape).view(TracedArray) if shape != () else arr[0]  # a 0-d array acts as a scalar
    return shape.build(lambda start, stop, s: traced_value(rec, s, x, offset + start))


def traced_args(rec, shapes, x, keywords=None):
    """The traced (args, kwargs) of a call whose structure is ``shapes`` (and ``keywords``)."""
    args = []
    offset = 0
    for shape in shapes:
        args.append(traced_value(rec, shape, x, offset))
        offset += size_of(shape)
    if keywords is None:
        return args, {}
    return args, keywords.build(lambda start, stop, s: traced_value(rec, s, x, offset + start))


def scalar_output(o) -> bool:
    return type(o) is Variable or is_operand(o) or (isinstance(o, np.ndarray) and o.shape == ())


def flatten_output(rec, out, fun):
    """(slots, structure) of ``fun``'s return value ``out``: structure None for a scalar, (tuple or
    list, length) for a tuple or list of scalars, (np.ndarray, shape) for an array, else (any other
    pytree) a TreeShape."""
    kind = type(out)
    if kind is tuple or kind is list:
        if not out:  # nothing to compute, and compile() and the gradient kernels return output 0
            raise ValueError(f"{function_name(fun)} returned an empty {kind.__name__}: "
                             "a traced function must return at least one output")
        if all(scalar_output(o) for o in out):
            return [output_slot(rec, o, f"output {i}") for i, o in enumerate(out)], (kind, len(out))
    elif isinstance(out, np.ndarray) and out.shape != ():
        return [output_slot(rec, o, f"output {i}") for i, o in enumerate(out.reshape(-1))], (np.ndarray, out.shape)
    if is_node(out):
        return flatten_tree_output(rec, out, fun)
    return [output_slot(rec, out, "the output")], None


def flatten_tree_output(rec, out, fun):
    """(slots, TreeShape) of a pytree output: its leaves' slots in ``tree_flatten``'s order."""
    leaves, treedef = tree_flatten(out)
    if not leaves:
        if out is None:
            raise TypeError(f"{function_name(fun)} returned None: a traced function must return at least "
                            "one output (a missing return?)")
        raise ValueError(f"{function_name(fun)} returned {treedef.describe()}, which holds no numbers: "
                         "a traced function must return at least one output")
    slots, shapes = [], []
    for leaf, path in zip(leaves, treedef.paths()):
        if isinstance(leaf, np.ndarray) and leaf.shape != ():
            slots += [output_slot(rec, o, f"output {path}, entry {j}") for j, o in enumerate(leaf.reshape(-1))]
            shapes.append(leaf.shape)
        else:
            slots.append(output_slot(rec, leaf, f"output {path}"))
            shapes.append(None)
    return slots, TreeShape(treedef, shapes)


def describe_structure(structure) -> str:
    """An output structure of ``flatten_output`` in words."""
    if structure is None:
        return "a scalar"
    if type(structure) is TreeShape:
        return structure.describe()
    kind, size = structure
    return f"an array of shape {size}" if kind is np.ndarray else f"a {kind.__name__} of {size}"


def trace_into(fun, shapes, x, rec=None, keywords=None):
    """(tape, output structure) of ``fun`` traced at the flat inputs ``x`` (argument ``shapes`` as
    ``flatten_args`` gives them, then the traced leaves of ``keywords``) into ``rec``, by default a
    fresh trace recorder (debug.py passes one that notes source locations; ``trace_at`` one that
    lifts closed-over Variables, whose slots become inputs after the arguments')."""
    rec = Recorder(trace=True) if rec is None else rec
    resources.require(len(x) * resources.TRACE_BYTES_PER_INPUT,
                      f"tracing {function_name(fun)} at {len(x):,} inputs")
    with recording(rec):
        args, kwargs = traced_args(rec, shapes, x, keywords)
        inputs = list(range(len(rec.op)))
        out = fun(*args, **kwargs)
        slots, structure = flatten_output(rec, out, fun)
    lifted = [k for k, _ in rec.lifts.values()] if rec.lifts else []
    return to_tape(rec, inputs + lifted, slots), structure


def trace(fun, *args, **kwargs) -> Tape:
    """Record ``fun(*args, **kwargs)`` and return its Tape (inputs: every float of ``args``, then
    the traced keyword values, flattened)."""
    shapes, x = flatten_args(args, param_names(fun))
    keywords = None
    if kwargs:
        keywords, xk = flatten_keywords(kwargs, fun)
        x = np.concatenate([x, xk])
    return trace_into(fun, shapes, x, keywords=keywords)[0]


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
        shape, values = symbolic_value(x, names, i)
        shapes.append(shape)
        flat += values
    return tuple(shapes), flat


def symbolic_value(x, names, i, path=""):
    """(structure-key entry, flat list of Variables and floats) of argument ``i`` (its leaf at ``path``)."""
    if type(x) is Variable:
        return None, [x]
    if isinstance(x, np.ndarray) and x.dtype == object:
        return x.shape, [v if type(v) is Variable else as_real(v, f"{arg_name(names, i)}{path}: an element")
                         for v in x.flat]
    if not path and is_node(x):
        leaves, treedef = tree_flatten(x)
        entries = [symbolic_value(leaf, names, i, p) for leaf, p in zip(leaves, treedef.paths())]
        return TreeShape(treedef, [e for e, _ in entries]), [v for _, values in entries for v in values]
    if type(x) is float or type(x) is int:
        return None, [float(x)]
    shape, part = flat_value(x, names, i, path)
    return shape, np.atleast_1d(part).tolist()


def trace_at(transformed, args, kwargs=None):
    """Trace ``transformed.fun`` at the current values of ``args`` (and ``kwargs``): (shapes, flat,
    tape, structure). Variables the function closes over (an enclosing trace's values) become extra
    tape inputs, appended to ``flat`` after the arguments, so that replaying the tape connects them."""
    shapes, flat = symbolic_inputs(args, transformed.names)
    keywords = None
    if kwargs:
        keywords, kflat = flatten_keywords(kwargs, transformed.fun, symbolic=True)
        flat = flat + kflat
    x = np.array([value_of(v) for v in flat], dtype=np.float64)
    rec = Recorder(trace=True)
    rec.lifts = {}
    tape, structure = trace_into(transformed.fun, shapes, x, rec, keywords)
    return shapes, flat + [v for _, v in rec.lifts.values()], optimize(tape), structure


def shaped(chunk, shape):
    if shape is None:
        return chunk[0]
    if type(shape) is TreeShape:
        return shape.build(lambda start, stop, s: shaped(chunk[start:stop], s))
    arr = np.empty(len(chunk), dtype=object)
    arr[:] = chunk
    return numeric(arr).reshape(shape)


def numeric(arr):
    """An object array as float64 when it holds no Variable (e.g. called inside a trace on floats),
    as a TracedArray when it holds traced ones (a transform called inside a trace)."""
    if not any(type(v) is Variable for v in arr.flat):
        return arr.astype(np.float64)
    return arr.view(TracedArray) if in_trace() else arr


def structured(outs, structure):
    if structure is None:
        return outs[0]
    if type(structure) is TreeShape:
        return shaped(outs, structure)
    kind, size = structure
    return shaped(outs, size) if kind is np.ndarray else kind(outs)
