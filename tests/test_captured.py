"""Values a transformed function reads from its closure and globals are watched: a change since the
trace retraces instead of running the stale constant (scalargrad/record/captured.py)."""
import functools
import warnings

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.record.captured import Captured

scale = 2.0
flag = True
weights = np.array([1.0, 2.0, 3.0])
offsets = [0.5, 1.5]


def scaled(x):
    return scale * x


def flagged(x):
    if flag:
        return x * x
    return -x


def weighted(x):
    return (weights * x).sum() + offsets[1]


def helper_reading_a_global(x):
    return scaled(x) + 1.0  # scaled reads the global scale


@pytest.fixture(autouse=True)
def restore_globals():
    global scale, flag, weights, offsets
    saved = scale, flag, weights.copy(), list(offsets)
    yield
    scale, flag, weights, offsets = saved[0], saved[1], saved[2], saved[3]


@pytest.mark.parametrize("transform", [sg.grad, sg.jit, sg.value_and_grad])
def test_a_rebound_global_number_retraces(transform):
    global scale
    f = transform(scaled)
    first = f(1.0)
    scale = 5.0
    assert f(1.0) != first
    assert sg.grad(scaled)(1.0) == 5.0 and sg.jit(scaled)(1.0) == 5.0


def test_a_closure_cell_rebound_and_a_helpers_global():
    global scale
    factor = 2.0

    def f(x):
        return factor * x
    g = sg.grad(f)
    assert g(1.0) == 2.0
    factor = 5.0
    assert g(1.0) == 5.0
    h = sg.grad(helper_reading_a_global)
    assert h(1.0) == 2.0
    scale = 3.0
    assert h(1.0) == 3.0


def test_an_array_changed_in_place_and_a_list_item():
    vg = sg.value_and_grad(weighted)
    assert vg(2.0) == (13.5, 6.0)
    weights[:] = [1.0, 1.0, 1.0]
    assert vg(2.0) == (7.5, 3.0)
    offsets[1] = 10.0
    assert vg(2.0) == (16.0, 3.0)


def test_a_global_flag_read_by_if():
    global flag
    g = sg.grad(flagged)
    assert g(3.0) == 6.0
    flag = False
    assert g(3.0) == -1.0
    np.testing.assert_array_equal(sg.vmap(sg.jit(flagged))(np.array([1.0, 2.0])), [-1.0, -2.0])


def test_the_lambda_of_the_issue_and_partials():
    factor = 2.0
    g = sg.grad(lambda x: factor * x)
    assert g(1.0) == 2.0
    factor = 5.0
    assert g(1.0) == 5.0
    w = np.array([2.0])
    p = sg.grad(functools.partial(lambda x, w: w[0] * x, w=w))
    assert p(1.0) == 2.0
    w[0] = 7.0
    assert p(1.0) == 7.0


def test_nested_transforms_watch_the_inner_function():
    global scale
    gg = sg.grad(sg.grad(lambda x: scale * x * x))
    assert gg(1.0) == 4.0
    scale = 3.0
    assert gg(1.0) == 6.0


def test_unchanged_values_keep_the_cached_path():
    f = sg.jit(scaled)
    f(1.0)
    sig = next(iter(f.cache.values()))
    f(2.0)
    global scale
    scale = float("2.0")  # an equal value in a new object: no retrace
    f(3.0)
    assert next(iter(f.cache.values())) is sig and len(sig.paths) == 1


def test_a_value_that_changes_on_every_call_warns_once():
    counter = [0.0]

    def f(x):
        return x * counter[0]
    g = sg.grad(f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(12):
            counter[0] = float(i)
            assert g(1.0) == float(i)
    messages = [str(w.message) for w in caught if "counter" in str(w.message)]
    assert len(messages) == 1 and "pass it as an argument" in messages[0]


def test_what_is_watched():
    global scale
    watched = {name for _, name, _, _ in Captured.of(helper_reading_a_global).entries}
    assert watched == {"scale"}  # through scaled; np, sg and functions are not values
    assert Captured.of(scaled).changed() is None
    captured = Captured.of(scaled)
    scale = 4.0
    assert captured.changed() == "scale"


def test_a_zero_changing_sign_and_a_nan_are_seen_as_they_act():
    """0.0 -> -0.0 changes 1 / (scale * x) from inf to -inf, though 0.0 == -0.0: it retraces. A NaN
    is unequal to itself but does not change: it must not retrace at every call."""
    zero = 0.0
    f = sg.jit(lambda x: 1.0 / (zero * x))
    assert f(1.0) == np.inf
    zero = -0.0
    assert f(1.0) == -np.inf
    pair = [1.0, 0.0]
    g = sg.jit(lambda x: 1.0 / (pair[1] * x))
    assert g(1.0) == np.inf
    pair = [1.0, -0.0]  # rebinding to a new list of the same numbers but one sign
    assert g(1.0) == -np.inf
    missing = float("nan")
    h = sg.jit(lambda x: x + missing)
    for _ in range(3):
        missing = float("nan")  # a new NaN object each time
        assert np.isnan(h(1.0))
    assert h.retraces_for_captured == 0
