"""Periodic runs of a tape, the loops of rolled generated code (rolled.py writes them).

A tape recorded from a Python loop over array elements repeats one block of instructions, each
copy reading operands that move by a fixed stride per copy (``x[i]``, ``x[i + 1]``, the running sum
of the copy before). ``plan`` finds such runs (a period p, a count m, and per-operand strides that
stay the same for every copy, a ``Loop``) and covers the tape with them and straight instructions
(a ``Plan``), greedily from the left.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...core.ops import CONST, INPUT, OPS
from ...core.tape import Tape
from ..flags import njit

MAX_PERIOD = 64   # every block up to this long is searched for ...
MAX_LONG_PERIOD = 2048  # ... and longer ones up to this, at the distances the tape suggests
LONG_PERIODS = 16       # how many such distances are tried
MAX_BODY = 128    # longest loop body written out: a longer block must itself repeat an inner block
MIN_COUNT = 8     # fewest copies worth a loop


@dataclass
class Loop:
    """Instructions [start, start + period * count): copy t, position i is slot start + t*period + i.
    ``refs[i][j]`` says where operand j of position i lives (see ``_reference``). With ``inner`` > 0
    the copies form a grid, t = to * inner + ti: a block of ``inner`` copies repeated (a
    matrix-vector product: the copies of a dot product, per point), and an operand may move
    differently along ti and along to."""

    start: int
    period: int
    count: int
    inner: int = 0
    refs: list = field(default_factory=list)
    kept: set = field(default_factory=set)      # positions whose values are read outside their copy
    carried: set = field(default_factory=set)   # positions the next copy reads
    tables: dict = field(default_factory=dict)  # position -> its literal per copy, where that varies

    @property
    def stop(self) -> int:
        return self.start + self.period * self.count


@dataclass
class Plan:
    """How a tape is written: ``segments`` in order, each a Loop or a straight instruction index."""

    segments: list
    loops: list
    statements: int   # lines of generated code for instructions (the measure of compile time)
    owner: np.ndarray  # per slot, the index in ``loops`` of the loop holding it, or -1


def _long_periods(tape: Tape, min_period: int, max_period: int, how_many: int) -> list:
    """Periods above ``min_period`` worth searching: the commonest distances between consecutive
    uses of one slot as the same operand of the same op. A loop body that reads a fixed slot (a
    weight, a constant, an input) reads it once per copy, so its period is such a distance."""
    n = len(tape)
    distances = []
    for j, slots in enumerate((tape.a, tape.b, tape.c)):
        used = np.flatnonzero(slots >= 0)
        key = (tape.op[used].astype(np.int64) * 3 + j) * (n + 1) + slots[used]
        order = np.argsort(key, kind="stable")  # by key, then by position
        same_key = key[order][1:] == key[order][:-1]
        distances.append((used[order][1:] - used[order][:-1])[same_key])
    distance = np.concatenate(distances)
    distance = distance[(distance > min_period) & (distance <= max_period)]
    values, counts = np.unique(distance, return_counts=True)
    common = np.argsort(-counts, kind="stable")[:how_many]
    return sorted(int(v) for v in values[common])


def _periods(tape: Tape, max_period: int) -> list:
    """The periods searched, ascending: all up to ``max_period``, then the likely longer ones."""
    return list(range(1, max_period + 1)) + _long_periods(tape, max_period, MAX_LONG_PERIOD, LONG_PERIODS)


@njit
def _candidates(op, slots, periods, min_count, input_code):
    """(best cover, its period) per start index: the longest periodic run starting there. Copies
    agree in ops and in how their operands move; literals may differ (a table per position). For
    each period p: ``same[i]`` (instruction i has the op of i + p, not an input) and ``periodic[i]``
    (same at i and i - p, and every operand of i + p lies as far from i's as i's from i - p's), as
    lengths of their runs from each index; a run starting at k has 2 + periodic_run[k + p] // p
    copies when same holds for its first p instructions. Linear in the tape per period, with no
    temporary arrays (Rosenbrock n = 10^4: 0.33 s as NumPy array expressions)."""
    n = len(op)
    rows = slots.shape[0]
    best_cover = np.zeros(n, np.int64)
    best_period = np.zeros(n, np.int64)
    same_run = np.zeros(n, np.int64)
    periodic_run = np.zeros(n, np.int64)
    for p in periods:
        K = n - p
        if K < p * (min_count - 1):
            break
        run = 0
        for i in range(K - 1, -1, -1):
            run = run + 1 if op[i] == op[i + p] and op[i] != input_code else 0
            same_run[i] = run
        run = 0
        for i in range(K - 1, -1, -1):
            periodic = i >= p and same_run[i] > 0 and same_run[i - p] > 0
            r = 0
            while periodic and r < rows:
                periodic = slots[r, i + p] - slots[r, i] == slots[r, i] - slots[r, i - p]
                r += 1
            run = run + 1 if periodic else 0
            periodic_run[i] = run
        for k in range(K - p):
            if same_run[k] >= p:
                count = 2 + periodic_run[k + p] // p
                if count >= min_count and p * count > best_cover[k]:
                    best_cover[k] = p * count
                    best_period[k] = p
    return best_cover, best_period


@njit
def _run_cover(op, slots, k, p, min_count, input_code):
    """Instructions covered by the periodic run of period p starting at k (as ``_candidates``
    finds them), or 0 if it has fewer than min_count copies."""
    n = len(op)
    if k + 2 * p > n:
        return 0
    for i in range(k, k + p):
        if op[i] != op[i + p] or op[i] == input_code:
            return 0
    i = k + p
    while i + p < n and op[i] == op[i + p]:
        if ((slots[:, i + p] - slots[:, i]) != (slots[:, i] - slots[:, i - p])).any():
            break
        i += 1
    count = 2 + (i - k - p) // p
    return p * count if count >= min_count else 0


def plan(tape: Tape, max_period: int = MAX_PERIOD, min_count: int = MIN_COUNT) -> Plan:
    """Loops and straight instructions covering the tape, chosen greedily from the left: at each
    index the run covering most instructions whose operands resolve (``_resolve``)."""
    n = len(tape)
    periods = _periods(tape, max_period)
    op = tape.op.astype(np.int64)
    slots = np.stack([tape.a, tape.b, tape.c]).astype(np.int64)
    best_cover, best_period = _candidates(op, slots, np.array(periods, np.int64), min_count, INPUT)
    input_index = np.full(n, -1, np.int64)
    input_index[tape.inputs] = np.arange(len(tape.inputs))
    owner = np.full(n, -1, np.int64)  # index into loops of the loop holding each slot
    segments, loops = [], []
    statements = 0
    retry_from = 0  # starts inside a run whose periods all failed try only their best period
    k = 0
    while k < n:
        tries = [(int(best_cover[k]), int(best_period[k]))] if best_cover[k] else []
        loop = None
        while tries and loop is None:
            cover, p = tries.pop(0)
            shapes = _shapes(op, slots, owner, k, p, cover // p, periods, min_count)
            loop = next((shape for shape in shapes if _resolve(tape, shape, loops, owner, input_index)), None)
            if loop is None and k >= retry_from:  # the other periods, most instructions covered first
                retry_from = k + cover
                covers = [(_run_cover(op, slots, k, q, min_count, INPUT), q) for q in periods if q != p]
                tries = sorted(((c, q) for c, q in covers if c), key=lambda cq: (-cq[0], cq[1]))
        if loop is not None:
            owner[loop.start: loop.stop] = len(loops)
            loops.append(loop)
            segments.append(loop)
            statements += loop.period
            k = loop.stop
            continue
        segments.append(k)
        if tape.op[k] not in (INPUT, CONST):
            statements += 1
        k += 1
    return Plan(segments, loops, statements, owner)


def _shapes(op, slots, owner, k, period, count, periods, min_count):
    """The loops to try for a run of ``count`` copies of ``period`` at k, best first: a grid, the
    run, the run up to where an operand passes from one earlier loop's copies to another's."""
    grid = _grid(op, slots, k, period, count, periods)
    if grid is not None:
        yield grid
    if period <= MAX_BODY:
        yield Loop(k, period, count)
        shorter = _copies_reading_one_loop(slots, owner, k, period, count)
        if min_count <= shorter < count:
            yield Loop(k, period, shorter)


def _copies_reading_one_loop(slots, owner, k, period, count) -> int:
    """How many of the run's first copies read each operand from the loop (or straight code) the
    first copy reads it from: a run over the copies of two loops can be rolled up to the border."""
    block = slots[:, k: k + period]
    copies = block[:, :, None] + (slots[:, k + period: k + 2 * period] - block)[:, :, None] * np.arange(count)
    outside = (block >= 0) & (block < k)
    where = np.where(outside[:, :, None], copies, -1).clip(-1, len(owner) - 1)
    same = np.where(where >= 0, owner[where] == owner[where[:, :, :1]], True).all(axis=(0, 1))
    return int(count if same.all() else np.argmin(same))


def _grid(op, slots, k, period, count, periods):
    """The run of ``count`` blocks of ``period`` at k as a grid loop, if each block is ``inner``
    copies of a shorter block (the same ones in every block, moving the same way): else None."""
    if count < 2:
        return None
    outer = slots[:, k + period: k + 2 * period] - slots[:, k: k + period]
    for q in periods:
        if q >= period or q > MAX_BODY or period % q:
            continue
        inner = period // q
        if (_run_cover(op, slots, k, q, 2, INPUT) == period
                and (outer.reshape(3, inner, q) == outer[:, None, :q]).all()):
            return Loop(k, q, count * inner, inner=inner)
    return None


def _resolve(tape, loop, loops, owner, input_index) -> bool:
    """Fill ``loop.refs``; False if some operand does not move the same way in every copy."""
    s, p = loop.start, loop.period
    for i in range(p):
        k = s + i
        refs = []
        for slots in (tape.a, tape.b, tape.c)[: OPS[tape.op[k]].arity]:
            first, delta = int(slots[k]), int(slots[k + p]) - int(slots[k])
            outer = int(slots[k + p * loop.inner]) - int(slots[k]) if loop.inner else None
            ref = _reference(tape, loop, first, delta, outer, loops, owner, input_index)
            if ref is None:
                return False
            refs.append(ref)
        loop.refs.append(refs)
    for i in range(p):
        if OPS[tape.op[s + i]].literal:
            literals = tape.lit[s + i: loop.stop: p]
            if (literals.view(np.int64) != literals[:1].view(np.int64)).any():
                loop.tables[i] = literals.copy()
    for refs in loop.refs:  # what the chosen loop reads from outside its copies must be kept
        for ref in refs:
            if ref[0] == "carried":
                loop.carried.add(ref[1])
                ref = ref[2]
            if ref[0] == "kept":
                loops[ref[1]].kept.add(ref[2])
    return True


def _reference(tape, loop, first, delta, outer, loops, owner, input_index):
    """Where an operand at slot ``first + t * delta`` (copy t) lives; in a grid loop at
    ``first + ti * delta + to * outer`` (``outer`` None where that is the same):
    ("same", i)                 position i of the same copy
    ("carried", i, initial)     position i of the copy before; ``initial`` (a fixed reference) in copy 0
    ("const", slot)             a constant
    ("straight", slot)          a slot outside every loop
    ("input", index, step, outer_step)      x[index + t * step], or x[index + ti * step + to * outer_step]
    ("kept", loop, i, t0, step, outer_step) position i of copy t0 + t * step (or + ti * step + to *
                                outer_step) of an earlier loop
    None where it is none of these."""
    s, p, m = loop.start, loop.period, loop.count
    if outer is not None and outer == loop.inner * delta:
        outer = None  # moves with t
    if first >= s:
        return ("same", first - s) if delta == p and outer is None else None
    if delta == p and outer is None and first + p >= s:
        initial = _reference(tape, loop, first, 0, None, loops, owner, input_index)
        return None if initial is None else ("carried", first + p - s, initial)
    where = first + _moves(loop, delta, outer)
    if where.max() >= s or where.min() < 0:
        return None
    if delta == 0 and outer is None and tape.op[first] == CONST:
        return ("const", first)
    if owner[first] < 0 and tape.op[first] != INPUT:
        return ("straight", first) if delta == 0 and outer is None else None
    if tape.op[first] == INPUT:
        index = input_index[where]
        step = int(index[1] - index[0]) if m > 1 else 0
        outer_step = None if outer is None else int(index[loop.inner] - index[0])
        ok = (tape.op[where] == INPUT).all() and (index == index[0] + _moves(loop, step, outer_step)).all()
        return ("input", int(index[0]), step, outer_step) if ok else None
    L = owner[first]
    other = loops[L]
    if not (owner[where.min()] == owner[where.max()] == L) or delta % other.period or (outer or 0) % other.period:
        return None
    i, t0 = (first - other.start) % other.period, (first - other.start) // other.period
    return ("kept", int(L), i, t0, delta // other.period, None if outer is None else outer // other.period)


def _moves(loop, step, outer_step) -> np.ndarray:
    """Per copy, how far an index moving ``step`` per copy (or per ti, and ``outer_step`` per to) goes."""
    if outer_step is None:
        return step * np.arange(loop.count)
    return (outer_step * np.arange(loop.count // loop.inner)[:, None] + step * np.arange(loop.inner)).ravel()
