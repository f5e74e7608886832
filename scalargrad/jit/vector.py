"""Vector instructions: how the interpreter runs loop-structured tapes without a per-tape compile.

codegen/loops.py finds the runs of a tape that repeat one block of p instructions m times with
operands moving by fixed strides (a Python loop over array elements records such runs). Here each
run is renumbered position-major: copy t of position i moves from slot start + t*p + i to slot
start + i*m + t, so one *vector instruction* computes position i for every copy (or a grid of
copies, for a matrix-vector product), reading its operands at strided slots; instructions outside
runs are vector instructions of one copy. A run is renumbered only where that keeps the tape in
dependency order (no position reads a later position of an earlier copy), its operands move
linearly, and the reverse sweep below keeps the scalar sweeps' order; other runs stay scalar.

The sweeps (``forward_vector``, ``reverse_vector``) are generated from the op table into _interp.py:
the forward sweep stores values only, the reverse sweep recomputes each partial from them (stores,
not the dispatch, bound these loops). The reverse sweep adds adjoints in exactly the scalar sweeps'
order (instructions in descending original order, within one the first carried derivative first),
so results are bit-identical to theirs: a run is swept position by position, each position's copies
backwards, only where that order is the same for every adjoint inside the run; an adjoint outside
the run that several positions feed (Rosenbrock's x[i], read by copy i and by copy i - 1) gets them
in a scratch column, added into place afterwards in the original order (the scatter pass); a running
sum carries its adjoint from copy to copy in a register. Adjoints that no input's gradient reads
(constants') are not computed.
"""
from __future__ import annotations

import functools
import threading
import zlib
from pathlib import Path

import numba
import numpy as np

from ..core import resources
from ..core.ops import CONST, DIFF_MASK, INPUT, OPCODE, OPS
from ..core.tape import Tape
from . import kernel_cache, kernels
# inlined-sources stamp (jit/generate.py writes it; Numba's cache depends on it): bf44acf1f7e0de17
from ._interp import forward_vector, reverse_vector
from .codegen.loops import Loop
from .codegen.text import loop_plan
from .flags import njit
from .generate import VECTOR_OPS

MIN_OPS = 512        # smaller tapes run the scalar sweeps (finding loops is not worth it)
MIN_COVERED = 0.5    # ... as do tapes with less than this fraction of instructions in vector runs
MIN_COPIES = 8       # fewest copies a vector instruction is worth (codegen/loops.MIN_COUNT)
_ARITY = np.array([op.arity for op in OPS])
_VECTORIZED = np.array([op.name in VECTOR_OPS or op.name == "input" for op in OPS])

# How a vector instruction adds one of its (at most two) carried derivatives to an adjoint (rows of
# ``rev``: see generate.py): not at all (the operand is a constant, or no input depends on it),
# or in place (a scattered derivative to its column of the scratch part of the adjoint buffer).
NONE, DIRECT = 0, 1
# Reverse sweep segments (rows of ``segments``: kind, lo, hi), walked backwards: vector instructions
# [lo, hi) through the generated reverse_vector; a running sum (an add whose first operand is the
# previous copy), whose adjoint is carried from copy to copy in a register (through memory, each copy
# waits for the store of the one before: 5.3 instead of 1.4 ns a copy); a scatter pass adding scratch
# entries [lo, hi) to their ``targets``.
VECTORS, RUNNING_SUM, SCATTER_PASS = 0, 1, 2


