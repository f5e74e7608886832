"""Source text of op-table expressions, literals and module constants, shared by the straight-line
(straight.py) and the rolled (rolled.py) writers: conditionals become ``select`` calls and
``and``/``or`` become ``&``/``|``, so generated code has no branches (see intrinsics.py); literals
are written exactly (non-finite ones from their bits).
"""
from __future__ import annotations

import ast
import functools
import math

import numpy as np

from ...core.ops import PLACEHOLDERS, substitute


class _Branchless(ast.NodeTransformer):
    def visit_IfExp(self, node):
        self.generic_visit(node)
        return ast.Call(ast.Name("select", ast.Load()), [node.test, node.body, node.orelse], [])

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        op = ast.BitAnd() if isinstance(node.op, ast.And) else ast.BitOr()
        expr = node.values[0]
        for value in node.values[1:]:
            expr = ast.BinOp(expr, op, value)
        return expr


@functools.lru_cache(maxsize=None)
def branchless(expr: str) -> str:
    """An op-table expression with conditionals as ``select`` calls, placeholders kept: e.g.
    ``1.0 if {a} > 0.0 else 0.0`` -> ``select({a} > 0.0, 1.0, 0.0)``."""
    if " if " not in expr and " and " not in expr and " or " not in expr:
        return expr
    marked = substitute(expr, **{p: f"__{p}__" for p in PLACEHOLDERS})
    tree = _Branchless().visit(ast.parse(marked, mode="eval"))
    text = ast.unparse(ast.fix_missing_locations(tree))
    for p in PLACEHOLDERS:
        text = text.replace(f"__{p}__", "{" + p + "}")
    return text


def expr(op, j: int | None, names: dict) -> str:
    """Source of op's forward (j None) or j-th partial expression over ``names``."""
    return substitute(branchless(op.forward if j is None else op.partials[j]), **names)


def literal(value: float, k: int, constants: dict) -> str:
    """Source text of a literal: its repr (exact for finite floats), parenthesised when negative;
    a non-finite literal becomes a module constant built from its bits (NaN payload included)."""
    value = float(value)
    if math.isfinite(value):
        text = repr(value)
        return f"({text})" if text.startswith("-") else text
    name = f"L{k}"
    constants[name] = int(np.float64(value).view(np.uint64))
    return name


def constant_line(name: str, value) -> str:
    """A module constant: a non-finite literal from its bits, a table of literals (rolled.py's
    per-copy literals; Numba freezes a global array into the compiled code) or source text."""
    if isinstance(value, str):
        return f"{name} = {value}"
    if not isinstance(value, np.ndarray):
        return f"{name} = struct.unpack('<d', struct.pack('<Q', {value:#x}))[0]"
    if np.isfinite(value).all():
        return f"{name} = np.array([{', '.join(repr(float(v)) for v in value)}])"
    bits = ", ".join(f"{int(b):#x}" for b in value.view(np.uint64))
    return f"{name} = np.array([{bits}], dtype=np.uint64).view(np.float64)"


def constant_partial(partial: str) -> bool:  # a partial's source text, constants substituted
    """A finite constant partial (``1.0``, ``-1.0``, a 'const' operand of mul): with a zero adjoint
    it adds a zero, so the step needs no zero-adjoint test (see straight.py)."""
    try:
        return math.isfinite(float(partial.strip("()")))
    except ValueError:
        return False
