"""The ``sg.<op>`` functions inside Numba-compiled code: an overload per op-table row, so that the
functions given to ``sg.custom_op`` (compiled in nopython mode) may call them on floats.

Each overload is the row's forward expression with the math functions the interpreter compiles
(core/ops.py's FUNCTIONS; jit/float_functions.py for ``floor ceil rint cbrt``), so it gives the
sweeps' values. Since the same ``sg.<op>`` records the op on Variables, a custom op's partial
written with them (``lambda x: sg.sigmoid(x)``) also traces, and is differentiated again by its
recorded ops, to any order. Registered once, by the first custom op (``register``).
"""
from __future__ import annotations

import threading

from numba import types
from numba.extending import overload

from ..core.ops import FUNCTIONS, USER_OPS, substitute
from ..jit import float_functions  # noqa: F401 (imported for its effect: Numba compiles floor, ceil, rint, cbrt)
from .operators import FUNCTIONS_BY_NAME

_PARAMETERS = ("a", "b", "c")
_SCALARS = (types.Float, types.Integer, types.Boolean)
_DONE = threading.Event()
_LOCK = threading.Lock()


def register() -> None:
    """Give Numba an implementation of every ``sg.<op>`` function whose row has no literal, for
    float, int and bool arguments (once per process)."""
    if _DONE.is_set():
        return
    with _LOCK:
        if _DONE.is_set():
            return
        namespace = {name: functions[0] for name, functions in FUNCTIONS.items() if name != "custom"}
        for op in USER_OPS:
            if not op.literal and op.name in FUNCTIONS_BY_NAME:
                overload(FUNCTIONS_BY_NAME[op.name])(_typer(_implementation(op, namespace), op.arity))
        _DONE.set()


def _implementation(op, namespace):
    """``impl(*args)``: the row's forward expression over its operands, as a float."""
    names = _PARAMETERS[:op.arity]
    source = (f"def impl(*args):\n    {', '.join(names)}, = args\n"
              f"    return float({substitute(op.forward, **dict(zip(names, names)))})\n")
    scope = dict(namespace)
    exec(compile(source, f"<sg.{op.name} for Numba>", "exec"), scope)  # noqa: S102 (the table's own text)
    return scope["impl"]


def _typer(impl, arity: int):
    def typer(*args):
        if len(args) == arity and all(isinstance(t, _SCALARS) for t in args):
            return impl
        return None
    return typer