class VectorProgram:
    """A tape renumbered into vector runs, and the arrays the vector sweeps read.

    ``program``   the renumbered tape as a kernels.Program (its io, literals and size)
    ``vop, vx``   the vector instructions: op; d, ni, no and per operand base and steps (uint64)
    ``rev``       per vector instruction, how its carried derivatives are added (uint64)
    ``segments``  the reverse sweep's steps (VECTORS, RUNNING_SUM, SCATTER_PASS), in forward order;
                  a scatter pass adds scratch entry j to adjoint ``targets[j]``
    ``covered``   the fraction of instructions in vector runs
    """

    __slots__ = ("program", "vop", "vx", "rev", "segments", "targets", "covered", "local")

    def __init__(self, program, vop, vx, rev, segments, targets, covered):
        self.program, self.vop, self.vx, self.rev = program, vop, vx, rev
        self.segments, self.targets, self.covered = segments, targets, covered
        self.local = threading.local()

    def workspace(self) -> np.ndarray:
        """This thread's buffer: values (n + 1), then adjoints (n + 1) and the scratch columns."""
        try:
            return self.local.work
        except AttributeError:
            size = 2 * (len(self.program.tape) + 1) + len(self.targets)
            resources.require(8 * size, f"a workspace for a program of {len(self.program.tape):,} instructions")
            work = self.local.work = np.zeros(size)
            return work

    def value_and_grad(self, x, grad):
        """(value of output 0, guards hold); the gradient written into ``grad``."""
        p = self.program
        p.require_output()
        return _value_and_grad(self.vop, self.vx, self.rev, self.segments, self.targets, p.lit, p.io, x, grad,
                               self.workspace())

    def evaluate(self, x, out) -> bool:
        """Writes every output into ``out``; returns whether the guards hold."""
        p = self.program
        return _evaluate(self.vop, self.vx, p.lit, p.io, x, out, self.workspace())


def build(tape: Tape):
    """The VectorProgram of ``tape``, or None where the scalar sweeps serve as well: small tapes, tapes
    with an op that has no vector instructions (generate.VECTOR_OPS; custom ops), and tapes with less
    than MIN_COVERED of their instructions in runs."""
    if len(tape) < MIN_OPS or not _VECTORIZED[tape.op].all():
        return None
    return _Builder(tape).result()


