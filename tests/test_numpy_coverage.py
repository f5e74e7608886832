"""NumPy functions recorded through the op table's rows of issue 22 (log10 log2 cbrt hypot logaddexp floor
ceil round sign mod floordiv isnan, float_power as pow), checked against NumPy itself: derivatives against
central differences of NumPy's own functions (scalar arguments, array arguments, eager Variables),
values at IEEE edge values against the ufuncs, second derivatives, ``%`` and ``//`` with Python
numbers, ``np.std``/``np.var``, the CUDA simulator, and the error for a ufunc without a row."""
from __future__ import annotations

import itertools
import re
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_identical, assert_runs_under_cuda_simulator, central_diff, second_diff

import scalargrad as sg
from scalargrad.core.ops import BY_NAME, OPS
from scalargrad.record.operators import UFUNCS

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"

NEW_ROWS = ("log10", "log2", "cbrt", "hypot", "logaddexp", "floor", "ceil", "round", "sign", "mod", "floordiv",
            "isnan")

# name -> (function written with NumPy / Python operators, smooth points). On plain floats the
# functions are NumPy's (and Python's % and //): the oracle the recorded ops are checked against.
# Piecewise-constant ones are multiplied by an operand so that their zero derivative shows in the
# product rule.
FUNCTIONS = {
    "log10": (lambda x: np.log10(x), [(0.3,), (1.7,), (250.0,)]),
    "log2": (lambda x: np.log2(x), [(0.3,), (1.7,), (250.0,)]),
    "cbrt": (lambda x: np.cbrt(x), [(-2.5,), (-0.4,), (0.3,), (27.5,)]),
    "hypot": (lambda x, y: np.hypot(x, y), [(-1.2, 0.7), (3.0, -4.0), (1e-3, 2.0)]),
    "logaddexp": (lambda x, y: np.logaddexp(x, y), [(0.3, -1.2), (50.0, 49.0), (-700.0, -701.5), (2.0, 2.0)]),
    "float_power": (lambda x, y: np.float_power(x, y), [(1.3, 2.7), (0.5, -1.5), (2.0, 3.0)]),
    "floor": (lambda x: np.floor(x) * x, [(2.3,), (-2.3,), (0.4,)]),
    "ceil": (lambda x: np.ceil(x) * x, [(2.3,), (-2.3,), (0.4,)]),
    "round": (lambda x: np.round(x) * x, [(2.3,), (-2.7,), (0.4,)]),
    "rint": (lambda x: np.rint(x) * x, [(2.3,), (-2.7,)]),
    "sign": (lambda x: np.sign(x) * x * x, [(2.3,), (-2.7,)]),
    "mod": (lambda x, y: x % y, [(5.3, 2.0), (-5.3, 2.0), (5.3, -2.0), (-5.3, -2.0), (0.7, 2.5)]),
    "np.mod": (lambda x, y: np.mod(x, y) * x, [(5.3, 2.0), (-5.3, 1.5)]),
    "floordiv": (lambda x, y: (x // y) * x * y, [(5.3, 2.0), (-5.3, 2.0), (5.3, -1.5)]),
    "np.floor_divide": (lambda x, y: np.floor_divide(x, y) * y, [(5.3, 2.0), (-5.3, 2.0)]),
    "isnan": (lambda x: np.isnan(x) + x, [(0.5,), (-3.0,)]),
}
CASES = [(name, point) for name, (_, points) in FUNCTIONS.items() for point in points]


def _case_id(case):
    return f"{case[0]}-{'_'.join(map(str, case[1]))}"


def _fd(f, point):
    with np.errstate(all="ignore"):
        return central_diff(f, np.array(point, dtype=np.float64), h=1e-6)


def _check(grads, expected, what):
    np.testing.assert_allclose(np.atleast_1d(np.asarray(grads, dtype=np.float64)), expected,
                               rtol=1e-6, atol=1e-8, err_msg=what)


def test_each_new_function_has_its_own_row_and_numpy_names():
    for name in NEW_ROWS:
        assert BY_NAME[name].numpy, name
    assert "float_power" in BY_NAME["pow"].numpy  # the same op: no duplicate row
    assert sum("float_power" in op.numpy for op in OPS) == 1
    assert BY_NAME["mod"].pyops == ("__mod__", "__rmod__")
    assert BY_NAME["floordiv"].pyops == ("__floordiv__", "__rfloordiv__")


# --- first derivatives against central differences of NumPy's functions -----------------------------

@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_grad_with_scalar_arguments_matches_central_differences(case):
    name, point = case
    f = FUNCTIONS[name][0]
    value, grads = sg.value_and_grad(f, argnums=tuple(range(len(point))))(*point)
    assert value == pytest.approx(float(f(*point)), rel=1e-14)
    _check(grads, _fd(f, point), f"{name} at {point}")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_grad_with_an_array_argument_matches_central_differences(name):
    """Every point of a case list as one array argument (the second operand, if any, reversed)."""
    f, points = FUNCTIONS[name]
    columns = np.array(points, dtype=np.float64).T
    if len(columns) == 1:
        def total(x):
            return np.sum(f(x) * np.arange(1.0, len(x) + 1.0))
        x = columns[0]
    else:
        n = columns.shape[1]

        def total(x):
            return np.sum(f(x[:n], x[n:]))
        x = columns.reshape(-1)
    value, grad = sg.value_and_grad(total)(x)
    assert value == pytest.approx(float(total(x)), rel=1e-13)
    _check(grad, _fd(lambda *xs: total(np.array(xs)), x), name)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_eager_backward_matches_central_differences(case):
    name, point = case
    f = FUNCTIONS[name][0]
    leaves = [sg.Variable(v) for v in point]
    out = f(*leaves)
    assert isinstance(out, sg.Variable)
    out.backward()
    assert out.data == pytest.approx(float(f(*point)), rel=1e-14)
    _check([v.grad for v in leaves], _fd(f, point), f"eager {name} at {point}")


def test_eager_object_arrays_record_through_numpy():
    """np.log10, np.cbrt, np.hypot, np.round, % and // on object arrays of Variables (NumPy's
    object loops call the Variables' methods and operators)."""
    x0 = np.array([0.7, 2.4, 3.6])
    leaves = [sg.Variable(v) for v in x0]
    arr = np.array(leaves, dtype=object)

    def f(a):
        return np.sum(np.log10(a) * np.cbrt(a) + np.hypot(a, a[::-1]) + np.round(a) * a + a % 1.5 + (a // 1.5) * a)

    out = f(arr)
    out.backward()
    assert out.data == pytest.approx(f(x0), rel=1e-14)
    _check([v.grad for v in leaves], _fd(lambda *xs: f(np.array(xs)), x0), "object array")


# --- values at IEEE edge values against the NumPy ufuncs themselves --------------------------------

SPECIAL = (0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, 1e300, -1e-300, np.inf, -np.inf, np.nan)
UFUNC_CASES = [(ufunc, name) for name in NEW_ROWS + ("pow",) for ufunc in BY_NAME[name].numpy]


@pytest.mark.parametrize("ufunc, row", UFUNC_CASES, ids=[u for u, _ in UFUNC_CASES])
def test_values_at_special_points_are_numpys_in_every_backend(ufunc, row):
    """Bit for bit (±0 included), NaN where NumPy's is, through the interpreter, eager Variables and
    the generated per-tape code, with no warning; within an ulp for the functions computed by a
    C library function that NumPy and Python may take from different implementations."""
    fn = getattr(np, ufunc)
    points = np.array(list(itertools.product(SPECIAL, repeat=fn.nin)), dtype=np.float64)
    with np.errstate(all="ignore"):
        expected = fn(*points.T).astype(np.float64)
    f = lambda *x: fn(*x)  # noqa: E731
    jitted = sg.jit(f)
    generated = sg.jit(f, backend="codegen")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled = np.array([jitted(*p) for p in points])
        codegen = np.array([generated(*p) for p in points])
        eager = np.array([fn(*map(sg.Variable, p)).data for p in points])
    exact = row in ("floor", "ceil", "round", "sign", "mod", "floordiv", "isnan", "logaddexp")
    for got, what in ((compiled, "interpreter"), (codegen, "codegen"), (eager, "eager")):
        if exact:
            assert_identical(got, expected, what=f"np.{ufunc} {what}")
        else:
            np.testing.assert_allclose(got, expected, rtol=4e-16, atol=0, equal_nan=True, err_msg=f"np.{ufunc} {what}")


def test_round_halves_to_even_keeping_the_sign_as_numpy():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999999999999994, -0.4, 4503599627370495.5])
    expected = np.array([0.0, 2.0, 2.0, -0.0, -2.0, -2.0, 0.0, -0.0, 4503599627370496.0])
    assert_identical(np.round(x), expected)  # the oracle itself
    assert_identical(sg.vmap(sg.jit(np.round))(x), expected, what="vmap(jit)")
    assert_identical([sg.round(sg.Variable(v)).data for v in x], expected, what="eager")
    assert_identical([round(float(v), 0) for v in x], expected, what="Python's round(x, 0)")


def test_piecewise_constant_ops_have_zero_derivative_also_where_they_jump():
    for f in (np.floor, np.ceil, np.round, np.sign, lambda x: x // 1.0):
        for x in (2.0, -2.0, 0.5, -0.0, 2.5):
            assert sg.grad(f)(x) == 0.0
    assert sg.grad(lambda a, b: a // b, argnums=(0, 1))(6.0, 2.0) == (0.0, 0.0)


@pytest.mark.parametrize("a, b", [(7.5, 2.0), (-7.5, 2.0), (7.5, -2.0), (6.0, 2.0), (-0.5, 3.0), (0.25, 1e-3)])
def test_mod_derivative_in_the_divisor_is_minus_the_floor_quotient(a, b):
    value, (da, db) = sg.value_and_grad(lambda a, b: a % b, argnums=(0, 1))(a, b)
    assert value == a % b
    assert (da, db) == (1.0, -(a // b))
    if (a / b) % 1.0 != 0.0:  # away from the jumps, where the rule is the derivative
        _check([da, db], _fd(lambda a, b: a % b, (a, b)), f"{a} % {b}")


def test_division_by_zero_gives_numpys_values_without_raising():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for a in (1.5, -1.5, 0.0):
            mod = sg.jit(lambda a, b: a % b)(a, 0.0)
            div = sg.jit(lambda a, b: a // b)(a, 0.0)
            eager_mod = (sg.Variable(a) % 0.0).data
            eager_div = (sg.Variable(a) // 0).data
            with np.errstate(all="ignore"):
                assert_identical([mod, eager_mod], [np.remainder(a, 0.0)] * 2, what=f"{a} % 0")
                assert_identical([div, eager_div], [np.floor_divide(a, 0.0)] * 2, what=f"{a} // 0")


# --- % and // with Python numbers on either side ---------------------------------------------------

@pytest.mark.parametrize("f", [
    lambda x: x % 3, lambda x: 7 % x, lambda x: x % 2.5, lambda x: 7.5 % x, lambda x: x % np.float64(2.0),
    lambda x: np.float64(7.5) % x, lambda x: (x // 2) * x, lambda x: (7 // x) * x, lambda x: (x // 0.75) * x,
    lambda x: (-7.5 // x) * x, lambda x: (x % -2) * x,
], ids=["v%3", "7%v", "v%2.5", "7.5%v", "v%np2", "np7.5%v", "v//2", "7//v", "v//0.75", "-7.5//v", "v%-2"])
@pytest.mark.parametrize("x", [2.3, -3.1])
def test_mod_and_floordiv_with_python_numbers(f, x):
    expected = f(x)  # Python's (or NumPy's) float arithmetic
    value, grad = sg.value_and_grad(f)(x)
    leaf = sg.Variable(x)
    eager = f(leaf)
    assert value == expected and eager.data == expected
    _check(grad, _fd(f, (x,)), "grad")
    eager.backward()
    assert leaf.grad == grad


def test_mod_and_floordiv_of_a_variable_and_an_unsupported_type_raise_typeerror():
    with pytest.raises(TypeError, match="%"):
        sg.Variable(1.0) % "2"
    with pytest.raises(TypeError, match="//"):
        [1] // sg.Variable(2.0)


# --- isnan -------------------------------------------------------------------------------------------

def test_isnan_is_a_value_with_zero_derivative_and_guards_when_branched_on():
    f = sg.jit(lambda x: np.isnan(x) * 2.0)
    assert (f(np.nan), f(1.0), f(np.inf)) == (2.0, 0.0, 0.0)
    assert sg.grad(lambda x: np.isnan(x) + 3.0 * x)(1.0) == 3.0

    def clean(x):
        if np.isnan(x):
            return 0.0 * x
        return x * x
    g = sg.grad(clean)
    assert g(3.0) == 6.0 and g(np.nan) == 0.0 and g(2.0) == 4.0  # the guard retraces, then returns

    masked = sg.grad(lambda v: np.sum(np.where(np.isnan(v), 0.0, v * v)))
    assert_identical(masked(np.array([1.0, np.nan, 2.0])), [2.0, 0.0, 4.0])


# --- second derivatives ------------------------------------------------------------------------------

@pytest.mark.parametrize("f, x", [
    (lambda v: np.hypot(v[0], v[1]) * np.log10(v[0]) + np.logaddexp(v[0], v[1]) + np.cbrt(v[1]), [1.3, -0.8]),
    (lambda v: np.sum(np.log2(v) * np.cbrt(v)) + np.float_power(v[0], v[2]), [0.6, 1.7, 2.2]),
    (lambda v: (v[0] % v[1]) * v[0] * v[1] + np.floor(v[0]) * v[1] ** 2, [5.3, 2.1]),
], ids=["hypot-log10-logaddexp-cbrt", "log2-cbrt-float_power", "mod-floor"])
def test_hessian_matches_second_differences(f, x):
    x = np.array(x)
    np.testing.assert_allclose(sg.hessian(f)(x), second_diff(lambda *xs: f(np.array(xs)), x, h=1e-4),
                               rtol=1e-5, atol=1e-5)


def test_eager_create_graph_differentiates_mod_twice():
    a, b = sg.Variable(5.3), sg.Variable(2.1)
    out = (a % b) * b
    out.backward(create_graph=True)
    db = b.grad  # (a % b) - b * (a // b) with a // b a recorded (floordiv) value
    a.zero_grad()
    b.zero_grad()
    db.backward()
    assert db.data == pytest.approx((5.3 % 2.1) - 2.1 * (5.3 // 2.1), rel=1e-14)
    assert (a.grad, b.grad) == (1.0, -2.0 * (5.3 // 2.1))


# --- np.std, np.var and np.mean ------------------------------------------------------------------

@pytest.mark.parametrize("f", [
    lambda x: np.std(x), lambda x: np.var(x), lambda x: np.std(x, ddof=1), lambda x: np.var(x, ddof=1),
    lambda x: np.mean(x) * np.std(x), lambda x: np.std(x * x, axis=None),
], ids=["std", "var", "std-ddof1", "var-ddof1", "mean-std", "std-axis-None"])
def test_std_var_and_mean_of_an_array_argument(f):
    x = np.array([0.3, -1.2, 2.5, 0.9])
    value, grad = sg.value_and_grad(f)(x)
    assert value == pytest.approx(f(x), rel=1e-13)
    _check(grad, _fd(lambda *xs: f(np.array(xs)), x), "traced")
    leaves = [sg.Variable(v) for v in x]
    out = f(np.array(leaves, dtype=object))
    out.backward()
    np.testing.assert_allclose([v.grad for v in leaves], grad, rtol=1e-12, err_msg="eager object array")


# --- what has no row ----------------------------------------------------------------------------------

@pytest.mark.parametrize("call, name", [
    (lambda v: np.frexp(v), "frexp"), (lambda v: np.gcd(v, 2), "gcd"), (lambda v: np.fmod(v, 2.0), "fmod"),
    (lambda v: np.logaddexp2(v, 1.0), "logaddexp2"), (lambda v: np.exp2(v), "exp2"),
])
def test_a_ufunc_without_a_row_raises_typeerror_naming_it(call, name):
    for where, run in (("eager", lambda: call(sg.Variable(1.5))), ("grad", lambda: sg.grad(call)(1.5))):
        with pytest.raises(TypeError, match=f"np.{name} has no scalargrad op") as info:
            run()
        assert "sg.custom_op" in str(info.value), where


def test_the_guide_names_every_numpy_ufunc_that_records():
    section = GUIDE.read_text(encoding="utf-8").split("\n## NumPy functions\n")[1].split("\n## ")[0]
    missing = sorted(u.__name__ for u in UFUNCS if not re.search(rf"\b{u.__name__}\b", section))
    assert not missing, f"docs/guide.md's NumPy section does not name {missing}"


# --- the CUDA path, under Numba's simulator ----------------------------------------------------------

SIMULATED = textwrap.dedent("""
    import itertools
    import numpy as np, scalargrad as sg
    def f(v):
        x, y = v[0], v[1]
        return (np.log10(x) + np.log2(y) * np.cbrt(x) + np.hypot(x, y) + np.logaddexp(x, y) + x % y
                + (x // y) * x + np.floor(x) + np.ceil(y) * x + np.round(x) + np.isnan(x) + np.float_power(x, y))
    # the simulator runs the sweeps as Python, whose math functions raise outside their domains
    halves = [0.5, 1.5, 2.5, 3.0]  # round's ties, floor's and ceil's integers, a // b exact
    X = np.concatenate([np.random.default_rng(0).uniform(0.1, 3.0, (16, 2)),
                        np.array(list(itertools.product(halves, repeat=2)))])
    for fn in (sg.jit(f), sg.value_and_grad(f)):
        gpu, cpu = sg.vmap(fn, device="cuda")(X), sg.vmap(fn)(X)
        for g, c in zip(gpu if isinstance(gpu, tuple) else (gpu,), cpu if isinstance(cpu, tuple) else (cpu,)):
            assert np.allclose(g, c, rtol=1e-13, atol=0), (g, c)
    print("simulated ok")
""")


def test_new_ops_on_the_cuda_path_agree_with_the_cpu_under_the_simulator():
    assert_runs_under_cuda_simulator(SIMULATED)
