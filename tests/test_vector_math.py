"""vmap(vector_math=True): the batch sweeps that call glibc's libmvec four points at a time agree
with the libm sweeps within a few ulp and with finite differences, keep IEEE special values, handle
batches that are not a multiple of four, and degrade to libm with a warning where libmvec is missing."""
import itertools

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.jit import batch, generate, kernels, vector_math
from scalargrad.core.ops import BY_NAME, OPS, Op

from helpers import SPECIAL, assert_same, op_function

VECTOR_OPS = [op for op in OPS if op.public and generate._vector_calls(op)]
needs_libmvec = pytest.mark.skipif(not vector_math.AVAILABLE, reason=f"no libmvec: {vector_math.UNAVAILABLE_REASON}")
# libmvec is documented within 4 ulp of the exact result, libm within 1: relative 1e-14 for values,
# also absolute for partials such as tanh's 1 - y * y, where a last-bit change in y ~ 1 cancels.
ULPS = 1e-14


def _program(op, lit=2.0):
    return kernels.Program(sg.trace(op_function(op, lit if op.literal else None), *([0.5] * op.arity)))


def _domain_points(op, count, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(lo, hi, count) for lo, hi in op.domain])


def test_the_vector_flavour_covers_the_ops_that_call_libm():
    names = {op.name for op in VECTOR_OPS}
    assert {"exp", "log", "sin", "cos", "tanh", "sigmoid", "arctan2", "powc", "pow"} <= names
    assert not names & {"add", "mul", "div", "sqrt", "abs", "relu", "where"}
    assert all(batch.chunk_size(n) % vector_math.LANES == 0 for n in (1, 7, 100, 1000, 4097, 10**5, 10**7))


def test_generated_lanes_hoist_nested_calls_and_keep_lane_invariant_ones_scalar():
    nested = Op("nested", 1, "exp(sin({a}))", ("cos({a}) * {y}",), literal=False, domain=((-1.0, 1.0),))
    lines = generate._lanes_branch(nested, with_partials=True)
    assert lines[0] == "for j in range(0, m, 4):"
    assert "    h0_0, h0_1, h0_2, h0_3 = v_sin(va_0, va_1, va_2, va_3)" in lines
    assert "    va_2 = vals[ia, j + 2]" in lines
    assert "    h1_0, h1_1, h1_2, h1_3 = v_exp(h0_0, h0_1, h0_2, h0_3)" in lines
    assert "    pa_3 = h2_3 * y_3" in lines and "    pa[k, j + 3] = pa_3" in lines
    assert "    vals[r, j + 3] = y_3" in lines
    cpow = generate._lanes_branch(BY_NAME["cpow"], with_partials=True)  # log(lit) is the same for every point
    assert "    pa_0 = 0.0 if vl == 0.0 else y_0 * log(vl)" in cpow


@needs_libmvec
@pytest.mark.parametrize("op", VECTOR_OPS, ids=lambda op: op.name)
def test_every_vector_op_agrees_with_libm_and_finite_differences(op):
    X = _domain_points(op, 13)  # 13 points: the last chunk ends inside a group of four lanes
    for lit in (2.0, 0.5) if op.literal else (None,):
        program = _program(op, lit)
        values, G, ok = batch.value_and_grad(program, X, vector_math=True)
        want_values, want_G, want_ok = batch.value_and_grad(program, X)
        assert ok.all() and want_ok.all()
        assert_same(values, want_values, rtol=ULPS, what=f"{op.name} values")
        assert_same(G, want_G, rtol=ULPS, atol=ULPS, what=f"{op.name} gradients")
        out, ok = batch.evaluate(program, X, vector_math=True)
        assert ok.all() and np.array_equal(out[:, 0], values)
        h = 1e-6
        for i in range(op.arity):
            step = np.zeros(op.arity)
            step[i] = h
            up, _ = batch.evaluate(program, X + step, vector_math=True)
            down, _ = batch.evaluate(program, X - step, vector_math=True)
            np.testing.assert_allclose(G[:, i], (up[:, 0] - down[:, 0]) / (2 * h), rtol=1e-6, atol=1e-8,
                                       err_msg=f"{op.name} lit={lit}: d/d operand {i}")


