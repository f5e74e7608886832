"""Differential fuzzer of Python semantics (hypothesis): random small Python functions -- if/elif/
while/for on traced values, min/max/abs/sorted, chained comparisons, and/or/not, ternaries, loops
over a 1-d array, comprehensions and lambdas, closures and globals that change between calls,
``with sg.no_grad():`` blocks -- run as plain Python and through ``sg.jit``, ``sg.value_and_grad``
and ``sg.grad`` over a sequence of calls at random points, and must agree.

Oracles. (1) Bit for bit, NaN-aware (any NaN matches any NaN; -0.0 and inf must match): the
transforms' values against plain ``f(x, y)`` (x a float64 array, every third call a strided view;
y a Python float), ``grad`` against ``value_and_grad``. The library promises Python's results for
+ - * /, comparisons, min/max/abs and ``**``. The ``sg.<op>`` functions (sin, exp, log, ...) run
``math`` on floats and libm in the kernels; they agree bit for bit on the machines this was written
on, but as the library does not promise that across libms, a program that calls one may differ by
``TRANSCENDENTAL_RTOL`` (counted and reported as "last-bit differences"). (2) Where plain Python
reaches ``float()``/``int()``/``math.*``/``round``/``format``/hashing of a value that is traced under
the transforms, they must raise ``sg.TracingError`` (README: never silently wrong); elsewhere they
must not raise. (3) Gradients against central differences of plain ``f``: an instrumented copy of
``f`` records every branch, min/max/abs/sorted choice and kink, and a coordinate is checked only
where the four shifted points take the same path as the point and two step sizes agree; under
``no_grad`` the values of operations are replayed frozen (zero derivative), while a name, ``x[i]``
or a selection (min, ternary, ``or``) passes its derivative through, as in PyTorch. Where plain
Python raises (OverflowError from ``**``, ValueError from ``int(nan)``) the point is skipped.
Captured values (globals SCALE, H, K, W, L; closure cells c, c2 -- c2 read only through a closure
function) change between calls only in the ways captured.py documents as watched.

Not generated (Python or NumPy semantics the transforms do not claim, not bugs): int arguments
(exact, and no -0), NumPy ufuncs and reductions on arrays (``np.sum`` adds pairwise, ``x @ x`` uses
BLAS, ``np.max`` of an object array does not propagate NaN), ``**`` with a fractional exponent of a
possibly negative base (complex in Python), division by a value that can be 0, and ``x ** 2``:
Python computes ``pow(x, 2.0)`` for a float or NumPy scalar, scalargrad records ``square``
(``x * x``), and the two differ in the last bit for about 0.1% of x.

``SCALARGRAD_FUZZ_SCALE=k`` multiplies the number of programs (300); ``python
tests/test_fuzz_python.py N`` runs N random (not derandomized) programs and prints the first
mismatches as reproducers and a count of what ran.
"""
from __future__ import annotations

import math
import os
import struct
import sys
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import scalargrad as sg  # noqa: E402

SCALE = int(os.environ.get("SCALARGRAD_FUZZ_SCALE", "1"))
PROGRAM_EXAMPLES = 300 * SCALE
TRANSCENDENTAL_RTOL = 1e-15
FD_STEP = 2.0 ** -19     # central-difference step (times max(1, |x_i|), a power of two)
FD_AGREE = 1e-6          # two step sizes must agree this well (relative) for the point to count
FD_RTOL = 1e-5           # the AD gradient against the finer difference
# Points and values where differences are checked: coordinates 0 or of magnitude FD_MIN_INPUT to
# FD_MAX_INPUT (at 1e300 a step is absorbed; at 1e-300 adjoints such as 1/x reach 1e300 and the
# gradient's rounding error, cancelling terms of that size, exceeds any tolerance).
FD_MIN_INPUT, FD_MAX_INPUT, FD_MAX_VALUE = 1e-6, 1e3, 1e12

COUNTS = dict.fromkeys(["programs", "calls", "grad_calls", "fd_checked", "fd_skipped", "refused",
                        "plain_raised", "captured_changes", "evictions", "last_bit", "mismatches"], 0)
CONSTRUCTS: dict[str, int] = {}  # construct kind -> programs containing it (coverage)
LAST_BIT: list[str] = []  # reproducers of the first programs with last-bit differences


# --- the program AST, rendered twice: as written ("real") and instrumented ("instr") ---------------
#
# Nodes are tuples (kind, ...). Instrumented rendering wraps every decision in a recording helper
# (_b, _min, _abs, ...) with a site number; both renderings evaluate the same operations in the
# same order, so they compute the same values (checked at every call).

CONSTANTS = (0.0, -0.0, 0.5, 1.0, -1.0, 2.0, -2.5, 3.0, 0.1, 1e-3, 7.0)
COMPARE = ("<", "<=", ">", ">=", "==", "!=")
# x ** 2 is left out: Python computes pow(x, 2.0) for a float x, scalargrad records square (x * x),
# and they differ in the last bit for about 0.1% of x (reported separately).
INT_EXPONENTS = (0, 1, 3)
BIG_INTS = (2**53 + 1, -(2**53 + 1), 2**63, 10**400)
UNARY = ("sin", "cos", "tanh", "arctan", "sigmoid", "exp")
# IEEE at the edges (log(0) = -inf, reciprocal(-0.0) = -inf, sqrt(-1) = nan), on plain floats too
# (where math.log raises): they carry signs of zero and infinities to the result.
IEEE = ("log", "sqrt", "reciprocal", "arcsin", "arccos", "tan", "sinh", "cosh", "expm1", "log1p")
LIBM = ("fn", "ieee", "log1p", "sqrt", "atan2")  # node kinds calling sg.sin, sg.exp, ... (libm)


class Renderer:
    def __init__(self, instr: bool):
        self.instr = instr
        self.no_grad = False  # rendering inside a no_grad block
        self.sites = 0

    def site(self) -> int:
        self.sites += 1
        return self.sites

    def dec(self, src: str) -> str:
        """A value used for its truth (if, while, ternary, where, and/or)."""
        return f"_b({self.site()}, {src})" if self.instr else src


# Node kinds whose result is a new operation's (a Variable recorded under no_grad, so with zero
# derivative); the others pass one of their operands through unchanged (min, ternary, or, x[i], a
# name), and under no_grad that operand keeps its derivative, as in PyTorch.
OPERATIONS = frozenset({"bin", "sdiv", "ieee", "sgdiv", "neg", "abs", "pow", "fpow", "cpow", "fn", "log1p", "sqrt",
                        "maximum", "minimum", "relu", "atan2", "where", "helper", "chelper", "sum", "refuse",
                        "boolnum", "gensum", "vpow"})


