"""The op table: every fact about every scalar op, one row each.

Everything else (Variable operators, ``sg.<op>`` functions, reference sweeps, the generated Numba
interpreter, the printer, the CLI op list, test parametrisation) is derived from ``OPS``.
Expressions are written over placeholders: ``{a} {b} {c}`` operand values, ``{y}`` the op's own
value, ``{lit}`` the instruction's float literal, using the function names in ``FUNCTIONS``.
"""
from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass

import numpy as np

from . import float_math
from .registry import CUSTOM_OPS, call_custom

# Function names the expressions may use, with their meaning in Python's math module and in NumPy.
# Numba compiles the math versions; NumPy's give IEEE results (nan/inf) where math raises.
FUNCTIONS = {
    "exp": (math.exp, np.exp), "log": (math.log, np.log), "log1p": (math.log1p, np.log1p),
    "expm1": (math.expm1, np.expm1), "sqrt": (math.sqrt, np.sqrt), "sin": (math.sin, np.sin),
    "cos": (math.cos, np.cos), "tan": (math.tan, np.tan), "tanh": (math.tanh, np.tanh),
    "sinh": (math.sinh, np.sinh), "cosh": (math.cosh, np.cosh), "asin": (math.asin, np.arcsin),
    "acos": (math.acos, np.arccos), "atan": (math.atan, np.arctan), "atan2": (math.atan2, np.arctan2),
    "pow": (math.pow, np.float_power), "fabs": (math.fabs, np.fabs), "isnan": (math.isnan, np.isnan),
    "log10": (math.log10, np.log10), "log2": (math.log2, np.log2), "hypot": (math.hypot, np.hypot),
    # float_math.py: NumPy's results in Python that Numba also compiles (math.floor is an int)
    "floor": (float_math.floor, np.floor), "ceil": (float_math.ceil, np.ceil), "rint": (float_math.rint, np.rint),
    "cbrt": (float_math.cbrt, np.cbrt),
}
# ``custom(id, j, a, b)``: function j of a user-defined op (registry.py)
FUNCTIONS["custom"] = (call_custom, call_custom)
# What generated Numba code imports from math, and from float_math (through jit/float_functions.py)
FROM_MATH = tuple(sorted(name for name, (fn, _) in FUNCTIONS.items() if getattr(math, name, None) is fn))
FROM_FLOAT_MATH = tuple(sorted(name for name, (fn, _) in FUNCTIONS.items() if fn.__module__ == float_math.__name__))

PLACEHOLDERS = ("a", "b", "c", "y", "lit")


@dataclass(frozen=True)
class Op:
    """One scalar op. ``partials[i]`` is d(op)/d(operand i); "0.0" marks an operand that carries no
    derivative (comparison inputs, the condition of ``where``)."""

    name: str
    arity: int
    forward: str
    partials: tuple[str, ...]
    pyops: tuple[str, ...] = ()       # Python dunder methods that record this op
    domain: tuple[tuple[float, float], ...] = ()  # per operand, where tests sample smooth points
    literal: bool = False              # uses the instruction's float literal {lit}
    smooth: bool = True                # differentiable everywhere inside ``domain``
    note: str = ""                     # behaviour at non-differentiable points / domain edges
    commutative: bool = False          # op(a, b) == op(b, a) bit for bit (CSE may swap operands)
    public: bool = True                # exposed as sg.<name> (the generic custom-op rows are not)
    numpy: tuple[str, ...] = ()        # NumPy ufuncs that record this op when given a Variable

    @property
    def differentiable(self) -> tuple[bool, ...]:
        return tuple(p != "0.0" for p in self.partials)


R = (-3.0, 3.0)
POS = (0.1, 4.0)
UNIT = (-0.9, 0.9)
CMP = "comparison: value 1.0 or 0.0, zero derivative; `if` on it records a guard"

