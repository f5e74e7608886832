"""Function transforms: ``trace``, ``value_and_grad`` (the one implementation), ``grad``, ``jit``.

A decorated function traces and compiles on its first call for each argument structure (number,
kind and shape of arguments, pytree structures, keyword names and static keyword values) and
afterwards goes straight to the compiled kernel. Python control flow on traced values records
guards; a call whose inputs would take another branch retraces, and each path is cached (least
recently used first out).
"""
from __future__ import annotations

import numpy as np

from . import debug, embed
from .. import config
from ..core.tape import Tape
from ..core.tree import LEAF
from ..record.pytrees import TreeShape
from ..record.symbolic import replay, reverse, with_outputs
from ..record.variable import Recorder, TracingError, active_recorder
from ..record.tracing import FLOAT64, VariableArguments, describe_structure, shaped, structured, trace_at
from .transformed import Path, Signature, Transformed, argnums_tuple, require_callable, wrap


class ValueAndGrad(Transformed):
    """``value_and_grad(fun, argnums)``: called like ``fun``, returns ``(value, gradient)``."""

    kernel_kind = "value_and_grad"
    what = "value_and_grad"

    def __init__(self, fun, argnums=0, debug_nans=None, backend="auto"):
        super().__init__(fun, debug_nans, backend)
        self.argnums, self.single = argnums_tuple(argnums)

    def _check_structure(self, structure):
        if structure is not None:
            pair = structure in ((tuple, 2), (list, 2)) or (
                type(structure) is TreeShape and structure.treedef.kind in (tuple, list)
                and len(structure.treedef.children) == 2)
            raise TypeError(f"{self.__name__} must return a scalar to be differentiated, got "
                            f"{describe_structure(structure)}"
                            + ("; pass has_aux=True if it returns (value, aux)" if pair else ""))

    def _signature(self, shapes, keywords=None):
        for i in self.argnums:
            if not -len(shapes) <= i < len(shapes):
                raise ValueError(f"{self.__name__}: argnums={i} but it was called with {len(shapes)} "
                                 "positional arguments")
        return Signature(shapes, tuple(i % len(shapes) for i in self.argnums), keywords)

    def flat(self, args, kwargs=None):
        """(signature, value, flat gradient with respect to every input)."""
        sig, x = self._prepare(args, kwargs)
        g = np.empty(len(x))
        paths = sig.paths
        if paths:  # the last call's path (Transformed._run, without its function-call overhead)
            path = paths[0]
            value, ok = path.tier.value_and_grad(path.program, x, g)
            if ok:
                return sig, value, g

        def attempt(path, x):
            value, ok = path.tier.value_and_grad(path.program, x, g)
            return value if ok else None

        return sig, self._search(sig, x, attempt), g

    def compile(self, *args, **kwargs):
        """A Numba function ``k(x, g[, work]) -> value`` for the path traced at ``args``: ``x`` is the flat
        float64 vector of all inputs (arguments concatenated, a pytree's leaves in ``sg.tree_flatten``'s
        order, then traced keyword values), the gradient is written into ``g``;
        ``work`` (``k.workspace_size`` floats, one per thread) saves an allocation per call.
        Callable from Python and from the user's ``@numba.njit`` code. It runs the tape's generated
        code (``k.workspace_size`` is then 0: no scratch needed) under the default backend "auto" and
        under "codegen", compiled now if need be (seconds for a few hundred lines; cached on disk),
        unless the tape stays on the interpreter (see ``Tier.best_kernel``); "interp" never compiles."""
        sig = self.flat(args, kwargs)[0]
        path = sig.paths[0]
        generated = path.tier.best_kernel()
        if generated is not None:
            return embed.generated_value_and_grad_kernel(generated, path.program.n_inputs)
        return embed.value_and_grad_kernel(path.program)

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs:  # an optimiser's call f(x), by the shortest route
            x = args[0]
            if type(x) is np.ndarray and x.dtype is FLOAT64 and x.ndim == 1:
                result = self._vector_call(x)
                if result is not None:
                    return result
        try:
            sig, value, g = self.flat(args, kwargs)
        except VariableArguments:
            return self._symbolic(args, kwargs)
        if debug.enabled(self.debug_nans):
            debug.check(self, *self._prepare(args, kwargs), g)
        if self.single:
            return value, sig.piece(g, sig.argnums[0])
        return value, tuple(sig.piece(g, i) for i in sig.argnums)

    def _vector_call(self, x):
        """``self(x)`` for one float64 vector ``x`` whose last traced path holds, else None: the
        general path then handles everything this one leaves to it (a call inside a trace,
        debug_nans, changed closure values, a signature not yet traced, another branch, which it
        evaluates again). About 1.4 µs over the kernel for Rosenbrock n = 20 (bench/call_overhead.py)."""
        sig = self.cache.get((x.shape,))
        if sig is None or not sig.paths:
            return None
        rec = active_recorder.get()
        if (type(rec) is Recorder and rec.trace) or self.debug_nans \
                or (self.debug_nans is None and config.debug_nans):
            return None
        captured = self.captured
        if captured is not None and captured.entries:
            self._check_captured(captured)  # a change clears the cache: the general path retraces
            if not self.cache:
                return None
        path = sig.paths[0]
        g = np.empty(len(x))
        tier = path.tier
        kernel = tier.kernel
        if kernel is not None and x.flags.c_contiguous:
            value, ok = kernel(x, g)
        else:
            value, ok = tier.value_and_grad(path.program, x, g)
        if not ok:
            return None
        return (value, g) if self.single else (value, (g,))

    def batched(self, sig, values, G):
        """``__call__``'s result for a batch: a leading point axis on the value and gradients."""
        grads = tuple(sig.batch_piece(G, i) for i in sig.argnums)
        return values, grads[0] if self.single else grads

    def _symbolic(self, args, kwargs=None):
        """``__call__`` on Variable arguments: ``fun`` traced at their values, its tape and reverse
        sweep replayed onto them in the caller's recorder (a trace, or eager recording)."""
        vals, tape, grads, _ = self._replayed(args, kwargs)
        return vals[int(tape.outputs[0])], grads

    def _replayed(self, args, kwargs):
        """(values, tape, gradient pieces, output structure) of ``fun``'s tape replayed onto the
        arguments, and its reverse sweep from output 0."""
        shapes, flat, tape, structure = trace_at(self, args, kwargs)
        self._check_structure(structure)
        sig = self._signature(shapes)
        vals = replay(tape, flat)
        grads = reverse(tape, vals, 0, sig.positions().tolist())
        pieces, pos = [], 0
        for i in sig.argnums:
            size = sig.offsets[i + 1] - sig.offsets[i]
            pieces.append(shaped(grads[pos:pos + size], sig.shapes[i]))
            pos += size
        return vals, tape, pieces[0] if self.single else tuple(pieces), structure


