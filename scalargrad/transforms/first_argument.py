"""The base of ``jvp``, ``hvp``, ``hessian`` and ``jacobian`` (and their sparse forms): transforms
with respect to the positional arguments ``argnums`` (the first by default), compiled per argument
structure, recording symbolically on Variable arguments or inside a trace. ``Layout`` rebuilds
their results (blocks of a Hessian or Jacobian, a Hessian-vector product) in the structure of the
differentiated arguments and of the outputs: arrays, tuples of them for a tuple ``argnums``,
pytrees for pytree arguments.
"""
from __future__ import annotations

import numpy as np

from ..core.tree import flatten_up_to
from ..jit import tangent as tangent_kernels
from ..record.pytrees import TreeShape, size_of
from ..record.symbolic import grad_tape
from ..record.tracing import VariableArguments, describe_structure, numeric, symbolic_inputs
from .transformed import Path, Signature, Transformed, argnums_tuple


class FirstArgument(Transformed):
    """A transform with respect to the arguments ``argnums`` (default: the first); the others are
    passed through (as SciPy passes ``args``), keyword arguments too. Variable arguments record
    symbolically (see ``_symbolic``)."""

    vmap_mode = "pointwise"  # no batched tangent kernels yet

    def __init__(self, fun, argnums=0):
        super().__init__(fun)
        self.argnums, self.single = argnums_tuple(argnums)

    def _signature(self, shapes, keywords=None):
        if not shapes:
            raise TypeError(f"{self.what}({self.__name__}): the function needs an argument to differentiate")
        return Signature(shapes, self._argnums(len(shapes)), keywords)

    def _argnums(self, n):
        """``argnums`` as indices into ``n`` positional arguments; ValueError if one is out of range."""
        for i in self.argnums:
            if not -n <= i < n:
                raise ValueError(f"{self.what}({self.__name__}): argnums={i} but it was called with {n} "
                                 "positional arguments")
        return tuple(i % n for i in self.argnums)

    def _split(self, call):
        """(arguments, [(argnum, tangent)]) of a call ``(*arguments, v)`` with the direction ``v``
        inserted right after the last differentiated argument (``f(x, v, *args)`` for argnums 0); ``v``
        is a tuple of one tangent per argnum for a tuple ``argnums``."""
        if len(call) < 2:
            raise TypeError(f"{self.what}({self.__name__}) is called with the function's arguments and a "
                            f"direction v right after the last differentiated one, got {len(call)} arguments")
        if self.argnums == (0,):  # f(x, v, *args), the common case
            return call[:1] + call[2:], [(0, call[1])]
        argnums = self._argnums(len(call) - 1)
        at = max(argnums) + 1
        v = call[at]
        args = call[:at] + call[at + 1:]
        if self.single:
            return args, [(argnums[0], v)]
        if not isinstance(v, (tuple, list)) or len(v) != len(argnums):
            raise TypeError(f"{self.what}({self.__name__}, argnums={self.argnums}): the direction must be a "
                            f"tuple of {len(argnums)} tangents, one per argnum, got {type(v).__name__}")
        return args, list(zip(argnums, v))

    def _require_scalar(self, structure):
        if structure is not None:
            raise TypeError(f"{self.what}({self.__name__}): the function must return a scalar, got "
                            f"{describe_structure(structure)}; use sg.jacobian for vector-valued functions")

    def _gradient_path(self, sig, tape, structure):
        self._require_scalar(structure)
        return Path(grad_tape(tape, wrt=sig.positions().tolist(), value=False), None)

    def _tangent_flat(self, shape, v, i, count, path=""):
        """Tangent ``v`` of an argument whose structure-key entry is ``shape``, as a flat float vector
        (``path``: where a pytree argument's leaf is, for messages)."""
        if type(shape) is TreeShape:
            leaves = flatten_up_to(shape.treedef, v, f"{self.what}({self.__name__}): {_names(i, count)[0]}")
            return np.concatenate([self._tangent_flat(s, leaf, i, count, p) for s, leaf, p
                                   in zip(shape.shapes, leaves, shape.treedef.paths())] or [np.zeros(0)])
        v = np.asarray(v, dtype=np.float64)
        want = () if shape is None else shape
        if v.shape != want:
            tangent, primal = _names(i, count)
            raise ValueError(f"{self.what}({self.__name__}): {tangent}{path} has shape {v.shape}, but "
                             f"{primal}{path} has shape {want}")
        return v.reshape(-1)

    def _direction(self, sig, tangents):
        """The tangent direction as a full input vector: ``tangents`` holds (argnum, tangent) pairs;
        zeros for the other inputs."""
        full = np.zeros(sig.n_inputs)
        for i, v in tangents:
            full[sig.offsets[i]: sig.offsets[i + 1]] = self._tangent_flat(sig.shapes[i], v, i, len(tangents))
        return full

    def _symbolic_direction(self, tangents, shapes, n_total):
        """The direction as one tangent per tape input: ``tangents`` ((argnum, tangent) pairs) at
        their arguments' inputs (of ``shapes``), None for the others."""
        direction = [None] * n_total
        offsets = np.cumsum([0] + [size_of(s) for s in shapes]).tolist()
        for i, v in tangents:
            entry = shapes[i]
            tangent, primal = _names(i, len(tangents))
            if type(entry) is TreeShape:
                where = f"{self.what}({self.__name__}): {tangent}"
                pairs = zip(entry.shapes, flatten_up_to(entry.treedef, v, where))
            else:
                pairs = [(entry, v)]
            vflat = []
            for shape, leaf in pairs:
                flat = symbolic_inputs((leaf,), ["v"])[1]
                if len(flat) != size_of(shape):
                    raise ValueError(f"{self.what}({self.__name__}): {tangent} has {len(flat)} entries, "
                                     f"{primal} {size_of(shape)}")
                vflat += flat
            direction[offsets[i]:offsets[i + 1]] = vflat
        return direction

    def _dispatch(self, args, kwargs, *extra):
        """``self._compiled(sig, x, *extra)`` on the compiled path, or ``self._symbolic(args, kwargs,
        *extra)`` where it must record (Variable arguments, or a call inside a traced function)."""
        try:
            sig, x = self._prepare(args, kwargs)
        except VariableArguments:
            return self._symbolic(args, kwargs, *extra)
        return self._compiled(sig, x, *extra)

    def _identity_seeds(self, sig):
        """One tangent seed per differentiated input (columns of the identity at ``sig.positions()``),
        cached per argument structure in ``self.seeds``."""
        key = (sig.shapes, sig.keywords)
        seeds = self.seeds.get(key)
        if seeds is None:
            positions = sig.positions()
            seeds = np.zeros((sig.n_inputs, len(positions)))
            seeds[positions, np.arange(len(positions))] = 1.0
            self.seeds[key] = seeds
        return seeds

    def _tangent_run(self, sig, x, tangents):
        """(outputs, their derivatives along ``tangents`` ((argnum, tangent) pairs), output
        structure) from one compiled tangent sweep over the path traced for ``sig``."""
        full = self._direction(sig, tangents)

        def attempt(path, x):
            p = path.program
            out, tout = np.empty(p.n_outputs), np.empty(p.n_outputs)
            ok = tangent_kernels.jvp(p.ins, p.lit, p.io, x, full, out, tout, p.workspace())
            return (out, tout, path.structure) if ok else None

        return self._attempt(sig, x, attempt)

    def _one_plain_argument(self, sig):
        """The structure-key entry of the differentiated argument when there is one and it is no
        pytree (the common case, rebuilt without a Layout), else False."""
        shape = sig.shapes[sig.argnums[0]]
        return shape if self.single and type(shape) is not TreeShape else False


