"""Four points at a time through glibc's libmvec: the opt-in vector math of batched sweeps.

Numba calls libm one value at a time: LLVM vectorises calls to transcendental functions only with
Intel's SVML, which the pip llvmlite cannot use. glibc ships AVX2 versions that take four doubles
in one register (``_ZGVdN4v_sin``, ``_ZGVdN4vv_atan2``, ...); ``VECTOR["sin"](x0, x1, x2, x3)``
returns ``(sin(x0), ..., sin(x3))`` through them, from Numba code (jit/generate.py writes the
batch sweeps that call them: the ``_vector`` flavour). On this project's machine they take a third
of the time of four libm calls (sin 3.8 against 11.5 ns a value, tanh 4.9 against 17 ns).

Their results may differ from libm's in the last bits: glibc tested them to within 4 ulp (its
libmvec wiki page), its libm is within about 1. So the batch sweeps use them only when asked
(``sg.vmap(..., vector_math=True)``), and only where ``AVAILABLE``: Linux with a glibc that has
every one of them (2.35 or later), and Numba compiling for a CPU with AVX2, whose registers carry
the four doubles. Elsewhere ``UNAVAILABLE_REASON`` says why, and batches use libm.
"""
from __future__ import annotations

import ctypes
import sys

import llvmlite.binding
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# Functions of the op table's expressions (ops.FUNCTIONS) with a 4-lane AVX2 version, and their
# number of arguments. sqrt and fabs are not here: LLVM vectorises them itself.
ARITY = {"exp": 1, "log": 1, "log1p": 1, "expm1": 1, "sin": 1, "cos": 1, "tan": 1, "tanh": 1,
         "sinh": 1, "cosh": 1, "asin": 1, "acos": 1, "atan": 1, "atan2": 2, "pow": 2}
LANES = 4
LIBRARY = "libmvec.so.1"  # glibc's soname for libmvec (since 2.22); loaded by name, as ctypes.util.find_library
# would run ldconfig in a subprocess at every import of scalargrad
_VECTOR = ir.VectorType(ir.DoubleType(), LANES)


def symbol(name: str) -> str:
    """libmvec's name for the AVX2 4-lane ``name``: the x86 vector-function ABI mangling."""
    return f"_ZGVdN{LANES}{'v' * ARITY[name]}_{name}"


def _find() -> str:
    """'' when every function can be called, else why not; registers them with LLVM if so."""
    if not sys.platform.startswith("linux"):
        return f"glibc's libmvec is a Linux library (this is {sys.platform})"
    if numba.config.CPU_NAME is not None or numba.config.CPU_FEATURES is not None:
        return "Numba compiles for a CPU named by NUMBA_CPU_NAME / NUMBA_CPU_FEATURES, not this one"
    if not llvmlite.binding.get_host_cpu_features().get("avx2", False):
        return "this CPU has no AVX2"
    try:
        library = ctypes.CDLL(LIBRARY)
    except OSError as error:
        return f"glibc's {LIBRARY} could not be loaded: {error}"
    missing = [symbol(name) for name in ARITY if not hasattr(library, symbol(name))]
    if missing:
        return f"{LIBRARY} lacks {', '.join(missing)} (glibc 2.35 or later has them)"
    for name in ARITY:
        address = ctypes.cast(getattr(library, symbol(name)), ctypes.c_void_p).value
        llvmlite.binding.add_symbol(symbol(name), address)
    return ""


UNAVAILABLE_REASON = _find()
AVAILABLE = not UNAVAILABLE_REASON


def _lower(name: str):
    """Code generator: pack each argument's four lanes in one vector, call, unpack the result."""
    def lower(context, builder, signature, args):
        index = [ir.Constant(ir.IntType(32), lane) for lane in range(LANES)]
        vectors = []
        for start in range(0, len(args), LANES):
            vector = ir.Constant(_VECTOR, ir.Undefined)
            for lane in range(LANES):
                vector = builder.insert_element(vector, args[start + lane], index[lane])
            vectors.append(vector)
        fnty = ir.FunctionType(_VECTOR, [_VECTOR] * len(vectors))
        result = builder.call(cgutils.get_or_insert_function(builder.module, fnty, symbol(name)), vectors)
        lanes = [builder.extract_element(result, index[lane]) for lane in range(LANES)]
        return context.make_tuple(builder, signature.return_type, lanes)
    return lower


def _signature(arity: int):
    return types.UniTuple(types.float64, LANES)(*[types.float64] * (LANES * arity))


def _unary(name: str):
    @intrinsic
    def call(typingctx, x0, x1, x2, x3):
        return _signature(1), _lower(name)
    return call


def _binary(name: str):
    @intrinsic
    def call(typingctx, x0, x1, x2, x3, y0, y1, y2, y3):
        return _signature(2), _lower(name)
    return call


# Callable from Numba code only, and only where AVAILABLE (compiling a call elsewhere would leave
# LLVM an unresolved symbol).
VECTOR = {name: (_unary if arity == 1 else _binary)(name) for name, arity in ARITY.items()}
