"""Bad input to the public API: each gives a clear error naming the argument at fault, or a
documented IEEE result, and never crashes the interpreter."""
from __future__ import annotations

import decimal
import re
import warnings

import numpy as np
import pytest

import scalargrad as sg


def fs(x):
    return np.sum(x * x)


def f2(x, y):
    return x * y


with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    MATRIX = np.matrix([[1.0, 2.0]])


def _readonly(a):
    a.setflags(write=False)
    return a


# (id, argument, error type, message fragment) for sg.value_and_grad(fs)(argument) and sg.jit(fs).
BAD_ARGUMENTS = [
    ("str", "1.0", TypeError, "argument 0 ('x'): expected a float"),
    ("list with a str", [1.0, "2"], TypeError, "argument 0 ('x')[1]: expected a float"),
    ("dict with a set", {"a": 1.0, "b": {2.0}}, TypeError, "argument 0 ('x')['b']: expected a float"),
    ("set", {1.0}, TypeError, "got set"),
    ("complex", 1j, TypeError, "complex numbers are not supported"),
    ("bool", True, TypeError, "bool is not differentiable"),
    ("numpy bool", np.bool_(True), TypeError, "bool is not differentiable"),
    ("Decimal", decimal.Decimal("1.5"), TypeError, "got Decimal"),
    ("object array", np.array([1.0, 2.0], dtype=object), TypeError, "real numeric dtype, got object"),
    ("complex array", np.ones(2, complex), TypeError, "got complex128"),
    ("bool array", np.ones(2, bool), TypeError, "got bool"),
    ("datetime array", np.array(["2020-01-01"], dtype="datetime64[D]"), TypeError, "got datetime64"),
    ("str array", np.array(["a"]), TypeError, "got <U1"),
    ("structured array", np.zeros(2, dtype=[("a", "f8")]), TypeError, "real numeric dtype"),
    ("masked array", np.ma.array([1.0, 2.0], mask=[0, 1]), TypeError, "MaskedArray is not supported"),
    ("matrix", MATRIX, TypeError, "matrix is not supported"),
    ("huge int", 10**400, OverflowError, "argument 0 ('x'): an int of 1329 bits is too large"),
]


@pytest.mark.parametrize("transform", ["value_and_grad", "jit"])
@pytest.mark.parametrize("case", BAD_ARGUMENTS, ids=lambda c: c[0])
def test_bad_arguments_name_the_argument(case, transform):
    _, arg, error, fragment = case
    with pytest.raises(error) as info:
        getattr(sg, transform)(fs)(arg)
    assert fragment in str(info.value)


def test_bad_argument_in_second_position_is_named():
    with pytest.raises(OverflowError, match=r"argument 1 \('y'\)"):
        sg.grad(f2)(1.0, -10**400)
    with pytest.raises(TypeError, match=r"argument 1 \('y'\): expected a float"):
        sg.grad(f2)(1.0, "2")


# Inputs that are unusual but valid: (id, argument, value of fs, gradient), checked by hand.
ODD_BUT_VALID = [
    ("empty array", np.zeros(0), 0.0, np.zeros(0)),
    ("empty 2-d", np.zeros((0, 3)), 0.0, np.zeros((0, 3))),
    ("0-d array", np.array(2.0), 4.0, np.array(4.0)),
    ("float32", np.ones(3, np.float32), 3.0, np.full(3, 2.0)),
    ("uint8", np.arange(3, dtype=np.uint8), 5.0, np.array([0.0, 2.0, 4.0])),
    ("big-endian", np.ones(3, ">f8"), 3.0, np.full(3, 2.0)),
    ("strided view", np.arange(10.0)[::3], 126.0, np.array([0.0, 6.0, 12.0, 18.0])),
    ("Fortran order", np.asfortranarray(np.arange(6.0).reshape(2, 3)), 55.0, 2 * np.arange(6.0).reshape(2, 3)),
    ("read-only", _readonly(np.ones(3)), 3.0, np.full(3, 2.0)),
    ("float subclass", type("F", (float,), {})(2.0), 4.0, 4.0),
    ("numpy int", np.int64(3), 9.0, 6.0),
]


@pytest.mark.parametrize("case", ODD_BUT_VALID, ids=lambda c: c[0])
def test_unusual_valid_arguments(case):
    _, arg, value, grad = case
    v, g = sg.value_and_grad(fs)(arg)
    assert v == value and np.shape(g) == np.shape(grad)
    np.testing.assert_array_equal(g, grad)
    assert sg.jit(fs)(arg) == value


def test_non_finite_arguments_give_ieee_results():
    # Documented in docs/semantics.md: NaN propagates, inf * inf = inf, inf - inf = nan.
    v, g = sg.value_and_grad(fs)(np.array([np.nan, 1.0]))
    assert np.isnan(v) and np.isnan(g[0]) and g[1] == 2.0
    assert sg.value_and_grad(fs)(np.inf) == (np.inf, np.inf)
    v, g = sg.value_and_grad(lambda x: x - x)(np.inf)
    assert np.isnan(v) and g == 0.0
    assert sg.value_and_grad(fs)(1e308) == (np.inf, 2e308)  # overflow to inf, a finite gradient
    assert sg.value_and_grad(fs)(5e-324) == (0.0, 1e-323)    # subnormals are kept, not flushed


