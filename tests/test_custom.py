"""User-defined ops (sg.custom_op): recorded, compiled, composed with every transform, checked
against finite differences and against the reference sweeps; registration errors are clear."""
from __future__ import annotations

import math
import pickle

import numba
import numpy as np
import pytest

import scalargrad as sg
from scalargrad.record import custom
from scalargrad.core import reference
from scalargrad.jit import cuda, kernels, tier
from scalargrad.core.ops import CUSTOM_ROWS, OPCODE
from scalargrad.jit.passes import cse, fold_constants
from scalargrad.core.tape import Tape


@numba.njit
def _logistic(x):
    return 1.0 / (1.0 + math.exp(-x))


# logistic has a plain partial: differentiable once. softplus has logistic as its partial: twice.
logistic = sg.custom_op("test_logistic", _logistic, [lambda x: _logistic(x) * (1.0 - _logistic(x))])
softplus = sg.custom_op("test_softplus", lambda x: math.log1p(math.exp(x)), [logistic])
hypot = sg.custom_op("test_hypot", lambda a, b: math.sqrt(a * a + b * b),
                     [lambda a, b: a / math.sqrt(a * a + b * b), lambda a, b: b / math.sqrt(a * a + b * b)])
recip = sg.custom_op("test_recip", lambda x: 1.0 / x, [lambda x: -1.0 / (x * x)])


def f(x):  # every custom op, mixed with built-in and literal ops
    s = 0.0
    for i in range(len(x) - 1):
        s = s + softplus(x[i]) * x[i + 1] + hypot(x[i], 2.0 * x[i + 1]) ** 1.5 + logistic(x[i + 1] - x[i])
    return s + recip(x[0] + 3.0)


def smooth(x):  # custom ops that can be differentiated twice
    return sum(softplus(x[i]) * sg.sin(x[i + 1]) for i in range(len(x) - 1)) + softplus(x[0] * x[-1])


def central_gradient(fun, x, eps=1e-6):
    x = np.asarray(x, dtype=np.float64)
    return np.array([(fun(x + eps * e) - fun(x - eps * e)) / (2 * eps) for e in np.eye(len(x))])


X0 = np.array([0.3, -0.7, 1.1, 0.5])


# --- values and first derivatives --------------------------------------------------------------------

def test_plain_calls_use_the_compiled_functions():
    assert softplus(0.3) == math.log1p(math.exp(0.3))
    assert hypot(3.0, 4.0) == 5.0
    np.testing.assert_array_equal(softplus(np.array([0.0, 1.0])), [math.log(2.0), math.log1p(math.e)])
    assert recip(0.0) == math.inf  # IEEE, as the built-in ops: no ZeroDivisionError


def test_gradient_matches_finite_differences_and_the_reference_sweeps():
    value, g = sg.value_and_grad(f)(X0)
    assert value == pytest.approx(f(X0), rel=1e-15)
    np.testing.assert_allclose(g, central_gradient(f, X0), rtol=1e-7, atol=1e-8)
    tape = sg.trace(f, X0)
    ref_value, ref_grad = reference.value_and_grad(tape, X0)
    assert value == ref_value
    np.testing.assert_array_equal(g, ref_grad)  # the same compiled functions, called two ways


def test_jit_and_eager_backward():
    assert sg.jit(f)(X0) == pytest.approx(f(X0), rel=1e-15)
    xs = [sg.Variable(v) for v in X0]
    y = f(xs)
    y.backward()
    np.testing.assert_allclose([v.grad for v in xs], central_gradient(f, X0), rtol=1e-7, atol=1e-8)


def test_tape_listing_names_the_op():
    text = str(sg.trace(lambda a, b: hypot(softplus(a), b), 1.0, 2.0))
    assert "= test_softplus %0" in text and "= test_hypot %2 %1" in text


# --- higher order and forward mode ---------------------------------------------------------------------

