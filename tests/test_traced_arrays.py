"""Traced arrays (record/arrays.py): inside a transform an array argument is a TracedArray, on which
comparisons, np.where, np.maximum, np.clip, reductions, ``@`` and the other common array functions
record branch-free table ops: no guards, so calls whose signs differ reuse one trace. Values and
gradients against NumPy on float arrays and central differences; ``bool()`` still guards."""
from __future__ import annotations

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.record.arrays import TracedArray

RNG = np.random.default_rng(22)
W = RNG.standard_normal((6, 3))
X = RNG.standard_normal((20, 6))
Y = np.where(RNG.standard_normal(20) > 0, 1.0, -1.0)

# The list: natural array code that must record no guard.
EXPRESSIONS = {
    "sg.where": lambda x: sg.where(x > 0, x * x, -x).sum(),
    "np.where": lambda x: np.where(x > 0, x, 0.1 * x).sum(),
    "np.maximum": lambda x: np.maximum(0, 1 - x).sum(),
    "np.clip": lambda x: np.clip(x, -1, 1).sum(),
    "np.max": lambda x: np.max(x),
    "np.min": lambda x: np.min(x),
    "np.abs": lambda x: np.abs(x).sum(),
    "x.max": lambda x: x.max(),
    "matmul": lambda x: (x @ W).sum(),
    "np.mean": lambda x: np.mean(x),
    "np.std": lambda x: np.std(x),
    "hinge": lambda w: np.maximum(0.0, 1.0 - Y * (X @ w)).mean(),
}


def points(n, count=4, seed=0):
    """Random points of n coordinates away from the kinks at 0 and ±1, a different sign pattern each."""
    rng = np.random.default_rng(seed)
    def one():
        magnitude = np.where(rng.random(n) < 0.5, rng.uniform(0.1, 0.9, n), rng.uniform(1.1, 2.0, n))
        return rng.choice([-1.0, 1.0], n) * magnitude
    return [one() for _ in range(count)]


def numeric_grad(f, x, h=1e-6):
    """Central differences of scalar f (on float arrays) at x."""
    g = np.empty(x.size)
    for i in range(x.size):
        up, down = x.copy(), x.copy()
        up.flat[i] += h
        down.flat[i] -= h
        g[i] = (f(up) - f(down)) / (2 * h)
    return g.reshape(x.shape)


def counting(f):
    """(f that counts its traces, the list of traces): each trace runs the Python function once."""
    traces = []

    def counted(*args):
        traces.append(None)
        return f(*args)
    return counted, traces