OPS: tuple[Op, ...] = (
    # Leaves: their values come from outside the sweep (inputs) or from the literal.
    Op("input", 0, "{y}", ()),
    Op("const", 0, "{lit}", (), literal=True),
    # Arithmetic, in rough order of frequency (the interpreter tests opcodes in this order).
    Op("add", 2, "{a} + {b}", ("1.0", "1.0"), ("__add__", "__radd__"), (R, R), commutative=True, numpy=("add",)),
    Op("mul", 2, "{a} * {b}", ("{b}", "{a}"), ("__mul__", "__rmul__"), (R, R), commutative=True,
       numpy=("multiply",)),
    Op("sub", 2, "{a} - {b}", ("1.0", "-1.0"), ("__sub__", "__rsub__"), (R, R), numpy=("subtract",)),
    Op("div", 2, "{a} / {b}", ("1.0 / {b}", "-{y} / {b}"), ("__truediv__", "__rtruediv__"),
       (R, POS), numpy=("true_divide",)),
    Op("square", 1, "{a} * {a}", ("2.0 * {a}",), (), (R,), numpy=("square",)),
    Op("neg", 1, "-{a}", ("-1.0",), ("__neg__",), (R,), numpy=("negative",)),
    Op("powc", 1, "pow({a}, {lit})", ("0.0 if {lit} == 0.0 else {lit} * pow({a}, {lit} - 1.0)",),
       (), (POS,), literal=True, note="x ** constant; d/dx is 0 for exponent 0"),
    Op("cpow", 1, "pow({lit}, {a})", ("0.0 if {lit} == 0.0 else {y} * log({lit})",), (), (R,),
       literal=True, note="constant ** x; d/dx is 0 for base 0"),
    Op("pow", 2, "pow({a}, {b})",
       ("0.0 if {b} == 0.0 else {b} * pow({a}, {b} - 1.0)",
        "0.0 if {a} == 0.0 and {b} >= 0.0 else {y} * log({a})"),
       ("__pow__", "__rpow__"), (POS, R), numpy=("float_power",),
       note="d/da is 0 where b == 0; d/db is 0 where a == 0 and b >= 0, NaN where a < 0"),
    Op("reciprocal", 1, "1.0 / {a}", ("-{y} * {y}",), (), (POS,), numpy=("reciprocal",)),
    Op("exp", 1, "exp({a})", ("{y}",), (), (R,), numpy=("exp",)),
    Op("log", 1, "log({a})", ("1.0 / {a}",), (), (POS,), note="log(0) = -inf, log(x < 0) = NaN", numpy=("log",)),
    Op("tanh", 1, "tanh({a})", ("1.0 - {y} * {y}",), (), (R,), numpy=("tanh",)),
    Op("sigmoid", 1, "1.0 / (1.0 + exp(-{a}))", ("{y} * (1.0 - {y})",), (), (R,)),
    Op("sqrt", 1, "sqrt({a})", ("0.5 / {y}",), (), (POS,), note="d/dx at 0 is +inf", numpy=("sqrt",)),
    Op("sin", 1, "sin({a})", ("cos({a})",), (), (R,), numpy=("sin",)),
    Op("cos", 1, "cos({a})", ("-sin({a})",), (), (R,), numpy=("cos",)),
    Op("tan", 1, "tan({a})", ("1.0 + {y} * {y}",), (), ((-1.2, 1.2),), numpy=("tan",)),
    Op("sinh", 1, "sinh({a})", ("cosh({a})",), (), (R,), numpy=("sinh",)),
    Op("cosh", 1, "cosh({a})", ("sinh({a})",), (), (R,), numpy=("cosh",)),
    Op("log1p", 1, "log1p({a})", ("1.0 / (1.0 + {a})",), (), ((-0.9, 4.0),), numpy=("log1p",)),
    Op("expm1", 1, "expm1({a})", ("{y} + 1.0",), (), (R,), numpy=("expm1",)),
    Op("arcsin", 1, "asin({a})", ("1.0 / sqrt(1.0 - {a} * {a})",), (), (UNIT,),
       note="derivative is +inf at ±1", numpy=("arcsin",)),
    Op("arccos", 1, "acos({a})", ("-1.0 / sqrt(1.0 - {a} * {a})",), (), (UNIT,),
       note="derivative is -inf at ±1", numpy=("arccos",)),
    Op("arctan", 1, "atan({a})", ("1.0 / (1.0 + {a} * {a})",), (), (R,), numpy=("arctan",)),
    Op("arctan2", 2, "atan2({a}, {b})",
       ("{b} / ({a} * {a} + {b} * {b})", "-{a} / ({a} * {a} + {b} * {b})"), (), (POS, POS),
       note="derivatives are NaN at (0, 0)", numpy=("arctan2",)),
    Op("abs", 1, "fabs({a})", ("1.0 if {a} > 0.0 else (-1.0 if {a} < 0.0 else 0.0)",),
       ("__abs__",), (R,), smooth=False, note="derivative at 0 is 0 (sign(0) = 0)", numpy=("absolute", "fabs")),
    Op("relu", 1, "0.0 if {a} <= 0.0 else {a}", ("1.0 if {a} > 0.0 else 0.0",), (), (R,),
       smooth=False, note="derivative at 0 is 0; relu(NaN) = NaN"),
    Op("maximum", 2, "{a} if ({a} >= {b} or isnan({a})) else {b}",
       ("1.0 if {a} > {b} else (0.5 if {a} == {b} else 0.0)",
        "1.0 if {b} > {a} else (0.5 if {a} == {b} else 0.0)"), (), (R, R), smooth=False,
       note="propagates NaN like np.maximum; at a tie each operand gets half the derivative", numpy=("maximum",)),
    Op("minimum", 2, "{a} if ({a} <= {b} or isnan({a})) else {b}",
       ("1.0 if {a} < {b} else (0.5 if {a} == {b} else 0.0)",
        "1.0 if {b} < {a} else (0.5 if {a} == {b} else 0.0)"), (), (R, R), smooth=False,
       note="propagates NaN like np.minimum; at a tie each operand gets half the derivative", numpy=("minimum",)),
    Op("where", 3, "{b} if {a} != 0.0 else {c}",
       ("0.0", "1.0 if {a} != 0.0 else 0.0", "0.0 if {a} != 0.0 else 1.0"), (), (R, R, R),
       smooth=False, note="where(cond, x, y): the derivative flows only into the chosen operand"),
    # with no_grad() inside a traced function: the value of a, no derivative (as jax.lax.stop_gradient)
    Op("stop_gradient", 1, "{a}", ("0.0",), (), (R,), smooth=False, public=False,
       note="the value of a with zero derivative: what no_grad() records inside a traced function"),
    Op("lt", 2, "1.0 if {a} < {b} else 0.0", ("0.0", "0.0"), ("__lt__",), (R, R), False, False, CMP,
       numpy=("less",)),
    Op("le", 2, "1.0 if {a} <= {b} else 0.0", ("0.0", "0.0"), ("__le__",), (R, R), False, False, CMP,
       numpy=("less_equal",)),
    Op("gt", 2, "1.0 if {a} > {b} else 0.0", ("0.0", "0.0"), ("__gt__",), (R, R), False, False, CMP,
       numpy=("greater",)),
    Op("ge", 2, "1.0 if {a} >= {b} else 0.0", ("0.0", "0.0"), ("__ge__",), (R, R), False, False, CMP,
       numpy=("greater_equal",)),
    Op("eq", 2, "1.0 if {a} == {b} else 0.0", ("0.0", "0.0"), ("__eq__",), (R, R), False, False, CMP, True,
       numpy=("equal",)),
    Op("ne", 2, "1.0 if {a} != {b} else 0.0", ("0.0", "0.0"), ("__ne__",), (R, R), False, False, CMP, True,
       numpy=("not_equal",)),
    # Rarer NumPy functions (issue 22): late in the table, so the interpreter tests them late.
    Op("log10", 1, "log10({a})", ("0.4342944819032518 / {a}",), (), (POS,),
       note="log10(0) = -inf, log10(x < 0) = NaN", numpy=("log10",)),
    Op("log2", 1, "log2({a})", ("1.4426950408889634 / {a}",), (), (POS,),
       note="log2(0) = -inf, log2(x < 0) = NaN", numpy=("log2",)),
    Op("cbrt", 1, "cbrt({a})", ("1.0 / (3.0 * {y} * {y})",), (), (POS,),
       note="the real cube root, cbrt(-8) = -2; d/dx at 0 is +inf", numpy=("cbrt",)),
    Op("hypot", 2, "hypot({a}, {b})", ("{a} / {y}", "{b} / {y}"), (), (R, POS), commutative=True,
       note="derivatives are NaN at (0, 0)", numpy=("hypot",)),
    # NumPy's npy_logaddexp, branch for branch (0.6931471805599453 is log(2)); NaN operands: a + b
    Op("logaddexp", 2, "{a} + 0.6931471805599453 if {a} == {b} else ({a} + log1p(exp({b} - {a})) if {a} > {b} "
       "else ({b} + log1p(exp({a} - {b})) if {a} < {b} else {a} + {b}))",
       ("1.0 / (1.0 + exp({b} - {a}))", "1.0 / (1.0 + exp({a} - {b}))"), (), (R, R), commutative=True,
       note="log(exp(a) + exp(b)) without overflow, as np.logaddexp; derivatives are NaN where a = b = ±inf",
       numpy=("logaddexp",)),
    Op("floor", 1, "floor({a})", ("0.0",), (), (R,), smooth=False,
       note="piecewise constant: zero derivative, also at the integers where it jumps", numpy=("floor",)),
    Op("ceil", 1, "ceil({a})", ("0.0",), (), (R,), smooth=False,
       note="piecewise constant: zero derivative, also at the integers where it jumps", numpy=("ceil",)),
    Op("round", 1, "rint({a})", ("0.0",), (), (R,), smooth=False,
       note="halves to even as np.round and np.rint (2.5 -> 2.0, -0.5 -> -0.0); zero derivative",
       numpy=("rint",)),
    Op("mod", 2, "{a} % {b}", ("1.0", "-({a} // {b})"), ("__mod__", "__rmod__"), (R, POS), smooth=False,
       note="Python's % and np.mod: the sign of b; a - b * (a // b), so d/db = -(a // b); jumps where "
            "a / b is an integer; mod(a, 0) = NaN", numpy=("remainder",)),
    Op("floordiv", 2, "{a} // {b}", ("0.0", "0.0"), ("__floordiv__", "__rfloordiv__"), (R, POS), smooth=False,
       note="Python's // and np.floor_divide: floor(a / b) of the exact quotient (as divmod); zero "
            "derivative; a // 0 = ±inf or NaN", numpy=("floor_divide",)),
    Op("isnan", 1, "1.0 if isnan({a}) else 0.0", ("0.0",), (), (R,), smooth=False,
       note="1.0 where a is NaN, else 0.0 (a value, as comparisons); zero derivative", numpy=("isnan",)),
    Op("sign", 1, "1.0 if {a} > 0.0 else (-1.0 if {a} < 0.0 else (0.0 if {a} == 0.0 else {a}))", ("0.0",), (),
       (R,), smooth=False, note="-1.0, 0.0 or 1.0 as np.sign (sign(-0.0) = 0.0, NaN stays NaN); zero derivative",
       numpy=("sign",)),
    # User-defined ops (record/custom.py); the literal is the op's id. Last: the rarest, tested last.
    Op("custom1", 1, "custom({lit}, 0, {a}, 0.0)", ("custom({lit}, 1, {a}, 0.0)",), (), (R,), literal=True,
       public=False, note="a unary op registered with sg.custom_op"),
    Op("custom2", 2, "custom({lit}, 0, {a}, {b})", ("custom({lit}, 1, {a}, {b})", "custom({lit}, 2, {a}, {b})"),
       (), (R, R), literal=True, public=False, note="a binary op registered with sg.custom_op"),
)

