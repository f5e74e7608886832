"""User-defined ops registered in this process (``sg.custom_op``, record/custom.py), by id.

They appear in the op table as two generic rows (``custom1``, ``custom2``) whose literal is the op's
id; ``custom(id, j, a, b)`` is function j of the op (0: forward, 1 and 2: the partial derivatives
in a and b; unary ops ignore b). The registry sits below the table, which names ``call_custom``
as the Python meaning of ``custom``.
"""
from __future__ import annotations

CUSTOM_OPS: dict = {}  # id -> the registered op (record/custom.py's CustomOp)
# Ops replaced by a registration of the same name (a notebook cell run again), kept alive: a
# program may still hold the addresses of their compiled functions until it is refreshed, and a
# kernel handed out by ``compile()`` keeps them.
REPLACED: list = []


def custom_op_by_id(op_id):
    """The registered custom op with this id (a tape literal); ValueError if there is none."""
    op = CUSTOM_OPS.get(int(op_id)) if float(op_id).is_integer() else None
    if op is None:
        raise ValueError(f"custom op id {op_id!r} is not registered in this process "
                         "(register it with sg.custom_op before running the tape)")
    return op


def call_custom(op_id, which, a, b):
    """Python meaning of ``custom`` (the compiled sweeps call the same functions through their C
    addresses; see jit/custom_call.py)."""
    return custom_op_by_id(op_id).evaluate(int(which), a, b)
