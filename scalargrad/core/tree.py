"""Pytrees: nested tuples, lists, dicts, namedtuples, ``None`` and registered classes, taken apart
into a list of leaves and a hashable ``TreeDef`` that puts them back (JAX's ``tree_util``, in small).

A node kind is found by the value's exact type (namedtuples by their ``_fields``); anything that is
not a node is a leaf. A dict's children are ordered by sorted key (insertion order where the keys
do not sort), so two dicts with the same keys have the same structure whatever their insertion
order; ``None`` is a node with no children. Equal ``TreeDef``s mean equal structure, which is what
the transforms' caches key on.
"""
from __future__ import annotations

import collections
import dataclasses

# node type -> (flatten: value -> (children, meta), unflatten: (meta, children) -> value, child names:
# meta -> names used in paths, or None for positions). ``meta`` must be hashable: it is compared
# and hashed as part of the TreeDef.
_NODES: dict = {}


class TreeDef:
    """The structure of a pytree: a node's type and metadata (dict keys, dataclass static fields)
    and its children's structures; a leaf is the ``LEAF`` singleton. Hashable, compared by value."""

    __slots__ = ("kind", "meta", "children", "num_leaves", "_hash")

    def __init__(self, kind, meta, children):
        self.kind = kind
        self.meta = meta
        self.children = children
        self.num_leaves = 1 if kind is None else sum(c.num_leaves for c in children)
        try:
            self._hash = hash((kind, meta, children))
        except TypeError:
            raise TypeError(f"a {kind.__name__} node's metadata must be hashable (it is part of the "
                            f"structure), got {meta!r:.80}") from None

    def __hash__(self):
        return self._hash

    def __reduce__(self):  # the hash is recomputed: string and type hashes differ between processes
        return TreeDef, (self.kind, self.meta, self.children)

    def __eq__(self, other):
        return self is other or (type(other) is TreeDef and self._hash == other._hash and self.kind is other.kind
                                 and self.meta == other.meta and self.children == other.children)

    def unflatten(self, leaves):
        """The pytree of this structure holding ``leaves`` (in ``tree_flatten``'s order)."""
        leaves = list(leaves)
        if len(leaves) != self.num_leaves:
            raise ValueError(f"tree_unflatten: the structure {self} has {self.num_leaves} leaves, got {len(leaves)}")
        return self._build(iter(leaves))

    def _build(self, leaves):
        if self.kind is None:
            return next(leaves)
        return _handler(self.kind)[1](self.meta, [c._build(leaves) for c in self.children])

    def paths(self, prefix: str = "") -> list[str]:
        """Where each leaf sits, as Python would index it (``['w'][0]``, ``.bias``), in leaf order."""
        if self.kind is None:
            return [prefix]
        names = _child_names(self)
        return [p for name, child in zip(names, self.children) for p in child.paths(prefix + name)]

    def __repr__(self):
        return f"TreeDef({self.describe()})"

    def describe(self) -> str:
        """The structure in Python-like notation, leaves as ``*``: ``{'b': *, 'w': [*, *]}``."""
        if self.kind is None:
            return "*"
        inner = [c.describe() for c in self.children]
        if self.kind is tuple:
            return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"
        if self.kind is list:
            return "[" + ", ".join(inner) + "]"
        if self.kind is type(None):
            return "None"
        if self.kind in (dict, collections.OrderedDict, collections.defaultdict):
            keys = self.meta[-1]
            return "{" + ", ".join(f"{k!r}: {t}" for k, t in zip(keys, inner)) + "}"
        names = _child_names(self)
        return self.kind.__name__ + "(" + ", ".join(
            (n[1:] + "=" if n.startswith(".") else "") + t for n, t in zip(names, inner)) + ")"


LEAF = TreeDef(None, None, ())


def _sorted_keys(d) -> tuple:
    try:
        return tuple(sorted(d))
    except TypeError:  # keys of mixed types: insertion order
        return tuple(d)