class AuxPath(Path):
    """A path of ``value_and_grad(fun, has_aux=True)``: ``program`` computes the value (and its
    gradient), ``aux`` (a Path run by the forward sweep) the leaves of aux, ``structure`` aux's."""

    __slots__ = ("aux",)


class ValueAndGradAux(ValueAndGrad):
    """``value_and_grad(fun, argnums, has_aux=True)``: ``fun`` returns ``(value, aux)``, aux a pytree
    of values that are not differentiated; called like ``fun``, returns ``((value, aux), gradient)``
    with aux's traced values as floats and arrays. Its vmap maps it point by point."""

    vmap_mode = "pointwise"

    def _make_path(self, sig, tape, structure):
        aux_shape = self._aux_shape(structure)
        path = AuxPath(with_outputs(tape, tape.outputs[:1]), aux_shape, self.kernel_kind, self.backend)
        path.aux = Path(with_outputs(tape, tape.outputs[1:]), None, "evaluate", self.backend)
        return path

    def _check_structure(self, structure):
        """Checked by ``_aux_shape`` when the path is made; the path's structure is aux's."""

    def _aux_shape(self, structure) -> TreeShape:
        """aux's TreeShape, from the output structure of ``(value, aux)``; TypeError for anything else."""
        if type(structure) is tuple and structure[0] in (tuple, list) and structure[1] == 2:
            return TreeShape(LEAF, (None,))  # (value, a scalar aux)
        if type(structure) is TreeShape and structure.treedef.kind in (tuple, list) \
                and len(structure.treedef.children) == 2 and structure.treedef.children[0] is LEAF:
            if structure.shapes[0] is not None:
                raise TypeError(f"{self.__name__} (has_aux=True): the value, the first of the pair it returns, "
                                f"must be a scalar, got an array of shape {structure.shapes[0]}")
            return TreeShape(structure.treedef.children[1], structure.shapes[1:])
        raise TypeError(f"{self.__name__} with has_aux=True must return a pair (value, aux), got "
                        f"{describe_structure(structure)}")

    def flat(self, args, kwargs=None):
        """(signature, value, flat gradient, aux)."""
        def attempt(path, x):
            g = np.empty(len(x))
            value, ok = path.tier.value_and_grad(path.program, x, g)
            if not ok:
                return None
            aux = path.aux
            out = np.empty(aux.program.n_outputs)
            if len(out):
                aux.tier.evaluate(aux.program, x, out)  # the same guards as the value's: they hold
            return value, g, path.structure.build_flat(out)

        sig, (value, g, aux) = self._run(args, kwargs, attempt)
        return sig, value, g, aux

    def __call__(self, *args, **kwargs):
        try:
            sig, value, g, aux = self.flat(args, kwargs)
        except VariableArguments:
            return self._symbolic(args, kwargs)
        if debug.enabled(self.debug_nans):
            debug.check(self, *self._prepare(args, kwargs), g)
        if self.single:
            return (value, aux), sig.piece(g, sig.argnums[0])
        return (value, aux), tuple(sig.piece(g, i) for i in sig.argnums)

    def _symbolic(self, args, kwargs=None):
        vals, tape, grads, structure = self._replayed(args, kwargs)
        aux = shaped([vals[s] for s in tape.outputs[1:].tolist()], self._aux_shape(structure))
        return (vals[int(tape.outputs[0])], aux), grads