def expr_src(e, r: Renderer) -> str:
    src = _expr_src(e, r)
    if r.instr and r.no_grad and e[0] in OPERATIONS:  # frozen when replayed for finite differences
        return f"_ng({r.site()}, {src})"
    return src


def _expr_src(e, r: Renderer) -> str:
    k = e[0]
    if k == "name":
        return e[1]
    if k == "const":
        return repr(e[1])
    if k == "index":
        return f"x[{e[1]} % len(x)]"
    if k == "bin":
        return f"({expr_src(e[2], r)} {e[1]} {expr_src(e[3], r)})"
    if k == "sdiv":  # a denominator that is never 0 (>= 1, inf or NaN)
        b = expr_src(e[2], r)
        return f"({expr_src(e[1], r)} / ({b} * {b} + 1.0))"
    if k == "neg":
        return f"(-{expr_src(e[1], r)})"
    if k == "abs":
        return f"_abs({r.site()}, {expr_src(e[1], r)})" if r.instr else f"abs({expr_src(e[1], r)})"
    if k in ("min", "max"):
        args = ", ".join(expr_src(a, r) for a in e[1])
        return f"_{k}({r.site()}, {args})" if r.instr else f"{k}({args})"
    if k in ("minx", "maxx"):  # builtin min/max over the array's elements
        return f"_{k[:3]}({r.site()}, *x)" if r.instr else f"{k[:3]}(x)"
    if k == "sum":
        return "sum(x)"
    if k == "len":
        return "len(x)"
    if k == "pow":
        return f"({expr_src(e[1], r)} ** {e[2]})"
    if k == "boolnum":  # a comparison's truth as a number
        return f"({r.dec(cond_src(e[1], r))} * 1.0)"
    if k == "gensum":  # a generator expression: its code object reads the globals too
        return f"sum({expr_src(e[2], r)} for {e[1]} in x)"
    if k == "listmax":
        items = f"[{expr_src(e[2], r)} for {e[1]} in x]"
        return f"_max({r.site()}, *{items})" if r.instr else f"max({items})"
    if k == "lambda":
        return f"(lambda {e[1]}: {expr_src(e[2], r)})({expr_src(e[3], r)})"
    if k == "vpow":  # traced ** traced, on a base >= 0.5
        return f"(({expr_src(('abs', e[1]), r)} + 0.5) ** {expr_src(e[2], r)})"
    if k == "maxkey":
        a, b = expr_src(e[1], r), expr_src(e[2], r)
        return f"_maxkey({r.site()}, {a}, {b})" if r.instr else f"max({a}, {b}, key=abs)"
    if k == "median":  # sorted() compares with <: every comparison a guard
        items = ", ".join(expr_src(a, r) for a in e[1])
        return f"_sorted({r.site()}, [{items}])[1]" if r.instr else f"sorted([{items}])[1]"
    if k == "condval":  # a condition returned as the value
        return r.dec(cond_src(e[1], r))
    if k == "fpow":  # fractional exponent of a non-negative base
        return f"({expr_src(('abs', e[1]), r)} ** {e[2]})"
    if k == "cpow":
        return f"({e[1]} ** {expr_src(e[2], r)})"
    if k in ("fn", "ieee"):
        return f"sg.{e[1]}({expr_src(e[2], r)})"
    if k == "sgdiv":
        return f"sg.div({expr_src(e[1], r)}, {expr_src(e[2], r)})"
    if k == "log1p":
        a = expr_src(e[1], r)
        return f"sg.log1p({a} * {a})"
    if k == "sqrt":
        a = expr_src(e[1], r)
        return f"sg.sqrt({a} * {a} + 0.25)"
    if k in ("maximum", "minimum"):
        a, b = expr_src(e[1], r), expr_src(e[2], r)
        return f"_{k}({r.site()}, {a}, {b})" if r.instr else f"sg.{k}({a}, {b})"
    if k == "relu":
        a = expr_src(e[1], r)
        return f"_relu({r.site()}, {a})" if r.instr else f"sg.relu({a})"
    if k == "atan2":
        a, b = expr_src(e[1], r), expr_src(e[2], r)
        return f"_atan2({r.site()}, {a}, {b})" if r.instr else f"sg.arctan2({a}, {b})"
    if k == "where":
        return f"sg.where({r.dec(cond_src(e[1], r))}, {expr_src(e[2], r)}, {expr_src(e[3], r)})"
    if k == "ternary":
        return f"({expr_src(e[2], r)} if {r.dec(cond_src(e[1], r))} else {expr_src(e[3], r)})"
    if k in ("or", "and"):
        return f"({r.dec(expr_src(e[1], r))} {k} {expr_src(e[2], r)})"
    if k == "helper":
        return f"{'helper_i' if r.instr else 'helper'}({expr_src(e[1], r)})"
    if k == "chelper":  # a function in f's closure, reading a closure cell f itself does not name
        return f"chelper({expr_src(e[1], r)})"
    if k == "refuse":  # turns a traced value (y + ...) into a Python number: jit must refuse
        inner = REFUSALS[e[1]].format(f"(y + {expr_src(e[2], r)})")
        return f"_reach({r.site()}, {inner})" if r.instr else inner
    raise AssertionError(k)


REFUSALS = {"float": "float({})", "int": "int({})", "floor": "math.floor({})", "round": "round({}, 3)",
            "msin": "math.sin({})", "format": "float(format({}, '.6f'))"}


def cond_src(c, r: Renderer) -> str:
    k = c[0]
    if k == "cmp":
        return f"({expr_src(c[2], r)} {c[1]} {expr_src(c[3], r)})"
    if k == "chain":
        return f"({expr_src(c[3], r)} {c[1]} {expr_src(c[4], r)} {c[2]} {expr_src(c[5], r)})"
    if k == "not":
        return f"(not {cond_src(c[1], r)})"
    if k in ("and", "or"):
        return f"({cond_src(c[1], r)} {k} {cond_src(c[2], r)})"
    if k == "truth":
        return expr_src(c[1], r)
    if k == "in":
        return f"({expr_src(c[1], r)} in {c[2]!r})"
    if k == "bigint":  # an int float64 cannot hold: Python compares exactly, and so must the trace
        return f"(y {c[1]} {c[2]})"
    if k == "refuse_hash":  # set membership hashes a traced value: jit must refuse
        inner = f"((y + {expr_src(c[1], r)}) in {{0.5, 1.0}})"
        return f"_reach({r.site()}, {inner})" if r.instr else inner
    raise AssertionError(k)


