"""The op table's expressions as Python functions: the meaning of a rule string, evaluated in Python
with ``math`` (fast, exact where it does not raise) or NumPy (IEEE results where ``math`` raises).
Used by the recorder for eager values and by the reference sweeps, the test oracle."""
from __future__ import annotations

import numpy as np

from .ops import FUNCTIONS, substitute

MATH_FUNCTIONS = {name: pair[0] for name, pair in FUNCTIONS.items()}
NUMPY_FUNCTIONS = {name: pair[1] for name, pair in FUNCTIONS.items()}


def compile_rule(expr: str, params: tuple[str, ...], namespace: dict):
    """``expr`` (a table expression over ``params``) as a Python function, names from ``namespace``."""
    src = f"lambda {', '.join(params)}: " + substitute(expr, **{p: p for p in params})
    return eval(src, dict(namespace))


def operand_names(op) -> tuple[str, ...]:
    """Parameter names of an op's Python forward function: its operands, then the literal."""
    return tuple("abc"[: op.arity]) + (("lit",) if op.literal else ())


def python_forward(op):
    """A float function for ``op``'s forward rule with IEEE results: Python's math module where it
    is exact and fast, NumPy where math raises (log(-1) -> nan, 1/0 -> inf, exp(1000) -> inf)."""
    params = operand_names(op)
    fast = compile_rule(op.forward, params, MATH_FUNCTIONS)
    ieee = compile_rule(op.forward, params, NUMPY_FUNCTIONS)

    def forward(*args):
        try:
            return fast(*args)
        except (ArithmeticError, ValueError):
            with np.errstate(all="ignore"):
                return float(ieee(*map(np.float64, args)))

    forward.fast = fast
    return forward
