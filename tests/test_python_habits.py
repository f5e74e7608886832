"""Python habits on Variables that must give Python's answer or fail loudly, never a different number:
set/dict membership, string formatting, comparisons with huge ints, float()/math in eager mode, and
PyTorch's in-place parameter update under ``no_grad``."""
from __future__ import annotations

import math
import operator
import warnings

import numpy as np
import pytest
from helpers import central_diff

import scalargrad as sg
from scalargrad.bench import measure as bench_measure
from scalargrad.bench.workloads import WORKLOADS

TRANSFORMS = {
    "jit": lambda f: sg.jit(f),
    "grad": lambda f: sg.grad(f),
    "value_and_grad": lambda f: sg.value_and_grad(f),
    "vmap": lambda f: (lambda x: sg.vmap(sg.jit(f))(np.array([x, x]))),
}


# --- hashing: traced values are unhashable, eager Variables hash by identity -----------------------

@pytest.mark.parametrize("transform", TRANSFORMS.values(), ids=TRANSFORMS.keys())
@pytest.mark.parametrize("f", [
    lambda x: x * 2.0 if x in {1.0, 2.0} else x * 3.0,
    lambda x: {x: 1.0}.get(2.0, 0.0) * x,
    lambda x: x * len({x, x}),
], ids=["set-membership", "dict-key", "set-of-values"])
def test_hashing_a_traced_value_raises(transform, f):
    with pytest.raises(sg.TracingError, match=r"hash\(\) of a traced value") as info:
        transform(f)(2.0)
    assert "x in (1.0, 2.0)" in str(info.value)  # says what to write instead


def test_tuple_membership_of_a_traced_value_compares_by_value():
    def f(x):
        return x * x * 2.0 if x in (1.0, 2.0) else x * 3.0

    jitted, grad = sg.jit(f), sg.grad(f)
    for x in (2.0, 5.0, 1.0, 2.5):
        assert jitted(x) == f(x)
    assert grad(2.0) == pytest.approx(8.0, rel=1e-15)  # d(2 x^2)/dx; FD cannot straddle the branch
    assert grad(5.0) == pytest.approx(central_diff(f, [5.0])[0], rel=1e-8)


def test_eager_variables_hash_by_identity_as_pytorch_tensors_do():
    apple, orange = sg.Variable(2.0), sg.Variable(2.0)
    names = {apple: "apple", orange: "orange"}  # equal values, two keys
    assert names[apple] == "apple" and names[orange] == "orange" and len(names) == 2
    assert apple not in {2.0}  # identity, not value: documented on sg.Variable
    dot = sg.to_dot(apple * orange, names=names)
    assert '"apple"' in dot and '"orange"' in dot
    # A Variable made inside a traced function is a constant, not a traced value: hashable.
    assert sg.jit(lambda x: x * len({sg.Variable(1.0)}))(3.0) == 3.0


# --- string formatting of traced values -----------------------------------------------------------

@pytest.mark.parametrize("f", [
    lambda x: float(f"{x:.17g}") * 1.0,
    lambda x: float("{:f}".format(x)),
    lambda x: float(format(x, "g")),
], ids=["f-string", "str.format", "format"])
def test_formatting_a_traced_value_with_a_spec_raises(f):
    with pytest.raises(sg.TracingError, match="format"):
        sg.jit(f)(2.7)
    with pytest.raises(sg.TracingError):
        sg.grad(f)(2.7)


def test_str_and_repr_of_a_traced_value_print_but_do_not_parse():
    seen = []

    def f(x):
        seen.extend((str(x), repr(x), f"{x}"))
        return x * 2.0

    assert sg.jit(f)(2.7) == 5.4
    for text in seen:
        assert "traced" in text and "2.7" in text
        with pytest.raises(ValueError):
            float(text)


def test_eager_format_shows_the_value():
    assert f"{sg.Variable(2.5):.2f}" == "2.50" and f"{sg.Variable(0.5) * 2.0:g}" == "1"


# --- comparisons with Python ints that float64 cannot hold: Python's exact answer ------------------

COMPARE = [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne]
HUGE_INTS = {"2^53+1": 2**53 + 1, "-2^53-1": -(2**53 + 1), "2^60+3": 2**60 + 3, "10^400": 10**400,
             "-10^400": -10**400, "2^1024-2^970": 2**1024 - 2**970}  # the last: float() overflows