def test_second_derivatives_through_partials_that_are_custom_ops():
    g = sg.grad(smooth)
    H = sg.hessian(smooth)(X0)
    np.testing.assert_allclose(H, np.array([central_gradient(lambda x: g(x)[i], X0) for i in range(4)]),
                               rtol=1e-6, atol=1e-7)
    v = np.array([1.0, -2.0, 0.5, 3.0])
    np.testing.assert_allclose(sg.hvp(smooth)(X0, v), H @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sg.hessian(smooth, sparse=True)(X0).toarray(), H, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(sg.vmap(sg.hessian(smooth))(np.stack([X0, X0])), [H, H])
    d2 = sg.grad(sg.grad(lambda t: softplus(t)))(0.4)
    assert d2 == pytest.approx((logistic(0.4 + 1e-6) - logistic(0.4 - 1e-6)) / 2e-6, rel=1e-7)


def test_eager_create_graph():
    t = sg.Variable(0.4)
    softplus(t).backward(create_graph=True)
    first = t.grad
    t.zero_grad()
    first.backward()
    assert t.grad == pytest.approx(_logistic(0.4) * (1 - _logistic(0.4)), rel=1e-15)


def test_a_plain_partial_cannot_be_differentiated_again():
    with pytest.raises(NotImplementedError, match=r"hessian\(f\): custom op '(test_\w+)\.d0' cannot be "
                                                  r"differentiated: it is partial 0 of '\1'"):
        sg.hessian(f)(X0)
    with pytest.raises(NotImplementedError, match="test_logistic.d0"):
        sg.grad(sg.grad(logistic))(0.3)
    t = sg.Variable(0.3)
    logistic(t).backward(create_graph=True)
    with pytest.raises(NotImplementedError, match="backward.*test_logistic.d0"):
        t.grad.backward()
    # Evaluating such a derivative is fine: jit of a gradient never differentiates it.
    assert sg.jit(sg.grad(logistic))(0.3) == pytest.approx(_logistic(0.3) * (1 - _logistic(0.3)), rel=1e-15)


def test_a_plain_partial_that_traces_is_differentiable_to_any_order():
    """A partial written with operators only (Numba compiles it, and it traces) records its own ops
    when differentiated again: Hessians, third derivatives and eager create_graph, checked against
    finite differences."""
    cube = sg.custom_op("test_traced_cube", lambda a: a ** 3, [lambda a: 3.0 * a * a])
    glue = sg.custom_op("test_traced_glue", lambda a, b: a / (1.0 + b * b),
                        [lambda a, b: 1.0 / (1.0 + b * b), lambda a, b: -2.0 * a * b / ((1.0 + b * b) ** 2)])

    def fun(x):
        return cube(x[0]) * x[1] + glue(x[1], x[0])

    x = np.array([0.7, -1.3])
    H = sg.hessian(fun)(x)
    fd = np.array([central_gradient(lambda z, i=i: sg.grad(fun)(z)[i], x) for i in range(2)])
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-8)
    assert sg.grad(sg.grad(sg.grad(cube)))(0.7) == pytest.approx(6.0, rel=1e-14)
    t = sg.Variable(0.7)
    cube(t).backward(create_graph=True)
    g = t.grad
    t.grad = None
    g.backward()
    assert t.grad == pytest.approx(6.0 * 0.7, rel=1e-14)


def test_functions_written_with_sg_functions_compile_and_their_partials_differentiate_to_any_order():
    """sg.<op> functions inside the functions of a custom op: Numba compiles them (the table's forward
    expressions), the values are the table ops' own, and a partial written with them records its
    ops when differentiated again; derivatives of orders 1-3 against finite differences."""
    softplus2 = sg.custom_op("test_sg_softplus", lambda x: sg.log1p(sg.exp(x)), [lambda x: sg.sigmoid(x)])
    smooth_max = sg.custom_op("test_sg_smooth_max", lambda a, b: sg.logaddexp(a, b),
                              [lambda a, b: sg.sigmoid(a - b), lambda a, b: sg.sigmoid(b - a)])
    ramp = sg.custom_op("test_sg_ramp", lambda x: sg.where(sg.gt(x, 0.0), x, 0.0) + sg.floor(x) * 0.0,
                        [lambda x: sg.where(sg.gt(x, 0.0), 1.0, 0.0)])
    for x in (-1.3, 0.2, 2.5):
        assert softplus2(x) == sg.log1p(sg.exp(x)) and sg.grad(softplus2)(x) == sg.sigmoid(x)
        assert ramp(x) == max(x, 0.0) and sg.grad(ramp)(x) == (1.0 if x > 0 else 0.0)
        d2 = sg.grad(sg.grad(softplus2))(x)
        d3 = sg.grad(sg.grad(sg.grad(softplus2)))(x)
        assert d2 == pytest.approx(central_gradient(lambda z: sg.grad(softplus2)(z[0]), np.array([x]))[0], rel=1e-7)
        assert d3 == pytest.approx(central_gradient(lambda z: sg.grad(sg.grad(softplus2))(z[0]), np.array([x]))[0],
                                   rel=1e-6)

    def fun(v):
        return smooth_max(v[0], v[1]) * v[2] + softplus2(v[0] * v[2])

    v = np.array([0.3, -0.4, 1.1])
    np.testing.assert_allclose(sg.grad(fun)(v), central_gradient(fun, v), rtol=1e-7, atol=1e-9)
    H = sg.hessian(fun)(v)
    fd = np.array([central_gradient(lambda z, i=i: sg.grad(fun)(z)[i], v) for i in range(3)])
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-8)


