"""How compiled sweeps call user-defined ops (``sg.custom_op``): through C function pointers.

Each custom op is compiled (by record/custom.py) into Numba ``cfunc``s with the C signature
``double f(double a, double b)``: its forward function and its partial derivatives. A Program
appends their addresses to its literal pool (``Program.lit``, after the tape's literals, as the
bit patterns of float64 values), and a custom instruction's literal becomes the index of its first
address. One sweep kernel, compiled and cached once, thus runs any set of user ops with no
per-op compile and no extra kernel argument.

The sweeps do not make the indirect call themselves: they call ``TRAMPOLINE``, a fixed C function
(registered with LLVM's symbol table at import) that makes it. An indirect call inside the sweep
loop made every other op of the tape 2.3x slower (Rosenbrock 10^4 forward_partials, Numba 0.68);
a direct call to an outside function costs it 1.15x. Tapes without custom ops run a loop without
either (jit/generate.py).
"""
from __future__ import annotations

import llvmlite.binding
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .flags import njit

TRAMPOLINE = "scalargrad_call_custom_op_1"  # a new name if its signature ever changes
_DOUBLE = ir.DoubleType()


@intrinsic
def _call_through(typingctx, bits, a, b):
    """The C function ``double(double, double)`` whose address has the bit pattern ``bits``,
    called directly (inside the trampoline)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def lower(context, builder, signature, args):
        bits, a, b = args
        fnty = ir.FunctionType(_DOUBLE, [_DOUBLE, _DOUBLE])
        address = builder.bitcast(bits, ir.IntType(64))
        return builder.call(builder.inttoptr(address, fnty.as_pointer()), [a, b])

    return sig, lower


@numba.cfunc(types.float64(types.float64, types.float64, types.float64), cache=True)
def _trampoline(bits, a, b):
    return _call_through(bits, a, b)


llvmlite.binding.add_symbol(TRAMPOLINE, _trampoline.address)


@intrinsic
def _call_trampoline(typingctx, bits, a, b):
    """``TRAMPOLINE(bits, a, b)``: a direct call to the registered symbol."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def lower(context, builder, signature, args):
        fnty = ir.FunctionType(_DOUBLE, [_DOUBLE] * 3)
        return builder.call(cgutils.get_or_insert_function(builder.module, fnty, TRAMPOLINE), list(args))

    return sig, lower


@njit(inline="always")
def custom(lit, index, which, a, b):
    """Function ``which`` (0 forward, 1 and 2 partials) of the custom op whose addresses start at
    ``lit[index]``."""
    return _call_trampoline(lit[int(index) + which], a, b)
