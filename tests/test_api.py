"""The function transforms: ``grad``, ``value_and_grad``, ``jit``, ``trace``: results, argument and
output structure, guards and retracing, caching, and the errors users meet."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import scipy.optimize

import scalargrad as sg
from helpers import central_diff


def sum_of_squares(x, y):
    return x * x + y * y


def rosen(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def _n_paths(transformed) -> int:
    """Control-flow paths cached by a transformed function, over all argument structures."""
    vg = getattr(transformed, "value_and_grad", transformed)
    return sum(len(getattr(entry, "paths", entry)) for entry in vg.cache.values())


# --- results -----------------------------------------------------------------------------------------

def test_grad_of_sum_of_squares():
    assert sg.grad(sum_of_squares)(2.0, 3.0) == 4.0


def test_value_and_grad_with_tuple_argnums():
    assert sg.value_and_grad(sum_of_squares, argnums=(0, 1))(2.0, 3.0) == (13.0, (4.0, 6.0))


def test_grad_with_one_element_tuple_argnums_returns_a_tuple():
    assert sg.grad(sum_of_squares, argnums=(1,))(2.0, 3.0) == (6.0,)


def test_grad_with_int_argnums_selects_that_argument():
    assert sg.grad(sum_of_squares, argnums=1)(2.0, 3.0) == 6.0
    assert sg.grad(sum_of_squares, argnums=-1)(2.0, 3.0) == 6.0


def test_argnums_order_is_kept():
    assert sg.grad(lambda x, y, z: x + 2.0 * y + 3.0 * z, argnums=(2, 0))(1.0, 1.0, 1.0) == (3.0, 1.0)


def test_decorator_forms():
    @sg.grad
    def g(x):
        return x ** 3.0

    @sg.value_and_grad(argnums=1)
    def vg(x, y):
        return x * y

    @sg.jit
    def j(x):
        return x + 1.0

    assert g(2.0) == pytest.approx(12.0, rel=1e-15)
    assert vg(2.0, 5.0) == (10.0, 2.0)
    assert j(1.0) == 2.0
    assert g.__name__ == "g"


def test_scalar_arguments_give_python_floats():
    value, grads = sg.value_and_grad(sum_of_squares, argnums=(0, 1))(2, np.float64(3.0))
    assert type(value) is float
    assert all(type(g) is float for g in grads)
    assert type(sg.grad(sum_of_squares)(2.0, 3.0)) is float


def _sum_of_squares_any_shape(a):
    return sum(v * v for v in np.asarray(a, dtype=object).flat)


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (1, 2, 2)], ids=str)
def test_array_arguments_give_float64_gradients_of_the_same_shape(shape):
    a = np.arange(1.0, 1.0 + np.prod(shape, dtype=int)).reshape(shape)
    value, g = sg.value_and_grad(_sum_of_squares_any_shape)(a)
    assert type(value) is float and value == float((a * a).sum())
    assert isinstance(g, np.ndarray) and g.dtype == np.float64 and g.shape == shape
    np.testing.assert_array_equal(g, 2 * a)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.uint8, np.float16])
def test_float32_and_integer_arrays_are_accepted_with_float64_gradients(dtype):
    a = np.array([1, 2, 3], dtype=dtype)
    value, g = sg.value_and_grad(_sum_of_squares_any_shape)(a)
    assert value == 14.0
    assert g.dtype == np.float64 and g.shape == (3,)
    np.testing.assert_array_equal(g, [2.0, 4.0, 6.0])


def test_numpy_sum_inside_a_traced_function_works_for_a_0d_array():
    value, g = sg.value_and_grad(lambda a: np.sum(a * a))(np.array(3.0))
    assert value == 9.0 and g.shape == () and g == 6.0


def test_mixed_scalar_and_array_arguments():
    f = lambda s, v, m: s * np.sum(v) + np.sum(m * m)  # noqa: E731
    s, v, m = 2.0, np.array([1.0, 2.0]), np.ones((2, 2))
    value, (gs, gv, gm) = sg.value_and_grad(f, argnums=(0, 1, 2))(s, v, m)
    assert value == 10.0
    assert type(gs) is float and gs == 3.0
    np.testing.assert_array_equal(gv, [2.0, 2.0])
    np.testing.assert_array_equal(gm, 2.0 * m)


def test_rosenbrock_value_and_gradient():
    x = np.zeros(1000)
    value, g = sg.value_and_grad(rosen)(x)
    assert value == 999.0
    np.testing.assert_allclose(g, scipy.optimize.rosen_der(x), rtol=1e-14, atol=0)
    x = np.random.default_rng(0).uniform(-2.0, 2.0, 1000)
    value, g = sg.value_and_grad(rosen)(x)
    assert value == pytest.approx(scipy.optimize.rosen(x), rel=1e-12)
    np.testing.assert_allclose(g, scipy.optimize.rosen_der(x), rtol=1e-12, atol=1e-10)


def test_scipy_minimize_with_value_and_grad_converges():
    result = scipy.optimize.minimize(sg.value_and_grad(rosen), np.zeros(50), jac=True, method="L-BFGS-B")
    assert result.success
    np.testing.assert_allclose(result.x, np.ones(50), atol=1e-4)


def test_gradient_matches_finite_differences_of_a_composite_function():
    def f(x, y):
        return sg.tanh(x * y) + sg.log1p(x * x) / (1.0 + y ** 2) - sg.maximum(x, y) * sg.sigmoid(y)

    rng = np.random.default_rng(7)
    vg = sg.value_and_grad(f, argnums=(0, 1))
    for x, y in rng.uniform(-2, 2, (5, 2)):
        value, grads = vg(x, y)
        h = 1e-6
        fd = ((f(x + h, y) - f(x - h, y)) / (2 * h), (f(x, y + h) - f(x, y - h)) / (2 * h))
        assert value == pytest.approx(f(x, y), rel=1e-14)
        np.testing.assert_allclose(grads, fd, rtol=1e-6, atol=1e-8)


# --- jit ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("f, args", [
    (lambda x, y: x * y - x / y, (2.0, 3.0)),
    (lambda x: sg.sin(x) * sg.exp(-x * x), (0.3,)),
    (lambda x: 3.0, (1.0,)),
    (lambda x: sg.where(x > 0.0, x, -x), (-2.0,)),
], ids=["arith", "transcendental", "constant", "where"])
def test_jit_equals_the_function_on_floats(f, args):
    compiled = sg.jit(f)
    result = compiled(*args)
    assert type(result) is float
    assert result == pytest.approx(f(*args), rel=1e-15, abs=0)


def test_jit_tuple_list_and_array_outputs():
    t = sg.jit(lambda x, y: (x * y, x + y))(2.0, 3.0)
    assert type(t) is tuple and t == (6.0, 5.0)
    lst = sg.jit(lambda x, y: [x - y, 1.0])(2.0, 3.0)
    assert type(lst) is list and lst == [-1.0, 1.0]
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = sg.jit(lambda m: m * 2.0 + 1.0)(a)
    assert isinstance(out, np.ndarray) and out.shape == (2, 2) and out.dtype == np.float64
    np.testing.assert_array_equal(out, a * 2.0 + 1.0)


def test_trace_returns_a_tape():
    tape = sg.trace(sum_of_squares, 2.0, 3.0)
    assert isinstance(tape, sg.Tape)
    assert len(tape.inputs) == 2 and len(tape.outputs) == 1


# --- guards and retracing ---------------------------------------------------------------------------------

def _h(x):
    return x * 2 if x > 0 else -3 * x


def test_branches_retrace_and_are_never_silently_wrong():
    h_grad = sg.grad(_h)
    assert [h_grad(x) for x in (1.0, -1.0, 2.0, -5.0)] == [2.0, -3.0, 2.0, -3.0]
    assert _n_paths(h_grad) == 2


def test_jit_branches_retrace():
    h = sg.jit(_h)
    assert [h(x) for x in (1.0, -1.0, 2.0, -5.0, 0.0)] == [2.0, 3.0, 4.0, 15.0, -0.0]
    assert _n_paths(h) == 2


def test_while_loop_with_different_trip_counts():
    def halve(x):
        while x > 1:
            x = x / 2
        return x

    vg = sg.value_and_grad(halve)
    for x, trips in [(5.0, 3), (1.5, 1), (0.5, 0), (3.0, 2), (7.0, 3)]:
        value, g = vg(x)
        assert value == x / 2 ** trips
        assert g == 1 / 2 ** trips
    assert _n_paths(vg) == 4  # 7.0 reuses the path traced at 5.0


def test_where_masks_the_gradient_of_the_branch_not_taken():
    g = sg.grad(lambda x: sg.where(x > 0, sg.sqrt(x), 0.0))
    assert g(0.0) == 0.0
    assert g(-1.0) == 0.0
    assert g(4.0) == 0.25


def test_guard_on_truthiness_of_a_traced_value():
    g = sg.grad(lambda x: x * 3.0 if x - 1.0 else x * 5.0)
    assert (g(2.0), g(1.0), g(0.0)) == (3.0, 5.0, 3.0)


def test_nan_input_takes_the_branch_python_would():
    h = sg.jit(_h)
    assert h(1.0) == 2.0
    assert math.isnan(h(float("nan")))  # nan > 0 is False: the -3 * x path
    assert _n_paths(h) == 2


# --- caching ---------------------------------------------------------------------------------------------

def test_same_structure_traces_once_and_new_shapes_retrace():
    calls = 0

    def f(x):
        nonlocal calls
        calls += 1
        return np.sum(x * x) if isinstance(x, np.ndarray) else x * x

    for transform in (sg.jit, sg.grad, sg.value_and_grad):
        calls = 0
        tf = transform(f)
        tf(1.0)
        tf(2.0)
        tf(-3.0)
        assert calls == 1, transform.__name__
        tf(np.ones(3))
        tf(np.arange(3.0))
        assert calls == 2, transform.__name__
        tf(np.ones(4))
        assert calls == 3, transform.__name__
        tf(np.ones((2, 2)))
        assert calls == 4, transform.__name__
        tf(5.0)
        assert calls == 4, transform.__name__


def test_cached_result_uses_the_new_argument_values():
    g = sg.grad(lambda x, y: x * sg.sin(y), argnums=(0, 1))
    for x, y in [(1.0, 2.0), (3.0, -1.0), (0.5, 0.25)]:
        gx, gy = g(x, y)
        assert gx == pytest.approx(math.sin(y), rel=1e-15)
        assert gy == pytest.approx(x * math.cos(y), rel=1e-15)


# --- tracing errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("f", [
    lambda x: float(x),
    lambda x: int(x),
    lambda x: [1.0, 2.0][x],
    lambda x: math.exp(x),
    lambda x: round(x),
    lambda x: math.floor(x),
], ids=["float", "int", "list-index", "math.exp", "round", "math.floor"])
def test_concrete_use_of_a_traced_value_raises_tracing_error(f):
    with pytest.raises(sg.TracingError) as info:
        sg.grad(f)(1.0)
    assert isinstance(info.value, TypeError)
    assert "sg." in str(info.value)  # says what to use instead


_TABLE = np.arange(5.0)


def _index_after_a_handled_one(x):
    try:
        _TABLE[x]
    except IndexError:
        pass
    return _TABLE[1.5] * x  # an IndexError of its own: not the traced index's


@pytest.mark.parametrize("f", [lambda x: _TABLE[x], lambda x: np.ones((3, 3))[x * 2.0, 0], lambda x: np.zeros(x).sum()],
                         ids=["index", "index-tuple", "np.zeros"])
def test_traced_value_as_numpy_index_raises_tracing_error(f):
    # NumPy replaces the TracingError raised by __index__ with its own IndexError or TypeError; the
    # tracer raises the TracingError again, from NumPy's error.
    for transform in (sg.jit, sg.grad):
        with pytest.raises(sg.TracingError, match="^Using as an index or int of a traced value") as info:
            transform(f)(2.0)
        assert isinstance(info.value.__cause__, (IndexError, TypeError))
    with pytest.raises(IndexError, match="only integers"):
        sg.jit(_index_after_a_handled_one)(2.0)


def test_data_of_a_traced_value_raises_tracing_error():
    with pytest.raises(sg.TracingError):
        sg.jit(lambda x: (x * 2.0).data)(1.0)


def test_variable_created_outside_the_traced_function_raises():
    v = sg.Variable(2.0)
    with pytest.raises(sg.TracingError, match="argument"):
        sg.grad(lambda x: x * v)(1.0)


def test_variable_created_inside_the_traced_function_is_a_constant():
    g = sg.value_and_grad(lambda x: x * sg.Variable(3.0))
    assert g(2.0) == (6.0, 3.0)
    assert g(5.0) == (15.0, 3.0)


def test_backward_inside_a_traced_function_raises():
    def f(x):
        y = x * 2.0
        y.backward()
        return y

    with pytest.raises(sg.TracingError):
        sg.grad(f)(1.0)


def test_traced_value_escaping_the_function_cannot_be_used():
    leaked = []

    def f(x):
        y = x * 2.0
        leaked.append(y)
        return y

    sg.grad(f)(1.0)
    with pytest.raises(sg.TracingError):
        leaked[0] * 3.0


# --- argument errors --------------------------------------------------------------------------------------

def test_wrong_number_of_arguments():
    with pytest.raises(TypeError):
        sg.grad(sum_of_squares)(1.0)
    with pytest.raises(TypeError):
        sg.jit(sum_of_squares)(1.0, 2.0, 3.0)


def test_string_argument_names_the_argument():
    with pytest.raises(TypeError, match="'y'"):
        sg.grad(sum_of_squares)(1.0, "2.0")


@pytest.mark.parametrize("bad", [1 + 2j, np.complex128(1.0), True, np.bool_(False), [1.0, "2"], {"a": 1j}],
                         ids=["complex", "np-complex", "bool", "np-bool", "list-with-str", "dict-with-complex"])
def test_non_real_scalar_arguments_raise_type_error(bad):
    # (None, lists and dicts are pytrees: their leaves must be numbers)
    with pytest.raises(TypeError, match="argument 0"):
        sg.grad(lambda x: x * 2.0)(bad)


@pytest.mark.parametrize("bad", [np.array([1j, 2.0]), np.array([1.0, None], dtype=object),
                                 np.array(["a", "b"]), np.array([True, False])],
                         ids=["complex", "object", "str", "bool"])
def test_non_real_arrays_raise_type_error(bad):
    with pytest.raises(TypeError, match="argument 0"):
        sg.grad(lambda a: np.sum(a))(bad)


def test_variable_argument_records_symbolically():
    # Variables used to raise TypeError; since issue 5 they record (tests/test_transforms.py)
    g = sg.grad(lambda x: x * x * 2.0)(sg.Variable(1.5))
    assert isinstance(g, sg.Variable) and g.data == 6.0


@pytest.mark.parametrize("f", [lambda x: np.array([x, x]), lambda x: (x, x), lambda x: [x]],
                         ids=["array", "tuple", "list"])
def test_grad_of_a_non_scalar_output_raises_type_error(f):
    with pytest.raises(TypeError, match="scalar"):
        sg.grad(f)(1.0)


def test_non_numeric_output_raises_type_error():
    with pytest.raises(TypeError, match="scalar"):
        sg.jit(lambda x: "x")(1.0)


def test_output_independent_of_the_inputs_has_zero_gradient():
    assert sg.grad(lambda x: 3.0)(1.0) == 0.0
    assert sg.value_and_grad(lambda x, y: x * 2.0, argnums=(0, 1))(1.0, 4.0) == (2.0, (2.0, 0.0))
    np.testing.assert_array_equal(sg.grad(lambda a: 1.0)(np.ones(3)), np.zeros(3))


def test_keyword_arguments_pass_through_undifferentiated():
    # JAX's rule: keywords reach the function, gradients are with respect to positional argnums only
    assert sg.grad(sum_of_squares)(1.0, y=2.0) == 2.0
    assert sg.value_and_grad(sum_of_squares)(1.0, y=2.0) == (5.0, 2.0)
    assert sg.jit(sum_of_squares)(x=1.0, y=2.0) == 5.0


def _weighted(x, w):
    return w * (x * x).sum() + sg.sin(x[0])


class _Weighted:
    """A callable object: like a functools.partial, it has no ``__name__``."""

    def __call__(self, x):
        return _weighted(x, 3.0)


@pytest.mark.parametrize("fun, name", [(functools.partial(_weighted, w=3.0), "partial(_weighted)"),
                                       (_Weighted(), "_Weighted")], ids=["partial", "callable_object"])
def test_every_transform_takes_a_partial_or_a_callable_object(fun, name):
    x, v = np.array([0.3, -1.2]), np.array([1.0, 0.5])
    value, g = sg.value_and_grad(fun)(x)
    assert value == pytest.approx(fun(x)) and sg.jit(fun)(x) == value
    np.testing.assert_allclose(g, central_diff(lambda *xs: fun(np.array(xs)), x), rtol=1e-6)
    np.testing.assert_array_equal(sg.grad(fun)(x), g)
    H = sg.hessian(fun)(x)
    np.testing.assert_allclose(H, [[6.0 - math.sin(0.3), 0.0], [0.0, 6.0]], rtol=1e-12)
    np.testing.assert_allclose(sg.hvp(fun)(x, v), H @ v, rtol=1e-12)
    assert sg.jvp(fun)(x, v) == pytest.approx((value, g @ v))
    np.testing.assert_allclose(sg.jacobian(fun)(x), g, rtol=1e-12)
    np.testing.assert_array_equal(sg.vmap(sg.grad(fun))(np.stack([x, x]))[1], g)
    for transform in (sg.grad, sg.value_and_grad, sg.jit, sg.hessian, sg.hvp, sg.jvp, sg.jacobian):
        assert transform(fun).__name__ == name
    if name.startswith("partial"):  # a keyword overrides the partial's (a traced float: no retrace)
        assert sg.jit(fun)(x, w=2.0) == pytest.approx(_weighted(x, 2.0))
        np.testing.assert_allclose(sg.grad(fun)(x, w=2.0), central_diff(lambda *xs: _weighted(np.array(xs), 2.0), x),
                                   rtol=1e-6)


@pytest.mark.parametrize("argnums", [2, -3, (0, 2)])
def test_argnums_out_of_range_raises_value_error(argnums):
    with pytest.raises(ValueError, match="argnums"):
        sg.grad(sum_of_squares, argnums=argnums)(1.0, 2.0)


@pytest.mark.parametrize("argnums", [1.0, "0", (0, "1"), True])
def test_argnums_of_the_wrong_type_raise_type_error(argnums):
    with pytest.raises(TypeError, match="argnums"):
        sg.grad(sum_of_squares, argnums=argnums)


def test_transforming_a_non_callable_raises_type_error():
    for transform in (sg.grad, sg.value_and_grad, sg.jit):
        with pytest.raises(TypeError):
            transform(3.0)


def test_zero_dimensional_array_argument_acts_as_a_scalar():
    value, (gs, gx) = sg.value_and_grad(lambda s, x: s * x[0] + sg.sin(s), argnums=(0, 1))(np.array(2.0), np.array([3.0]))
    assert value == pytest.approx(6.0 + np.sin(2.0))
    assert isinstance(gs, np.ndarray) and gs.shape == ()
    assert gs == pytest.approx(3.0 + np.cos(2.0)) and gx.tolist() == [2.0]