def test_jvp_and_jacobian_in_both_modes():
    v = np.array([0.2, 1.0, -1.0, 0.5])
    value, dv = sg.jvp(f)(X0, v)
    assert dv == pytest.approx(sg.grad(f)(X0) @ v, rel=1e-13)

    def wide(x):  # 2 outputs of 4 inputs: reverse sweeps; tall: 6 outputs of 2 inputs, tangent sweeps
        return [hypot(x[0], x[1]) * x[2], softplus(x[3]) + recip(x[0] + 2.0)]

    def tall(x):
        return [hypot(x[0], x[1]), softplus(x[0]), logistic(x[1]), recip(x[0] + 2.0), x[0] * x[1], x[1]]

    for fun, x in ((wide, X0), (tall, X0[:2])):
        J = sg.jacobian(fun)(x)
        fd = np.array([central_gradient(lambda z: np.array(fun(z), dtype=float)[i], x) for i in range(J.shape[0])])
        np.testing.assert_allclose(J, fd, rtol=1e-7, atol=1e-8)


# --- batches, embedding, storage -----------------------------------------------------------------------

@pytest.mark.slow  # 14 s: compiles the batch interpreter with custom-op calls
def test_vmap_agrees_with_single_points():
    X = np.random.default_rng(0).uniform(-1, 1, (37, 4))
    values, G = sg.vmap(sg.value_and_grad(f))(X)
    vg = sg.value_and_grad(f)
    for p in (0, 17, 36):
        value, g = vg(X[p])
        assert values[p] == value
        np.testing.assert_array_equal(G[p], g)


def test_compiled_kernel_runs_inside_njit_code():
    k = sg.value_and_grad(f).compile(X0)

    @numba.njit
    def descend(k, x, steps):
        g = np.empty_like(x)
        work = np.empty(k_size)
        for _ in range(steps):
            k(x, g, work)
            x = x - 0.01 * g
        return x

    k_size = k.workspace_size
    x = X0.copy()
    g = np.empty(4)
    for _ in range(3):
        sg.value_and_grad(f)(x)
        k(x, g)
        x = x - 0.01 * g
    np.testing.assert_array_equal(descend(k, X0.copy(), 3), x)


def test_pickle_and_saved_tapes_find_their_ops_by_name(tmp_path):
    tape = sg.trace(f, X0)
    assert pickle.loads(pickle.dumps(tape)) == tape
    program = pickle.loads(pickle.dumps(kernels.Program(tape)))  # rebuilt: addresses are per process
    out = np.empty(1)
    assert kernels.evaluate(program.ins, program.lit, program.io, X0, out, program.workspace())
    assert out[0] == sg.jit(f)(X0)
    tape.save(tmp_path / "f.sgt")
    assert Tape.load(tmp_path / "f.sgt") == tape
    assert pickle.loads(pickle.dumps(softplus)) is softplus  # ops pickle by name
    with pytest.raises(ValueError, match="custom op 'test_nowhere' is not registered"):
        custom.registered("test_nowhere")


