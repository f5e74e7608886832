"""Compiled kernels embedded in the user's own Numba code, and SciPy on array inputs."""
import re

import numba
import numpy as np
import pytest
import scipy.optimize

import scalargrad as sg

from helpers import descend, rosen


def test_compiled_value_and_grad_runs_inside_user_njit_loop():
    k = sg.value_and_grad(rosen).compile(np.zeros(2))
    g = np.empty(2)
    assert k(np.array([0.5, 0.5]), g) == pytest.approx(6.5)
    np.testing.assert_allclose(g, [-51.0, 50.0])
    x = descend(k, np.zeros(2), 20000, 1e-3)
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-2)


def test_compiled_kernels_take_flat_vectors_of_all_arguments():
    k = sg.value_and_grad(lambda a, b: a * b[0] + b[1]).compile(2.0, np.array([3.0, 4.0]))
    g = np.empty(3)
    assert k(np.array([2.0, 3.0, 4.0]), g) == 10.0
    np.testing.assert_array_equal(g, [3.0, 2.0, 1.0])
    f = sg.jit(lambda a, b: a * b).compile(2.0, 5.0)
    assert f(np.array([3.0, 4.0])) == 12.0


def test_compiled_kernel_rejects_wrong_lengths_and_other_branches():
    def h(x):
        return x[0] * 2.0 if x[0] > 0 else -x[0]
    k = sg.value_and_grad(h).compile(np.array([1.0]))
    g = np.empty(1)
    assert k(np.array([3.0]), g) == 6.0
    with pytest.raises(ValueError, match="control-flow"):
        k(np.array([-3.0]), g)
    with pytest.raises(ValueError, match="number of inputs"):
        k(np.zeros(2), np.zeros(2))


def test_scipy_minimize_rosenbrock_100():
    vg = sg.value_and_grad(rosen)
    result = scipy.optimize.minimize(vg, np.zeros(100), jac=True, method="L-BFGS-B",
                                     options=dict(maxiter=5000, gtol=1e-10))
    assert result.success
    np.testing.assert_allclose(result.x, np.ones(100), atol=1e-4)


@numba.njit
def descend_with_workspace(k, x, steps, lr, work):
    g = np.empty_like(x)
    for _ in range(steps):
        k(x, g, work)
        x -= lr * g
    return x


def test_caller_supplied_workspace_gives_the_same_results():
    k = sg.value_and_grad(rosen, backend="interp").compile(np.zeros(2))  # the interpreter's kernel needs one
    work = np.empty(k.workspace_size)
    g1, g2 = np.empty(2), np.empty(2)
    x = np.array([0.3, -0.7])
    assert k(x, g1, work) == k(x, g2)
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_allclose(descend_with_workspace(k, np.zeros(2), 20000, 1e-3, work), [1.0, 1.0], atol=1e-2)
    with pytest.raises(ValueError, match="workspace_size"):
        k(x, g1, np.empty(k.workspace_size - 1))


def test_compiled_forward_with_several_outputs_returns_the_first():
    f = sg.jit(lambda a, b: (a * b, a + b, a - b)).compile(2.0, 5.0)
    assert f(np.array([3.0, 4.0])) == 12.0
    work = np.empty(f.workspace_size)
    assert f(np.array([3.0, 4.0]), work) == 12.0
    np.testing.assert_array_equal(work[-3:], [12.0, 7.0, -1.0])
    with pytest.raises(ValueError, match="workspace_size"):
        f(np.array([3.0, 4.0]), np.empty(f.workspace_size - 1))


@numba.njit
def _call_in_user_code(k, x, g):
    return k(x, g)


@pytest.mark.parametrize("backend", ["interp", "codegen"])
def test_compiled_kernels_refuse_anything_but_float64_vectors(backend):
    # An int x failed inside Numba (generated code); an int g or work was written to by truncating
    # (the gradient [0.5, 0.5] came back as [0, 0]).
    k = sg.value_and_grad(lambda x: 0.25 * (x * x).sum(), backend=backend).compile(np.ones(2))
    f = sg.jit(lambda x: 0.25 * (x * x).sum(), backend=backend).compile(np.ones(2))
    x, g = np.ones(2), np.empty(2)
    wrong = [("x", (np.arange(2), g), "array(int64, 1d, C)"),
             ("x", (np.ones((2, 1)), g), "array(float64, 2d, C)"),
             ("x", ((1.0, 1.0), g), "UniTuple(float64 x 2)"),
             ("g", (x, np.empty(2, np.int64)), "array(int64, 1d, C)"),
             ("g", (x, np.empty(2, np.float32)), "array(float32, 1d, C)"),
             ("work", (x, g, np.empty(max(k.workspace_size, 1), np.int32)), "array(int32, 1d, C)")]
    for name, args, given in wrong:
        with pytest.raises(TypeError, match=rf"^compiled value_and_grad: {name} must be a 1-d float64 array, got {re.escape(given)}"):
            k(*args)
    with pytest.raises(TypeError, match=r"^compiled value_and_grad: x must be a 1-d float64 array, got array\(int32"):
        _call_in_user_code(k, np.arange(2, dtype=np.int32), g)
    for name, args, given in [("x", (np.arange(2),), "array(int64, 1d, C)"),
                              ("work", (x, np.empty(f.workspace_size, np.int64)), "array(int64, 1d, C)")]:
        with pytest.raises(TypeError, match=rf"^compiled jit: {name} must be a 1-d float64 array, got {re.escape(given)}"):
            f(*args)
    assert k(np.arange(4.0)[::2], g) == 1.0 and g.tolist() == [0.0, 1.0]  # any float64 vector, strided too
    assert f(np.arange(4.0)[::2]) == 1.0