class Grad:
    """``grad(fun, argnums)``: the gradient part of ``value_and_grad``."""

    vmap_mode = "batch"  # through value_and_grad's batch kernel (Transformed.vmap_mode)

    def __init__(self, fun, argnums=0, debug_nans=None, backend="auto"):
        self.value_and_grad = self.value_and_grad_type(fun, argnums, debug_nans, backend)
        wrap(self, fun, updated=())  # copying fun's __dict__ would clobber the above

    value_and_grad_type = ValueAndGrad

    def __call__(self, *args, **kwargs):
        return self.value_and_grad(*args, **kwargs)[1]

    def batched(self, sig, values, G):
        return self.value_and_grad.batched(sig, values, G)[1]

    def batch_transform(self):
        return self.value_and_grad

    def compile(self, *args, **kwargs):
        """As ``value_and_grad(f).compile``: ``k(x, g) -> value`` writing the gradient into ``g``."""
        return self.value_and_grad.compile(*args, **kwargs)

    def tape(self, *args, **kwargs) -> Tape:
        return self.value_and_grad.tape(*args, **kwargs)


class GradAux(Grad):
    """``grad(fun, argnums, has_aux=True)``: ``fun`` returns ``(value, aux)``; returns ``(gradient, aux)``."""

    vmap_mode = "pointwise"
    value_and_grad_type = ValueAndGradAux

    def __call__(self, *args, **kwargs):
        (_, aux), g = self.value_and_grad(*args, **kwargs)
        return g, aux


