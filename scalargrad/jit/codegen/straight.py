"""Straight-line generated code: one line per instruction for the bodies of ``evaluate(x, out)`` and
``value_and_grad(x, grad)``, with the interpreter's exact semantics: the same expressions, the guards
checked before the reverse sweep, adjoints summed in the same order and a zero adjoint propagating
nothing. Every variable is assigned once (SSA) and nothing branches (see intrinsics.py).
"""
from __future__ import annotations

import numpy as np

from ...core.ops import CONST, INPUT, OPS
from ...core.tape import Tape
from ..rewrite import live_mask
from .expressions import constant_partial, expr, literal


def _names(tape: Tape, k: int, constants: dict) -> dict:
    """Placeholder values for instruction k: operand and own value variables, and the literal. A
    'const' operand is written as its literal, so that a partial such as mul's is seen to be a
    finite constant (no zero-adjoint test needed)."""
    names = dict(y=f"v{k}", lit=literal(tape.lit[k], k, constants))
    for s, slots in zip("abc", (tape.a, tape.b, tape.c)):
        slot = int(slots[k])
        if slot >= 0:
            names[s] = literal(tape.lit[slot], slot, constants) if tape.op[slot] == CONST else f"v{slot}"
    return names


# How the reverse sweep below can drop work and stay bit-identical to the interpreter's. There,
# adjoints are sums starting from +0.0 (or the seed 1.0), so never -0.0, and a step with a zero
# adjoint g is skipped. Here, a first contribution 0.0 + p * g is written p * g, which differs only
# when it is a zero (-0.0 instead of +0.0). Invariant: every adjoint here equals the interpreter's
# or both are zeros. It holds through every step: the partials p are the same; a zero g of either
# sign is skipped by the select (g != 0.0 is false for both), and a step without the test has a
# finite constant partial c, so it adds a zero (c * ±0), which changes a sum only in the sign of a
# zero. Finally each gradient entry is written 0.0 + g, which maps -0.0 to +0.0 and keeps every other
# value: the interpreter's bits.

def _needed(tape: Tape, roots) -> np.ndarray:
    return live_mask(tape.a, tape.b, tape.c, np.asarray(list(roots), dtype=np.int64))


def _guard_test(tape: Tape) -> str:
    """An expression true when every guard has its traced value (as ``kernels.guards_hold``),
    with ``&`` rather than ``and`` so that it does not branch."""
    tests = [f"(v{int(s)} != 0.0)" if v != 0.0 else f"(not (v{int(s)} != 0.0))"
             for s, v in zip(tape.guards, tape.guard_values)]
    return " & ".join(tests) if tests else "True"


def _forward_lines(tape: Tape, keep, listing, constants) -> list[str]:
    lines = []
    input_index = {int(s): i for i, s in enumerate(tape.inputs)}
    for k in range(len(tape)):
        if keep[k]:
            op = OPS[tape.op[k]]
            rhs = (f"x[{input_index[k]}]" if tape.op[k] == INPUT
                   else expr(op, None, _names(tape, k, constants)))
            lines.append(f"    v{k} = {rhs}  # {listing[k]}")
    return lines


def _leads_to_input(tape: Tape) -> np.ndarray:
    """Slots with a differentiable path to an input: the only adjoints a gradient can read, so
    steps into other slots (constants, conditions) are left out; they change no result."""
    useful = tape.op == INPUT
    for k in range(len(tape)):
        if not useful[k]:
            op = OPS[tape.op[k]]
            useful[k] = any(op.differentiable[j] and useful[s]
                            for j, s in enumerate((tape.a[k], tape.b[k], tape.c[k])[: op.arity]))
    return useful


def _reverse_lines(tape: Tape, out: int, listing, constants) -> tuple[list[str], dict]:
    """The reverse sweep in the interpreter's order (k descending, operands in table order), over
    the slots whose adjoint can be nonzero and reach an input. ``adjoint[s]`` names slot s's adjoint
    so far: ``g<s>_<i>`` after its i-th contribution (SSA: nothing is reassigned)."""
    useful = _leads_to_input(tape)
    adjoint = {out: "1.0"} if useful[out] else {}
    count: dict[int, int] = {}
    lines = []
    for k in range(len(tape) - 1, -1, -1):
        if k not in adjoint:
            continue
        op = OPS[tape.op[k]]
        names = _names(tape, k, constants)
        for j, slot in enumerate((tape.a[k], tape.b[k], tape.c[k])[: op.arity]):
            slot = int(slot)
            if not (op.differentiable[j] and useful[slot]):
                continue
            partial = expr(op, j, names)
            total = adjoint.get(slot, "0.0")
            count[slot] = count.get(slot, 0) + 1
            adjoint[slot] = name = f"g{slot}_{count[slot]}"
            g = adjoint[k]
            first = total == "0.0"  # the interpreter's 0.0 + p * g: written p * g (see above)
            constant = constant_partial(partial) and float(partial.strip("()"))
            if constant == 1.0:
                rhs = g if first else f"{total} + {g}"
            elif constant == -1.0:
                rhs = f"-{g}" if first else f"{total} - {g}"
            elif constant:
                rhs = f"{partial} * {g}" if first else f"muladd({total}, {partial}, {g})"
            else:
                rhs = f"acc0({partial}, {g})" if first else f"acc({total}, {partial}, {g})"
            lines.append(f"    {name} = {rhs}  # {listing[k]}")
    return lines, adjoint


def straight_bodies(tape: Tape, constants: dict) -> tuple[list, list]:
    """(evaluate body, value_and_grad body) as lists of lines indented for a function, one line per
    instruction with its listing in a comment; the module constants they use added to ``constants``."""
    listing = str(tape).splitlines()
    outputs = [int(s) for s in tape.outputs]
    guards = [int(s) for s in tape.guards]
    guard_test = _guard_test(tape)

    ev = _forward_lines(tape, _needed(tape, outputs + guards), listing, constants)
    ev += [f"    out[{i}] = v{s}" for i, s in enumerate(outputs)]
    ev.append(f"    return {guard_test}")

    if outputs:
        out = outputs[0]
        vg = _forward_lines(tape, _needed(tape, [out] + guards), listing, constants)
        if guards:
            vg += [f"    if not ({guard_test}):", f"        return v{out}, False"]
        reverse, adjoint = _reverse_lines(tape, out, listing, constants)
        vg += reverse
        for i, s in enumerate(tape.inputs):
            g = adjoint.get(int(s), "0.0")
            vg.append(f"    grad[{i}] = {g if g in ('0.0', '1.0') else '0.0 + ' + g}")
        vg.append(f"    return v{out}, True")
    else:
        vg = ["    return 0.0, False"]
    return ev, vg