@needs_libmvec
@pytest.mark.parametrize("op", VECTOR_OPS, ids=lambda op: op.name)
def test_every_vector_op_keeps_special_values(op):
    """0, -0, ±inf and NaN in every operand position: NaN, inf and their signs where libm has them."""
    X = np.array(list(itertools.product(SPECIAL, repeat=op.arity)))
    for lit in (2.0, 0.5, 0.0) if op.literal else (None,):
        program = _program(op, lit)
        values, G, _ = batch.value_and_grad(program, X, vector_math=True)
        want_values, want_G, _ = batch.value_and_grad(program, X)
        assert_same(values, want_values, rtol=ULPS, what=f"{op.name} lit={lit} values at {X.tolist()}")
        assert_same(G, want_G, rtol=ULPS, atol=ULPS, what=f"{op.name} lit={lit} gradients at {X.tolist()}")


@needs_libmvec
def test_vmap_vector_math_on_a_larger_program_stays_within_a_few_ulp():
    def f(x):
        s = 0.0
        for i in range(len(x) - 1):
            s = s + sg.tanh(x[i] * x[i + 1]) + sg.exp(-x[i] * x[i]) * sg.sin(x[i + 1]) + sg.log1p(x[i] ** 2)
        return s
    vg = sg.value_and_grad(f, backend="interp")
    X = np.random.default_rng(1).uniform(-1.5, 1.5, (45, 8))
    values, G = sg.vmap(vg, vector_math=True)(X)
    want_values, want_G = sg.vmap(vg)(X)
    np.testing.assert_allclose(values, want_values, rtol=1e-13)
    np.testing.assert_allclose(G, want_G, rtol=1e-12, atol=1e-14)
    out = sg.vmap(sg.jit(f, backend="interp"), vector_math=True)(X)
    np.testing.assert_array_equal(out, values)


def test_without_libmvec_vmap_warns_and_uses_libm(monkeypatch):
    monkeypatch.setattr(vector_math, "AVAILABLE", False)
    monkeypatch.setattr(vector_math, "UNAVAILABLE_REASON", "this CPU has no AVX2")
    vg = sg.value_and_grad(lambda x: sg.sin(x[0]) * sg.exp(x[1]), backend="interp")
    X = np.random.default_rng(2).uniform(-1, 1, (9, 2))
    with pytest.warns(RuntimeWarning, match="vector_math=True: this CPU has no AVX2; the batch calls libm"):
        mapped = sg.vmap(vg, vector_math=True)
    values, G = mapped(X)
    want_values, want_G = sg.vmap(vg)(X)
    assert np.array_equal(values, want_values) and np.array_equal(G, want_G)
    with pytest.raises(RuntimeError, match="vector math is unavailable here: this CPU has no AVX2"):
        batch.value_and_grad(_program(BY_NAME["sin"]), X[:, :1], vector_math=True)


def test_vector_math_argument_errors():
    vg = sg.value_and_grad(lambda x: sg.sin(x[0]))
    with pytest.raises(TypeError, match="vector_math must be True or False, got 'yes'"):
        sg.vmap(vg, vector_math="yes")
    with pytest.raises(ValueError, match="vector_math=True applies to the CPU batch kernels"):
        sg.vmap(vg, device="cuda", vector_math=True)
    with pytest.raises(ValueError, match="vector_math=True applies to the CPU batch kernels"):
        sg.vmap(sg.hessian(lambda x: sg.sin(x[0])), vector_math=True)


@needs_libmvec
@pytest.mark.slow  # 13 s: compiles the vector-math batch loop with custom-op calls
def test_vector_math_runs_custom_ops_through_its_own_loop():
    """A tape with a custom op runs the _vector sweep's loop with the custom-op rows."""
    twice_sin = sg.custom_op("test_vector_twice_sin", lambda x: 2.0 * np.sin(x), [lambda x: 2.0 * np.cos(x)])
    vg = sg.value_and_grad(lambda x: twice_sin(x[0]) * sg.exp(x[1]) + sg.tanh(x[0] * x[1]), backend="interp")
    X = np.random.default_rng(3).uniform(-1, 1, (11, 2))
    values, G = sg.vmap(vg, vector_math=True)(X)
    want_values, want_G = sg.vmap(vg)(X)
    np.testing.assert_allclose(values, want_values, rtol=ULPS, atol=ULPS)
    np.testing.assert_allclose(G, want_G, rtol=ULPS, atol=ULPS)
    np.testing.assert_allclose(G[:, 0], 2 * np.cos(X[:, 0]) * np.exp(X[:, 1])
                               + X[:, 1] / np.cosh(X[:, 0] * X[:, 1]) ** 2, rtol=1e-13)
