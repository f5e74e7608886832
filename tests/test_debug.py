"""NaN debugging (``debug_nans``): a NaN or inf in a result (a jit's outputs, the value or a requested
gradient of value_and_grad, a vmap batch) raises, naming the op that made it on the way to that
result, its operand values and the user's file:line; non-finite values no result depends on pass."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import central_diff

import scalargrad as sg
from scalargrad.transforms import debug

HERE = os.path.abspath(__file__)


def _line_of(fun, offset: int) -> str:
    """``file:line`` of the line ``offset`` lines below ``fun``'s ``def``."""
    return f"{HERE}:{fun.__code__.co_firstlineno + offset}"


def log_shifted(x):
    y = x * 2.0
    return sg.log(y - 2.0) + y            # line +2


def sqrt_shifted(x):
    return sg.sqrt(x - 1.0) * 3.0         # line +1


def ratio(x, y):
    return (x - y) / (x * y - 1.0)        # line +1


def sqrt_of_square(x):
    return sg.sqrt(x * x)                 # line +1


FORWARD_CASES = [
    # (function, arguments, op, line offset, value made, operand text)
    (log_shifted, (1.0,), "log", 2, "-inf", "log(a=0.0) = -inf"),
    (sqrt_shifted, (0.0,), "sqrt", 1, "nan", "sqrt(a=-1.0) = nan"),
    (ratio, (1.0, 1.0), "div", 1, "nan", "div(a=0.0, b=0.0) = nan"),
]


@pytest.mark.parametrize("transform", ["value_and_grad", "grad", "jit"])
@pytest.mark.parametrize("case", FORWARD_CASES, ids=lambda c: c[2])
def test_forward_nan_names_op_values_file_and_line(case, transform):
    fun, args, op, offset, made, text = case
    transformed = getattr(sg, transform)(fun, debug_nans=True)
    with pytest.raises(FloatingPointError) as info:
        transformed(*args)
    message = str(info.value)
    assert f"produced {made} in the forward sweep" in message
    assert f"= {op} " in message and text in message
    assert _line_of(fun, offset) in message
    assert fun.__name__ in message


def test_nan_arising_only_in_the_reverse_sweep():
    # sqrt(x * x) at 0: every value is 0, but d sqrt/da = inf meets d(x*x)/dx = 0: inf * 0 = NaN.
    assert np.isnan(sg.grad(sqrt_of_square)(0.0))
    assert sg.jit(sqrt_of_square, debug_nans=True)(0.0) == 0.0  # the forward sweep alone is fine
    with pytest.raises(FloatingPointError) as info:
        sg.grad(sqrt_of_square, debug_nans=True)(0.0)
    message = str(info.value)
    assert "in the reverse sweep" in message and "= sqrt %" in message
    assert "partial dsqrt/da = inf at a=0.0" in message
    assert _line_of(sqrt_of_square, 1) in message


def test_non_finite_input_names_the_argument():
    def f(x, w):
        return np.sum(sg.exp(x)) * np.sum(w)

    x = np.ones((2, 3))
    x[1, 2] = np.nan
    with pytest.raises(FloatingPointError, match=r"nan in argument 0 \('x'\) at index \(1, 2\)"):
        sg.grad(f, debug_nans=True)(x, np.ones(2))
    with pytest.raises(FloatingPointError, match=r"inf in argument 1 \('w'\)"):
        sg.jit(f, debug_nans=True)(np.ones((2, 3)), np.array([1.0, -np.inf]))


def safe_sqrt(x):
    return sg.where(x > 0.0, sg.sqrt(x), 0.0)    # sqrt(-1) = NaN is computed, then not selected


def branches(x):
    root = sg.sqrt(x)                             # line +1: NaN for x < 0, not selected there
    return sg.where(x > 0.0, root, sg.log(x))     # line +2: log(x < 0) = NaN is the result


def absorbed(x):
    vanishing = sg.exp(sg.log(x * 0.0))           # line +1: log(0) = -inf, but exp(-inf) = 0
    return vanishing + sg.sqrt(x)                 # line +2


def kinked(x):
    smooth = sg.where(x > 0.0, sg.sqrt(x), 0.0)   # line +1: d sqrt = inf at 0, but its adjoint is 0
    return smooth + sg.sqrt(x * x)                # line +2: d sqrt = inf meets d(x*x) = 0: NaN