OPCODE: dict[str, int] = {op.name: k for k, op in enumerate(OPS)}
BY_NAME: dict[str, Op] = {op.name: op for op in OPS}
INPUT, CONST = OPCODE["input"], OPCODE["const"]
CUSTOM_ROWS = {1: OPCODE["custom1"], 2: OPCODE["custom2"]}  # arity -> opcode of a user-defined op
# Ops a user calls as sg.<name> (leaves are created by the recorder, not called).
USER_OPS: tuple[Op, ...] = tuple(op for op in OPS if op.arity > 0 and op.public)
COMPARISONS = frozenset(("lt", "le", "gt", "ge", "eq", "ne"))


def called_functions(expr: str) -> frozenset[str]:
    """The names of ``FUNCTIONS`` that an expression calls."""
    return frozenset(name for name in FUNCTIONS if re.search(rf"\b{name}\(", expr))


def _is_call(op: Op, name: str) -> bool:
    return op.forward == f"{name}({', '.join('{' + p + '}' for p in 'abc'[: op.arity])})"


# FUNCTIONS name -> the op whose forward is exactly that call (``asin`` -> ``arcsin``): what a call
# in a derivative rule records when the rule is replayed on Variables (record/symbolic.py).
OP_OF_FUNCTION = {name: op.name for op in OPS if op.arity and not op.literal
                  for name in called_functions(op.forward) if _is_call(op, name)}