def _dict_flatten(d):
    keys = _sorted_keys(d)
    return [d[k] for k in keys], (keys,)


def _ordered_flatten(d):
    keys = tuple(d)
    return [d[k] for k in keys], (keys,)


def _defaultdict_flatten(d):
    keys = _sorted_keys(d)
    return [d[k] for k in keys], (d.default_factory, keys)


_NODES.update({
    tuple: (lambda t: (t, None), lambda meta, children: tuple(children), None),
    list: (lambda t: (t, None), lambda meta, children: list(children), None),
    type(None): (lambda _: ((), None), lambda meta, children: None, None),
    dict: (_dict_flatten, lambda meta, children: dict(zip(meta[0], children)), lambda meta: meta[0]),
    collections.OrderedDict: (_ordered_flatten, lambda meta, children: collections.OrderedDict(zip(meta[0], children)),
                              lambda meta: meta[0]),
    collections.defaultdict: (_defaultdict_flatten,
                              lambda meta, children: collections.defaultdict(meta[0], zip(meta[1], children)),
                              lambda meta: meta[1]),
})

BUILTIN_NODES = frozenset(_NODES)


def _is_namedtuple(kind) -> bool:
    return issubclass(kind, tuple) and isinstance(getattr(kind, "_fields", None), tuple)


def _handler(kind):
    handler = _NODES.get(kind)
    if handler is None and _is_namedtuple(kind):  # rebuilt by its own type
        return (lambda t: (t, None), lambda meta, children: kind(*children), lambda meta: kind._fields)
    return handler


def _child_names(treedef) -> list[str]:
    """Index text per child of a node, for ``paths`` and messages."""
    kind = treedef.kind
    if kind in (tuple, list) or kind is type(None):
        return [f"[{i}]" for i in range(len(treedef.children))]
    names = _handler(kind)[2]
    if names is None:
        return [f"[{i}]" for i in range(len(treedef.children))]
    keys = names(treedef.meta)
    if kind in (dict, collections.OrderedDict, collections.defaultdict):
        return [f"[{k!r}]" for k in keys]
    return [f".{k}" for k in keys]


def is_node(x) -> bool:
    """Whether ``x`` is a pytree node (a container the tree functions look inside)."""
    kind = type(x)
    return kind in _NODES or _is_namedtuple(kind)


def tree_flatten(tree, is_leaf=None):
    """(leaves, TreeDef) of ``tree``: its leaves in order (dicts by sorted key) and its structure.
    ``is_leaf(x)`` returning True makes ``x`` a leaf even if it is a node."""
    leaves = []
    return leaves, _flatten(tree, leaves, is_leaf)


def _flatten(x, leaves, is_leaf):
    handler = None if is_leaf is not None and is_leaf(x) else _handler(type(x))
    if handler is None:
        leaves.append(x)
        return LEAF
    children, meta = handler[0](x)
    return TreeDef(type(x), meta, tuple(_flatten(c, leaves, is_leaf) for c in children))


def tree_unflatten(treedef: TreeDef, leaves):
    """The pytree of structure ``treedef`` (from ``tree_flatten``) holding ``leaves``."""
    if type(treedef) is not TreeDef:
        raise TypeError(f"tree_unflatten expects a TreeDef (from tree_flatten), got {type(treedef).__name__}")
    return treedef.unflatten(leaves)


def tree_leaves(tree, is_leaf=None) -> list:
    """The leaves of ``tree``, in ``tree_flatten``'s order."""
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree, is_leaf=None) -> TreeDef:
    """The TreeDef of ``tree``."""
    return tree_flatten(tree, is_leaf)[1]


def flatten_up_to(treedef: TreeDef, tree, what: str = "tree") -> list:
    """``tree``'s subtrees at the leaf positions of ``treedef``: ``tree`` must have that structure
    down to those positions (and may go on below them). ValueError naming the first difference."""
    out = []
    _up_to(treedef, tree, out, "", what)
    return out


