"""The one place that holds the project's Numba flags.

cache=True: a fresh process loads compiled sweeps from disk; error_model='numpy': 1/0 -> inf and
log(-1) -> nan as in NumPy, never an exception from inside a kernel; nogil: threads run sweeps in
parallel. No fastmath: it would break NaN/inf semantics.
"""
import numba

FLAGS = dict(cache=True, error_model="numpy", nogil=True, boundscheck=False)


def njit(fn=None, **overrides):
    """``numba.njit`` with the project's flags; usable as ``@njit`` or ``@njit(parallel=True)``."""
    options = {**FLAGS, **overrides}
    if fn is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(fn)