def block_src(body, r: Renderer, indent: int) -> list[str]:
    pad = "    " * indent
    lines = []
    for s in body:
        k = s[0]
        if k == "assign":
            lines.append(f"{pad}{s[1]} = {expr_src(s[2], r)}")
        elif k == "aug":
            if s[2] == "/":  # a denominator that is never 0
                b = expr_src(s[3], r)
                operand = f"({b} * {b} + 1.0)"
            else:
                operand = str(s[3]) if s[2] == "**" else expr_src(s[3], r)
            if r.instr and r.no_grad:  # t op= e is an operation: frozen like the others
                lines.append(f"{pad}{s[1]} = _ng({r.site()}, {s[1]} {s[2]} {operand})")
            else:
                lines.append(f"{pad}{s[1]} {s[2]}= {operand}")
        elif k == "if":
            lines.append(f"{pad}if {r.dec(cond_src(s[1], r))}:")
            lines += block_src(s[2], r, indent + 1)
            for c, b in s[3]:
                lines.append(f"{pad}elif {r.dec(cond_src(c, r))}:")
                lines += block_src(b, r, indent + 1)
            if s[4]:
                lines.append(f"{pad}else:")
                lines += block_src(s[4], r, indent + 1)
        elif k == "while":  # a counter bounds it, so plain Python terminates too
            n = f"n{s[1]}"
            lines += [f"{pad}{n} = 0", f"{pad}while {n} < {s[2]} and {r.dec(cond_src(s[3], r))}:",
                      f"{pad}    {n} += 1"]
            lines += block_src(s[4], r, indent + 1)
        elif k == "forbreak":
            lines += [f"{pad}for _ in range({s[1]}):", f"{pad}    if not {r.dec(cond_src(s[2], r))}:",
                      f"{pad}        break"]
            lines += block_src(s[3], r, indent + 1)
        elif k == "foreach":
            lines.append(f"{pad}for v{s[1]} in x:")
            lines += block_src(s[2], r, indent + 1)
        elif k == "forindex":
            lines.append(f"{pad}for i{s[1]} in range(len(x)):")
            lines += block_src(s[2], r, indent + 1)
        elif k == "ladder":  # up to 81 paths, one per rung that e falls below: past MAX_PATHS
            i = f"k{s[1]}"
            lines += [f"{pad}for {i} in range(80):",
                      f"{pad}    if {r.dec(f'({expr_src(s[3], r)} < {i} * 0.075 - 3.0)')}:",
                      f"{pad}        break"]
            lines += block_src([("aug", s[2], "+", ("const", 0.01))], r, indent + 1)
        elif k == "forK":  # the trip count is a global int that changes between calls
            lines.append(f"{pad}for _ in range(K):")
            lines += block_src(s[1], r, indent + 1)
        elif k == "nograd":
            if r.instr:  # operations' values are frozen when replayed for finite differences
                outer, r.no_grad = r.no_grad, True
                lines += block_src(s[1], r, indent)
                r.no_grad = outer
            else:
                lines.append(f"{pad}with sg.no_grad():")
                lines += block_src(s[1], r, indent + 1)
        elif k in ("break", "continue"):
            lines += [f"{pad}if {r.dec(cond_src(s[1], r))}:", f"{pad}    {k}"]
        elif k == "return":
            lines += [f"{pad}if {r.dec(cond_src(s[1], r))}:", f"{pad}    return {returns_src(s[2], r, s[3])}"]
        else:
            raise AssertionError(k)
    return lines or [f"{pad}pass"]


def returns_src(exprs, r: Renderer, kind: str) -> str:
    items = ", ".join(expr_src(e, r) for e in exprs)
    return f"[{items}]" if kind == "list" else items


HELPER = """
def {name}(u):
    if {cond}:
        return u * H - 1.0
    return u + H
"""


def program_source(prog, instr: bool) -> str:
    """The module text: a helper reading global H, and ``make()`` returning f and a setter of its
    closure cells c and c2 (c2 read only through the closure function chelper)."""
    r = Renderer(instr)
    helper = HELPER.format(name="helper_i" if instr else "helper", cond="_b(0, u > H)" if instr else "u > H")
    body = block_src(prog["body"], r, 2)
    # One argument: the one-float64-array fast path of the transforms; y is then a Python float in
    # plain Python (tolist) and a traced value under the transforms.
    head = ["    def f(x, y):"] if prog["sig"] == "xy" else ["    def f(x):", "        y = x.tolist()[-1]"]
    lines = [helper, "def make():", f"    c = {prog['c']!r}", f"    c2 = {prog['init']['c2']!r}",
             "    def chelper(u):", "        return u * c2 + 0.25", *head,
             "        t0 = y", "        t1 = x[0]", "        t2 = 0.5", "        t3 = SCALE",
             *body, f"        return {returns_src(prog['ret'], r, prog['ret_kind'])}",
             "    def set_cell(name, value):", "        nonlocal c, c2", "        if name == 'c':",
             "            c = value", "        else:", "            c2 = value", "    return f, set_cell", ""]
    return "\n".join(lines)


def constructs(prog) -> set[str]:
    """Kinds of node in a program (coverage counts)."""
    found = set()

    def walk(node):
        if isinstance(node, tuple) and node and isinstance(node[0], str):
            found.add(node[0])
            if node[0] == "bin":
                found.add("bin" + node[1])
            if node[0] == "name":
                found.add("name:" + node[1].split("[")[0] + ("[" if "[" in node[1] else ""))
        if isinstance(node, (tuple, list)):
            for child in node:
                walk(child)

    found.add("sig:" + prog["sig"])
    found.add("ret:" + prog["ret_kind"])
    walk(prog["body"])
    walk(prog["ret"])
    return found


# --- generating programs ------------------------------------------------------------------------

