"""scalargrad: fast reverse-mode automatic differentiation of scalar Python code.

Record with ``Variable`` (eager, ``backward()``) or transform functions with ``grad``,
``value_and_grad`` and ``jit``; both record a flat tape that compiled Numba sweeps evaluate.
"""
from .api import grad, jit, trace, value_and_grad
from .dot import draw, to_dot
from .vmap import vmap
from .ops import USER_OPS as _USER_OPS
from .tape import Tape
from .trace import FUNCTIONS_BY_NAME as _FUNCTIONS, TracingError, Variable, no_grad, power

globals().update({op.name: _FUNCTIONS[op.name] for op in _USER_OPS})
pow = power  # noqa: A001  x ** y with the same dispatch as the operator

__version__ = "0.1.0"
__all__ = ["Variable", "Tape", "TracingError", "draw", "grad", "jit", "no_grad", "to_dot", "trace", "value_and_grad", "vmap", "power",
           *(op.name for op in _USER_OPS)]
