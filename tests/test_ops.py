"""The op table, checked row by row: every user op's derivative rules against finite differences,
the eager path against the compiled one, IEEE special values against the reference sweeps, the
table validator, and the generated interpreter against its generator."""
from __future__ import annotations

import itertools
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.core import reference
from scalargrad.jit import generate, kernels
from scalargrad.core.ops import BY_NAME, COMPARISONS, OPCODE, OPS, USER_OPS, validate_table

from helpers import (SPECIAL, assert_same, case_id, central_diff, compiled_evaluate, op_cases, op_function, sample_domain,
                     second_diff)

CASES = op_cases()
N_POINTS = 5


def _seed(op, lit) -> int:
    return OPCODE[op.name] * 100 + (0 if lit is None else int(lit * 10))


def _all_argnums(op):
    return tuple(range(op.arity))


def _grad_fn(op, lit):
    return sg.value_and_grad(op_function(op, lit), argnums=_all_argnums(op))


# --- the table itself --------------------------------------------------------------------------------

def test_table_is_valid():
    assert validate_table() is None


def test_opcodes_are_table_positions_and_names_are_unique():
    assert [OPCODE[op.name] for op in OPS] == list(range(len(OPS)))
    assert len({op.name for op in OPS}) == len(OPS)


@pytest.mark.parametrize("op", USER_OPS, ids=lambda op: op.name)
def test_every_user_op_is_public_with_a_domain_to_sample(op):
    assert callable(getattr(sg, op.name))
    assert op.name in sg.__all__
    assert len(op.domain) == op.arity
    assert all(lo < hi for lo, hi in op.domain)


@pytest.mark.parametrize("bad, message", [
    (OPS + (replace(BY_NAME["mul"]),), "duplicate"),
    (tuple(replace(op, partials=("{b}",)) if op.name == "mul" else op for op in OPS), "partials"),
    (tuple(replace(op, forward="frobnicate({a})") if op.name == "exp" else op for op in OPS), "frobnicate"),
    (tuple(replace(op, partials=("exp({b})",)) if op.name == "exp" else op for op in OPS), "'b'"),
    (tuple(replace(op, forward="{a} * {lit}") if op.name == "exp" else op for op in OPS), "lit"),
    (tuple(replace(op, forward="{y} + {a}") if op.name == "exp" else op for op in OPS), "own value"),
    (tuple(replace(op, domain=(BY_NAME["exp"].domain[0],)) if op.name == "mul" else op for op in OPS),
     "domain"),
    (tuple(replace(op, numpy=("frobnicate",)) if op.name == "exp" else op for op in OPS), "not a NumPy ufunc"),
    (tuple(replace(op, numpy=("multiply",)) if op.name == "exp" else op for op in OPS), "already records"),
], ids=["duplicate-name", "partial-count", "unknown-function", "operand-beyond-arity",
        "literal-in-non-literal-op", "forward-uses-own-value", "domain-per-operand", "numpy-not-a-ufunc",
        "numpy-ufunc-twice"])
def test_validate_table_rejects_malformed_rows_naming_the_op(bad, message):
    culprit = {"duplicate": "mul", "partials": "mul", "domain": "mul"}.get(message, "exp")
    with pytest.raises(ValueError, match=message) as info:
        validate_table(bad)
    assert repr(culprit) in str(info.value)


def test_validate_table_rejects_too_many_ops_for_int8_opcodes():
    many = OPS + tuple(replace(BY_NAME["neg"], name=f"neg{i}", numpy=()) for i in range(128 - len(OPS)))
    with pytest.raises(ValueError, match="int8"):
        validate_table(many)
    validate_table(many[:127])  # 127 rows still fit


def test_generated_interpreter_is_up_to_date():
    """Regenerate _interp.py from the table; it must equal the committed file
    (run ``python -m scalargrad.jit.generate`` after editing ops.py)."""
    target = Path(generate.__file__).with_name("_interp.py")
    assert generate.source() == target.read_text()


def test_cached_modules_that_inline_the_interpreter_carry_current_stamps():
    """Numba keys its disk cache on a file's content only: a module whose kernels inline the
    interpreter (or kernels.py) must change when those do. Every module importing _interp or
    kernels is listed, and each holds the stamp of the current sources (``python -m scalargrad.jit.generate``
    rewrites them)."""
    here = Path(generate.__file__).parent
    # modules with cached kernels of their own (passes.py only calls kernels, so needs no stamp)
    importers = {p.name for p in here.glob("*.py") if "njit" in p.read_text()
                 and ("from ._interp import" in p.read_text() or "from .kernels import" in p.read_text())}
    assert importers - {"generate.py"} == set(generate.DEPENDENTS)  # cuda.py: GPU code, not disk-cached
    for name in generate.DEPENDENTS:
        assert generate.stamp_line(name) in (here / name).read_text(), f"{name}: rerun the generator"


# --- first derivatives against finite differences ------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gradient_matches_central_differences(case):
    op, lit = case
    f = op_function(op, lit)
    vg = _grad_fn(op, lit)
    rng = np.random.default_rng(_seed(op, lit))
    for x in sample_domain(op, rng, N_POINTS):
        value, grads = vg(*x)
        fx = f(*x)  # plain floats: the Python forward rule, independent of the kernels
        assert value == pytest.approx(fx, rel=1e-14, abs=1e-300), (op.name, x)
        fd = central_diff(f, x, h=1e-6)
        np.testing.assert_allclose(grads, fd, rtol=1e-6, atol=1e-7 * (1 + abs(fx)),
                                   err_msg=f"{op.name} at {x}")


