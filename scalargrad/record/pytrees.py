"""Pytree arguments and outputs and keyword arguments, as parts of a call's structure key.

A ``TreeShape`` stands for one pytree argument (or output) in the key: its ``TreeDef`` and each
leaf's shape (None for a scalar); its leaves' values lie one after the other in the flat vector.
``Keywords`` stands for the keyword arguments: floats and numeric arrays among their leaves are
traced inputs (after the positional ones), every other leaf is static, compared by value.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.tree import TreeDef


def size_of(shape) -> int:
    """Entries of a structure-key entry in the flat vector: 1 for a scalar (None), the product of
    an array's shape, a TreeShape's total."""
    if shape is None:
        return 1
    if type(shape) is tuple:
        return math.prod(shape)
    return shape.size


def describe_shape(shape) -> str:
    """A structure-key entry in words."""
    if shape is None:
        return "a scalar"
    if type(shape) is tuple:
        return f"an array of shape {shape}"
    return shape.describe()


class TreeShape:
    """A pytree argument or output: its structure and the shape of each leaf (None: a scalar)."""

    __slots__ = ("treedef", "shapes", "sizes", "size", "_hash")

    def __init__(self, treedef: TreeDef, shapes, sizes=None):
        self.treedef = treedef
        self.shapes = tuple(shapes)
        self.sizes = tuple(size_of(s) for s in self.shapes) if sizes is None else tuple(sizes)
        self.size = sum(self.sizes)
        self._hash = hash((treedef, self.shapes))

    def __hash__(self):
        return self._hash

    def __reduce__(self):  # rebuilt, so that the hash is this process's (Dask workers)
        return TreeShape, (self.treedef, self.shapes)

    def __eq__(self, other):
        return type(other) is TreeShape and self._hash == other._hash and self.treedef == other.treedef \
            and self.shapes == other.shapes

    def __repr__(self):
        return f"TreeShape({self.treedef.describe()}, {self.shapes})"

    def describe(self) -> str:
        return f"a pytree {self.treedef.describe()}"

    def spans(self):
        """(start, stop, shape) of each leaf in the flat vector, relative to the tree's start."""
        start = 0
        for shape, size in zip(self.shapes, self.sizes):
            yield start, start + size, shape
            start += size

    def build(self, take):
        """The pytree whose leaves are ``take(start, stop, shape)`` for each leaf's span."""
        return self.treedef.unflatten([take(start, stop, shape) for start, stop, shape in self.spans()])

    def build_flat(self, flat):
        """The pytree from a flat float vector: floats for scalar leaves, arrays of the leaves' shapes."""
        return self.build(lambda start, stop, shape: float(flat[start]) if shape is None
                          else flat[start:stop].reshape(shape))

    def build_batch(self, flat):
        """The pytree from a (points, entries) matrix: each leaf with a leading point axis."""
        return self.build(lambda start, stop, shape: flat[:, start].copy() if shape is None
                          else flat[:, start:stop].reshape((len(flat),) + shape))


class Static:
    """A keyword argument's leaf that is not traced: its value, compared by ``key`` (the type is part
    of it, so ``1``, ``1.0`` and ``True`` are different)."""

    __slots__ = ("value", "key")

    def __init__(self, value, key):
        self.value = value
        self.key = key

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return type(other) is Static and self.key == other.key

    def __repr__(self):
        return f"Static({self.value!r:.40})"


def static_leaf(value, where: str) -> Static:
    """A static keyword leaf (bools, ints, strings, None, functions: anything hashable; bool arrays
    by their contents); TypeError naming ``where`` for a value that cannot be compared."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "b":
            raise TypeError(f"{where}: an array of dtype {value.dtype} can be neither traced (real numbers) "
                            "nor static (bool arrays)")
        copy = value.copy()
        return Static(copy, (np.ndarray, copy.shape, copy.tobytes()))
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"{where}: a {type(value).__name__} is neither traced (floats and numeric arrays) "
                        "nor static (hashable values: ints, bools, strings, None, ...); pass its numbers "
                        "as an array, or bind it with functools.partial") from None
    return Static(value, (type(value), value))


class Keywords:
    """A call's keyword arguments: their pytree structure (a dict by name) and per leaf its shape,
    if traced (None: a scalar), or its Static value."""

    __slots__ = ("treedef", "spec", "size", "_hash")

    def __init__(self, treedef: TreeDef, spec):
        self.treedef = treedef
        self.spec = tuple(spec)
        self.size = sum(size_of(s) for s in self.spec if type(s) is not Static)
        self._hash = hash((treedef, self.spec))

    def __hash__(self):
        return self._hash

    def __reduce__(self):
        return Keywords, (self.treedef, self.spec)

    def __eq__(self, other):
        return type(other) is Keywords and self._hash == other._hash and self.treedef == other.treedef \
            and self.spec == other.spec

    def __repr__(self):
        return f"Keywords({self.treedef.describe()}, {self.spec})"

    def build(self, take) -> dict:
        """The keyword arguments: ``take(start, stop, shape)`` for each traced leaf (positions
        relative to the keywords' start in the flat vector), the value of each static one."""
        leaves, start = [], 0
        for s in self.spec:
            if type(s) is Static:
                leaves.append(s.value)
            else:
                stop = start + size_of(s)
                leaves.append(take(start, stop, s))
                start = stop
        return self.treedef.unflatten(leaves)

    def traced_positions(self):
        """(leaf index, start, stop, shape) of each traced leaf."""
        start = 0
        for j, s in enumerate(self.spec):
            if type(s) is not Static:
                stop = start + size_of(s)
                yield j, start, stop, s
                start = stop


__all__ = ["TreeShape", "Keywords", "Static", "static_leaf", "size_of", "describe_shape"]