FLOATS = [2.0**53, 2.0**53 + 2, -2.0**53, 2.0**60, 2.0**60 + 256, 0.0, 1.7976931348623157e308,
          -1.7976931348623157e308, math.inf, -math.inf, math.nan]


@pytest.mark.parametrize("n", HUGE_INTS.values(), ids=HUGE_INTS.keys())
@pytest.mark.parametrize("cmp", COMPARE, ids=lambda c: c.__name__)
def test_comparison_with_a_huge_int_follows_python(cmp, n):
    to_the_right = sg.jit(lambda x: sg.where(cmp(x, n), 1.0, 0.0))
    to_the_left = sg.jit(lambda x: sg.where(cmp(n, x), 1.0, 0.0))
    name = cmp.__name__
    for x in FLOATS:
        expected, mirrored = float(cmp(x, n)), float(cmp(n, x))
        assert to_the_right(x) == expected, (x, n)
        assert to_the_left(x) == mirrored, (x, n)
        assert cmp(sg.Variable(x), n).data == expected
        assert cmp(n, sg.Variable(x)).data == mirrored
        assert getattr(sg, name)(x, n) == expected and getattr(sg, name)(n, x) == mirrored
    assert getattr(sg, name)(n, n + 1) == float(cmp(n, n + 1))


def test_branch_on_a_huge_int_comparison_takes_pythons_branch_and_derivative():
    n = 2**53 + 1

    def f(x):
        return sg.where(x < n, x * 2.0, x * 3.0)

    x0 = 2.0**53  # x0 < n in Python; the rounded constant 2.0**53 would say no
    assert sg.value_and_grad(f)(x0) == (2.0 * x0, 2.0)
    v = sg.Variable(x0)
    y = f(v)
    y.backward()
    assert (y.data, v.grad) == (2.0 * x0, 2.0)
    branchy = sg.grad(lambda x: x * 2.0 if x < n else x * 3.0)
    assert branchy(x0) == 2.0 and branchy(2.0**53 + 2) == 3.0


# --- float() and math in eager mode: a warning once per call site ----------------------------------

def test_math_on_an_eager_variable_warns_where_the_derivative_is_lost():
    v = sg.Variable(1.0)
    with pytest.warns(UserWarning, match=r"float\(\) of a Variable that requires grad") as record:
        y = math.sin(v) * v
    assert record[0].filename == __file__  # points at the user's line
    text = str(record[0].message)
    assert "sg.sin" in text and ".data" in text
    y.backward()
    assert v.grad == pytest.approx(math.sin(1.0), rel=1e-15)  # the lost derivative, as warned

    v = sg.Variable(1.0)
    y = sg.sin(v) * v  # what the warning asks for
    y.backward()
    expected = central_diff(lambda x: math.sin(x) * x, [1.0])[0]
    assert v.grad == pytest.approx(expected, rel=1e-8)
    assert v.grad == pytest.approx(math.sin(1.0) + math.cos(1.0), rel=1e-15)


def test_float_warns_once_per_call_site():
    loss = sg.Variable(2.0) * 3.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's default: once per location
        for _ in range(3):
            float(loss)
        float(loss)
    assert len(caught) == 2


