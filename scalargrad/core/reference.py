"""Pure-Python sweeps over a Tape, derived from the op table: the test oracle.

Slow and simple on purpose: NumPy float64 scalars give IEEE results, one op at a time, so the
compiled kernels can be checked against an independent reading of the same table.
"""
from __future__ import annotations

import numpy as np

from .ops import OPS
from .python_rules import NUMPY_FUNCTIONS, compile_rule, operand_names
from .tape import Tape

# each op's forward rule and partial rules as Python functions of NumPy scalars, by opcode
FORWARD = [compile_rule(op.forward, operand_names(op), NUMPY_FUNCTIONS) if op.arity or op.literal else None
           for op in OPS]
PARTIALS = [tuple(compile_rule(p, ("a", "b", "c", "y", "lit"), NUMPY_FUNCTIONS) for p in op.partials) for op in OPS]


def _operands(tape: Tape, k: int, vals) -> list:
    op = OPS[tape.op[k]]
    return [vals[s] for s in (tape.a[k], tape.b[k], tape.c[k])[: op.arity]]


def forward(tape: Tape, x) -> list:
    """Values of every slot for inputs ``x`` (one float per tape input)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if len(x) != len(tape.inputs):
        raise ValueError(f"expected {len(tape.inputs)} inputs, got {len(x)}")
    vals = [np.float64(0.0)] * len(tape)
    for slot, value in zip(tape.inputs, x):
        vals[slot] = np.float64(value)
    with np.errstate(all="ignore"):
        for k in range(len(tape)):
            op = OPS[tape.op[k]]
            if op.name == "input":
                continue
            args = _operands(tape, k, vals) + ([tape.lit[k]] if op.literal else [])
            vals[k] = np.float64(FORWARD[tape.op[k]](*args))
    return vals


def evaluate(tape: Tape, x) -> np.ndarray:
    """The tape's outputs at ``x``."""
    vals = forward(tape, x)
    return np.array([vals[s] for s in tape.outputs], dtype=np.float64)


def guards_hold(tape: Tape, vals) -> bool:
    return all((vals[s] != 0.0) == (v != 0.0) for s, v in zip(tape.guards, tape.guard_values))


def value_and_grad(tape: Tape, x, output: int = 0) -> tuple[float, np.ndarray]:
    """Value of one output and its gradient with respect to every input."""
    vals = forward(tape, x)
    adj = [np.float64(0.0)] * len(tape)
    out = tape.outputs[output]
    adj[out] = np.float64(1.0)
    with np.errstate(all="ignore"):
        for k in range(len(tape) - 1, -1, -1):
            g = adj[k]
            if g == 0.0:  # same convention as the kernels: a zero adjoint propagates nothing
                continue
            op = OPS[tape.op[k]]
            a = _operands(tape, k, vals)
            named = dict(zip("abc", a))
            for j, slot in enumerate((tape.a[k], tape.b[k], tape.c[k])[: op.arity]):
                if op.differentiable[j]:
                    partial = PARTIALS[tape.op[k]][j](named.get("a"), named.get("b"), named.get("c"),
                                                       vals[k], tape.lit[k])
                    adj[slot] = adj[slot] + np.float64(partial) * g
    return float(vals[out]), np.array([adj[s] for s in tape.inputs], dtype=np.float64)