@pytest.mark.parametrize("transform", ["value_and_grad", "jit"])
def test_non_finite_values_no_result_depends_on_pass(transform):
    checked = getattr(sg, transform)
    assert checked(safe_sqrt, debug_nans=True)(-1.0) in ((0.0, 0.0), 0.0)   # the README's idiom
    assert checked(lambda x: sg.exp(sg.log(x)), debug_nans=True)(0.0) in ((0.0, 0.0), 0.0)
    assert checked(lambda x, y: x * 2.0, debug_nans=True)(1.0, np.nan) in ((2.0, 2.0), 2.0)  # y unused


@pytest.mark.parametrize("transform", ["value_and_grad", "jit"])
@pytest.mark.parametrize("fun, x, op, offset, text", [
    (branches, -1.0, "log", 2, "log(a=-1.0) = nan"),     # not the unselected sqrt before it
    (absorbed, -1.0, "sqrt", 2, "sqrt(a=-1.0) = nan"),   # not the log(0) that exp absorbed
], ids=["unselected-branch", "absorbed"])
def test_the_op_named_is_the_one_on_the_way_to_the_result(fun, x, op, offset, text, transform):
    with pytest.raises(FloatingPointError) as info:
        getattr(sg, transform)(fun, debug_nans=True)(x)
    message = str(info.value)
    assert "in the forward sweep" in message and f"= {op} %" in message and text in message
    assert _line_of(fun, offset) in message


def test_gradient_nan_names_the_reverse_step_on_its_way():
    assert sg.value_and_grad(kinked)(0.0)[0] == 0.0
    with pytest.raises(FloatingPointError) as info:
        sg.grad(kinked, debug_nans=True)(0.0)
    message = str(info.value)
    assert "in the reverse sweep" in message and "partial dsqrt/da = inf at a=0.0" in message
    assert _line_of(kinked, 2) in message and _line_of(kinked, 1) not in message
    with pytest.raises(FloatingPointError, match="reverse sweep.*dsqrt/da = inf"):
        sg.grad(sg.sqrt, debug_nans=True)(0.0)   # inf straight into the gradient


def test_the_output_that_is_non_finite_is_named():
    def pair(x):
        return x, sg.log(x)

    with pytest.raises(FloatingPointError, match=r"forward sweep \(reaching output 1\) at .*= log %"):
        sg.jit(pair, debug_nans=True)(0.0)


def test_constant_inf_is_reported_as_a_literal():
    def f(x):
        return sg.maximum(x, np.inf)

    with pytest.raises(FloatingPointError, match="the constant inf"):
        sg.jit(f, debug_nans=True)(1.0)


def test_only_requested_gradients_are_checked():
    def f(x, y):
        return x * sg.sqrt(y)      # d/dy = inf at y = 0; d/dx = sqrt(0) = 0 is fine

    assert sg.grad(f, argnums=0, debug_nans=True)(2.0, 0.0) == 0.0
    with pytest.raises(FloatingPointError, match="reverse sweep"):
        sg.grad(f, argnums=1, debug_nans=True)(2.0, 0.0)


def test_location_through_numpy_reductions_and_retraced_paths():
    def f(x):
        if x[0] > 0.0:
            return np.sum(sg.log(x))                  # line +2
        return np.sum(x * x)

    vg = sg.value_and_grad(f, debug_nans=True)
    assert vg(np.array([-1.0, 2.0]))[0] == 5.0
    with pytest.raises(FloatingPointError) as info:
        vg(np.array([1.0, 0.0]))
    assert _line_of(f, 2) in str(info.value) and "log(a=0.0) = -inf" in str(info.value)


def test_global_switch_and_keyword_override(monkeypatch):
    monkeypatch.setattr(sg.config, "debug_nans", True)
    with pytest.raises(FloatingPointError):
        sg.value_and_grad(sqrt_shifted)(0.0)
    with pytest.raises(FloatingPointError):
        sg.jit(sqrt_shifted)(0.0)
    assert np.isnan(sg.grad(sqrt_shifted, debug_nans=False)(0.0))  # the keyword wins
    monkeypatch.setattr(sg.config, "debug_nans", False)
    assert np.isnan(sg.value_and_grad(sqrt_shifted)(0.0)[0])
    with pytest.raises(FloatingPointError):
        sg.value_and_grad(sqrt_shifted, debug_nans=True)(0.0)


