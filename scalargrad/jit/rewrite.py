"""Numba loops behind the tape passes (scalargrad/jit/passes.py): one pass over k each, linear time."""
import numpy as np

from .flags import njit


@njit
def live_mask(a, b, c, roots):
    """Instructions that some root (output, guard, input) depends on."""
    n = len(a)
    live = np.zeros(n, np.bool_)
    for r in roots:
        live[r] = True
    for k in range(n - 1, -1, -1):
        if live[k]:
            if a[k] >= 0:
                live[a[k]] = True
            if b[k] >= 0:
                live[b[k]] = True
            if c[k] >= 0:
                live[c[k]] = True
    return live


@njit
def _mix(h, v):
    h ^= v + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2))
    return h


@njit
def common_subexpressions(op, a, b, c, lit, commutative, input_code):
    """rep[k]: the first instruction computing the same value as k (same op, same operands after
    merging, bit-identical literal); operands are rewritten to representatives. An open-addressing
    hash table of instruction indices (linear probing) keeps it linear time."""
    n = len(op)
    rep = np.arange(n)
    a2, b2, c2 = a.copy(), b.copy(), c.copy()
    bits = lit.view(np.uint64)
    size = 1
    while size < 2 * n + 2:
        size *= 2
    table = np.full(size, -1, np.int64)
    for k in range(n):
        x = rep[a[k]] if a[k] >= 0 else -1
        y = rep[b[k]] if b[k] >= 0 else -1
        z = rep[c[k]] if c[k] >= 0 else -1
        if commutative[op[k]] and y < x:
            x, y = y, x
        a2[k], b2[k], c2[k] = x, y, z
        if op[k] == input_code:
            continue
        h = np.uint64(op[k])
        h = _mix(h, np.uint64(x + 1))
        h = _mix(h, np.uint64(y + 1))
        h = _mix(h, np.uint64(z + 1))
        h = _mix(h, bits[k])
        i = np.int64(h & np.uint64(size - 1))
        while True:
            j = table[i]
            if j < 0:
                table[i] = k
                break
            if op[j] == op[k] and a2[j] == x and b2[j] == y and c2[j] == z and bits[j] == bits[k]:
                rep[k] = j
                break
            i = (i + 1) & (size - 1)
    return rep, a2, b2, c2


@njit
def foldable(op, a, b, c, input_code, const_code):
    """Instructions whose operands are all constants, directly or through folded instructions."""
    n = len(op)
    known = np.zeros(n, np.bool_)
    fold = np.zeros(n, np.bool_)
    for k in range(n):
        o = op[k]
        if o == const_code:
            known[k] = True
        elif o != input_code:
            ok = True
            if a[k] >= 0 and not known[a[k]]:
                ok = False
            if b[k] >= 0 and not known[b[k]]:
                ok = False
            if c[k] >= 0 and not known[c[k]]:
                ok = False
            known[k] = ok
            fold[k] = ok
    return fold