def test_an_unregistered_op_is_refused_before_running():
    tape = Tape(op=[0, OPCODE["custom1"]], a=[-1, 0], b=[-1, -1], c=[-1, -1], lit=[0.0, 12345.0],
                inputs=[0], outputs=[1])
    assert "custom#12345.0 %0" in str(tape)
    with pytest.raises(ValueError, match="instruction 1: custom op id 12345.0 is not registered"):
        kernels.Program(tape)
    unary_as_binary = Tape(op=[0, OPCODE["custom2"]], a=[-1, 0], b=[-1, 0], c=[-1, -1],
                           lit=[0.0, float(softplus.id)], inputs=[0], outputs=[1])
    with pytest.raises(ValueError, match="'test_softplus' takes 1 operand"):
        kernels.Program(unary_as_binary)


def test_passes_merge_and_fold_custom_calls():
    unary = CUSTOM_ROWS[1]
    #             x      2.0    sp(x)   sp(x)   sp(2.0) sp*sp   +
    tape = Tape(op=[0, OPCODE["const"], unary, unary, unary, OPCODE["mul"], OPCODE["add"]],
                a=[-1, -1, 0, 0, 1, 2, 5], b=[-1, -1, -1, -1, -1, 3, 4], c=[-1] * 7,
                lit=[0.0, 2.0] + [float(softplus.id)] * 3 + [0.0, 0.0], inputs=[0], outputs=[6])
    custom_count = lambda t: int(np.isin(t.op, list(CUSTOM_ROWS.values())).sum())  # noqa: E731
    assert custom_count(cse(tape)) == 2
    folded = fold_constants(tape)
    assert custom_count(folded) == 2 and softplus(2.0) in folded.lit
    program = kernels.Program(folded)
    out = np.empty(1)
    kernels.evaluate(program.ins, program.lit, program.io, np.array([0.5]), out, program.workspace())
    assert out[0] == softplus(0.5) * softplus(0.5) + softplus(2.0)


def test_generated_code_and_gpus_refuse_custom_ops():
    with pytest.raises(ValueError, match="backend='codegen'.*custom op 'test_softplus'"):
        sg.value_and_grad(smooth, backend="codegen")(X0)
    program = kernels.Program(sg.trace(smooth, X0))
    assert tier.Tier(program.tape, "value_and_grad", "auto").started  # auto never tiers up
    with pytest.raises(ValueError, match="device='cuda' cannot run custom op 'test_softplus'"):
        cuda.value_and_grad(program, X0[None, :])


