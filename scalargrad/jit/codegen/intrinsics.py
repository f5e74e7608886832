"""LLVM intrinsics that generated code imports: ``select`` (a branchless conditional), the reverse
sweep's steps ``acc``, ``acc0`` and ``muladd``, and lane code's ``transpose4``. Each is one call that
Numba types and lowers much faster than the equivalent expression, with Python's exact semantics
(two roundings, no fused multiply-add; ``g != 0.0`` true for NaN).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

# The generated code is in SSA form without branches (each variable assigned once, one basic block
# up to the guard test): Numba's SSA reconstruction is quadratic in reassigned variables times
# blocks, and dominated compile time when adjoints were accumulated with `+=` under `if`; calls to
# helper functions were not inlined. So conditionals become ``select`` (an LLVM select: both sides
# evaluated, which is harmless for these pure expressions) and ``and``/``or`` become ``&``/``|``.

@intrinsic
def select(typingctx, cond, x, y):
    """``x if cond else y`` for float64 x and y, without a branch (both are already evaluated)."""
    if not (isinstance(cond, types.Boolean) and x == types.float64 and y == types.float64):
        return None

    def lower(context, builder, signature, args):
        return builder.select(args[0], args[1], args[2])

    return types.float64(cond, x, y), lower


def _float_signature(*args):
    return types.float64(*args) if all(a == types.float64 for a in args) else None


def _add_product(builder, total, partial, g):  # total + partial * g, two roundings as in Python
    return builder.fadd(total, builder.fmul(partial, g))


def _skip_zero(builder, g, step, otherwise):  # `g != 0.0` is true for NaN, as in Python (une)
    return builder.select(builder.fcmp_unordered("!=", g, g.type(0.0)), step, otherwise)


# The reverse sweep's steps as single calls (one call types and lowers much faster in Numba than the
# equivalent expression): the adjoint so far plus partial * g, skipped when the adjoint g is zero;
# acc0 for a first contribution (see the note in straight.py); muladd without the test.

@intrinsic
def acc(typingctx, total, partial, g):
    """``total + partial * g if g != 0.0 else total``."""
    def lower(context, builder, signature, args):
        total, partial, g = args
        return _skip_zero(builder, g, _add_product(builder, total, partial, g), total)
    return _float_signature(total, partial, g), lower


@intrinsic
def acc0(typingctx, partial, g):
    """``partial * g if g != 0.0 else 0.0``."""
    def lower(context, builder, signature, args):
        partial, g = args
        return _skip_zero(builder, g, builder.fmul(partial, g), partial.type(0.0))
    return _float_signature(partial, g), lower


@intrinsic
def muladd(typingctx, total, partial, g):
    """``total + partial * g`` (two roundings, not a fused multiply-add)."""
    def lower(context, builder, signature, args):
        return _add_product(builder, *args)
    return _float_signature(total, partial, g), lower


@intrinsic
def transpose4(typingctx, src, s, ss, dst, d, ds):
    """``dst.flat[d + i*ds + j] = src.flat[s + j*ss + i]`` for i, j < 4: a 4 × 4 block of doubles
    transposed with four vector loads, eight shuffles and four vector stores."""
    def lower(context, builder, signature, args):
        src_data = context.make_array(signature.args[0])(context, builder, args[0]).data
        dst_data = context.make_array(signature.args[3])(context, builder, args[3]).data
        vector = ir.VectorType(ir.DoubleType(), 4)

        def at(data, start, stride, k):
            offset = builder.add(start, builder.mul(stride, ir.Constant(stride.type, k)))
            return builder.bitcast(builder.gep(data, [offset]), vector.as_pointer())

        def shuffle(a, b, mask):
            return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 4), mask))

        rows = [builder.load(at(src_data, args[1], args[2], k), align=8) for k in range(4)]
        low01, high01 = shuffle(rows[0], rows[1], [0, 4, 2, 6]), shuffle(rows[0], rows[1], [1, 5, 3, 7])
        low23, high23 = shuffle(rows[2], rows[3], [0, 4, 2, 6]), shuffle(rows[2], rows[3], [1, 5, 3, 7])
        columns = [shuffle(low01, low23, [0, 1, 4, 5]), shuffle(high01, high23, [0, 1, 4, 5]),
                   shuffle(low01, low23, [2, 3, 6, 7]), shuffle(high01, high23, [2, 3, 6, 7])]
        for k, column in enumerate(columns):
            builder.store(column, at(dst_data, args[4], args[5], k), align=8)
        return context.get_dummy_value()
    return types.void(src, s, ss, dst, d, ds), lower
