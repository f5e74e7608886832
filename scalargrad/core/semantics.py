"""The semantics table (``docs/semantics.md``), generated from the op table: each op's rules, its
behaviour at non-differentiable points and domain edges, and its value and derivatives at special
inputs as computed by the reference sweeps. ``python -m scalargrad.core.semantics`` rewrites the file;
a test checks that the committed one is up to date.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from . import reference
from .ops import CMP, INPUT, OPCODE, USER_OPS, substitute
from .tape import Tape

DOC = Path(__file__).resolve().parents[2] / "docs" / "semantics.md"
SPECIAL = (0.0, 1.0, -1.0, math.inf, -math.inf, math.nan)
LITERAL = 0.5  # the literal of powc (x ** k) and cpow (k ** x) in the special-inputs table

HEADER = """\
# Semantics at non-differentiable points and domain edges

Generated from the op table (`scalargrad/core/ops.py`) by `python -m scalargrad.core.semantics`; do not edit
by hand (`tests/test_semantics.py` checks that this file is up to date).

General rules, the same in every backend:

- **IEEE float64, as NumPy.** No op raises: `log(0) = -inf`, `log(-1) = nan`, `1/0 = inf`,
  `0/0 = nan`, `exp(1000) = inf`. A NaN operand gives a NaN result unless the rule below says
  otherwise (`relu(nan) = nan`; `maximum`/`minimum` propagate NaN like `np.maximum`).
- **A derivative is the op's partial rule evaluated at the point**, with IEEE arithmetic: where
  the function is not differentiable the rule's value is the convention listed under *at the
  edges*; where the derivative is unbounded it is `±inf`.
- **A zero adjoint carries nothing.** The reverse sweep skips an instruction whose adjoint is 0,
  so an infinite or NaN partial on a value the output does not depend on (the unselected operand
  of `where`) never reaches the gradient. An infinite partial met by a nonzero adjoint does:
  `sqrt(x * x)` at 0 has gradient `inf * 0 = nan`, not 0.
- **`x ** 2` records `square`, `x * x`**: the exact square rounded once, as NumPy's `np.square`
  and array `x ** 2` compute it. CPython's `float ** 2` calls the C library's `pow`, which can be
  one unit in the last place away: `900.7093261133584 ** 2` is `811277.2901475802` in Python and
  `811277.2901475803` (the correctly rounded square) in scalargrad; 840 of 10^6 uniform random
  floats in [-1000, 1000] differ so. Other constant exponents record `powc`, which calls `pow`.
- **Comparisons** (`lt le gt ge eq ne`) are 1.0 or 0.0 with zero derivative; `if` on one records a
  guard, and inputs that take the other branch retrace. `where(c, x, y)` selects without a guard.
- To find the op where a NaN or inf first appeared, call with `debug_nans=True` (or set
  `sg.config.debug_nans = True`, or `SCALARGRAD_DEBUG_NANS=1`): the error names the op, its operand
  values and the file and line that recorded it.
"""


def _code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def _expr(expr: str) -> str:
    return _code(substitute(expr, a="a", b="b", c="c", y="y", lit="k"))


def _number(v: float) -> str:
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0.0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    return f"{v:.4g}"


def at_point(op, x: float, lit: float = LITERAL) -> tuple[float, tuple[float, ...]]:
    """(value, partials) of ``op`` with every operand equal to ``x``, from the reference sweeps."""
    n = op.arity
    tape = Tape(op=[INPUT] * n + [OPCODE[op.name]], a=[-1] * n + [0], b=[-1] * n + [1 if n > 1 else -1],
                c=[-1] * n + [2 if n > 2 else -1], lit=[0.0] * n + [lit if op.literal else 0.0],
                inputs=list(range(n)), outputs=[n])
    value, grad = reference.value_and_grad(tape, [x] * n)
    return value, tuple(grad)


def _rules_table() -> list[str]:
    lines = ["## Rules", "",
             "`a b c` are the operands, `y` the op's value, `k` the instruction's literal. *Smooth*: "
             "differentiable everywhere inside the interval(s) the tests sample (*tested on*).", "",
             "| op | forward | d/d operand | smooth | tested on | at the edges |", "|---|---|---|---|---|---|"]
    for op in USER_OPS:
        partials = ", ".join(_expr(p) for p in op.partials)
        domain = " × ".join(f"[{lo:g}, {hi:g}]" for lo, hi in op.domain)
        note = op.note.replace("|", "\\|") if op.note != CMP else "comparison (see the general rules)"
        lines.append(f"| `{op.name}` | {_expr(op.forward)} | {partials} | {'yes' if op.smooth else 'no'} "
                     f"| {domain} | {note} |")
    return lines


def _special_table() -> list[str]:
    heads = " | ".join(f"x = {_number(x)}" for x in SPECIAL)
    lines = ["## At special inputs", "",
             f"Every operand equal to x; each cell is `value; d/da[, d/db[, d/dc]]` from the reference "
             f"sweeps (the test oracle, which every backend matches). The literal k of `powc` and `cpow` "
             f"is {LITERAL}.", "",
             f"| op | {heads} |", "|---|" + "---|" * len(SPECIAL)]
    for op in USER_OPS:
        cells = []
        for x in SPECIAL:
            value, partials = at_point(op, x)
            cells.append(_number(value) + "; " + ", ".join(_number(p) for p in partials))
        lines.append(f"| `{op.name}` | " + " | ".join(cells) + " |")
    return lines


def render() -> str:
    """The full text of ``docs/semantics.md``."""
    with np.errstate(all="ignore"):
        body = [HEADER, *_rules_table(), "", *_special_table()]
    return "\n".join(body) + "\n"


def main(argv=None) -> int:
    """Write ``docs/semantics.md`` (or the path given)."""
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else DOC
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
