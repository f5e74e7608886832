"""The op table's functions that generated Numba code takes from core/float_math.py instead of
``math`` (``floor ceil rint cbrt``: Numba's CPU ``math.floor`` is an int, CUDA has no ``np.floor``),
registered with ``register_jitable``: Numba compiles their Python definitions inline, for the CPU
and for CUDA alike (a 'generic' overload), and the CUDA simulator calls them as Python.
"""
from numba.extending import register_jitable

from ..core import float_math
from ..core.ops import FROM_FLOAT_MATH

__all__ = FROM_FLOAT_MATH  # what generated code imports from here
# register_jitable returns the function itself, so these names are float_math's
globals().update({name: register_jitable(getattr(float_math, name)) for name in FROM_FLOAT_MATH})