class Gen:
    """Draws a program's AST. ``scope`` lists the names an expression may read (locals, loop and
    comprehension variables); ``refusals`` allows conversions of traced values."""

    def __init__(self, draw, refusals: bool, ret_kind: str):
        self.draw = draw
        self.refusals = refusals
        self.ret_kind = ret_kind
        self.uid = 0

    def pick(self, weighted):
        return self.draw(st.sampled_from([k for k, w in weighted for _ in range(w)]))

    def atom(self, scope):
        kind = self.pick([("local", 6), ("y", 2), ("index", 2), ("const", 3), ("captured", 2), ("len", 1)])
        if kind == "local":
            return ("name", self.draw(st.sampled_from(scope)))
        if kind == "y":
            return ("name", "y")
        if kind == "index":
            return ("index", self.draw(st.integers(-2, 3)))
        if kind == "const":
            return ("const", self.draw(st.sampled_from(CONSTANTS)))
        if kind == "captured":
            return ("name", self.draw(st.sampled_from(["SCALE", "c", "W[0]", "W[1]", "L[0]", "L[1]"])))
        return ("len",)

    def expr(self, depth, scope):
        if depth <= 0 or self.draw(st.integers(0, 3)) == 0:
            return self.atom(scope)
        d = depth - 1
        kind = self.pick([("bin", 8), ("sdiv", 1), ("neg", 1), ("abs", 2), ("min", 2), ("max", 2),
                          ("pow", 1), ("fpow", 1), ("cpow", 1), ("fn", 3), ("log1p", 1), ("sqrt", 1),
                          ("maximum", 1), ("minimum", 1), ("relu", 1), ("atan2", 1), ("where", 1),
                          ("ternary", 2), ("or", 1), ("and", 1), ("helper", 1), ("chelper", 1), ("minx", 1),
                          ("maxx", 1), ("sum", 1), ("boolnum", 1), ("gensum", 1), ("listmax", 1), ("lambda", 1),
                          ("vpow", 1), ("maxkey", 1), ("median", 1), ("ieee", 2), ("sgdiv", 1),
                          ("refuse", 3 if self.refusals else 0)])
        if kind == "bin":
            return ("bin", self.draw(st.sampled_from("+-*")), self.expr(d, scope), self.expr(d, scope))
        if kind == "median":
            return ("median", tuple(self.expr(d, scope) for _ in range(3)))
        if kind in ("sdiv", "sgdiv", "atan2", "maximum", "minimum", "or", "and", "vpow", "maxkey"):
            return (kind, self.expr(d, scope), self.expr(d, scope))
        if kind in ("neg", "abs", "log1p", "sqrt", "relu", "helper", "chelper"):
            return (kind, self.expr(d, scope))
        if kind in ("min", "max"):
            return (kind, tuple(self.expr(d, scope) for _ in range(self.draw(st.integers(2, 3)))))
        if kind == "pow":
            return ("pow", self.expr(d, scope), self.draw(st.sampled_from(INT_EXPONENTS)))
        if kind == "boolnum":
            return ("boolnum", self.cond(d, scope))
        if kind in ("gensum", "listmax", "lambda"):
            self.uid += 1
            name = f"{'u' if kind == 'lambda' else 'g'}{self.uid}"
            inner = self.expr(d, scope + [name])
            return (kind, name, inner) + ((self.expr(d, scope),) if kind == "lambda" else ())
        if kind == "fpow":
            return ("fpow", self.expr(d, scope), self.draw(st.sampled_from([0.5, 1.5, 2.5])))
        if kind == "cpow":
            return ("cpow", self.draw(st.sampled_from([0.5, 1.5, 2.0])), self.expr(d, scope))
        if kind in ("fn", "ieee"):
            return (kind, self.draw(st.sampled_from(UNARY if kind == "fn" else IEEE)), self.expr(d, scope))
        if kind == "where":
            return ("where", self.cond(d, scope), self.expr(d, scope), self.expr(d, scope))
        if kind == "ternary":
            return ("ternary", self.cond(d, scope), self.expr(d, scope), self.expr(d, scope))
        if kind == "refuse":
            return ("refuse", self.draw(st.sampled_from(sorted(REFUSALS))), self.expr(d, scope))
        return (kind,)

    def cond(self, depth, scope):
        d = max(depth - 1, 0)
        kind = self.pick([("cmp", 6), ("chain", 2), ("not", 1), ("and", 1), ("or", 1), ("truth", 1),
                          ("in", 1), ("bigint", 1), ("refuse_hash", 2 if self.refusals else 0)])
        if kind == "cmp":
            return ("cmp", self.draw(st.sampled_from(COMPARE)), self.expr(d, scope), self.expr(d, scope))
        if kind == "chain":
            ops = [self.draw(st.sampled_from(COMPARE[:4])) for _ in range(2)]
            return ("chain", *ops, self.expr(d, scope), self.expr(d, scope), self.expr(d, scope))
        if kind == "not":
            return ("not", self.cond(d - 1, scope) if depth > 1 else self.simple_cond(scope))
        if kind in ("and", "or"):
            return (kind, self.simple_cond(scope), self.cond(d - 1, scope) if depth > 1 else self.simple_cond(scope))
        if kind == "truth":
            return ("truth", self.expr(d, scope))
        if kind == "in":
            return ("in", self.expr(d, scope), tuple(self.draw(st.sampled_from(CONSTANTS)) for _ in range(2)))
        if kind == "bigint":
            return ("bigint", self.draw(st.sampled_from(COMPARE)), self.draw(st.sampled_from(BIG_INTS)))
        return ("refuse_hash", self.expr(d, scope))

    def simple_cond(self, scope):
        return ("cmp", self.draw(st.sampled_from(COMPARE)), self.expr(1, scope), self.expr(1, scope))

    def block(self, depth, scope, loops, n_ret, max_len=3):
        return [self.stmt(depth, scope, loops, n_ret) for _ in range(self.draw(st.integers(1, max_len)))]

    def target(self):
        return self.draw(st.sampled_from(["t0", "t1", "t2", "t3"]))

    def stmt(self, depth, scope, loops, n_ret):
        nested = depth > 0
        kind = self.pick([("assign", 6), ("aug", 2), ("if", 4 if nested else 0), ("while", 1 if nested else 0),
                          ("forbreak", 1 if nested else 0), ("foreach", 2 if nested and loops < 2 else 0),
                          ("forindex", 1 if nested and loops < 2 else 0), ("forK", 1 if nested and loops < 2 else 0),
                          ("nograd", 1), ("break", 1 if loops else 0), ("continue", 1 if loops else 0),
                          ("ladder", 1 if nested else 0), ("return", 1)])
        ed = self.draw(st.integers(1, 3))
        if kind == "assign":
            return ("assign", self.target(), self.expr(ed, scope))
        if kind == "aug":
            op = self.draw(st.sampled_from("+-*/^"))
            if op == "^":
                return ("aug", self.target(), "**", self.draw(st.sampled_from(INT_EXPONENTS)))
            return ("aug", self.target(), op, self.expr(ed, scope))
        if kind == "if":
            elifs = [(self.cond(2, scope), self.block(depth - 1, scope, loops, n_ret))
                     for _ in range(self.draw(st.integers(0, 1)))]
            orelse = self.block(depth - 1, scope, loops, n_ret) if self.draw(st.booleans()) else []
            return ("if", self.cond(2, scope), self.block(depth - 1, scope, loops, n_ret), elifs, orelse)
        if kind == "while":
            self.uid += 1
            return ("while", self.uid, self.draw(st.integers(1, 4)), self.cond(2, scope),
                    self.block(depth - 1, scope, loops + 1, n_ret))
        if kind == "forbreak":
            return ("forbreak", self.draw(st.integers(1, 4)), self.cond(2, scope),
                    self.block(depth - 1, scope, loops + 1, n_ret))
        if kind == "foreach":
            return ("foreach", loops, self.block(depth - 1, scope + [f"v{loops}"], loops + 1, n_ret))
        if kind == "forindex":
            inner = scope + [f"x[i{loops}]"]
            return ("forindex", loops, self.block(depth - 1, inner, loops + 1, n_ret))
        if kind == "forK":
            return ("forK", self.block(depth - 1, scope, loops + 1, n_ret))
        if kind == "ladder":
            self.uid += 1
            return ("ladder", self.uid, self.target(), self.expr(1, scope))
        if kind == "nograd":
            return ("nograd", self.block(max(depth - 1, 0), scope, loops, n_ret, max_len=2))
        if kind in ("break", "continue"):
            return (kind, self.cond(1, scope))
        return ("return", self.cond(2, scope), [self.expr(2, scope) for _ in range(n_ret)], self.ret_kind)


