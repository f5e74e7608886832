"""The op table's float functions that Python's ``math`` module lacks (``cbrt`` before 3.11, ``rint``)
or gives another type (``math.floor`` is an int): NumPy's results for every float64, ±0, ±inf and
NaN included, as plain Python. Written in the subset of Python that Numba compiles for the CPU and
for CUDA (no NumPy calls: CUDA has no ``np.floor``), so the same definitions serve the eager values
and the compiled sweeps (jit/float_functions.py registers them with Numba).
"""
from __future__ import annotations

from math import copysign, inf, pow

_INTEGRAL = 4503599627370496.0  # 2**52: every float64 of at least this magnitude is an integer


def floor(x: float) -> float:
    """``np.floor(x)``: the largest integer <= x, as a float (-0.0 stays -0.0)."""
    if not abs(x) < _INTEGRAL:  # integral already, ±inf or NaN
        return x
    t = float(int(x))  # x rounded toward zero: exact below 2**52
    return copysign(t - 1.0 if t > x else t, x)


def ceil(x: float) -> float:
    """``np.ceil(x)``: the smallest integer >= x, as a float (-0.5 gives -0.0, as NumPy)."""
    if not abs(x) < _INTEGRAL:
        return x
    t = float(int(x))
    return copysign(t + 1.0 if t < x else t, x)


def rint(x: float) -> float:
    """``np.rint(x)`` (and ``np.round(x)``): the nearest integer, halves to the even one (2.5 -> 2.0),
    the sign of x kept (-0.4 -> -0.0)."""
    if not abs(x) < _INTEGRAL:
        return x
    n = int(abs(x))
    r = abs(x) - n  # exact
    if r > 0.5 or (r == 0.5 and n % 2 == 1):
        n += 1
    return copysign(float(n), x)


def cbrt(x: float) -> float:
    """``np.cbrt(x)``: the real cube root (cbrt(-8) = -2). ``pow`` with the rounded exponent 1/3 is
    off by up to 1e-14 relative; one Newton step (in a form that neither overflows nor loses
    subnormal x's digits) brings it to within an ulp of the C library's cbrt."""
    if not 0.0 < abs(x) < inf:  # ±0, ±inf and NaN are their own cube roots
        return x
    a = abs(x)
    y = pow(a, 1.0 / 3.0)
    y = y - (y - a / (y * y)) / 3.0
    return copysign(y, x)
