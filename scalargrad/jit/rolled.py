"""Rolled generated code: periodic runs of a tape become loops in the compiled-code tier.

A tape recorded from a Python loop over array elements repeats one block of instructions, each
copy reading operands that move by a fixed stride per copy (``x[i]``, ``x[i + 1]``, the running sum
of the copy before). ``plan`` finds such runs (a period p, a count m, and per-operand strides that
stay the same for every copy) and ``function_bodies`` writes them as ``for t in range(m)`` loops, so
that the generated source grows with the block, not with the tape. The reverse sweep runs each loop
backwards and recomputes a copy's values from its operands instead of storing them, as
hand-written gradient code does; only values read outside their own copy are kept, in arrays of m.

Results are bit-identical to the interpreter's: the same expressions (codegen.py's), every adjoint
summed in the interpreter's order (instructions in descending order, operands in table order),
starting from +0.0 (or the seed 1.0), with a zero adjoint propagating nothing (``acc``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ops import CONST, DIFF_MASK, INPUT, OPS
from ..tape import Tape
from .flags import njit

MAX_PERIOD = 64   # longest block searched for
MIN_COUNT = 8     # fewest copies worth a loop


@dataclass
class Loop:
    """Instructions [start, start + period * count): copy t, position i is slot start + t*period + i.
    ``refs[i][j]`` says where operand j of position i lives (see ``_reference``)."""

    start: int
    period: int
    count: int
    refs: list = field(default_factory=list)
    kept: set = field(default_factory=set)      # positions whose values are read outside their copy
    carried: set = field(default_factory=set)   # positions the next copy reads

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


# --- finding periodic runs -----------------------------------------------------------------------

def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """Length of the run of True starting at each index."""
    n = len(mask)
    index = np.arange(n)
    next_false = np.minimum.accumulate(np.where(mask, n, index)[::-1])[::-1]
    return next_false - index


def _candidates(tape: Tape, max_period: int, min_count: int):
    """(best cover, its period) per start index: the longest periodic run starting there."""
    op = tape.op.astype(np.int64)
    bits = tape.lit.view(np.int64)
    slots = np.stack([tape.a, tape.b, tape.c]).astype(np.int64)
    n = len(op)
    best_cover = np.zeros(n, np.int64)
    best_period = np.zeros(n, np.int64)
    for p in range(1, max_period + 1):
        K = n - p
        if K < p * (min_count - 1):
            break
        same = (op[:K] == op[p:]) & (bits[:K] == bits[p:]) & (op[:K] != INPUT)
        delta = slots[:, p:] - slots[:, :K]
        periodic = np.zeros(K, dtype=bool)
        periodic[p:] = same[p:] & same[:K - p] & (delta[:, p:] == delta[:, :K - p]).all(axis=0)
        run_same, run_periodic = _run_lengths(same), _run_lengths(periodic)
        starts = np.arange(K - p)
        count = np.where(run_same[starts] >= p, 2 + run_periodic[starts + p] // p, 0)
        cover = np.where(count >= min_count, p * count, 0)
        better = cover > best_cover[: K - p]
        best_cover[: K - p][better] = cover[better]
        best_period[: K - p][better] = p
    return best_cover, best_period


def plan(tape: Tape, max_period: int = MAX_PERIOD, min_count: int = MIN_COUNT) -> Plan:
    """Loops and straight instructions covering the tape, chosen greedily from the left."""
    n = len(tape)
    best_cover, best_period = _candidates(tape, max_period, min_count)
    input_index = np.full(n, -1, np.int64)
    input_index[tape.inputs] = np.arange(len(tape.inputs))
    owner = np.full(n, -1, np.int64)  # index into loops of the loop holding each slot
    segments, loops = [], []
    statements = 0
    k = 0
    while k < n:
        if best_cover[k]:
            p = int(best_period[k])
            loop = Loop(k, p, int(best_cover[k]) // p)
            if _resolve(tape, loop, loops, owner, input_index):
                owner[loop.start: loop.stop] = len(loops)
                loops.append(loop)
                segments.append(loop)
                statements += p
                k = loop.stop
                continue
        segments.append(k)
        if tape.op[k] not in (INPUT, CONST):
            statements += 1
        k += 1
    return Plan(segments, loops, statements, owner)


def _resolve(tape, loop, loops, owner, input_index) -> bool:
    """Fill ``loop.refs``; False if some operand does not move the same way in every copy."""
    s, p = loop.start, loop.period
    for i in range(p):
        k = s + i
        refs = []
        for slots in (tape.a, tape.b, tape.c)[: OPS[tape.op[k]].arity]:
            first, delta = int(slots[k]), int(slots[k + p]) - int(slots[k])
            ref = _reference(tape, loop, first, delta, loops, owner, input_index)
            if ref is None:
                return False
            refs.append(ref)
        loop.refs.append(refs)
    for refs in loop.refs:  # what the chosen loop reads from outside its copies must be kept
        for ref in refs:
            if ref[0] == "carried":
                loop.carried.add(ref[1])
                ref = ref[2]
            if ref[0] == "kept":
                loops[ref[1]].kept.add(ref[2])
    return True


def _reference(tape, loop, first, delta, loops, owner, input_index):
    """Where an operand at slot ``first + t * delta`` (copy t) lives:
    ("same", i)                 position i of the same copy
    ("carried", i, initial)     position i of the copy before; ``initial`` (a fixed reference) in copy 0
    ("const", slot)             a constant
    ("straight", slot)          a slot outside every loop
    ("input", index, step)      x[index + t * step]
    ("kept", loop, i, t0, step) position i of copy t0 + t * step of an earlier loop
    None where it is none of these."""
    s, p, m = loop.start, loop.period, loop.count
    if first >= s:
        return ("same", first - s) if delta == p else None
    if delta == p and first + p >= s:
        initial = _reference(tape, loop, first, 0, loops, owner, input_index)
        return None if initial is None else ("carried", first + p - s, initial)
    last = first + (m - 1) * delta
    if last >= s or last < 0:
        return None
    if delta == 0 and tape.op[first] == CONST:
        return ("const", first)
    if owner[first] < 0 and tape.op[first] != INPUT:
        return ("straight", first) if delta == 0 else None
    if tape.op[first] == INPUT:
        where = first + delta * np.arange(m)
        index = input_index[where]
        step = int(index[1] - index[0]) if m > 1 else 0
        ok = (tape.op[where] == INPUT).all() and (index == index[0] + step * np.arange(m)).all()
        return ("input", int(index[0]), step) if ok else None
    other = loops[owner[first]]
    if owner[last] != owner[first] or delta % other.period:
        return None
    i, t0 = (first - other.start) % other.period, (first - other.start) // other.period
    return ("kept", int(owner[first]), i, t0, delta // other.period)


# --- writing the functions ---------------------------------------------------------------------------

@njit
def _leads_to_input(op, a, b, c, diff_mask, input_code):
    """Slots with a differentiable path to an input (the only adjoints a gradient reads)."""
    n = len(op)
    useful = op == input_code
    for k in range(n):
        if not useful[k]:
            for j in range(3):
                s = a[k] if j == 0 else (b[k] if j == 1 else c[k])
                if s >= 0 and diff_mask[op[k], j] and useful[s]:
                    useful[k] = True
    return useful


def _step(base, step) -> str:
    """Source of the index ``base + t * step``."""
    if step == 0:
        return str(base)
    term = "t" if step == 1 else f"t * {step}"
    return term if base == 0 else f"{base} + {term}"


class _Writer:
    """Writes the bodies of ``evaluate(x, out)`` and ``value_and_grad(x, grad)`` for a plan.

    Names: ``v<k>`` / ``g<k>`` value and adjoint of straight slot k; in loop L, ``u<i>`` / ``a<i>``
    position i of the current copy, ``c<L>_<i>`` the value of a carried position (the last copy's
    after the loop), ``k<L>_<i>`` its adjoint so far, ``r<i>`` its value in the copy before during
    the reverse sweep, ``V<L>_<i>`` / ``A<L>_<i>`` arrays over the copies where needed."""

    def __init__(self, tape: Tape, the_plan: Plan, literal, expr, constant_partial, constants: dict):
        self.tape, self.plan = tape, the_plan
        self.literal, self.expr, self.constant_partial = literal, expr, constant_partial
        self.constants = constants
        self.input_index = {int(s): i for i, s in enumerate(tape.inputs)}
        self.owner = the_plan.owner
        self.useful = _leads_to_input(tape.op.astype(np.int64), tape.a, tape.b, tape.c, DIFF_MASK, INPUT)
        self.adjoint_arrays: set = set()  # (loop, position) whose adjoints live in an array
        self.carry_seeded: set = set()    # (loop, position) whose k<L>_<i> later code adds to
        # Carried positions another loop reads through an array: all their copies' adjoints must
        # then live in that array (summing some in k<L>_<i> would change the order of the sums).
        self.read_by_loops = set()
        for loop in the_plan.loops:
            for refs in loop.refs:
                for ref in refs:
                    fixed = ref[2] if ref[0] == "carried" else ref
                    if fixed[0] == "kept":
                        self.read_by_loops.add((fixed[1], fixed[2]))
        for slot in [int(s) for s in tape.outputs] + [int(s) for s in tape.guards]:
            self._mark_kept(slot)
        for seg in the_plan.segments:
            if not isinstance(seg, Loop):
                for s in self._operands(seg):
                    self._mark_kept(s)
        # Per loop: positions the reverse sweep recomputes, and carried positions it reads from the
        # copy before (those are stored in the forward sweep of value_and_grad).
        self.recompute = [self._reverse_needs(loop) for loop in the_plan.loops]

    # where values and adjoints live
    def _position(self, slot):
        L = int(self.owner[slot])
        loop = self.plan.loops[L]
        return L, (slot - loop.start) % loop.period, (slot - loop.start) // loop.period

    def _last_carried(self, slot) -> bool:
        """Slot is a carried position of its loop's last copy: its value is c<L>_<i> after the loop."""
        L, i, t = self._position(slot)
        loop = self.plan.loops[L]
        return t == loop.count - 1 and i in loop.carried and (L, i) not in self.read_by_loops

    def _mark_kept(self, slot):
        if self.owner[slot] >= 0 and not self._last_carried(slot):
            L, i, _ = self._position(slot)
            self.plan.loops[L].kept.add(i)

    def _operands(self, k):
        return [int(s) for s in (self.tape.a[k], self.tape.b[k], self.tape.c[k])[: OPS[self.tape.op[k]].arity]]

    def value(self, slot) -> str:
        """A fixed slot's value, outside loops."""
        op = self.tape.op[slot]
        if op == INPUT:
            return f"x[{self.input_index[slot]}]"
        if op == CONST:
            return self.literal(self.tape.lit[slot], slot, self.constants)
        if self.owner[slot] >= 0:
            L, i, t = self._position(slot)
            return f"c{L}_{i}" if self._last_carried(slot) else f"V{L}_{i}[{t}]"
        return f"v{slot}"

    def adjoint(self, slot):
        """A fixed slot's adjoint variable, outside loops; None if it cannot reach an input."""
        if not self.useful[slot]:
            return None
        if self.tape.op[slot] == INPUT:
            return f"grad[{self.input_index[slot]}]"
        if self.owner[slot] >= 0:
            L, i, t = self._position(slot)
            if self._last_carried(slot):
                self.carry_seeded.add((L, i))
                return f"k{L}_{i}"
            self.adjoint_arrays.add((L, i))
            return f"A{L}_{i}[{t}]"
        return f"g{slot}"

    def ref_value(self, ref, carried_prefix) -> str:
        kind = ref[0]
        if kind == "same":
            return f"u{ref[1]}"
        if kind == "carried":
            return f"{carried_prefix}{ref[1]}"
        if kind in ("const", "straight"):
            return self.value(ref[1])
        if kind == "input":
            return f"x[{_step(ref[1], ref[2])}]"
        return f"V{ref[1]}_{ref[2]}[{_step(ref[3], ref[4])}]"

    def ref_adjoint(self, loop, ref):
        kind = ref[0]
        if kind == "same":
            return f"a{ref[1]}" if self._position_useful(loop, ref[1]) else None
        if kind in ("const", "straight"):
            return self.adjoint(ref[1])
        if kind == "input":
            return f"grad[{_step(ref[1], ref[2])}]"
        if kind == "kept":
            other = self.plan.loops[ref[1]]
            if not self._position_useful(other, ref[2]):
                return None
            self.adjoint_arrays.add((ref[1], ref[2]))
            return f"A{ref[1]}_{ref[2]}[{_step(ref[3], ref[4])}]"
        raise AssertionError(kind)

    def _position_useful(self, loop, i) -> bool:
        return bool(self.useful[loop.start + i: loop.stop: loop.period].any())

    def _reverse_needs(self, loop):
        """(positions whose values the reverse sweep's partials need, with what computing them
        needs; carried positions read from the copy before)."""
        need, carried = set(), set()

        def want(ref):
            if ref[0] == "same":
                need.add(ref[1])
            elif ref[0] == "carried":
                carried.add(ref[1])

        for i in range(loop.period):
            if not self._position_useful(loop, i):
                continue
            op_code = self.tape.op[loop.start + i]
            op = OPS[op_code]
            for j in range(op.arity):
                target = loop.refs[i][j]
                if target[0] == "const" or (target[0] == "same" and not self._position_useful(loop, target[1])):
                    continue  # no adjoint to send there
                if DIFF_MASK[op_code, j]:
                    used = {p for p in "abcy" if "{" + p + "}" in op.partials[j]}
                    if "y" in used:
                        need.add(i)
                    for p in used - {"y"}:
                        want(loop.refs[i]["abc".index(p)])
        for i in range(loop.period - 1, -1, -1):  # what the needed positions are computed from
            if i in need:
                for ref in loop.refs[i]:
                    want(ref)
        return need, carried

    # code
    def _names(self, op, k, operand_values, own) -> dict:
        names = dict(y=own, lit=self.literal(self.tape.lit[k], k, self.constants))
        names.update(zip("abc", operand_values))
        return names

    def _step_line(self, target, partial, g) -> str:
        """``target`` plus partial times adjoint g, as the interpreter adds it (see codegen.py)."""
        if self.constant_partial(partial):
            c = float(partial.strip("()"))
            if c == 1.0:
                return f"{target} = {target} + {g}"
            if c == -1.0:
                return f"{target} = {target} - {g}"
            return f"{target} = muladd({target}, {partial}, {g})"
        return f"{target} = acc({target}, {partial}, {g})"

    def forward(self, for_reverse: bool) -> list:
        lines = []
        for seg in self.plan.segments:
            if isinstance(seg, Loop):
                lines += self._loop_forward(seg, for_reverse)
            elif self.tape.op[seg] not in (INPUT, CONST):
                op = OPS[self.tape.op[seg]]
                names = self._names(op, seg, [self.value(s) for s in self._operands(seg)], f"v{seg}")
                lines.append(f"v{seg} = {self.expr(op, None, names)}")
        return lines

    def _body(self, loop, carried_prefix, positions) -> list:
        lines = []
        for i in positions:
            k = loop.start + i
            op = OPS[self.tape.op[k]]
            values = [self.ref_value(ref, carried_prefix) for ref in loop.refs[i]]
            lines.append(f"u{i} = {self.expr(op, None, self._names(op, k, values, f'u{i}'))}")
        return lines

    def _carried_initial(self, loop) -> dict:
        initial = {}
        for refs in loop.refs:
            for ref in refs:
                if ref[0] == "carried":
                    initial[ref[1]] = ref[2]
        return initial

    def _loop_forward(self, loop, for_reverse) -> list:
        L = self.plan.loops.index(loop)
        kept = sorted(loop.kept | (self.recompute[L][1] if for_reverse else set()))
        lines = [f"V{L}_{i} = np.empty({loop.count})" for i in kept]
        lines += [f"c{L}_{i} = {self.ref_value(ref, 'c')}" for i, ref in sorted(self._carried_initial(loop).items())]
        lines.append(f"for t in range({loop.count}):")
        body = self._body(loop, f"c{L}_", range(loop.period))
        body += [f"V{L}_{i}[t] = u{i}" for i in kept]
        body += [f"c{L}_{i} = u{i}" for i in sorted(loop.carried)]
        return lines + ["    " + line for line in body]

    def reverse(self, out: int) -> list:
        """The reverse sweep after the forward lines, seeded at slot ``out``."""
        seed = self.adjoint(out)  # first: it may put the output's adjoint in an array
        lines = []
        for seg in reversed(self.plan.segments):
            if isinstance(seg, Loop):
                lines += self._loop_reverse(seg)
            elif self.useful[seg] and self.tape.op[seg] not in (INPUT, CONST):
                op = OPS[self.tape.op[seg]]
                operands = self._operands(seg)
                names = self._names(op, seg, [self.value(s) for s in operands], f"v{seg}")
                for j, slot in enumerate(operands):
                    target = self.adjoint(slot) if DIFF_MASK[self.tape.op[seg], j] else None
                    if target is not None:
                        lines.append(self._step_line(target, self.expr(op, j, names), f"g{seg}"))
        start = ["for i in range(grad.shape[0]):", "    grad[i] = 0.0"]
        start += [f"A{L}_{i} = np.zeros({self.plan.loops[L].count})" for L, i in sorted(self.adjoint_arrays)]
        start += [f"k{L}_{i} = 0.0" for L, i in sorted(self.carry_seeded)]
        start += [f"g{k} = 0.0" for k in range(len(self.tape)) if self.owner[k] < 0 and self.useful[k]
                  and self.tape.op[k] not in (INPUT, CONST)]
        if seed is not None:
            start.append(f"{seed} = 1.0")
        return start + lines

    def _loop_reverse(self, loop) -> list:
        L = self.plan.loops.index(loop)
        m, p = loop.count, loop.period
        initial = self._carried_initial(loop)
        need, carried_need = self.recompute[L]
        arrays = {i for (M, i) in self.adjoint_arrays if M == L}
        useful = [self._position_useful(loop, i) for i in range(p)]
        # k<L>_<i>: the adjoint so far of carried position i in the copy the next step processes;
        # later code may have added to it already (the last copy's value is read as c<L>_<i>).
        lines = [f"k{L}_{i} = " + (f"A{L}_{i}[{m - 1}]" if i in arrays else "0.0")
                 for i in sorted(loop.carried) if (L, i) not in self.carry_seeded]
        lines.append(f"for t in range({m - 1}, -1, -1):")
        body = [f"r{i} = V{L}_{i}[t - 1] if t > 0 else {self.ref_value(initial[i], 'c')}"
                for i in sorted(carried_need)]
        body += self._body(loop, "r", sorted(need))
        for i in range(p):
            if useful[i]:
                body.append(f"a{i} = " + (f"k{L}_{i}" if i in loop.carried else (f"A{L}_{i}[t]" if i in arrays else "0.0")))
        for i in sorted(loop.carried):
            body.append(f"k{L}_{i} = " + (f"A{L}_{i}[t - 1] if t > 0 else 0.0" if i in arrays else "0.0"))
        for i in range(p - 1, -1, -1):
            if not useful[i]:
                continue
            k = loop.start + i
            op = OPS[self.tape.op[k]]
            values = [self.ref_value(ref, "r") for ref in loop.refs[i]]
            names = self._names(op, k, values, f"u{i}")
            for j, ref in enumerate(loop.refs[i]):
                if not DIFF_MASK[self.tape.op[k], j]:
                    continue
                partial = self.expr(op, j, names)
                if ref[0] == "carried":
                    outside = self.ref_adjoint(loop, ref[2]) if ref[2][0] != "const" else None
                    body.append("if t > 0:")
                    body.append("    " + self._step_line(f"k{L}_{ref[1]}", partial, f"a{i}"))
                    if outside is not None:
                        body += ["else:", "    " + self._step_line(outside, partial, f"a{i}")]
                    continue
                target = self.ref_adjoint(loop, ref)
                if target is not None:
                    body.append(self._step_line(target, partial, f"a{i}"))
        return lines + ["    " + line for line in body]

    def guard_test(self) -> list:
        """Lines setting ``ok`` to whether every guard has its traced value."""
        lines = ["ok = True"]
        grouped: dict = {}
        for slot, expected in zip(self.tape.guards.tolist(), self.tape.guard_values.tolist()):
            want = "True" if expected != 0.0 else "False"
            if self.owner[slot] >= 0 and not self._last_carried(slot):
                L, i, t = self._position(slot)
                grouped.setdefault((L, i, want), []).append(t)
            else:
                lines.append(f"ok = ok & ((({self.value(slot)}) != 0.0) == {want})")
        for (L, i, want), copies in grouped.items():
            if sorted(copies) == list(range(self.plan.loops[L].count)):
                lines += [f"for t in range({len(copies)}):", f"    ok = ok & ((V{L}_{i}[t] != 0.0) == {want})"]
            else:
                lines += [f"ok = ok & ((V{L}_{i}[{t}] != 0.0) == {want})" for t in copies]
        return lines


def function_bodies(tape: Tape, the_plan: Plan, literal, expr, constant_partial, constants: dict):
    """(evaluate body, value_and_grad body) as lists of lines, indented for a function. ``literal``,
    ``expr`` and ``constant_partial`` are codegen.py's writers of literals, op expressions and the
    constant-partial test (passed in: codegen.py imports this module)."""
    writer = _Writer(tape, the_plan, literal, expr, constant_partial, constants)
    guards = writer.guard_test()
    outputs = [int(s) for s in tape.outputs]
    ev = writer.forward(False) + guards + [f"out[{i}] = {writer.value(s)}" for i, s in enumerate(outputs)]
    ev.append("return ok")
    if outputs:
        value = writer.value(outputs[0])
        vg = writer.forward(True) + guards + ["if not ok:", f"    return {value}, False"]
        vg += writer.reverse(outputs[0]) + [f"return {value}, True"]
    else:
        vg = ["return 0.0, False"]
    return ["    " + line for line in ev], ["    " + line for line in vg]