CAPTURED_FLOATS = st.one_of(  # values of SCALE, c, c2, H, L[0] and the elements of W
    st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.0, 2.0, -2.5, 3.0]),
    st.floats(-3.0, 3.0),
    st.sampled_from([math.inf, -math.inf, math.nan]),
)
ORDINARY_FLOATS = st.one_of(st.floats(1e-3, 3.0), st.floats(-3.0, -1e-3))  # where differences work
INPUT_FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.0, 2.0, -2.5, 3.0, 0.1, 2.0**53, -2.0**53, 2.0**63]),
    ORDINARY_FLOATS,
    st.floats(-3.0, 3.0),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e300, -1e-300]),
)


@st.composite
def programs(draw):
    """A program: AST, initial captured values, and the events (calls and captured changes)."""
    # locals: every local is an output, so that a stale or wrong value anywhere (a sign of zero
    # included) shows rather than being absorbed by later arithmetic.
    ret_kind = draw(st.sampled_from(["one"] * 12 + ["tuple", "list", "cond", "locals"] * 2))
    gen = Gen(draw, refusals=draw(st.integers(0, 4)) == 0, ret_kind=ret_kind)
    n_ret = {"tuple": 2, "list": 2, "locals": 4}.get(ret_kind, 1)
    # Small programs too: one feature's effect then reaches the result rather than being overwritten.
    body = gen.block(draw(st.integers(1, 3)), ["t0", "t1", "t2", "t3", "y"], 0, n_ret, max_len=draw(st.integers(1, 5)))
    if ret_kind == "cond":
        ret = [("condval", gen.cond(2, ["t0", "t1", "t2", "t3"]))]
    elif ret_kind == "locals":
        ret = [("name", t) for t in ("t0", "t1", "t2", "t3")]
    else:
        ret = [gen.expr(3, ["t0", "t1", "t2", "t3"]) for _ in range(n_ret)]
    # Zeros are common: a sign of zero that a retrace misses shows in 1/x, atan2 or a returned local.
    init = {"SCALE": draw(st.sampled_from([0.5, 1.0, -1.0, 2.0, 0.0, -0.0])),
            "c": draw(st.sampled_from([0.0, -0.0, 1.5, -0.5])), "H": draw(st.sampled_from([0.0, -0.0, 1.0, -0.5])),
            "K": draw(st.integers(0, 3)), "c2": draw(st.sampled_from([1.0, 0.0, -0.0])),
            "W": (draw(CAPTURED_FLOATS), draw(CAPTURED_FLOATS)), "L": (0.25, -1.0)}
    now = dict(init, **{"W[:]": init["W"], "L[0]": init["L"][0]})  # values as the events change them
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2, unique=True))
    kinds = constructs({"body": body, "ret": ret, "sig": "", "ret_kind": ""})
    # Change captured values the program reads (SCALE always: t3 = SCALE).
    read = ["SCALE"] + [target for target, kind in (("c", "name:c"), ("c2", "chelper"), ("H", "helper"), ("K", "forK"),
                                                    ("W", "name:W["), ("W[:]", "name:W["), ("L[0]", "name:L["))
                        if kind in kinds]
    events = []
    many = draw(st.integers(0, 14)) == 0  # enough calls to pass MAX_PATHS paths and evict some
    if many:  # calls then walk y over the ladder's 81 steps in an order of their own, each step once
        gen.uid += 1
        body.insert(0, ("ladder", gen.uid, "t0", ("name", "y")))
        start, stride = draw(st.integers(0, 80)), draw(st.sampled_from([1, 2, 4, 5, 7, 8, 10, 11, 13]))
        rungs = iter(((start + i * stride) % 81 - 41) * 0.075 + 0.03 for i in range(81))
    for _ in range(draw(st.integers(50, 80) if many else st.integers(3, 12))):
        # (a change of a captured value drops every path: none in the programs meant to evict paths)
        what = draw(st.sampled_from(["call"] * 6 + ["repeat", "near"] + ([] if many else ["set", "set"])))
        calls = [e for e in events if e[0] == "call"]
        if what == "set":
            target = draw(st.sampled_from(read))
            how = draw(st.sampled_from(["new", "negated", "negated", "same"]))  # negated: 0.0 <-> -0.0 too
            if target == "K":
                value = draw(st.integers(0, 3))
            elif target.startswith("W"):
                value = (draw(CAPTURED_FLOATS), draw(CAPTURED_FLOATS)) if how == "new" else now["W"]
                value = tuple(-v for v in value) if how == "negated" else value
            else:
                value = draw(CAPTURED_FLOATS) if how == "new" else now[target]
                value = -value if how == "negated" else value
                if target == "SCALE" and draw(st.integers(0, 4)) == 0:
                    value = np.float64(value)  # a NumPy scalar: another type, so retraced even if equal
            now[target] = value
            if target.startswith("W"):
                now["W"] = now["W[:]"] = value
            events.append(("set", target, value))
        elif what == "repeat" and calls:
            events.append(draw(st.sampled_from(calls)))
        elif what == "near" and calls:  # a neighbour of an earlier point: guards decided by a hair
            _, x, y, _ = draw(st.sampled_from(calls))
            k = draw(st.integers(0, len(x)))
            step = draw(st.sampled_from([1e-12, -1e-12, 1e-6, -1e-6]))
            x = list(x)
            if k < len(x):
                x[k] = x[k] + step
            else:
                y = y + step
            events.append(("call", tuple(x), y, True))
        else:  # gradients mostly at ordinary points, where finite differences can check them
            n = draw(st.sampled_from(sizes))
            with_grad = draw(st.booleans())
            floats = ORDINARY_FLOATS if with_grad and draw(st.integers(0, 2)) else INPUT_FLOATS
            x = tuple(draw(floats) for _ in range(n))
            y = next(rungs) if many else draw(floats)
            events.append(("call", x, y, with_grad))
    # Generated code compiles each path (~0.1 s): only for programs with few calls.
    backend = draw(st.sampled_from(["auto"] * 20 + ["interp"] * 4 + ["auto" if many else "codegen"]))
    sig = "xy" if many else draw(st.sampled_from(["xy", "xy", "xy", "x"]))  # many: the ladder reads argument y
    return {"body": body, "ret": ret, "ret_kind": ret_kind, "sig": sig, "c": init["c"], "init": init,
            "events": events, "backend": backend}


