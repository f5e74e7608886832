"""How compiled sweeps call user-defined ops (``sg.custom_op``): through C function pointers.

Each custom op is compiled (by custom.py) into Numba ``cfunc``s with the C signature
``double f(double a, double b)``: its forward function and its partial derivatives. A Program
appends their addresses to its literal pool (``Program.lit``, after the tape's literals, as the
bit patterns of float64 values), and a custom instruction's literal becomes the index of its first
address. One sweep kernel, compiled and cached once, thus runs any set of user ops with no
per-op compile and no extra kernel argument; an indirect call costs a few nanoseconds.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .flags import njit


@intrinsic
def _call_address(typingctx, bits, a, b):
    """Call the C function ``double(double, double)`` whose address has the bit pattern ``bits``."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def lower(context, builder, signature, args):
        bits, a, b = args
        fnty = ir.FunctionType(ir.DoubleType(), [ir.DoubleType(), ir.DoubleType()])
        address = builder.bitcast(bits, ir.IntType(64))
        return builder.call(builder.inttoptr(address, fnty.as_pointer()), [a, b])

    return sig, lower


@njit(inline="always")
def custom(lit, index, which, a, b):
    """Function ``which`` (0 forward, 1 and 2 partials) of the custom op whose addresses start at
    ``lit[index]``."""
    return _call_address(lit[int(index) + which], a, b)