class _Builder:
    """Walks the plan's segments, renumbering the runs it can and writing the vector instructions."""

    def __init__(self, tape: Tape):
        self.tape = tape
        n = self.n = len(tape)
        self.op = tape.op.astype(np.int64)
        self.cols = np.stack([tape.a, tape.b, tape.c]).astype(np.int64)
        ra, rb = kernels.reverse_operands(tape.op, tape.a, tape.b, tape.c)
        self.carried = np.stack([ra, rb]).astype(np.int64)  # slot n: no derivative carried
        self.new = np.arange(n, dtype=np.int64)
        self.useful = np.append(_useful(self.op, self.cols, DIFF_MASK, INPUT, CONST), False)
        self.forward = []   # (op, [d, ni, no, then base and steps per operand], original slots)
        # index in forward -> (its run, position, first copy, the run's scattered (position, derivative)s)
        self.scattered = {}
        self.covered = 0

    def result(self):
        for seg in loop_plan(self.tape).segments:
            if not isinstance(seg, Loop):
                self._scalar(seg)
            elif not self._vectorize(seg):
                for k in range(seg.start, seg.stop):
                    self._scalar(k)
        if self.covered < MIN_COVERED * self.n:
            return None
        program = kernels.Program(self._renumbered())
        vop = np.array([f[0] for f in self.forward], np.int64)
        vx = np.ascontiguousarray(np.array([f[1] for f in self.forward], np.int64).reshape(-1, 12).T)
        rev, segments, targets = self._reverse()
        return VectorProgram(program, vop, vx.astype(np.uint64), rev.astype(np.uint64), segments, targets,
                             self.covered / self.n)

    # forward
    def _scalar(self, k):
        """Instruction k as a vector instruction of one copy (inputs are loaded, not computed)."""
        if self.op[k] == INPUT:
            return
        row = [int(self.new[k]), 1, 1]
        for j in range(3):
            row += [int(self.new[self.cols[j, k]]) if j < _ARITY[self.op[k]] else 0, 0, 0]
        self.forward.append((int(self.op[k]), row, np.array([k])))

    def _vectorize(self, loop: Loop) -> bool:
        """Renumber the run position-major and add its vector instructions, if each position can be
        computed for all copies before the next (it reads no later position of an earlier copy), every
        operand moves linearly (copy 0 may differ: the initial value of a carried operand) and the
        reverse sweep position by position adds each of the run's own adjoints in the original order;
        else leave the run to ``_scalar``."""
        s, p, m = loop.start, loop.period, loop.count
        ni = loop.inner or m
        no = m // ni
        if m < MIN_COPIES:
            return False
        t = np.arange(m)
        rows = []
        for i in range(p):
            old = s + t * p + i
            o = int(self.op[old[0]])
            operands = []
            for j in range(_ARITY[o]):
                q = self.cols[j, old]
                inside = q >= s
                tq, iq = (q - s) // p, (q - s) % p
                if (inside & ~((iq < i) | ((iq == i) & (tq < t)))).any():
                    return False
                operands.append(np.where(inside, s + iq * m + tq, self.new[np.maximum(q, 0)]))
            parts = _fit(operands, ni, no)
            if parts is None:
                return False
            rows.append((o, i, old, parts))
        scattered = self._scatter_refs(loop)
        if scattered is None:
            return False
        self.new[s: loop.stop] = s + (np.arange(loop.stop - s) % p) * m + np.arange(loop.stop - s) // p
        for o, i, old, parts in rows:
            for first_copy, count, steps in parts:
                pni, pno = (ni, no) if count == m else (count, 1)
                row = [s + i * m + first_copy, pni, pno]
                for j in range(3):
                    row += list(steps[j]) if j < len(steps) else [0, 0, 0]
                self.scattered[len(self.forward)] = (loop, i, first_copy, scattered)
                self.forward.append((o, row, old[first_copy: first_copy + count]))
        self.covered += p * m
        return True

    def _scatter_refs(self, loop: Loop):
        """The refs (position, derivative) of a run whose adjoints must go through the scatter pass:
        those adding to an adjoint outside the run that another ref adds to, whose order position by
        position would differ from the original. None if an adjoint inside the run would be summed in
        another order."""
        s, p, m = loop.start, loop.period, loop.count
        slots = s + np.arange(m)[:, None] * p + np.arange(p)  # original slot of (copy, position)
        tgt = self.carried[:, slots]                       # (derivative, copy, position)
        j, t, i = np.indices(tgt.shape)
        live = self.useful[tgt]
        tgt, t, i, j = tgt[live], t[live], i[live], j[live]
        original = -(t * p + i) * 2 + j   # ascending: the scalar interpreter's order
        by_position = -(i * m + t) * 2 + j
        inside = tgt >= s
        order = np.lexsort((original[inside], tgt[inside]))
        same_target = tgt[inside][order][1:] == tgt[inside][order][:-1]
        if (np.diff(by_position[inside][order]) <= 0)[same_target].any():
            return None
        out_tgt, out_ref = tgt[~inside], (i * 2 + j)[~inside]
        if not len(out_tgt):
            return []
        order = np.argsort(out_tgt, kind="stable")
        st, sr = out_tgt[order], out_ref[order]
        starts = np.flatnonzero(np.r_[True, st[1:] != st[:-1]])
        mixed = np.minimum.reduceat(sr, starts) != np.maximum.reduceat(sr, starts)
        refs = np.unique(sr[np.repeat(mixed, np.diff(np.r_[starts, len(st)]))])
        # column order: ascending (position, second derivative first), so that the scatter pass,
        # walking columns backwards, adds them as the original order does
        return sorted(((int(x) // 2, int(x) % 2) for x in refs), key=lambda ij: (ij[0], -ij[1]))

    def _renumbered(self) -> Tape:
        t, new = self.tape, self.new
        old_of_new = np.empty_like(new)
        old_of_new[new] = np.arange(self.n)
        cols = np.where(self.cols >= 0, new[np.maximum(self.cols, 0)], -1)[:, old_of_new]
        return Tape(t.op[old_of_new], cols[0], cols[1], cols[2], t.lit[old_of_new], new[t.inputs], new[t.outputs],
                    new[t.guards], t.guard_values)

    # reverse
    def _reverse(self):
        """(rev, segments, targets): how each vector instruction's derivatives are added."""
        n = self.n
        new = np.append(self.new, n)  # the no-derivative slot n stays n
        rev = np.zeros((8, len(self.forward)), np.int64)
        segments, targets = [], []
        table = None  # the scatter targets of the run being written
        add = OPCODE["add"]
        for v, (o, row, old) in enumerate(self.forward):
            d, ni, no = row[0], row[1], row[2]
            loop, i, first_copy, columns = self.scattered.get(v, (None, -1, 0, []))
            if columns and table is None:
                table = np.zeros((loop.count, len(columns)), np.int64)
                segments.append([SCATTER_PASS, len(targets), len(targets) + table.size])
            tgts = [new[self.carried[j, old]] for j in range(2)]
            for j in range(2):
                if not self.useful[self.carried[j, old]].any():
                    continue
                if (i, j) in columns:  # column r of copy t: scratch entry offset + t * R + r
                    r, R = columns.index((i, j)), len(columns)
                    table[first_copy: first_copy + len(old), r] = tgts[j]
                    steps = (n + 1 + len(targets) + first_copy * R + r, R, ni * R)
                else:
                    (_, _, (steps,)), = _fit([tgts[j]], ni, no, split=False)
                rev[4 * j, v] = DIRECT
                rev[4 * j + 1: 4 * j + 4, v] = steps
            running_sum = (o == add and no == 1 and ni > 1 and rev[0, v] == DIRECT and tuple(rev[1:4, v]) == (d - 1, 1, 0)
                           and not (tgts[1] == tgts[0]).any())
            if running_sum:
                segments.append([RUNNING_SUM, v, v + 1])
            elif segments and segments[-1][0] == VECTORS and segments[-1][2] == v:
                segments[-1][2] = v + 1
            else:
                segments.append([VECTORS, v, v + 1])
            if table is not None and self.scattered.get(v + 1, (None,))[0] is not loop:
                targets.extend(table.ravel())
                table = None
        segments = np.ascontiguousarray(np.array(segments, np.int64).reshape(-1, 3).T)
        return rev, segments, np.array(targets, np.int64)


def _fit(operands, ni, no, split=True):
    """[(first copy, copies, per operand (base, inner step, outer step))]: one part if every
    operand's slots are base + ti * inner + to * outer over the copies (t = to * ni + ti); else two
    (copy 0, and the rest moving linearly) if ``split`` and the copies are not a grid; else None."""
    whole = [_linear(q, ni, no) for q in operands]
    if all(f is not None for f in whole):
        return [(0, ni * no, whole)]
    if not split or no != 1 or ni < MIN_COPIES + 1:
        return None
    rest = [_linear(q[1:], ni - 1, 1) for q in operands]
    if any(f is None for f in rest):
        return None
    return [(0, 1, [(int(q[0]), 0, 0) for q in operands]), (1, ni - 1, rest)]


def _linear(q, ni, no):
    """(base, inner, outer) with q[t] = base + ti * inner + to * outer for t = to * ni + ti, or None.
    Steps must be non-negative (the sweeps index with unsigned integers)."""
    base = int(q[0])
    inner = int(q[1] - q[0]) if ni > 1 else 0
    outer = int(q[ni] - q[0]) if no > 1 else 0
    t = np.arange(ni * no)
    if inner >= 0 and outer >= 0 and (q == base + (t % ni) * inner + (t // ni) * outer).all():
        return base, inner, outer
    return None


@njit
def _useful(op, cols, diff_mask, input_code, const_code):
    """Slots whose adjoint some input's gradient reads: those with a differentiable path to an input."""
    n = len(op)
    useful = op == input_code
    for k in range(n):
        if not useful[k] and op[k] != const_code:
            for j in range(3):
                s = cols[j, k]
                if s >= 0 and diff_mask[op[k], j] and useful[s]:
                    useful[k] = True
    return useful


@njit
def _forward(vop, vx, lit, io, x, work):
    n = len(lit)
    vals, adj = work[: n + 1], work[n + 1:]
    kernels.load_inputs(io, x, vals)
    forward_vector(vop, vx, lit, vals, len(vop))
    return vals, adj, kernels.guards_hold(io, vals)


@njit
def _evaluate(vop, vx, lit, io, x, out, work):
    vals, _, ok = _forward(vop, vx, lit, io, x, work)
    n_in, n_out = io[0], io[1]
    for i in range(n_out):
        out[i] = vals[io[3 + n_in + i]]
    return ok


@njit
def _value_and_grad(vop, vx, rev, segments, targets, lit, io, x, grad, work):
    vals, adj, ok = _forward(vop, vx, lit, io, x, work)
    n_in = io[0]
    out = io[3 + n_in]
    if not ok:
        return vals[out], False
    adj[:] = 0.0
    adj[out] = 1.0
    scratch = adj[len(lit) + 1:]
    for s in range(segments.shape[1] - 1, -1, -1):
        kind, lo, hi = segments[0, s], segments[1, s], segments[2, s]
        if kind == VECTORS:
            reverse_vector(vop, vx, rev, lit, vals, adj, lo, hi)
        elif kind == RUNNING_SUM:
            _running_sum(vx, rev, adj, lo)
        else:
            for j in range(hi - 1, lo - 1, -1):
                adj[targets[j]] += scratch[j]
    kernels.store_gradient(io, adj, grad)
    return vals[out], True


@njit
def _running_sum(vx, rev, adj, v):
    """The reverse of vector instruction v, an add whose first operand is the previous copy: copy t's
    adjoint (with the next copy's added, kept in a register) goes to its second operand and on to
    copy t - 1, in the order the scalar sweep adds them."""
    d, m = vx[0, v], vx[1, v]
    b0, b1 = rev[5, v], rev[6, v]
    second = rev[4, v] != 0
    carried = 0.0
    for tv in range(m):
        t = m - 1 - tv
        g = adj[d + t] + carried
        if second:
            adj[b0 + t * b1] += g
        carried = g
    adj[d - 1] += carried


@functools.cache
def _marker() -> Path:
    """A file beside the cached kernels saying the vector sweeps of this source and Numba are
    compiled there (written by ``warm_up``); worked out once, not at every path ``cached`` is
    asked for."""
    source = Path(__file__).read_bytes()  # its stamp line hashes the generated sweeps it inlines
    return kernel_cache.directory() / f"vector-sweeps-{numba.__version__}-{zlib.crc32(source):08x}"


def cached() -> bool:
    """Whether the vector sweeps are in the disk cache, so that ``warm_up`` takes a fraction of a
    second rather than a compile of 15-40 s."""
    return _marker().exists()


def warm_up() -> None:
    """Compile the vector sweeps (or load them from Numba's disk cache) by running them once on a
    small loop tape, a running sum of squares; then mark them cached (``cached``)."""
    add, square, const = OPCODE["add"], OPCODE["square"], OPCODE["const"]
    m = 2 * MIN_COPIES
    op, a, b = [INPUT] * m + [const], [-1] * (m + 1), [-1] * (m + 1)
    for t in range(m):
        op += [square, add]
        a += [t, m if t == 0 else len(op) - 3]
        b += [-1, len(op) - 2]
    n = len(op)
    tape = Tape(op, a, b, [-1] * n, np.zeros(n), np.arange(m), [n - 1])
    vp = _Builder(tape).result()
    x, out = np.linspace(-1.0, 1.0, m), np.empty(1)
    vp.value_and_grad(x, np.empty(m))
    vp.evaluate(x, out)
    try:
        _marker().touch()
    except OSError:  # a read-only cache: warm_up stays the compile it is
        pass