# Ops whose forward calls out of the compiled code, into libm or a custom op's C function (fabs, isnan
# and float_math's floor, ceil and rint compile to instructions; Numba's float % and // call fmod):
# generated loops store their values instead of recomputing them.
_INSTRUCTIONS = {"fabs", "isnan", "floor", "ceil", "rint"}
CALLS_OUT = frozenset(OPCODE[op.name] for op in OPS
                      if called_functions(op.forward) - _INSTRUCTIONS or "%" in op.forward or "//" in op.forward)


def display_name(opcode: int, lit: float) -> str:
    """An instruction's op as printed: a custom op's own name, else the table's."""
    if opcode in CUSTOM_ROWS.values():
        op = CUSTOM_OPS.get(int(lit)) if float(lit).is_integer() else None
        return op.name if op is not None else f"custom#{lit!r}"
    return OPS[opcode].name


# Which operand slots carry a derivative, per opcode: the reverse sweep skips the others, so that
# e.g. the condition of `where` never receives an adjoint.
COMMUTATIVE = np.array([op.commutative for op in OPS], dtype=np.bool_)
DIFF_MASK = np.array([[i < op.arity and op.differentiable[i] for i in range(3)] for op in OPS],
                     dtype=np.bool_)


def substitute(expr: str, **names: str) -> str:
    """Fill an expression's placeholders, e.g. ``substitute("{a} * {b}", a="x", b="y")``."""
    return expr.format(**{p: names.get(p, "{" + p + "}") for p in PLACEHOLDERS})


