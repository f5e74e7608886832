"""Higher-order and forward-mode transforms (scalargrad/record/symbolic.py, jit/tangent.py), checked
against finite differences of the compiled gradient and against the reference sweeps."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import scalargrad as sg
from helpers import (SPECIAL, assert_same, case_id, op_cases, op_function, random_program, sample_domain,
                     trace_program)
from scalargrad.core import reference
from scalargrad.core.ops import COMPARISONS
from scalargrad.jit.passes import optimize
from scalargrad.record.symbolic import grad_tape, jvp_tape


def fd_jacobian(f, x, h=1e-6):
    """Central differences of a function of one float64 array returning an array."""
    x = np.asarray(x, dtype=np.float64)
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        up = np.asarray(f(x + e.reshape(x.shape)), dtype=np.float64)
        down = np.asarray(f(x - e.reshape(x.shape)), dtype=np.float64)
        cols.append(((up - down) / (2 * h)).reshape(-1))
    return np.array(cols).T


def rosen(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def mixed(x):
    """where, abs, maximum, pow, div, exp and a guard, smooth near the test points."""
    a = sg.where(x[0] > 0.0, sg.sqrt(x[0]) * x[1], x[1] ** 2)
    b = abs(x[1] - 2.0) * sg.maximum(x[2], x[0] * x[1])
    c = x[0] ** x[2] / (1.0 + x[1] * x[1]) + sg.exp(-x[2]) * sg.tanh(x[0])
    if x[2] > 0.0:
        c = c + sg.log(x[2]) * sg.minimum(x[0], x[1])
    return a + b + c


FUNCTIONS = {
    "rosen": (rosen, np.array([-1.2, 1.0, 0.3, 0.8])),
    "mixed": (mixed, np.array([0.7, 1.3, 0.4])),
    "mixed-other-branches": (mixed, np.array([1.6, 0.9, 1.1])),
    "trig": (lambda x: sg.sin(x[0] * x[1]) + sg.arctan2(x[0], x[1]) * sg.cosh(x[0]) + sg.arcsin(x[1] / 3.0),
             np.array([0.4, 1.2])),
}


# --- the op table's rules, one op at a time ------------------------------------------------------

@pytest.mark.parametrize("case", op_cases(), ids=case_id)
def test_grad_tape_matches_reference_sweep(case):
    op, lit = case
    f = op_function(op, lit)
    rng = np.random.default_rng(5)
    tape = sg.trace(f, *([0.5] * op.arity))
    g = grad_tape(tape)
    assert len(g.guards) == 0, "derivative rules must not record guards"
    points = list(sample_domain(op, rng, 8)) + list(itertools.product(SPECIAL, repeat=op.arity))
    for x in points:  # at 0, ±inf and NaN too: the same NaN/inf as the compiled sweep's rules
        value, grad = reference.value_and_grad(tape, x)
        assert_same(reference.evaluate(g, x), [value, *grad], rtol=1e-13, what=f"{op.name} at {x}")


@pytest.mark.parametrize("seed", range(30))
def test_grad_tape_of_random_programs_matches_reference_sweep(seed):
    program, x, outputs = random_program(np.random.default_rng(seed), n_inputs=4, n_ops=40)
    tape = trace_program(program, x, outputs)
    value, grad = reference.value_and_grad(tape, x)
    # NaN and inf in the same places; finite entries up to the order adjoints are summed in
    assert_same(reference.evaluate(grad_tape(tape), x), [value, *grad], rtol=1e-11)


@pytest.mark.parametrize("seed", range(30))
def test_compiled_tangent_sweep_agrees_with_symbolic_jvp_tape_on_random_programs(seed):
    from scalargrad.jit import kernels, tangent as tangent_kernels
    rng = np.random.default_rng(seed)
    program, x, outputs = random_program(rng, n_inputs=4, n_ops=40)
    tape = trace_program(program, x, outputs)
    v = rng.standard_normal(4)
    p = kernels.Program(tape)
    out, tout = np.empty(p.n_outputs), np.empty(p.n_outputs)
    assert tangent_kernels.jvp(p.ins, p.lit, p.io, x, v, out, tout, p.workspace())
    expected = reference.evaluate(jvp_tape(tape), np.concatenate([x, v]))
    got = np.concatenate([out, tout])
    # The compiled sweep skips a tangent that is exactly 0 at run time, so 0 * inf is 0 there but
    # NaN in the symbolic tape (as in the reverse sweep): compare where both are finite, and a
    # NaN from the compiled sweep must be one in the symbolic tape too.
    both = np.isfinite(got) & np.isfinite(expected)
    np.testing.assert_allclose(got[both], expected[both], rtol=1e-10, atol=1e-12)
    assert np.isnan(expected[np.isnan(got)]).all()
    assert both.sum() >= len(got) // 2


@pytest.mark.parametrize("case", [c for c in op_cases() if c[0].smooth and c[0].name not in COMPARISONS],
                         ids=case_id)
def test_hessian_of_each_op_matches_finite_differences(case):
    op, lit = case
    f = op_function(op, lit)
    fun = lambda x: f(*(x[i] for i in range(op.arity)))  # noqa: E731
    hess, grad = sg.hessian(fun), sg.grad(fun)
    for x in sample_domain(op, np.random.default_rng(6), 5):
        expected = fd_jacobian(grad, x)
        np.testing.assert_allclose(hess(x), expected, rtol=1e-5, atol=1e-6, err_msg=f"{op.name} at {x}")


# --- composition ----------------------------------------------------------------------------------

def scalar_f(x):
    return sg.where(x > 0.0, x ** 3 * sg.sin(x), -x) + abs(x - 2.0) * x / (1.0 + x * x) \
        + sg.maximum(x, 0.5) ** 2.5 + 2.0 ** x


@pytest.mark.parametrize("x", [0.7, 1.4, 2.6])
def test_grad_nested_three_levels_matches_finite_differences(x):
    d1, d2, d3 = sg.grad(scalar_f), sg.grad(sg.grad(scalar_f)), sg.grad(sg.grad(sg.grad(scalar_f)))
    h = 1e-5
    assert d2(x) == pytest.approx((d1(x + h) - d1(x - h)) / (2 * h), rel=1e-6)
    assert d3(x) == pytest.approx((d2(x + h) - d2(x - h)) / (2 * h), rel=1e-6)
    assert sg.hessian(scalar_f)(x) == pytest.approx(d2(x), rel=1e-12)


def test_nested_grad_retraces_when_the_inner_branch_changes():
    def g(x):
        if x > 0.0:
            return x ** 3
        return -x ** 2

    gg = sg.grad(sg.grad(g))
    assert gg(1.0) == pytest.approx(6.0)
    assert gg(-1.0) == pytest.approx(-2.0)
    assert gg(2.0) == pytest.approx(12.0)


def test_where_keeps_derivatives_of_the_unselected_branch_out_at_every_order():
    f = lambda x: sg.where(x > 0.0, sg.sqrt(x), 0.0)  # noqa: E731
    assert sg.grad(f)(0.0) == 0.0
    assert sg.grad(sg.grad(f))(0.0) == 0.0
    assert sg.hessian(f)(0.0) == 0.0
    assert sg.hvp(f)(0.0, 1.0) == 0.0


def test_value_and_grad_and_jit_of_variables_record_into_the_caller():
    def outer(x):
        v, (gx, gy) = sg.value_and_grad(lambda a, b: a * a * b + sg.sin(b), argnums=(0, 1))(x[0], x[1])
        y = sg.jit(lambda a: (a * 2.0, sg.exp(a)))(x[0])
        return v + gx * gy + y[0] * y[1]

    x = np.array([0.8, -0.4])
    value, grad = sg.value_and_grad(outer)(x)
    assert value == pytest.approx(outer(x))
    np.testing.assert_allclose(grad, fd_jacobian(lambda z: np.array([outer(z)]), x)[0], rtol=1e-7)


def test_grad_of_variables_eagerly_returns_a_variable_that_records():
    x = sg.Variable(0.7)
    g = sg.grad(lambda t: t ** 3 * sg.sin(t))(x)
    assert isinstance(g, sg.Variable)
    assert g.data == pytest.approx(3 * 0.49 * math.sin(0.7) + 0.343 * math.cos(0.7))
    g.backward()
    assert x.grad == pytest.approx(sg.grad(sg.grad(lambda t: t ** 3 * sg.sin(t)))(0.7), rel=1e-12)


def test_grad_of_grad_with_array_argument_is_the_hessian_row_sum():
    x = np.linspace(-1.0, 1.0, 5)
    g = sg.grad(lambda z: sg.grad(rosen)(z).sum())(x)
    np.testing.assert_allclose(g, sg.hessian(rosen)(x).sum(axis=0), rtol=1e-12)


# --- hessian, hvp, jvp, jacobian ------------------------------------------------------------------

@pytest.mark.parametrize("name", FUNCTIONS)
def test_hessian_matches_central_differences_of_the_gradient(name):
    f, x = FUNCTIONS[name]
    hess = sg.hessian(f)(x)
    np.testing.assert_allclose(hess, fd_jacobian(sg.grad(f), x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hess, hess.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_hvp_matches_hessian_and_directional_differences(name):
    f, x = FUNCTIONS[name]
    v = np.random.default_rng(2).standard_normal(x.shape)
    hv = sg.hvp(f)(x, v)
    np.testing.assert_allclose(hv, sg.hessian(f)(x) @ v, rtol=1e-11, atol=1e-11)
    g, h = sg.grad(f), 1e-6
    np.testing.assert_allclose(hv, (g(x + h * v) - g(x - h * v)) / (2 * h), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_jvp_matches_directional_differences(name):
    f, x = FUNCTIONS[name]
    v = np.random.default_rng(3).standard_normal(x.shape)
    value, dv = sg.jvp(f)(x, v)
    h = 1e-6
    assert value == pytest.approx(f(x))
    assert dv == pytest.approx((f(x + h * v) - f(x - h * v)) / (2 * h), rel=1e-6, abs=1e-7)
    assert dv == pytest.approx(sg.grad(f)(x) @ v, rel=1e-12, abs=1e-12)


def test_jvp_tape_matches_the_compiled_tangent_sweep():
    f, x = FUNCTIONS["mixed"]
    v = np.array([0.3, -1.0, 2.0])
    t = jvp_tape(optimize(sg.trace(f, x)))
    out = reference.evaluate(t, np.concatenate([x, v]))
    value, dv = sg.jvp(f)(x, v)
    np.testing.assert_allclose(out, [value, dv], rtol=1e-12)


def tall(x):  # 2 inputs, 4 outputs: forward sweeps
    return (x[0] * x[1], sg.exp(x[0]) - x[1], sg.where(x[1] > 0, x[1] ** 2, 0.0), abs(x[0]) / x[1])


def wide(x):  # 4 inputs, 2 outputs as an array: reverse sweeps
    return np.array([x[0] * x[1] + x[2] * x[3], sg.maximum(x[0], x[3]) * sg.tanh(x[2])])


@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
@pytest.mark.parametrize("fun,x", [(tall, np.array([0.6, 1.7])), (wide, np.array([0.6, 1.7, -0.3, 0.2]))],
                         ids=["tall", "wide"])
def test_jacobian_matches_finite_differences(fun, x, mode):
    jac = sg.jacobian(fun, mode=mode)(x)
    expected = fd_jacobian(lambda z: np.array(sg.jit(fun)(z)), x)
    assert jac.shape == expected.shape
    np.testing.assert_allclose(jac, expected, rtol=1e-7, atol=1e-8)


def test_jacobian_shapes_follow_output_and_input_shapes():
    x = np.arange(6.0).reshape(2, 3) / 10.0
    jac = sg.jacobian(lambda z: sg.sin(z) * 2.0)(x)
    assert jac.shape == (2, 3, 2, 3)
    np.testing.assert_allclose(jac.reshape(6, 6), np.diag(2.0 * np.cos(x.reshape(-1))), atol=1e-15)
    assert sg.jacobian(lambda t: t * t)(3.0) == 6.0
    np.testing.assert_allclose(sg.jacobian(rosen)(np.array([0.5, 0.5])), sg.grad(rosen)(np.array([0.5, 0.5])))


def test_transforms_pass_extra_arguments_through():
    def f(x, scale):
        return scale * (x[0] ** 2 * x[1])

    x = np.array([1.5, 2.0])
    np.testing.assert_allclose(sg.hessian(f)(x, 3.0), 3.0 * np.array([[2 * 2.0, 2 * 1.5], [2 * 1.5, 0.0]]))
    np.testing.assert_allclose(sg.hvp(f)(x, np.array([1.0, 0.0]), 3.0), [12.0, 9.0])


def test_symbolic_transforms_of_variables_match_the_compiled_ones():
    f, x = FUNCTIONS["mixed"]
    v = np.array([0.3, -1.0, 2.0])

    def outer(z):
        return (sg.hvp(f)(z, v) * z).sum() + sg.hessian(f)(z)[0, 1] + sg.jvp(f)(z, v)[1] \
            + sg.jacobian(tall)(z[:2])[3, 1]

    value = sg.jit(outer)(x)
    expected = (sg.hvp(f)(x, v) * x).sum() + sg.hessian(f)(x)[0, 1] + sg.jvp(f)(x, v)[1] \
        + sg.jacobian(tall)(x[:2])[3, 1]
    assert value == pytest.approx(expected, rel=1e-12)
    grad = sg.grad(outer)(x)
    np.testing.assert_allclose(grad, fd_jacobian(lambda z: np.array([sg.jit(outer)(z)]), x)[0], rtol=1e-6)


# --- eager create_graph ---------------------------------------------------------------------------

def test_backward_create_graph_gives_differentiable_grads():
    x, y = sg.Variable(0.7), sg.Variable(1.3)
    z = x ** 3 * sg.sin(y) + x * y / (1.0 + y * y)
    z.backward(create_graph=True)
    gx, gy = x.grad, y.grad
    assert isinstance(gx, sg.Variable) and isinstance(gy, sg.Variable)
    f = lambda a, b: a ** 3 * sg.sin(b) + a * b / (1.0 + b * b)  # noqa: E731
    assert (gx.data, gy.data) == pytest.approx(sg.grad(f, argnums=(0, 1))(0.7, 1.3))
    x.zero_grad()
    y.zero_grad()
    gx.backward()
    h = 1e-6
    assert x.grad == pytest.approx((sg.grad(f)(0.7 + h, 1.3) - sg.grad(f)(0.7 - h, 1.3)) / (2 * h), rel=1e-6)
    assert y.grad == pytest.approx((sg.grad(f)(0.7, 1.3 + h) - sg.grad(f)(0.7, 1.3 - h)) / (2 * h), rel=1e-6)


def test_backward_create_graph_to_third_order_and_across_sealed_recorders():
    x = sg.Variable(0.5)
    y = sg.exp(2.0 * x)
    y.backward()  # seals y's recorder: the next op imports y from it
    x.zero_grad()
    z = y * x
    z.backward(create_graph=True)
    g1 = x.grad  # d/dx x e^{2x} = e^{2x} (1 + 2x)
    x.zero_grad()
    g1.backward(create_graph=True)
    g2 = x.grad  # e^{2x} (4 + 4x)
    x.zero_grad()
    g2.backward()
    assert g1.data == pytest.approx(math.exp(1.0) * 2.0)
    assert g2.data == pytest.approx(math.exp(1.0) * 6.0)
    assert x.grad == pytest.approx(math.exp(1.0) * (12.0 + 8.0 * 0.5))


# --- errors ---------------------------------------------------------------------------------------

def test_errors_name_the_transform_and_the_problem():
    with pytest.raises(TypeError, match=r"hessian\(tall\).*must return a scalar.*tuple of 4"):
        sg.hessian(tall)(np.array([0.6, 1.7]))
    with pytest.raises(TypeError, match=r"hvp\(tall\).*must return a scalar"):
        sg.hvp(tall)(np.array([0.6, 1.7]), np.ones(2))
    with pytest.raises(ValueError, match=r"hvp\(rosen\).*direction v has shape \(3,\).*\(2,\)"):
        sg.hvp(rosen)(np.array([0.6, 1.7]), np.ones(3))
    with pytest.raises(ValueError, match="mode must be"):
        sg.jacobian(tall, mode="sideways")
    with pytest.raises(TypeError, match="expects a function"):
        sg.hessian(3.0)
    with pytest.raises(TypeError, match="must return a scalar"):
        sg.jit(lambda x: sg.grad(tall)(x).sum())(np.array([0.6, 1.7]))


# --- SciPy ----------------------------------------------------------------------------------------

def test_scipy_trust_ncg_with_hvp_converges_on_rosenbrock_1000():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    from scalargrad.bench.workloads import make_rosenbrock
    f, x0 = make_rosenbrock(1000)
    result = scipy_optimize.minimize(sg.value_and_grad(f), x0, jac=True, hessp=sg.hvp(f), method="trust-ncg",
                                     options={"gtol": 1e-8})
    assert result.success, result.message
    np.testing.assert_allclose(result.x, np.ones(1000), atol=1e-6)


# --- sparsity -------------------------------------------------------------------------------------

def test_sparse_hessian_of_rosenbrock_is_tridiagonal_with_three_colours():
    pytest.importorskip("scipy.sparse")
    from scalargrad.bench.workloads import make_rosenbrock
    f, x = make_rosenbrock(2000)
    sparse = sg.hessian(f, sparse=True)
    hess = sparse(x)
    assert sparse.colours(x) == 3
    assert hess.shape == (2000, 2000) and hess.nnz == 3 * 2000 - 2
    small = x[:30]
    np.testing.assert_allclose(sg.hessian(f, sparse=True)(small).toarray(), sg.hessian(f)(small), rtol=1e-13)
    v = np.random.default_rng(0).standard_normal(2000)
    np.testing.assert_allclose(hess @ v, sg.hvp(f)(x, v), rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_sparse_hessian_matches_dense(name):
    pytest.importorskip("scipy.sparse")
    f, x = FUNCTIONS[name]
    np.testing.assert_allclose(sg.hessian(f, sparse=True)(x).toarray(), sg.hessian(f)(x), rtol=1e-12, atol=1e-14)


def banded(x):
    return np.array([x[i] * sg.sin(x[i + 1]) - x[i + 2] ** 2 for i in range(len(x) - 2)] + [sg.exp(x[0])])


@pytest.mark.parametrize("fun,x", [(tall, np.array([0.6, 1.7])), (wide, np.array([0.6, 1.7, -0.3, 0.2])),
                                   (banded, np.linspace(-1.0, 1.0, 12))], ids=["tall", "wide", "banded"])
def test_sparse_jacobian_matches_dense_and_finite_differences(fun, x):
    pytest.importorskip("scipy.sparse")
    sparse = sg.jacobian(fun, sparse=True)
    jac = sparse(x)
    np.testing.assert_allclose(jac.toarray(), sg.jacobian(fun)(x).reshape(jac.shape), rtol=1e-13)
    np.testing.assert_allclose(jac.toarray(), fd_jacobian(lambda z: np.array(sg.jit(fun)(z)), x),
                               rtol=1e-7, atol=1e-8)
    if fun is banded:
        assert sparse.colours(x) == 3


def test_sparse_transforms_reject_what_they_cannot_do():
    pytest.importorskip("scipy.sparse")
    def sumsq(z):
        return (z * z).sum()

    with pytest.raises(TypeError, match=r"hessian\(sumsq, sparse=True\): the first argument must be a 1-D array"):
        sg.hessian(sumsq, sparse=True)(np.ones((2, 2)))
    with pytest.raises(TypeError, match="must return a scalar"):
        sg.hessian(tall, sparse=True)(np.ones(2))
    with pytest.raises(TypeError, match="cannot be called inside a traced function"):
        sg.jit(lambda z: sg.hessian(rosen, sparse=True)(z).sum())(np.ones(3))


def test_nested_transforms_see_values_the_inner_function_closes_over():
    # d/dx [d/dy x y^2 at y = x] = d/dx 2 x^2 = 4 x
    assert sg.grad(lambda x: sg.grad(lambda y: x * y * y)(x))(3.0) == pytest.approx(12.0)
    # d/dx [d/dy sin(x y) at y = 1] = d/dx x cos(x) = cos(x) - x sin(x)
    assert sg.grad(lambda x: sg.grad(lambda y: sg.sin(x * y))(1.0))(0.5) == \
        pytest.approx(math.cos(0.5) - 0.5 * math.sin(0.5), rel=1e-12)
    # eagerly, a closed-over leaf receives its gradient through the returned Variable
    x = sg.Variable(2.0)
    r = sg.grad(lambda y: x * y * y)(sg.Variable(3.0))
    r.backward()
    assert (r.data, x.grad) == (12.0, 6.0)  # r = 2 x y, dr/dx = 2 y
    # a transform called on floats inside a trace is folded to constants
    assert sg.jit(lambda z: z * sg.grad(lambda y: y ** 3)(2.0))(1.5) == pytest.approx(18.0)


def test_jvp_of_vector_valued_functions_is_the_jacobian_times_v():
    x, v = np.array([0.6, 1.7]), np.array([0.5, -2.0])
    values, tangents = sg.jvp(tall)(x, v)
    assert isinstance(tangents, tuple) and len(tangents) == 4
    np.testing.assert_allclose(values, sg.jit(tall)(x), rtol=1e-15)
    np.testing.assert_allclose(tangents, sg.jacobian(tall)(x) @ v, rtol=1e-13)
    values, tangents = sg.jvp(wide)(np.array([0.6, 1.7, -0.3, 0.2]), np.ones(4))
    assert tangents.shape == (2,)


def test_hessian_inside_a_trace_sees_closed_over_values():
    # d/da of trace(hessian of a * (x0^2 x1)) = trace of [[2 x1, 2 x0], [2 x0, 0]] = 2 x1
    def outer(a):
        return np.trace(sg.hessian(lambda x: a * x[0] ** 2 * x[1])(np.array([0.3, 1.1])))

    assert sg.grad(outer)(2.0) == pytest.approx(2.2, rel=1e-12)


def test_create_graph_skips_leaves_that_do_not_require_grad():
    x, c = sg.Variable(1.5), sg.Variable(2.0, requires_grad=False)
    (c * x ** 3).backward(create_graph=True)
    assert c.grad is None and x.grad.data == pytest.approx(2.0 * 3 * 1.5 ** 2)


# --- jvp(fun, primals, tangents), as JAX spells it ----------------------------------------------------

def _two_args(x, s):
    return sg.sin(x[0] * s) * x[1] + s * s * x[0], x[1] / s


def test_jvp_with_primals_and_tangents_for_every_argument_matches_finite_differences():
    x, s = np.array([0.4, 1.3]), 0.7
    vx, vs = np.array([0.3, -0.5]), 2.0
    out, tout = sg.jvp(_two_args, (x, s), (vx, vs))
    assert out == _two_args(x, s) and isinstance(tout, tuple)
    h = 1e-6
    plus, minus = _two_args(x + h * vx, s + h * vs), _two_args(x - h * vx, s - h * vs)
    np.testing.assert_allclose(tout, [(p - m) / (2 * h) for p, m in zip(plus, minus)], rtol=1e-7)
    # zero tangents for the other arguments: the first-argument spelling, jvp(fun)(x, v, *args)
    assert sg.jvp(_two_args, [x, s], [vx, 0.0]) == sg.jvp(_two_args)(x, vx, s)
    assert sg.jvp(lambda t: t ** 3, (2.0,), (1.0,)) == (8.0, 12.0)


def test_jvp_with_primals_and_tangents_records_on_variables():
    x, v = sg.Variable(0.5), sg.Variable(1.0)
    value, derivative = sg.jvp(lambda t: sg.exp(t) * t, (x,), (v,))
    derivative.backward()  # d/dx of (e^x (1 + x)) v at v = 1: e^x (2 + x)
    assert value.data == np.exp(0.5) * 0.5 and x.grad == pytest.approx(np.exp(0.5) * 2.5, rel=1e-14)


@pytest.mark.parametrize("primals, tangents, error, match", [
    ((np.ones(2), 1.0), (np.ones(2),), ValueError, "2 primals but 1 tangents"),
    ((np.ones(2), 1.0), (np.ones(3), 0.0), ValueError, r"tangent 0 has shape \(3,\), but primal 0 has shape \(2,\)"),
    (np.ones(2), np.ones(2), TypeError, "must be tuples"),
])
def test_jvp_with_primals_and_tangents_names_what_is_wrong(primals, tangents, error, match):
    with pytest.raises(error, match=match):
        sg.jvp(_two_args, primals, tangents)
    with pytest.raises(TypeError, match="needs both primals and tangents"):
        sg.jvp(_two_args, (np.ones(2), 1.0))


def test_jvp_with_primals_keeps_the_paths_of_a_bounded_number_of_functions():
    from scalargrad.transforms import derivatives
    g = lambda t: t * t  # noqa: E731
    sg.jvp(g, (1.0,), (1.0,))
    sg.jvp(g, (3.0,), (1.0,))
    assert len(derivatives._JVPS[g].cache) == 1  # one traced signature, reused
    for i in range(derivatives.MAX_JVP_FUNCTIONS + 5):
        sg.jvp(lambda t, i=i: t * i, (1.0,), (1.0,))
    assert len(derivatives._JVPS) == derivatives.MAX_JVP_FUNCTIONS and g not in derivatives._JVPS