@pytest.mark.parametrize("argnums, error, fragment", [
    ("0", TypeError, "argnums must be an int or a tuple of ints"),
    (1.5, TypeError, "argnums must be an int or a tuple of ints"),
    (True, TypeError, "argnums must be an int or a tuple of ints"),
    (None, TypeError, "argnums must be an int or a tuple of ints"),
    ({0}, TypeError, "argnums must be an int or a tuple of ints"),
    (-5, ValueError, "argnums=-5 but it was called with 2 positional arguments"),
    (2, ValueError, "argnums=2 but it was called with 2 positional arguments"),
])
def test_bad_argnums(argnums, error, fragment):
    with pytest.raises(error, match=fragment):
        sg.grad(f2, argnums=argnums)(1.0, 2.0)


@pytest.mark.parametrize("transform", [sg.grad, sg.value_and_grad, sg.jit])
@pytest.mark.parametrize("fun", [42, "f", object(), np.zeros(3)], ids=lambda f: type(f).__name__)
def test_non_callables_are_refused(transform, fun):
    with pytest.raises(TypeError, match="expects a function, got"):
        transform(fun)


@pytest.mark.parametrize("result, error, fragment", [
    (None, TypeError, "returned None: a traced function must return at least one output"),
    ("x", TypeError, "got str"),
    (1j, TypeError, "got complex"),
    ({}, ValueError, "returned {}, which holds no numbers"),
    ({"a": [1.0, "b"]}, TypeError, "output ['a'][1] must be a scalar (a number or a Variable), got str"),
])
def test_bad_return_values(result, error, fragment):
    for transform in (sg.grad, sg.jit):
        with pytest.raises(error, match=re.escape(fragment)):
            transform(lambda x: result)(1.0)


def test_nested_return_value_is_a_pytree_for_jit_and_an_error_for_grad():
    assert sg.jit(lambda x: [[x]])(1.0) == [[1.0]]
    with pytest.raises(TypeError, match=re.escape("must return a scalar to be differentiated, got a pytree [[*]]")):
        sg.grad(lambda x: [[x]])(1.0)


def test_bad_call_shapes():
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'z'"):
        sg.grad(f2)(1.0, 2.0, z=2.0)
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        sg.grad(f2)(1.0)
    with pytest.raises(ValueError, match="called with 0 positional arguments"):
        sg.grad(lambda: 1.0)()


def test_array_times_variable_records_elementwise():
    # Found by this sweep: ndarray * Variable (and Variable * ndarray) raised TypeError.
    w = sg.Variable(3.0)
    v = np.array([sg.Variable(1.0), sg.Variable(2.0)])
    total = np.sum(v * w) + np.sum(w * v) + np.sum(np.ones(2) * w)
    total.backward()
    assert total.data == 24.0 and w.grad == 8.0 and v[0].grad == 6.0
    g = sg.grad(lambda x, y: np.sum(x * y) + np.sum(y ** np.array([1.0, 2.0])), argnums=1)(np.ones(3), 2.0)
    assert g == pytest.approx(3.0 + 1.0 + 4.0)


def test_elementwise_edge_values_do_not_warn():
    with np.errstate(all="raise"):  # IEEE results inside sg ops, whatever the caller's errstate
        out = sg.log(np.array([sg.Variable(0.0), sg.Variable(-1.0)]))
    assert out[0].data == -np.inf and np.isnan(out[1].data)


def test_vmap_bad_batches():
    with pytest.raises(ValueError, match="length 0; there is no point"):
        sg.vmap(sg.jit(fs))(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="argument 0 has in_axes=2 but only 1 dimensions"):
        sg.vmap(sg.jit(fs), in_axes=2)(np.ones(3))


def test_huge_argument_fails_before_tracing():
    # A 10^10-element view costs no memory; tracing it would need terabytes.
    x = np.broadcast_to(np.ones(1), (10**10,))
    with pytest.raises(MemoryError, match="tracing fs at 10,000,000,000 inputs needs about"):
        sg.jit(fs)(x)


@pytest.mark.parametrize("field, value, fragment", [
    ("op", "x", "'op' must hold integers"),
    ("a", [np.nan], "'a' must hold integers, got dtype float64 with fractional or non-finite"),
    ("a", [0.5], "'a' must hold integers"),
    ("a", np.array([2**32], np.int64), "'a' has values outside the int32 range"),  # wrapped to 0 before
    ("op", np.array([300]), "'op' has values outside the int8 range"),
    ("lit", ["a"], "'lit' must hold numbers"),
])
def test_tape_constructor_refuses_silent_casts(field, value, fragment):
    arrays = dict(op=[0], a=[-1], b=[-1], c=[-1], lit=[0.0], inputs=[0], outputs=[0])
    arrays[field] = value
    with pytest.raises(ValueError, match=fragment):
        sg.Tape(**arrays)


@pytest.mark.parametrize("content", [b"", b"hello\n" * 10, b"SGTAPE\r\n", b"\x93NUMPY" + bytes(100)],
                         ids=["empty", "text", "magic only", "npy"])
def test_corrupted_saved_tapes(tmp_path, content):
    path = tmp_path / "bad.sgt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a valid saved tape"):
        sg.Tape.load(path)