# --- running a program both ways -------------------------------------------------------------------

class Instruments:
    """State of the instrumented copy: the path (site, outcome) of one call, refusal sites reached,
    and no_grad values recorded at x and replayed (frozen) at shifted points."""

    def __init__(self):
        self.path, self.reached, self.frozen, self.replay, self.pos, self.diverged = [], set(), [], False, 0, False

    def start(self, replay=False):
        self.path, self.reached, self.pos, self.diverged, self.replay = [], set(), 0, False, replay
        if not replay:
            self.frozen = []

    def namespace(self) -> dict:
        path = self.path_append

        def _b(site, v):
            path((site, bool(v)))
            return v

        def _pick(site, args, better):
            best = 0
            for j in range(1, len(args)):
                if better(args[j], args[best]):  # as builtin min/max: a later item wins only if strictly better
                    best = j
            path((site, best))
            return args[best]

        def _sign(v):
            return 1 if v > 0 else (-1 if v < 0 else (0 if v == 0 else 2))

        def _ng(site, v):
            if not self.replay:
                self.frozen.append((site, v))
                return v
            if self.pos >= len(self.frozen) or self.frozen[self.pos][0] != site:
                self.diverged = True
                return v
            self.pos += 1
            return self.frozen[self.pos - 1][1]

        def _reach(site, v):
            self.reached.add(site)
            return v

        def _atan2(site, a, b):
            path((site, (_sign(a), b < 0 or (b == 0 and math.copysign(1.0, b) < 0))))
            return sg.arctan2(a, b)

        def _sorted(site, items):
            order = sorted(range(len(items)), key=items.__getitem__)  # the same comparisons as sorted(items)
            path((site, tuple(order)))
            return [items[j] for j in order]

        return {"_b": _b, "_ng": _ng, "_reach": _reach, "_atan2": _atan2, "_sorted": _sorted,
                "_maxkey": lambda site, *a: _pick(site, a, lambda u, v: abs(u) > abs(v)),
                "_min": lambda site, *a: _pick(site, a, lambda u, v: u < v),
                "_max": lambda site, *a: _pick(site, a, lambda u, v: u > v),
                "_abs": lambda site, a: (path((site, _sign(a))), abs(a))[1],
                "_relu": lambda site, a: (path((site, _sign(a))), sg.relu(a))[1],
                "_maximum": lambda site, a, b: (path((site, _sign(a - b))), sg.maximum(a, b))[1],
                "_minimum": lambda site, a, b: (path((site, _sign(a - b))), sg.minimum(a, b))[1]}

    def path_append(self, item):
        self.path.append(item)


class Program:
    """One generated program: plain f, its instrumented copy, the captured values, the transforms."""

    def __init__(self, prog):
        self.prog = prog
        self.real_src = program_source(prog, instr=False)
        self.instr_src = program_source(prog, instr=True)
        self.inst = Instruments()
        self.ns = {"sg": sg, "np": np, "math": math}
        self.ns_i = {"sg": sg, "np": np, "math": math, **self.inst.namespace()}
        init = prog["init"]
        for ns in (self.ns, self.ns_i):
            ns.update(SCALE=init["SCALE"], H=init["H"], K=init["K"])
        self.ns["W"] = np.array(init["W"])  # the instrumented copy reads the same objects
        self.ns["L"] = list(init["L"])
        self.ns_i["W"], self.ns_i["L"] = self.ns["W"], self.ns["L"]
        exec(compile(self.real_src, "<fuzzed>", "exec"), self.ns)
        exec(compile(self.instr_src, "<fuzzed-instrumented>", "exec"), self.ns_i)
        self.f, self.set_cell = self.ns["make"]()
        self.f_i, self.set_cell_i = self.ns_i["make"]()
        self.transcendental = bool(constructs(prog) & set(LIBM))
        self.two_args = prog["sig"] == "xy"
        self.differentiable = prog["ret_kind"] in ("one", "cond")
        backend = prog["backend"]
        self.jit = sg.jit(self.f, backend=backend)
        # Gradients: with respect to (x, y), or x alone; grad() of the last argument must agree.
        self.vg = sg.value_and_grad(self.f, argnums=(0, 1) if self.two_args else 0, backend=backend)
        self.grad_last = sg.grad(self.f, argnums=-1, backend=backend)
        self.calls = 0

    def set(self, target, value):
        if target in ("c", "c2"):
            self.set_cell(target, value)
            self.set_cell_i(target, value)
        elif target == "W":  # rebinding the global to a new array
            self.ns["W"] = self.ns_i["W"] = np.array(value)
        elif target == "W[:]":  # in place: the same array object
            self.ns["W"][:] = value
        elif target == "L[0]":
            self.ns["L"][0] = value
        else:
            self.ns[target] = self.ns_i[target] = value

    def args(self, x, y, strided=False):
        """The call's arguments: x as a float64 array (every third call a strided view), then y."""
        if strided:
            buf = np.full(2 * len(x), np.nan)
            buf[::2] = x
            arr = buf[::2]
        else:
            arr = np.array(x, dtype=np.float64)
        return (arr, y) if self.two_args else (arr,)

    def point(self, x, y) -> list[float]:
        """The flat input vector the transforms differentiate."""
        return list(x) + [y] if self.two_args else list(x)

    def at(self, point):
        return (tuple(point[:-1]), point[-1]) if self.two_args else (tuple(point), 0.0)

    def plain(self, args):
        with np.errstate(all="ignore"):
            return self.f(*args)

    def instrumented(self, x, y, replay=False):
        self.inst.start(replay)
        with np.errstate(all="ignore"):
            return self.f_i(*self.args(x, y))