def test_float_is_silent_where_nothing_is_lost():
    v = sg.Variable(1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert v.data == 1.5
        assert float(sg.Variable(1.5, requires_grad=False)) == 1.5
        with sg.no_grad():
            assert float(v) == 1.5 and math.exp(v * 2.0) == math.exp(3.0)
        assert f"{v * 2.0:.1f}" == "3.0"
        assert int(v) == 1 and round(v) == 2 and math.floor(v) == 1  # derivative 0: nothing lost


def test_float_of_a_traced_value_still_raises():
    with pytest.raises(sg.TracingError):
        sg.grad(lambda x: float(x) * x)(1.0)


@pytest.mark.parametrize("name", [name for name in WORKLOADS if name != "random"])
def test_library_eager_paths_do_not_call_float_on_variables(name):
    fun, x0 = WORKLOADS[name].make(10 if name == "mlp" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, grad = bench_measure.eager_seconds(fun, x0)
        x = sg.Variable(2.0)
        y = sg.exp(x) * x
        y.backward()
        sg.to_dot(y)
    assert np.isfinite(grad).all()


# --- in-place operators: PyTorch's semantics ------------------------------------------------------

@pytest.mark.parametrize("reset", ["zero_grad", "grad = None"])
def test_pytorch_linear_model_loop_trains(reset):
    xs, ys = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]
    w = sg.Variable(0.0)
    param = w
    lr = 0.01
    for _ in range(200):
        loss = sum((w * xi - yi) ** 2 for xi, yi in zip(xs, ys))
        if reset == "zero_grad":
            w.zero_grad()
        else:
            w.grad = None
        loss.backward()
        assert w.grad == pytest.approx(sum(2 * (w.data * xi - yi) * xi for xi, yi in zip(xs, ys)), abs=1e-12)
        with sg.no_grad():
            w -= lr * w.grad
    assert w is param and w.is_leaf and w.requires_grad
    assert w.data == pytest.approx(2.0, rel=1e-9)
    assert (w * 4.0).data == pytest.approx(8.0, rel=1e-9)


IN_PLACE = [("+=", operator.iadd, operator.add), ("-=", operator.isub, operator.sub),
            ("*=", operator.imul, operator.mul), ("/=", operator.itruediv, operator.truediv),
            ("**=", operator.ipow, operator.pow), ("%=", operator.imod, operator.mod),
            ("//=", operator.ifloordiv, operator.floordiv)]


@pytest.mark.parametrize("symbol, in_place, plain", IN_PLACE, ids=[s for s, _, _ in IN_PLACE])
def test_in_place_update_of_a_leaf_under_no_grad_keeps_the_object(symbol, in_place, plain):
    w = sg.Variable(1.5)
    before = w * 1.0  # w is now an input of the active recorder, recorded with the value 1.5
    w.grad = 0.25
    with sg.no_grad():
        out = in_place(w, 2.0)
    assert out is w and w.is_leaf and w.requires_grad and w.grad == 0.25
    assert w.data == plain(1.5, 2.0)
    after = w * 3.0  # records the new value, not the one recorded before the update
    assert after.data == 3.0 * plain(1.5, 2.0)
    after.backward()
    before.backward()
    assert w.grad == 0.25 + 3.0 + 1.0


@pytest.mark.parametrize("symbol, in_place, plain", IN_PLACE, ids=[s for s, _, _ in IN_PLACE])
def test_in_place_update_of_a_leaf_that_requires_grad_raises_while_recording(symbol, in_place, plain):
    w = sg.Variable(1.5)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad") as info:
        in_place(w, 2.0)
    assert "sg.no_grad()" in str(info.value) and symbol in str(info.value)
    assert w.data == 1.5 and w.is_leaf


def test_in_place_on_other_values_rebinds_and_differentiates():
    w = sg.Variable(0.7)
    y = w * 2.0
    alias = y
    y += w  # a non-leaf while recording: the out-of-place result
    y *= w
    assert y is not alias and alias.data == 1.4
    y.backward()
    assert w.grad == pytest.approx(central_diff(lambda x: (2 * x + x) * x, [0.7])[0], rel=1e-8)

    total = sg.Variable(0.0, requires_grad=False)  # a constant leaf: rebinds too
    total += w * 5.0
    assert not total.is_leaf
    w.zero_grad()
    total.backward()
    assert w.grad == 5.0

    with sg.no_grad():
        y -= 1.0  # a non-leaf under no_grad: a new constant (older graphs keep their value)
    assert not y.requires_grad and y.data == pytest.approx(3 * 0.7 * 0.7 - 1.0)


def test_in_place_on_traced_values_rebinds():
    def f(x):
        x += 1.0
        x *= x
        x /= 2.0
        x -= 3.0
        x **= 2
        return x

    for x in (1.5, -0.3):
        assert sg.jit(f)(x) == pytest.approx(f(x), rel=1e-15)
        assert sg.grad(f)(x) == pytest.approx(central_diff(f, [x])[0], rel=1e-7)


# --- x ** 2 is the correctly rounded square (docs/semantics.md), which libm's pow can miss -------

@pytest.mark.parametrize("backend", ["interp", "codegen"])
def test_x_squared_is_the_correctly_rounded_square_in_every_backend(backend):
    from fractions import Fraction
    x = 900.7093261133584  # glibc's pow(x, 2.0), which CPython's x ** 2 calls, is 1 ulp below
    exact = float(Fraction(x) ** 2)  # the exact square, rounded once
    assert sg.jit(lambda v: v ** 2, backend=backend)(x) == exact == x * x
    assert sg.value_and_grad(lambda v: v ** 2, backend=backend)(x) == (exact, 2.0 * x)
    assert (sg.Variable(x) ** 2).data == exact