def _up_to(treedef, x, out, path, what):
    if treedef.kind is None:
        out.append(x)
        return
    handler = _handler(type(x))
    if type(x) is not treedef.kind or handler is None:
        raise ValueError(f"{what}{path} is a {type(x).__name__}, where the structure has a "
                         f"{treedef.kind.__name__}: {treedef}")
    children, meta = handler[0](x)
    if meta != treedef.meta or len(children) != len(treedef.children):
        raise ValueError(f"{what}{path}: a {type(x).__name__} of another shape (keys, fields or length) "
                         f"than the structure {treedef}")
    for name, child, sub in zip(_child_names(treedef), treedef.children, children):
        _up_to(child, sub, out, path + name, what)


def tree_map(f, tree, *rest, is_leaf=None):
    """``f`` applied to each leaf of ``tree`` (and the corresponding subtrees of ``rest``, which must
    have ``tree``'s structure at least down to its leaves), in a pytree of ``tree``'s structure."""
    leaves, treedef = tree_flatten(tree, is_leaf)
    others = [flatten_up_to(treedef, r, f"tree_map's argument {i + 1}") for i, r in enumerate(rest)]
    return treedef.unflatten(f(*xs) for xs in zip(leaves, *others))


def register_pytree_node(nodetype: type, flatten, unflatten) -> type:
    """Make ``nodetype`` a pytree node: ``flatten(x) -> (children, meta)`` with ``meta`` hashable
    (the rest of ``x`` that is not a child, compared as part of the structure), and
    ``unflatten(meta, children) -> x``. Registering a class again replaces its functions (a
    notebook cell run twice). Returns ``nodetype``."""
    if not isinstance(nodetype, type):
        raise TypeError(f"register_pytree_node expects a class, got {type(nodetype).__name__}")
    if nodetype in BUILTIN_NODES:
        raise ValueError(f"{nodetype.__name__} is a built-in pytree node and cannot be registered again")
    if not callable(flatten) or not callable(unflatten):
        raise TypeError("register_pytree_node(nodetype, flatten, unflatten): flatten and unflatten must be functions")

    def flatten_checked(x):
        children, meta = flatten(x)
        return list(children), meta

    _NODES[nodetype] = (flatten_checked, unflatten, None)
    return nodetype


def register_dataclass(cls=None, *, meta_fields=()):
    """Make a dataclass a pytree node (usable as a decorator, ``@sg.register_dataclass``): its
    fields are children, except those named in ``meta_fields``, which are static (hashable values
    that are part of the structure: a change means another structure). Every field must be an
    ``__init__`` argument."""
    if cls is None:
        return lambda c: register_dataclass(c, meta_fields=meta_fields)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"register_dataclass expects a dataclass, got {cls!r}")
    fields = dataclasses.fields(cls)
    not_init = [f.name for f in fields if not f.init]
    if not_init:
        raise ValueError(f"register_dataclass({cls.__name__}): fields {not_init} are not __init__ arguments, "
                         "so the class could not be rebuilt from its fields")
    unknown = set(meta_fields) - {f.name for f in fields}
    if unknown:
        raise ValueError(f"register_dataclass({cls.__name__}): meta_fields {sorted(unknown)} are not fields")
    data = tuple(f.name for f in fields if f.name not in meta_fields)
    meta = tuple(f.name for f in fields if f.name in meta_fields)

    def flatten(x):
        return [getattr(x, n) for n in data], tuple(getattr(x, n) for n in meta)

    def unflatten(values, children):
        return cls(**dict(zip(data, children)), **dict(zip(meta, values)))

    _NODES[cls] = (flatten, unflatten, lambda _: data)
    return cls


__all__ = ["TreeDef", "LEAF", "tree_flatten", "tree_unflatten", "tree_map", "tree_leaves", "tree_structure",
           "flatten_up_to", "is_node", "register_pytree_node", "register_dataclass"]