@pytest.mark.parametrize("setting, on", [("1", True), ("true", True), ("0", False), ("", False)])
def test_environment_variable_sets_the_default(setting, on):
    code = ("import scalargrad as sg\n"
            "try:\n    sg.grad(lambda x: sg.log(x))(0.0)\nexcept FloatingPointError:\n    print('raised')\n"
            "print(sg.config.debug_nans)")
    env = {**os.environ, "SCALARGRAD_DEBUG_NANS": setting}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == (["raised", "True"] if on else ["False"])


def rosen(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def test_finite_results_are_unchanged_and_match_finite_differences():
    x = np.linspace(-1.5, 1.5, 7)
    plain = sg.value_and_grad(rosen)(x)
    checked = sg.value_and_grad(rosen, debug_nans=True)(x)
    assert checked[0] == plain[0]
    np.testing.assert_array_equal(checked[1], plain[1])
    np.testing.assert_allclose(checked[1], central_diff(lambda *v: rosen(np.array(v)), x), rtol=1e-6)
    assert sg.jit(rosen, debug_nans=True)(x) == sg.jit(rosen)(x)
    # Decorator forms with the keyword.
    assert sg.grad(debug_nans=True)(np.sin)(0.0) == 1.0
    assert sg.jit(debug_nans=True)(np.cos)(0.0) == 1.0


def test_locating_recorder_notes_every_instruction():
    rec = debug.locating_recorder()
    from scalargrad.record.variable import recording
    with recording(rec):
        v = sg.Variable(2.0)        # inside a traced recorder: recorded as a constant
        w = sg.exp(v) + 1.0
    assert len(rec.op.where) == len(rec.op) == 4 and w._data == pytest.approx(np.e ** 2 + 1.0)
    first = test_locating_recorder_notes_every_instruction.__code__.co_firstlineno
    assert sorted(set(rec.op.where)) == [(HERE, first + 4), (HERE, first + 5)]


def test_nested_transform_is_located_at_the_users_call():
    def f(x):
        return sg.sqrt(x * x)

    outer = sg.grad(sg.grad(f), debug_nans=True)
    assert outer(2.0) == 0.0
    with pytest.raises(FloatingPointError) as info:
        outer(0.0)
    # The inner gradient's instructions are recorded by the line that calls it (this file), never
    # by the op table's generated code.
    assert f"{HERE}:" in str(info.value) and "<partial" not in str(info.value)


def guarded(x):
    if x > 0.0:                                   # points that take the other branch run one by one
        return sg.sqrt(x)
    return sg.log(-x)                             # line +3


def test_vmap_checks_the_batch_and_names_the_first_bad_point(monkeypatch):
    x = np.array([5.0, 1.0, -1.0, -3.0])         # sqrt_shifted: sqrt(x - 1) * 3
    assert np.isnan(sg.vmap(sg.jit(sqrt_shifted))(x)[2])          # switched off: nothing checks
    np.testing.assert_array_equal(sg.vmap(sg.jit(safe_sqrt, debug_nans=True))(x), [5.0 ** 0.5, 1.0, 0.0, 0.0])
    with pytest.raises(FloatingPointError) as info:
        sg.vmap(sg.jit(sqrt_shifted, debug_nans=True))(x)
    message = str(info.value)
    assert "vmap(sqrt_shifted), point 2 (of 4)" in message and "sqrt(a=-2.0) = nan" in message
    assert _line_of(sqrt_shifted, 1) in message
    with pytest.raises(FloatingPointError, match=r"point 1 \(of 4\).*reverse sweep.*dsqrt/da = inf"):
        sg.vmap(sg.grad(sqrt_shifted, debug_nans=True))(x)        # d sqrt at 0: the gradient only
    with pytest.raises(FloatingPointError, match=r"point 1 \(of 2\).*log\(a=-0.0\) = -inf") as info:
        sg.vmap(sg.jit(guarded, debug_nans=True))(np.array([1.0, 0.0]))
    assert _line_of(guarded, 3) in str(info.value)
    monkeypatch.setattr(sg.config, "debug_nans", True)
    with pytest.raises(FloatingPointError, match="point 1"):         # its gradient, before point 2's value
        sg.vmap(sg.value_and_grad(sqrt_shifted))(x)
    assert np.isnan(sg.vmap(sg.value_and_grad(sqrt_shifted, debug_nans=False))(x)[0][2])  # the keyword wins