def check_value_and_grad(f, xs, rtol=1e-6):
    """sg.value_and_grad(f) at each x against f on floats and central differences, traced once."""
    counted, traces = counting(f)
    vg = sg.value_and_grad(counted)
    for x in xs:
        value, grad = vg(x)
        np.testing.assert_allclose(value, f(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grad, numeric_grad(f, x), rtol=rtol, atol=1e-7)
    assert len(traces) == 1, "a call whose signs differ traced again"


@pytest.mark.parametrize("name", EXPRESSIONS)
def test_array_code_records_no_guard(name):
    tape = sg.trace(EXPRESSIONS[name], points(6)[0])
    assert len(tape.guards) == 0


@pytest.mark.parametrize("name", EXPRESSIONS)
def test_array_code_value_and_gradient_without_retracing(name):
    xs = points(6, seed=1)
    if name == "hinge":  # keep the margins off the hinge's kink
        xs = [w for w in points(6, count=20, seed=2) if np.abs(1.0 - Y * (X @ w)).min() > 1e-3][:4]
    check_value_and_grad(EXPRESSIONS[name], xs)


def test_arguments_and_results_are_traced_arrays():
    seen = {}

    def f(x):
        m = x.reshape(2, 3)
        seen.update(arg=x, reshape=m, T=m.T, row=m[0], slice=x[1:], compare=x > 0, exp=np.exp(x),
                    matmul=m @ np.ones((3, 2)), concatenate=np.concatenate([x, np.ones(2)]),
                    stack=np.stack([x, x]), where=sg.where(x > 0, x, 0.0), maximum=sg.maximum(x, 0.0),
                    cumsum=np.cumsum(x), outer=np.outer(x, x), mask=x[x > 0], element=m[0, 1],
                    iterated=list(x), dot=np.dot(x, x))
        return x.sum()
    sg.trace(f, np.arange(6.0))
    for name in ("arg", "reshape", "T", "row", "slice", "compare", "exp", "matmul", "concatenate", "stack",
                 "where", "maximum", "cumsum", "outer", "mask"):
        assert type(seen[name]) is TracedArray, name
    assert type(seen["element"]) is sg.Variable and type(seen["dot"]) is sg.Variable
    assert all(type(v) is sg.Variable for v in seen["iterated"])
    assert seen["matmul"].shape == (2, 2) and seen["T"].shape == (3, 2)


@pytest.mark.parametrize("other", [2.5, np.float64(-1.5), 3, np.array([1.0, -2.0, 0.5]),
                                   np.array([[1.0], [-2.0]]), np.array([True, False, True])],
                         ids=["float", "np.float64", "int", "array", "column", "bools"])
def test_broadcasting_with_numbers_and_float_arrays(other):
    def f(x):
        return (np.maximum(x * other, other - x) + np.where(x > other, x, other) / (1.0 + x * x)).sum()
    tape = sg.trace(f, np.ones(3))
    assert len(tape.guards) == 0
    check_value_and_grad(f, points(3, seed=3))


def test_broadcasting_between_traced_arrays():
    def f(x):
        col, row = x[:2].reshape(2, 1), x[2:]
        return np.where(col > row, col * row, col - row).sum() + np.maximum(col, row).mean()
    check_value_and_grad(f, points(5, seed=4))


@pytest.mark.parametrize("reduction", ["sum", "max", "min", "prod", "mean", "std", "var"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_with_axis(reduction, axis, keepdims):
    fn = getattr(np, reduction)

    def f(x):
        m = x.reshape(2, 3)
        weights = np.arange(1.0, 1.0 + np.size(fn(np.ones((2, 3)), axis=axis, keepdims=keepdims)))
        return (np.reshape(fn(m, axis=axis, keepdims=keepdims), -1) * weights).sum()
    assert len(sg.trace(f, np.ones(6)).guards) == 0
    check_value_and_grad(f, points(6, count=3, seed=5), rtol=1e-5)


def test_methods_and_initial():
    def f(x):
        m = x.reshape(3, 2)
        return m.max(axis=0).sum() + m.min() + m.sum(axis=1, keepdims=True)[2, 0] + m.mean(axis=0)[1] \
            + m.std() + m.prod(axis=0)[0] + np.sum(x, initial=3.0) + np.max(x, initial=1.5) + np.ptp(x)
    assert len(sg.trace(f, np.ones(6)).guards) == 0
    check_value_and_grad(f, points(6, count=3, seed=6), rtol=1e-5)


def test_max_propagates_nan_as_numpy_does_on_floats():
    x = np.array([1.0, np.nan, 3.0])
    assert np.isnan(sg.jit(np.max)(x)) and np.isnan(np.max(x))
    assert np.isnan(sg.jit(lambda x: np.clip(x, 0, 2)[1])(x))


def test_logical_operators_are_branch_free():
    def f(x):
        inside = (x > -1) & (x < 1)
        outside = ~inside | (x > 1.5)
        flipped = np.logical_xor(x > 0, inside) ^ (x < -1.5)
        return np.where(inside, x * x, 0.0).sum() + np.where(outside, 3.0 * x, 0.0).sum() \
            + np.where(flipped, x, -x).sum() + np.where(np.logical_not(x), 0.0, x).sum() \
            + (x > 0).sum() + np.any(x > 1.9) + np.all(x > -2.5, axis=0)
    assert len(sg.trace(f, np.ones(6)).guards) == 0
    check_value_and_grad(f, points(6, seed=7))


def test_bitwise_operators_refuse_numbers():
    with pytest.raises(TypeError, match="`&` on a traced array whose elements are not comparison results"):
        sg.jit(lambda x: (x & (x > 0)).sum())(np.ones(3))


def test_branch_free_masked_assignment():
    def f(x):
        y = x.copy()
        y[y < 0] = 0.0
        return (y * y * x).sum()
    assert len(sg.trace(f, np.ones(4)).guards) == 0
    check_value_and_grad(f, points(4, seed=8))


def _all_positive(x):
    if (x > 0).all():
        return (x * x).sum()
    return -x.sum()


def _first_positive(x):
    if x[0] > 0:
        return (x * x).sum()
    return -x.sum()


def _one_element_truth(x):
    if x[:1] > 0:  # bool() of a one-element traced array
        return (x * x).sum()
    return -x.sum()


@pytest.mark.parametrize("f", [_all_positive, _first_positive, _one_element_truth])
def test_bool_of_a_traced_comparison_records_a_guard(f):
    assert len(sg.trace(f, np.ones(3)).guards) == 1
    counted, traces = counting(f)
    vg = sg.value_and_grad(counted)
    for x in (np.array([0.5, 1.5, 2.0]), np.array([-0.5, 1.5, 2.0]), np.array([1.0, 2.0, 3.0])):
        value, grad = vg(x)
        assert value == f(x)
        np.testing.assert_allclose(grad, numeric_grad(f, x), rtol=1e-6)
    assert len(traces) == 2  # each branch traced once


def test_traced_mask_as_index_guards_each_element():
    def f(x):
        return x[x > 0].sum()
    assert len(sg.trace(f, np.ones(3)).guards) == 3
    counted, traces = counting(f)
    g = sg.grad(counted)
    assert g(np.array([1.0, -1.0, 2.0])).tolist() == [1.0, 0.0, 1.0]
    assert g(np.array([-1.0, 1.0, 2.0])).tolist() == [0.0, 1.0, 1.0]
    assert len(traces) == 2


def test_traced_mask_on_a_numpy_array_says_what_to_do():
    weights = np.array([1.0, 2.0, 3.0])
    with pytest.raises(sg.TracingError, match="np.asarray"):
        sg.jit(lambda x: weights[x > 0].sum())(np.ones(3))
    assert sg.jit(lambda x: weights[np.asarray(x > 0, dtype=bool)].sum())(np.array([1.0, -1.0, 1.0])) == 4.0


def test_select_is_nested_where():
    def f(x):
        return np.select([x < -1, x < 1], [2.0 * x, x * x], default=-x).sum()
    assert len(sg.trace(f, np.ones(6)).guards) == 0
    check_value_and_grad(f, points(6, seed=9))


def test_other_functions_fall_back_to_numpy_correctly():
    def f(x):
        return np.sort(x)[-1] + np.cumsum(x)[-2] + np.diff(x).prod() + np.outer(x, x)[0, 1] \
            + np.tile(x, 2)[4] + np.flip(x)[0] + np.einsum("i,i->", x, x)
    counted, traces = counting(f)
    vg = sg.value_and_grad(counted)
    for x in points(4, seed=10):
        value, grad = vg(x)
        np.testing.assert_allclose(value, f(x), rtol=1e-12)
        np.testing.assert_allclose(grad, numeric_grad(f, x), rtol=1e-6, atol=1e-8)
    assert len(sg.trace(f, np.array([3.0, 1.0, 2.0, 0.5])).guards) > 0  # np.sort compares: guarded


def test_nan_to_num_is_refused_rather_than_silently_ignored():
    with pytest.raises(TypeError, match="np.nan_to_num of a traced array"):
        sg.jit(lambda x: np.nan_to_num(x).sum())(np.ones(2))


def test_out_argument():
    def f(x):
        y = np.empty_like(x)
        np.maximum(x, 0.0, out=y)
        return y.sum()
    assert len(sg.trace(f, np.ones(3)).guards) == 0
    check_value_and_grad(f, points(3, seed=11))


def test_nested_transform_results_are_traced_arrays():
    def outer(x):
        g = sg.grad(lambda z: (np.maximum(z, 0.0) ** 2).sum())(x)
        assert type(g) is (TracedArray if type(x) is TracedArray else np.ndarray)
        return np.where(g > 0, g * x, 0.0).sum()
    assert len(sg.trace(outer, np.ones(3)).guards) == 0
    check_value_and_grad(outer, points(3, seed=12))


def test_pytrees_and_keywords_of_arrays():
    kinds = set()

    def f(params, x, scale=None):
        kinds.update({type(params["w"]), type(params["b"]), type(scale)})
        return (np.maximum(params["w"] * x, params["b"]) * scale).sum()
    params = {"w": np.array([0.5, -1.5, 2.0]), "b": np.array([0.25, 0.5, -0.5])}
    x, scale = np.array([1.0, 2.0, 3.0]), np.array([1.0, -2.0, 0.5])
    value, grads = sg.value_and_grad(f)(params, x, scale=scale)
    assert kinds == {TracedArray}
    assert value == f(params, x, scale=scale)
    assert grads["w"].tolist() == [1.0, 0.0, 1.5] and grads["b"].tolist() == [0.0, -2.0, 0.0]


def test_vmap_of_branch_free_array_code():
    f = sg.grad(lambda x: np.where(x > 0, x * x, -x).sum())
    batch = np.array(points(3, count=5, seed=13))
    expected = np.where(batch > 0, 2.0 * batch, -1.0)
    np.testing.assert_array_equal(sg.vmap(f)(batch), expected)


def test_eager_object_arrays_are_unchanged():
    vs = np.array([sg.Variable(1.0), sg.Variable(-2.0), sg.Variable(3.0)], dtype=object)
    assert type(vs > 0) is np.ndarray and (vs > 0).dtype == bool  # NumPy's object comparison
    loss = np.maximum(vs, 0.0).sum() + np.where(vs > 0, vs, 0.0).sum()
    loss.backward()
    assert loss.data == 8.0 and [v.grad for v in vs] == [2.0, 0.0, 2.0]


def test_isnan_combines_with_comparisons():
    from scalargrad.record.operators import UFUNCS
    if np.isnan not in UFUNCS:
        pytest.skip("no isnan row in the op table")

    def f(x):
        return np.where(np.isnan(x) | (x < 0), 0.0, x * x).sum()
    assert len(sg.trace(f, np.ones(3)).guards) == 0
    assert sg.value_and_grad(f)(np.array([np.nan, 2.0, -1.0]))[1].tolist() == [0.0, 4.0, 0.0]