@pytest.mark.parametrize("case", [c for c in CASES if c[0].smooth], ids=case_id)
def test_second_derivative_matches_second_differences(case):
    """The derivative of the compiled gradient (by central differences) equals the second central
    difference of f: catches a partial rule that is right at one point but wrong nearby."""
    op, lit = case
    f = op_function(op, lit)
    vg = _grad_fn(op, lit)
    rng = np.random.default_rng(_seed(op, lit) + 1)
    h = 1e-6
    for x in sample_domain(op, rng, 3):
        jac = np.empty((op.arity, op.arity))
        for j in range(op.arity):
            up, down = x.copy(), x.copy()
            up[j] += h
            down[j] -= h
            jac[:, j] = (np.array(vg(*up)[1]) - np.array(vg(*down)[1])) / (2 * h)
        hess = second_diff(f, x, h=1e-4)
        np.testing.assert_allclose(jac, hess, rtol=1e-4, atol=1e-5 * (1 + abs(f(*x))),
                                   err_msg=f"{op.name} at {x}")


@pytest.mark.parametrize("name", sorted(COMPARISONS))
def test_comparisons_have_zero_gradient_and_boolean_value(name):
    op = BY_NAME[name]
    vg = _grad_fn(op, None)
    python_op = {"lt": "__lt__", "le": "__le__", "gt": "__gt__", "ge": "__ge__", "eq": "__eq__",
                 "ne": "__ne__"}[name]
    for a, b in [(1.0, 2.0), (2.0, 1.0), (1.5, 1.5), (-0.0, 0.0)]:
        value, grads = vg(a, b)
        assert value == float(getattr(a, python_op)(b))
        assert grads == (0.0, 0.0)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_eager_variables_give_the_compiled_gradient(case):
    op, lit = case
    f = op_function(op, lit)
    vg = _grad_fn(op, lit)
    rng = np.random.default_rng(_seed(op, lit) + 2)
    for x in sample_domain(op, rng, 3):
        leaves = [sg.Variable(float(v)) for v in x]
        out = f(*leaves)
        assert isinstance(out, sg.Variable)
        out.backward()
        value, grads = vg(*x)
        assert out.data == pytest.approx(value, rel=1e-14)
        np.testing.assert_allclose([v.grad for v in leaves], grads, rtol=1e-12, atol=0,
                                   err_msg=f"{op.name} at {x}")


# --- IEEE special values ----------------------------------------------------------------------------

def _special_points(arity):
    return np.array(list(itertools.product(SPECIAL, repeat=arity)), dtype=np.float64)


def _special_literals(op):
    return (2.0, 0.5, 3.0, -1.0, 0.0, np.inf, np.nan) if op.literal else (None,)


@pytest.mark.parametrize("op", USER_OPS, ids=lambda op: op.name)
def test_compiled_forward_equals_reference_at_special_values(op):
    """0, -0, ±inf, NaN (and a few ordinary values) in every operand position: the compiled sweep
    and the NumPy reference agree, NaN in the same places, without raising or warning."""
    points = _special_points(op.arity)
    for lit in _special_literals(op):
        tape = sg.trace(op_function(op, lit), *([1.5] * op.arity))
        program = kernels.Program(tape)
        compiled = np.empty(len(points))
        expected = np.empty(len(points))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for i, x in enumerate(points):
                out, ok = compiled_evaluate(program, x)
                assert ok
                compiled[i] = out[0]
                expected[i] = reference.evaluate(tape, x)[0]
        mismatch = ~np.isclose(compiled, expected, rtol=1e-12, atol=0, equal_nan=True)
        if mismatch.any():
            pytest.fail(f"{op.name} lit={lit}: compiled {compiled[mismatch][:5]} vs reference "
                        f"{expected[mismatch][:5]} at {points[mismatch][:5].tolist()}")


@pytest.mark.parametrize("op", USER_OPS, ids=lambda op: op.name)
def test_eager_forward_equals_reference_at_special_values(op):
    """The eager Variable path (Python math with a NumPy fallback) gives the reference's IEEE
    values too, never an exception or a warning."""
    points = _special_points(op.arity)
    for lit in _special_literals(op):
        f = op_function(op, lit)
        tape = sg.trace(f, *([1.5] * op.arity))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for x in points:
                eager = f(*[sg.Variable(float(v)) for v in x]).data
                plain = f(*[float(v) for v in x])
                expected = reference.evaluate(tape, x)[0]
                assert_same([eager, plain], [expected, expected], rtol=1e-12,
                            what=f"{op.name} lit={lit} at {x.tolist()}: eager, plain floats vs reference")


@pytest.mark.parametrize("f, x, expected", [
    (lambda x: sg.log(x), -1.0, np.nan),
    (lambda x: sg.log(x), 0.0, -np.inf),
    (lambda x: 1.0 / x, 0.0, np.inf),
    (lambda x: -1.0 / x, 0.0, -np.inf),
    (lambda x: sg.exp(x), 1000.0, np.inf),
    (lambda x: sg.sqrt(x), -1.0, np.nan),
    (lambda x: x ** 0.5, -1.0, np.nan),
    (lambda x: sg.arcsin(x), 2.0, np.nan),
    (lambda x: x / x, 0.0, np.nan),
], ids=["log(-1)", "log(0)", "1/0", "-1/0", "exp(1000)", "sqrt(-1)", "(-1)**0.5", "arcsin(2)", "0/0"])
def test_ieee_results_without_exceptions_or_warnings(f, x, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled = sg.jit(f)(x)
        eager = f(sg.Variable(x)).data
        value, _ = sg.value_and_grad(f)(x)
        v = sg.Variable(x)
        f(v).backward()
    assert_same([compiled, eager, value], [expected] * 3, what="jit, eager, value_and_grad")
