"""``sg.no_grad()`` inside a traced function stops derivatives, not values: what it computes follows
each call's inputs, and a branch decided inside it is guarded like any other."""
import numpy as np
import pytest

import scalargrad as sg
from helpers import central_diff


def doubled_then_added(x):
    with sg.no_grad():
        s = x * 2.0
    return s + x


@pytest.mark.parametrize("backend", ["interp", "codegen"])
def test_values_inside_no_grad_follow_every_call(backend):
    vg = sg.value_and_grad(doubled_then_added, backend=backend)
    assert vg(1.0) == (3.0, 1.0)
    assert vg(5.0) == (15.0, 1.0)  # was (7.0, 1.0): s frozen at its first trace
    values = sg.vmap(sg.jit(doubled_then_added, backend=backend))(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(values, [3.0, 6.0, 9.0])  # was [3, 4, 5]


def test_a_branch_decided_inside_no_grad_is_guarded():
    def f(x):
        with sg.no_grad():
            big = x > 2.0
        return x * 3.0 if big else x * x
    g = sg.grad(f)
    assert g(1.0) == 2.0
    assert g(3.0) == 3.0  # the other branch: a retrace, not the first path's derivative
    np.testing.assert_array_equal(sg.vmap(sg.jit(f))(np.array([1.0, 3.0])), [1.0, 9.0])


def test_the_derivative_stops_at_no_grad_values():
    def f(x, y):
        with sg.no_grad():
            scale = sg.exp(x) * y  # a value, no derivative
        return scale * x + y
    x, y = 0.3, 1.7
    value, (dx, dy) = sg.value_and_grad(f, argnums=(0, 1))(x, y)
    assert value == pytest.approx(np.exp(x) * y * x + y, rel=1e-15)
    # d/dx treats scale as a constant: scale, and d/dy is 1 (not x * exp(x) + 1)
    assert dx == pytest.approx(np.exp(x) * y, rel=1e-15) and dy == 1.0
    # Finite differences of the function with scale held fixed agree.
    held = np.exp(x) * y
    np.testing.assert_allclose([dx, dy], central_diff(lambda a, b: held * a + b, [x, y]), rtol=1e-8)


def test_higher_order_and_variables_made_inside_no_grad():
    def f(x):
        with sg.no_grad():
            t = sg.Variable(4.0) * x  # a Variable made inside the block is a constant of the trace
        return t * x
    assert sg.value_and_grad(f)(2.0) == (16.0, 8.0)
    assert sg.value_and_grad(f)(3.0) == (36.0, 12.0)
    assert sg.grad(sg.grad(doubled_then_added))(2.0) == 0.0
    assert sg.grad(sg.grad(f))(2.0) == 0.0  # grad(f) is t itself, a value without derivative (as in JAX)


def test_eager_no_grad_still_records_nothing():
    v = sg.Variable(2.0)
    with sg.no_grad():
        c = v * 3.0
    assert c.data == 6.0 and not c.requires_grad
    y = c * v
    y.backward()
    assert v.grad == 6.0