def same(a, b) -> bool:
    """Bit for bit as float64, any NaN matching any NaN."""
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return struct.pack("<d", a) == struct.pack("<d", b)


def close(a, b) -> bool:
    """Within TRANSCENDENTAL_RTOL; a difference that is not bit for bit is counted (``last_bit``)."""
    if same(a, b):
        return True
    a, b = float(a), float(b)
    near = math.isfinite(a) and math.isfinite(b) and abs(a - b) <= TRANSCENDENTAL_RTOL * max(abs(a), abs(b))
    COUNTS["last_bit"] += near
    return near


def all_agree(got, expected, agree) -> bool:
    """The same structure (a scalar, or a tuple or list of the same length) with values that agree."""
    if isinstance(expected, (tuple, list)):
        return type(got) is type(expected) and len(got) == len(expected) and all(map(agree, got, expected))
    return not isinstance(got, (tuple, list)) and agree(got, expected)


def check_gradient(p: Program, x, y, value, grad, mismatches, where):
    """The AD gradient against central differences of the instrumented plain function (no_grad
    values frozen), coordinate by coordinate, wherever the path and two step sizes agree."""
    p.instrumented(x, y)
    base_path = p.inst.path
    point = p.point(x, y)
    if not all(v == 0.0 or FD_MIN_INPUT <= abs(v) <= FD_MAX_INPUT for v in point):
        return
    if not abs(float(value)) <= FD_MAX_VALUE:
        return
    for i in range(len(point)):
        if not math.isfinite(grad[i]):
            COUNTS["fd_skipped"] += 1  # an op without a derivative here; AD differentiates the program
            continue
        h0 = FD_STEP * 2.0 ** math.ceil(math.log2(max(1.0, abs(point[i]))))
        diffs = []
        for h in (h0, h0 / 2):
            vals = []
            for step in (h, -h):
                q = list(point)
                q[i] += step
                try:
                    out = p.instrumented(*p.at(q), replay=True)
                except (ArithmeticError, ValueError):
                    break
                if p.inst.path != base_path or p.inst.diverged or p.inst.reached:
                    break
                vals.append(float(out))
            if len(vals) < 2:
                break
            diffs.append((vals[0] - vals[1]) / (2 * h))
        if len(diffs) < 2 or not all(math.isfinite(d) for d in diffs):
            COUNTS["fd_skipped"] += 1
            continue
        coarse, fine = diffs
        scale = max(abs(fine), 1.0)
        if abs(coarse - fine) > FD_AGREE * scale:
            COUNTS["fd_skipped"] += 1
            continue
        COUNTS["fd_checked"] += 1
        if abs(grad[i] - fine) > FD_RTOL * scale:
            mismatches.append(f"{where}: gradient[{i}] = {grad[i]!r}, central differences {fine!r} "
                              f"(coarser step {coarse!r})")


def call_transform(fn, args):
    """(result, exception) of a transform called with ``args``. Its documented RuntimeWarnings (a
    captured value changing often, more than MAX_PATHS paths) are counted, not raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return fn(*args), None
        except Exception as e:  # noqa: BLE001  judged by the caller
            return None, e
        finally:
            COUNTS["evictions"] += sum("control-flow paths" in str(w.message) for w in caught)


def run_program(prog) -> list[str]:
    """Every mismatch between the transforms and plain Python over the program's events."""
    p = Program(prog)
    COUNTS["programs"] += 1
    for kind in constructs(prog):
        CONSTRUCTS[kind] = CONSTRUCTS.get(kind, 0) + 1
    mismatches = []
    agree = close if p.transcendental else same
    last_bit = COUNTS["last_bit"]
    for n, event in enumerate(prog["events"]):
        if event[0] == "set":
            p.set(event[1], event[2])
            COUNTS["captured_changes"] += 1
            continue
        _, x, y, with_grad = event
        p.calls += 1
        args = p.args(x, y, strided=p.calls % 3 == 0)
        where = f"event {n} f(np.array({list(x)!r})" + (f", {y!r})" if p.two_args else ")")
        try:
            expected = p.plain(args)
        except (ArithmeticError, ValueError):
            COUNTS["plain_raised"] += 1  # int(nan), OverflowError of **: the transforms may do anything
            continue
        instr = p.instrumented(x, y)
        assert all_agree(instr, expected, same), "fuzzer bug: the instrumented copy computes another value"
        refused = bool(p.inst.reached)
        COUNTS["calls"] += 1
        got, error = call_transform(p.jit, args)
        if refused:
            if not isinstance(error, sg.TracingError):
                mismatches.append(f"{where}: plain Python converts a traced value to a number; jit gave "
                                  f"{got!r} / {error!r}, not sg.TracingError")
            else:
                COUNTS["refused"] += 1
        elif error is not None:
            mismatches.append(f"{where}: jit raised {error!r}; plain Python returned {expected!r}")
        elif not all_agree(got, expected, agree):
            mismatches.append(f"{where}: jit returned {got!r}; plain Python {expected!r}")
        if not (p.differentiable and with_grad):
            continue
        COUNTS["grad_calls"] += 1
        got, error = call_transform(p.vg, args)
        if refused:
            if not isinstance(error, sg.TracingError):
                mismatches.append(f"{where}: value_and_grad gave {got!r} / {error!r}, not sg.TracingError")
            continue
        if error is not None:
            mismatches.append(f"{where}: value_and_grad raised {error!r}; plain Python returned {expected!r}")
            continue
        value, g = got
        grad = list(g[0]) + [g[1]] if p.two_args else list(g)
        if not agree(value, expected):
            mismatches.append(f"{where}: value_and_grad value {value!r}; plain Python {expected!r}")
            continue
        last, error = call_transform(p.grad_last, args)
        if error is not None or not all(map(same, np.ravel(last), np.ravel(g[-1] if p.two_args else g))):
            mismatches.append(f"{where}: grad(argnums=-1) gave {last!r} / {error!r}; value_and_grad {g!r}")
        check_gradient(p, x, y, value, grad, mismatches, where)
    COUNTS["mismatches"] += bool(mismatches)
    if COUNTS["last_bit"] > last_bit and len(LAST_BIT) < 3:
        LAST_BIT.append(reproducer(prog, ["results differ in the last bit (within TRANSCENDENTAL_RTOL)"]))
    return mismatches


