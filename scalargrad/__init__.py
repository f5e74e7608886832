"""scalargrad: fast reverse-mode automatic differentiation of scalar Python code.

Record with ``Variable`` (eager, ``backward()``) or transform functions with ``grad``,
``value_and_grad`` and ``jit``; both record a flat tape that compiled Numba sweeps evaluate.
"""
from .jit import compile_notice, kernel_cache

kernel_cache.install()  # before any cache=True function below is defined: kernels cache outside site-packages
compile_notice.install()  # one line on stderr when a cold-cache compile keeps the caller waiting

from .record.tracing import trace
from .transforms.api import grad, jit, value_and_grad
from . import config  # sg.config.debug_nans: the global NaN-debugging switch
from .viz.dot import draw, to_dot
from .transforms.vmap import vmap
from .transforms.derivatives import hessian, hvp, jacobian, jvp  # higher-order and forward mode
from .record.custom import CustomOp, custom_op  # user-defined ops
from .core.ops import USER_OPS as _USER_OPS
from .core.tape import Tape
from .core.tree import (TreeDef, register_dataclass, register_pytree_node, tree_flatten, tree_leaves, tree_map,
                        tree_structure, tree_unflatten)
from .record.operators import FUNCTIONS_BY_NAME as _FUNCTIONS, power
from .record.variable import TracingError, Variable, no_grad

globals().update({op.name: _FUNCTIONS[op.name] for op in _USER_OPS})
pow = power  # noqa: A001  x ** y with the same dispatch as the operator

__version__ = "0.1.0"
__all__ = ["Variable", "Tape", "TracingError", "config", "draw", "grad", "jit", "no_grad", "to_dot", "trace", "value_and_grad", "vmap", "power",
           "hessian", "hvp", "jacobian", "jvp", "CustomOp", "custom_op",
           "tree_map", "tree_flatten", "tree_unflatten", "tree_leaves", "tree_structure", "TreeDef",
           "register_pytree_node", "register_dataclass",
           *(op.name for op in _USER_OPS)]