class Jit(Transformed):
    """``jit(fun)``: the same results as ``fun`` from the compiled forward sweep."""

    kernel_kind = "evaluate"
    differentiates = False

    def flat(self, args, kwargs=None):
        """(signature, flat outputs, output structure)."""
        sig, x = self._prepare(args, kwargs)
        paths = sig.paths
        if paths:  # the last call's path (Transformed._run, without its function-call overhead)
            path = paths[0]
            out = np.empty(path.program.n_outputs)
            if path.tier.evaluate(path.program, x, out):
                return sig, out, path.structure

        def attempt(path, x):
            out = np.empty(path.program.n_outputs)
            return (out, path.structure) if path.tier.evaluate(path.program, x, out) else None

        out, structure = self._search(sig, x, attempt)
        return sig, out, structure

    def compile(self, *args, **kwargs):
        """A Numba function ``k(x[, work]) -> value`` (first output) over the flat float64 input vector
        (generated code as for ``value_and_grad(f).compile``)."""
        sig = self.flat(args, kwargs)[0]
        path = sig.paths[0]
        if not path.program.n_outputs:  # an empty array: the kernel would return garbage
            raise ValueError(f"jit({self.__name__}).compile: the function has no outputs at these "
                             "arguments (an empty array), and the compiled kernel returns the first")
        generated = path.tier.best_kernel()
        if generated is not None:
            return embed.generated_evaluate_kernel(generated, path.program.n_inputs, path.program.n_outputs)
        return embed.evaluate_kernel(path.program)

    def __call__(self, *args, **kwargs):
        try:
            _, out, structure = self.flat(args, kwargs)
        except VariableArguments:
            return self._symbolic(args, kwargs)
        if debug.enabled(self.debug_nans):
            debug.check(self, *self._prepare(args, kwargs))
        if structure is None:
            return float(out[0])
        if type(structure) is TreeShape:
            return structure.build_flat(out)
        kind, size = structure
        return out.reshape(size) if kind is np.ndarray else kind(float(v) for v in out)

    def _symbolic(self, args, kwargs=None):
        """``__call__`` on Variable arguments: ``fun``'s tape replayed onto them."""
        _, flat, tape, structure = trace_at(self, args, kwargs)
        vals = replay(tape, flat)
        return structured([vals[s] for s in tape.outputs.tolist()], structure)

    def batched(self, structure, out):
        """``__call__``'s result for a batch (out is points x outputs): a leading point axis."""
        if structure is None:
            return out[:, 0].copy()
        if type(structure) is TreeShape:
            return structure.build_batch(out)
        kind, size = structure
        return out.reshape((len(out),) + size) if kind is np.ndarray else kind(out[:, i].copy() for i in range(size))


def value_and_grad(fun=None, argnums=0, debug_nans=None, backend="auto", has_aux=False):
    """Return a function computing ``(fun(*args, **kwargs), gradient)`` with respect to the positional
    arguments ``argnums``.

    Arguments are floats, ints, real arrays or pytrees of them (tuples, lists, dicts, namedtuples,
    None, registered dataclasses); the gradient of each has its structure: a float for a scalar, a
    float64 array of its shape for an array, the same pytree for a pytree. With a tuple ``argnums``
    the gradient is a tuple. Keyword arguments are passed to ``fun`` and never differentiated: floats
    and real arrays among them are traced (a new value does not retrace), other values are static
    (a new value traces again). ``has_aux=True``: ``fun`` returns ``(value, aux)`` and the result
    is ``((value, aux), gradient)``, aux's traced values as floats and arrays. Usable as a
    decorator. ``debug_nans=True`` raises FloatingPointError naming the first op that made a NaN
    or inf (None: follow ``sg.config.debug_nans``; see ``scalargrad/transforms/debug.py``).
    ``backend``: "interp" runs the tape interpreter; "codegen" compiles straight-line code for the
    tape on the first call (seconds per few hundred ops; cached on disk, see
    ``scalargrad/jit/codegen/``); "auto" (default) starts on the interpreter and moves small tapes
    that are called often to generated code, compiled in the background. All three give
    bit-identical results, except for the sign bit and payload of NaNs, which LLVM leaves
    unspecified (NaNs appear in the same places).
    """
    if fun is None:
        return lambda f: value_and_grad(f, argnums, debug_nans, backend, has_aux)
    require_callable(fun, "value_and_grad")
    return (ValueAndGradAux if has_aux else ValueAndGrad)(fun, argnums, debug_nans, backend)


def grad(fun=None, argnums=0, debug_nans=None, backend="auto", has_aux=False):
    """Return a function computing the gradient of scalar ``fun`` with respect to ``argnums``
    (arguments, keywords, ``debug_nans`` and ``backend`` as for ``value_and_grad``); with
    ``has_aux=True``, ``fun`` returns ``(value, aux)`` and the result is ``(gradient, aux)``."""
    if fun is None:
        return lambda f: grad(f, argnums, debug_nans, backend, has_aux)
    require_callable(fun, "grad")
    return (GradAux if has_aux else Grad)(fun, argnums, debug_nans, backend)


def jit(fun=None, debug_nans=None, backend="auto"):
    """Return a function with ``fun``'s results, computed by the compiled forward sweep
    (arguments, keywords, ``debug_nans`` and ``backend`` as for ``value_and_grad``); ``fun`` may
    return a number, an array or a pytree of them."""
    if fun is None:
        return lambda f: jit(f, debug_nans, backend)
    require_callable(fun, "jit")
    return Jit(fun, debug_nans, backend)


__all__ = ["value_and_grad", "grad", "jit", "TracingError"]