def _placeholders(expr: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(expr) if field is not None}


def validate_table(ops: tuple[Op, ...] = OPS) -> None:
    """Check every row is well formed; raises ValueError naming the op at fault."""
    seen, ufuncs = set(), {}
    allowed_calls = set(FUNCTIONS)
    for op in ops:
        if op.name in seen:
            raise ValueError(f"op {op.name!r}: duplicate name")
        seen.add(op.name)
        if len(op.partials) != op.arity:
            raise ValueError(f"op {op.name!r}: {op.arity} operands but {len(op.partials)} partials")
        if op.arity and len(op.domain) != op.arity:
            raise ValueError(f"op {op.name!r}: domain needs one interval per operand")
        operands = set("abc"[: op.arity]) | {"y"} | ({"lit"} if op.literal else set())
        for expr in (op.forward, *op.partials):
            used = _placeholders(expr)
            if not used <= operands:
                raise ValueError(f"op {op.name!r}: expression {expr!r} uses {sorted(used - operands)}")
            code = compile(substitute(expr, a="a", b="b", c="c", y="y", lit="lit"), op.name, "eval")
            unknown = set(code.co_names) - allowed_calls - set(PLACEHOLDERS)
            if unknown:
                raise ValueError(f"op {op.name!r}: expression {expr!r} calls unknown {sorted(unknown)}")
        if "y" in _placeholders(op.forward) and op.name != "input":
            raise ValueError(f"op {op.name!r}: the forward expression cannot use its own value")
        for name in op.numpy:
            if not isinstance(getattr(np, name, None), np.ufunc):
                raise ValueError(f"op {op.name!r}: numpy={name!r} is not a NumPy ufunc")
            if name in ufuncs:
                raise ValueError(f"op {op.name!r}: NumPy's {name} already records {ufuncs[name]!r}")
            ufuncs[name] = op.name
    if len(ops) > 127:
        raise ValueError("opcodes must fit in int8")


validate_table()