def _names(i: int, count: int) -> tuple[str, str]:
    """How messages name tangent ``i`` of ``count`` and its argument (one: ``f(x, v, *args)``'s v)."""
    return ("the direction v", f"argument {i}") if count == 1 else (f"tangent {i}", f"primal {i}")


class Layout:
    """The leaves of a structure in a flat vector, ``spans`` ((start, stop, shape) each; shape None
    for a scalar), and ``build(values)``, which puts one value per leaf back into the structure."""

    __slots__ = ("spans", "build")

    def __init__(self, spans, build):
        self.spans = spans
        self.build = build

    @classmethod
    def of_arguments(cls, sig, single):
        """The differentiated arguments of ``sig``, in ``sig.positions()`` order: one argument's
        structure, or a tuple of them for a tuple ``argnums``."""
        spans, parts, start = [], [], 0
        for i in sig.argnums:
            entry = sig.shapes[i]
            first = len(spans)
            if type(entry) is TreeShape:
                spans += [(start + a, start + b, s) for a, b, s in entry.spans()]
            else:
                spans.append((start, start + size_of(entry), entry))
            parts.append((entry, first, len(spans)))
            start += size_of(entry)

        def build(values):
            built = [entry.treedef.unflatten(values[a:b]) if type(entry) is TreeShape else values[a]
                     for entry, a, b in parts]
            return built[0] if single else tuple(built)
        return cls(spans, build)

    @classmethod
    def of_outputs(cls, structure):
        """A function's outputs: a tuple or list of scalars stays one array (as for an array output)."""
        if type(structure) is TreeShape:
            return cls(list(structure.spans()), structure.treedef.unflatten)
        if structure is None:
            return cls([(0, 1, None)], lambda values: values[0])
        kind, size = structure
        shape = size if kind is np.ndarray else (size,)
        return cls([(0, size_of(shape), shape)], lambda values: values[0])

    def vector(self, v, symbolic=False):
        """The structure holding a flat vector ``v`` laid out as ``spans``."""
        return self.build([_leaf(v[a:b], shape, symbolic) for a, b, shape in self.spans])

    def blocks(self, M, cols, symbolic=False):
        """Matrix ``M`` (rows laid out as self, columns as ``cols``) as nested structures: for each
        leaf of self, ``cols``'s structure of blocks of shape (row leaf's shape + column leaf's)."""
        def block(r0, r1, rs, c0, c1, cs):
            if rs is None and cs is None:
                return M[r0, c0] if symbolic else float(M[r0, c0])
            part = M[r0:r1, c0:c1].reshape((() if rs is None else rs) + (() if cs is None else cs))
            return numeric(part) if symbolic else np.ascontiguousarray(part)
        return self.build([cols.build([block(*r, *c) for c in cols.spans]) for r in self.spans])


def _leaf(chunk, shape, symbolic):
    if shape is None:
        return chunk[0] if symbolic else float(chunk[0])
    if symbolic:
        arr = np.empty(len(chunk), dtype=object)
        arr[:] = list(chunk)
        return numeric(arr).reshape(shape)
    return np.asarray(chunk).reshape(shape)