def reproducer(prog, mismatches) -> str:
    """The program, its captured values and events, and what went wrong, as text to paste."""
    return "\n".join(["", program_source(prog, instr=False), f"backend: {prog.get('backend')}",
                      f"captured at start: {prog['init']}",
                      "events:", *(f"  {n}: {e}" for n, e in enumerate(prog["events"])),
                      "mismatches:", *(f"  {m}" for m in mismatches[:10])])


FUZZ_SETTINGS = dict(deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much, HealthCheck.large_base_example])


@settings(max_examples=PROGRAM_EXAMPLES, derandomize=True, **FUZZ_SETTINGS)
@given(programs())
def _fuzz(prog):
    mismatches = run_program(prog)
    assert not mismatches, reproducer(prog, mismatches)


def summary(ran) -> str:
    return (f"ran {ran['programs']} programs, {ran['calls']} calls ({ran['grad_calls']} with gradients, "
            f"{ran['fd_checked']} derivatives checked against finite differences and {ran['fd_skipped']} "
            f"skipped at kinks or edges; {ran['refused']} refused with TracingError, {ran['plain_raised']} "
            f"skipped where plain Python raised), {ran['captured_changes']} captured values changed, "
            f"{ran['evictions']} paths evicted, "
            f"{ran['last_bit']} last-bit differences, found {ran['mismatches']} mismatches")


def test_jit_and_gradients_agree_with_plain_python():
    before = dict(COUNTS)
    _fuzz()
    ran = {k: COUNTS[k] - before[k] for k in COUNTS}
    print("\n" + summary(ran))
    # The fuzzer must exercise what it claims to: calls, gradients, refusals and every construct.
    assert ran["programs"] >= PROGRAM_EXAMPLES // 2 and ran["calls"] > 3 * ran["programs"]
    assert ran["fd_checked"] > ran["programs"] and ran["refused"] > 0 and ran["captured_changes"] > 0
    assert ran["evictions"] > 0  # some program had more than MAX_PATHS paths
    wanted = {"if", "while", "forbreak", "foreach", "forindex", "forK", "nograd", "break", "continue",
              "return", "chain", "not", "and", "or", "ternary", "min", "max", "abs", "minx", "where",
              "helper", "chelper", "refuse", "refuse_hash", "name:c", "name:SCALE", "name:W[", "name:L[", "gensum",
              "listmax", "lambda", "median", "maxkey", "bigint", "boolnum", "ladder", "sig:x", "ret:tuple", "ret:list",
              "ret:locals",
              "ret:cond"}
    assert wanted <= set(CONSTRUCTS), sorted(wanted - set(CONSTRUCTS))


def _program(body, ret):
    return {"body": body, "ret": [ret], "ret_kind": "one", "sig": "xy", "c": 0.0, "backend": "interp",
            "init": {"SCALE": 1.0, "H": 0.0, "K": 1, "c2": 1.0, "W": (1.0, 2.0), "L": (0.25, -1.0)}, "events": []}


def test_instrumented_copy_records_paths_freezes_no_grad_and_notes_refusals():
    """The oracles' own machinery: a branch changes the path; a no_grad operation replays frozen
    (and value_and_grad gives it zero derivative); a conversion of a traced value is noted, and
    the transforms refuse it."""
    branch = ("if", ("cmp", "<", ("name", "y"), ("const", 1.0)), [("assign", "t0", ("const", 2.0))], [], [])
    p = Program(_program([branch,
                          ("nograd", [("assign", "t1", ("bin", "*", ("name", "y"), ("name", "y")))])],
                         ("bin", "+", ("name", "t0"), ("name", "t1"))))
    assert p.instrumented((1.0,), 0.5) == 2.25 and p.inst.path == [(1, True)] and not p.inst.reached
    assert p.instrumented((1.0,), 0.75, replay=True) == 2.25  # t1 frozen at 0.25
    p.instrumented((1.0,), 1.5)
    assert p.inst.path == [(1, False)]
    value, (gx, gy) = p.vg(np.array([1.0]), 0.5)
    assert value == 2.25 and gy == 0.0 and gx[0] == 0.0
    p = Program(_program([("assign", "t2", ("refuse", "float", ("const", 1.0)))], ("name", "t2")))
    assert p.instrumented((1.0,), 0.5) == 1.5 and p.inst.reached
    with pytest.raises(sg.TracingError):
        p.jit(np.array([1.0]), 0.5)


if __name__ == "__main__":
    # A long run: python tests/test_fuzz_python.py [programs]
    import atexit
    import shutil
    import tempfile
    if "SCALARGRAD_CACHE_DIR" not in os.environ:  # generated code goes to a throwaway directory
        os.environ["SCALARGRAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="scalargrad-fuzz-")
        atexit.register(shutil.rmtree, os.environ["SCALARGRAD_CACHE_DIR"], ignore_errors=True)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    shown = 0

    @settings(max_examples=n, **FUZZ_SETTINGS)
    @given(programs())
    def long_fuzz(prog):
        global shown
        mismatches = run_program(prog)
        if mismatches and shown < 5:
            shown += 1
            print(reproducer(prog, mismatches), flush=True)

    long_fuzz()
    for text in LAST_BIT:
        print(text)
    print(summary(COUNTS))