def test_random_programs_agree_with_the_reference_sweeps():
    """Random mixes of custom and built-in ops, literals included: the literal pool must map each
    instruction to its own op."""
    rng = np.random.default_rng(7)
    unary = [softplus, logistic, sg.sin, sg.tanh, lambda v: v ** 3.0]
    binary = [hypot, sg.add, sg.mul, lambda u, v: hypot(v, u) * 0.5]
    for trial in range(20):
        choices = rng.integers(0, 100, size=(30, 3))

        def program(x):
            vals = list(x)
            for kind, i, j in choices:
                a, b = vals[i % len(vals)], vals[j % len(vals)]
                vals.append(unary[kind % len(unary)](a) if kind < 50 else binary[kind % len(binary)](a, b))
            return vals[-1] + vals[-2]

        x = rng.uniform(-1.5, 1.5, 3)
        tape = sg.trace(program, x)
        value, g = sg.value_and_grad(program)(x)
        ref_value, ref_grad = reference.value_and_grad(tape, x)
        # NumPy's and libm's sin/cos may differ in the last bit, and the passes reorder sums.
        np.testing.assert_allclose(value, ref_value, rtol=1e-13)
        np.testing.assert_allclose(g, ref_grad, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(g, central_gradient(program, x), rtol=1e-6, atol=1e-6)


def test_an_exception_in_a_compiled_sweep_gives_nan_not_a_silent_value():
    def checked_sqrt(x):
        if x < 0.0:
            raise ValueError("negative input")
        return math.sqrt(x)

    op = sg.custom_op("test_checked_sqrt", checked_sqrt, [lambda x: 0.5 / math.sqrt(x)])
    with pytest.raises(ValueError, match="negative input"):  # Python-level calls raise
        op(-1.0)
    vg = sg.value_and_grad(lambda x: op(x) * 2.0)
    assert vg(4.0) == (4.0, 0.5)
    value, g = vg(-1.0)  # the compiled sweep: NaN, where Numba alone would print and give 0.0
    assert math.isnan(value) and math.isnan(g)
    with pytest.raises(ValueError, match="negative input"):  # debug_nans reruns it in Python
        sg.value_and_grad(lambda x: op(x) * 2.0, debug_nans=True)(-1.0)


# --- registration --------------------------------------------------------------------------------------

def test_registering_the_same_functions_again_returns_the_op():
    fwd, d = (lambda x: 2.0 * x), (lambda x: 2.0)
    op = sg.custom_op("test_double", fwd, [d])
    assert sg.custom_op("test_double", fwd, [d]) is op


def test_registering_a_name_again_replaces_it_in_functions_already_traced():
    """A notebook cell defining an op, edited and run again: the new definition, with a warning, in
    the single-point, batch and eager paths traced before it; the operand count cannot change."""
    op = sg.custom_op("test_cell", lambda x: x ** 3, [lambda x: 3.0 * x ** 2])
    vg = sg.value_and_grad(lambda x: op(x[0]) * x[1])
    batch = sg.vmap(sg.value_and_grad(lambda x: op(x[0]) * x[1]))
    x, X = np.array([2.0, 3.0]), np.array([[2.0, 3.0], [0.5, 4.0]])
    value, g = vg(x)
    assert value == 24.0 and g.tolist() == [36.0, 8.0]
    batch(X)
    with pytest.warns(RuntimeWarning, match="'test_cell' was registered before with other functions"):
        new = sg.custom_op("test_cell", lambda x: x * x, [lambda x: 2.0 * x])
    value, g = vg(x)
    assert value == 12.0 and g.tolist() == [12.0, 4.0]
    values, G = batch(X)
    assert values.tolist() == [12.0, 1.0] and G.tolist() == [[12.0, 4.0], [4.0, 0.25]]
    v = sg.Variable(1.5)
    y = new(v) * 2.0
    y.backward()
    assert v.grad == 6.0
    np.testing.assert_allclose(g, central_gradient(lambda z: z[0] ** 2 * z[1], x), rtol=1e-6)
    with pytest.raises(ValueError, match="'test_cell' is registered with 1 operand.*choose another name"):
        sg.custom_op("test_cell", lambda a, b: a * b, [lambda a, b: b, lambda a, b: a])
    assert custom.registered("test_cell") is new


def test_a_function_numba_cannot_compile_is_a_clear_error_and_registers_nothing():
    with pytest.raises(TypeError, match=r"forward function of 'test_tuple' \(<lambda>\) cannot be compiled"):
        sg.custom_op("test_tuple", lambda x: (x, x), [lambda x: 1.0])
    with pytest.raises(TypeError, match="partial 1 of 'test_half'.*cannot be compiled"):
        sg.custom_op("test_half", lambda a, b: a * b, [lambda a, b: b, lambda a, b: [a]])
    op = sg.custom_op("test_half", lambda a, b: a * b, [lambda a, b: b, lambda a, b: a])  # the name is free
    assert op(3.0, 4.0) == 12.0


@pytest.mark.parametrize("args, error, match", [
    (("bad name", lambda x: x, [lambda x: 1.0]), ValueError, "name must be an identifier"),
    (("test_a", lambda x, y, z: x, [None] * 3), ValueError, "must take 1 or 2 float arguments, takes 3"),
    (("test_b", lambda x: x, [lambda x: 1.0, lambda x: 1.0]), ValueError, "partials needs 1 function, got 2"),
    (("test_c", lambda x: x, lambda x: 1.0), TypeError, "partials must be a list"),
    (("test_d", lambda a, b: a, [lambda a: 1.0, lambda a, b: 0.0]), ValueError, "partial 0 must take 2 arguments"),
    (("test_e", lambda a, b: a, [softplus, softplus]), ValueError, "custom op 'test_softplus' with 1 operand"),
    (("test_f", 3.0, [lambda x: 1.0]), TypeError, "forward must be a function"),
])
def test_bad_registrations(args, error, match):
    with pytest.raises(error, match=match):
        sg.custom_op(*args)


def test_calling_with_the_wrong_number_of_arguments():
    with pytest.raises(TypeError, match="custom op 'test_hypot' takes 2 arguments, got 1"):
        hypot(1.0)
    with pytest.raises(TypeError, match="custom op 'test_softplus': operand 0 must be a Variable, a real number"):
        softplus("x")
