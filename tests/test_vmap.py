"""sg.vmap: batched kernels agree with single-point calls, branches per point, argument axes."""
import numpy as np
import pytest

import scalargrad as sg


def rosen(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def test_vmap_value_and_grad_matches_single_points():
    vg = sg.value_and_grad(rosen)
    X = np.random.default_rng(0).uniform(-2, 2, (37, 6))  # not a multiple of the chunk size
    values, grads = sg.vmap(vg)(X)
    assert values.shape == (37,) and grads.shape == (37, 6)
    for p in range(37):
        v, g = vg(X[p])
        assert values[p] == pytest.approx(v, rel=1e-14)
        np.testing.assert_allclose(grads[p], g, rtol=1e-12, atol=1e-14)


def test_vmap_grad_with_scalar_and_broadcast_arguments():
    g = sg.grad(lambda x, y: x * x * y + sg.sin(x), argnums=(0, 1))
    xs = np.linspace(-1, 1, 9)
    gx, gy = sg.vmap(g, in_axes=(0, None))(xs, 3.0)
    np.testing.assert_allclose(gx, 2 * xs * 3.0 + np.cos(xs), rtol=1e-13)
    np.testing.assert_allclose(gy, xs * xs, rtol=1e-13)


def test_vmap_jit_outputs_gain_a_leading_axis():
    f = sg.jit(lambda x: (x[0] * x[1], x[0] + x[1]))
    X = np.arange(8.0).reshape(4, 2)
    prod, total = sg.vmap(f)(X)
    np.testing.assert_array_equal(prod, X[:, 0] * X[:, 1])
    np.testing.assert_array_equal(total, X[:, 0] + X[:, 1])
    h = sg.jit(lambda x: x * 2.0)
    np.testing.assert_array_equal(sg.vmap(h)(np.array([[1.0, 2.0], [3.0, 4.0]])), [[2.0, 4.0], [6.0, 8.0]])


def test_vmap_points_on_another_branch_are_never_silently_wrong():
    def f(x):
        if x > 0:
            return x * x
        return -3.0 * x
    xs = np.array([-2.0, 3.0, -1.0, 4.0, 0.5, -0.5])
    np.testing.assert_array_equal(sg.vmap(sg.grad(f))(xs), np.where(xs > 0, 2 * xs, -3.0))
    np.testing.assert_array_equal(sg.vmap(sg.jit(f))(xs), np.where(xs > 0, xs * xs, -3.0 * xs))


def test_vmap_in_axes_other_than_zero():
    vg = sg.value_and_grad(lambda x: x[0] * x[1])
    X = np.arange(6.0).reshape(2, 3)  # points along axis 1
    values, grads = sg.vmap(vg, in_axes=1)(X)
    np.testing.assert_array_equal(values, X[0] * X[1])
    np.testing.assert_array_equal(grads, X[::-1].T)


def test_a_plain_function_is_mapped_as_its_jit_and_nested_as_in_jax():
    def f(a, b):
        return sg.sin(a) * b
    A, B = np.array([0.5, 1.0]), np.array([2.0, 3.0, 4.0])
    np.testing.assert_array_equal(sg.vmap(f)(A, B[:2]), sg.vmap(sg.jit(f))(A, B[:2]))
    table = sg.vmap(sg.vmap(f, in_axes=(None, 0)), in_axes=(0, None))(A, B)
    np.testing.assert_allclose(table, np.sin(A)[:, None] * B[None, :], rtol=1e-15)


def test_vmap_errors():
    with pytest.raises(TypeError, match="expects a function"):
        sg.vmap(3.0)
    g = sg.grad(lambda x, y: x * y)
    with pytest.raises(ValueError, match="common size"):
        sg.vmap(g)(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="in_axes"):
        sg.vmap(g, in_axes=(0,))(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="scalar"):
        sg.vmap(g)(1.0, np.zeros(3))


def test_vmap_of_hessian_hvp_jvp_and_jacobian_matches_single_points():
    X = np.random.default_rng(3).uniform(-1.5, 1.5, (9, 4))
    V = np.random.default_rng(4).standard_normal((9, 4))
    H = sg.vmap(sg.hessian(rosen))(X)
    assert H.shape == (9, 4, 4)
    hv = sg.vmap(sg.hvp(rosen))(X, V)
    values, tangents = sg.vmap(sg.jvp(rosen))(X, V)
    J = sg.vmap(sg.jacobian(lambda x: (x[0] * x[1], sg.exp(x[2]))), in_axes=0)(X)
    assert J.shape == (9, 2, 4)
    g = sg.grad(rosen)
    for p in range(9):
        np.testing.assert_array_equal(H[p], sg.hessian(rosen)(X[p]))
        np.testing.assert_allclose(hv[p], H[p] @ V[p], rtol=1e-12, atol=1e-12)
        assert values[p] == rosen(X[p]) and tangents[p] == pytest.approx(g(X[p]) @ V[p], rel=1e-12)
        fd = (g(X[p] + 1e-6 * V[p]) - g(X[p] - 1e-6 * V[p])) / 2e-6  # and against finite differences
        np.testing.assert_allclose(hv[p], fd, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(J[:, 0, 1], X[:, 0])
    with pytest.raises(TypeError, match="sparse"):
        sg.vmap(sg.hessian(rosen, sparse=True))
    with pytest.raises(ValueError, match="runs on the CPU"):
        sg.vmap(sg.hvp(rosen), device="cuda")


@pytest.mark.parametrize("backend", ["interp", "codegen"])
def test_points_returning_another_structure_are_refused(backend):
    def f(x):
        if x > 2.0:
            return 4.0 * x
        return (x, 2.0 * x)
    jf = sg.jit(f, backend=backend)
    assert jf(1.0) == (1.0, 2.0) and jf(3.0) == 12.0
    with pytest.raises(ValueError, match=r"point 1 returns a scalar, but point 0 returns a tuple of 2"):
        sg.vmap(jf)(np.array([1.0, 3.0]))
    with pytest.raises(ValueError, match=r"point 1 returns a tuple of 2, but point 0 returns a scalar"):
        sg.vmap(jf)(np.array([3.0, 1.0]))
    np.testing.assert_array_equal(sg.vmap(jf)(np.array([1.0, 1.5]))[1], [2.0, 3.0])  # one structure: fine


def test_nested_vmap_maps_each_level_with_its_own_in_axes():
    """vmap(vmap(f, in_axes=(None, 0)), in_axes=(0, None)) is f on the grid of x and y values."""
    f = sg.jit(lambda x, y: x * y + sg.sin(x * y))
    X, Y = np.linspace(0.1, 1.0, 4), np.linspace(1.0, 2.0, 3)
    grid = sg.vmap(sg.vmap(f, in_axes=(None, 0)), in_axes=(0, None))(X, Y)
    assert grid.shape == (4, 3)
    assert grid.tolist() == [[f(x, y) for y in Y] for x in X]
    h = lambda x, y: x * x * y + sg.exp(x - y)  # noqa: E731
    grads = sg.vmap(sg.vmap(sg.grad(h), in_axes=(None, 0)), in_axes=(0, None))(X, Y)
    assert grads.tolist() == [[sg.grad(h)(x, y) for y in Y] for x in X]
    np.testing.assert_allclose(grads, [[2 * x * y + np.exp(x - y) for y in Y] for x in X], rtol=1e-14)
