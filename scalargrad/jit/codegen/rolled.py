"""Rolled generated code: the loops of a plan (loops.py) written as ``for t in range(m)`` loops, so
that the generated source grows with the block, not with the tape. The reverse sweep runs each loop
backwards and recomputes a copy's values from its operands instead of storing them, as hand-written
gradient code does; only values read outside their own copy are kept, in arrays of m.

Results are bit-identical to the interpreter's: the same expressions (expressions.py), every adjoint
summed in the interpreter's order (instructions in descending order, operands in table order),
starting from +0.0 (or the seed 1.0), with a zero adjoint propagating nothing (``acc``).
"""
from __future__ import annotations

import numpy as np

from ...core.ops import CALLS_OUT, CONST, DIFF_MASK, INPUT, OPS
from ...core.tape import Tape
from ..flags import njit
from .expressions import constant_partial, expr, literal
from .loops import Loop, Plan

# Ops whose values a loop's reverse sweep reads as its forward sweep stored them instead of
# recomputing them: a call into libm costs more than a store and a load (the MLP's tanh: value and
# gradient 122 -> 86 µs, against 110 µs hand-written). The others are recomputed.
STORED_OPS = CALLS_OUT


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


def _step(base, step, outer_step=None) -> str:
    """Source of the index ``base + t * step``, or ``base + ti * step + to * outer_step``."""
    moves = [("t", step)] if outer_step is None else [("ti", step), ("to", outer_step)]
    terms = [name if by == 1 else f"{name} * {by}" for name, by in moves if by != 0]
    if base != 0 or not terms:
        terms.insert(0, str(base))
    return " + ".join(terms)


def _indent(loop) -> str:
    return "        " if loop.inner else "    "


def _header(loop, reverse: bool) -> list:
    """The ``for`` lines of a loop over its copies (backwards for the reverse sweep), with ``t`` the
    copy; the body goes under them, indented by ``_indent(loop)``."""
    def over(count):
        return f"range({count - 1}, -1, -1)" if reverse else f"range({count})"
    if not loop.inner:
        return [f"for t in {over(loop.count)}:"]
    return [f"for to in {over(loop.count // loop.inner)}:", f"    for ti in {over(loop.inner)}:",
            f"        t = to * {loop.inner} + ti"]


class _Writer:
    """Writes the bodies of ``evaluate(x, out)`` and ``value_and_grad(x, grad)`` for a plan.

    Names: ``v<k>`` / ``g<k>_<n>`` value and adjoint (after n steps) of straight slot k; in loop
    L's forward sweep ``u<L>_<i>`` the value of position i of the current copy, in its reverse sweep
    ``u<L>b_<i>`` that value recomputed, ``a<L>b_<i>_<n>`` its adjoint and ``r<L>b_<i>`` its value in
    the copy before; ``c<L>_<i>`` the value of a carried position (the last copy's after the loop),
    ``k<L>_<i>`` its adjoint so far; ``V[V<L>_<i> + t]`` / ``A[A<L>_<i> + t]`` the value / adjoint of
    position i in copy t where needed (``_at``); ``K<L>_<i>[t]`` its literal where that differs
    between copies (a module constant)."""

    def __init__(self, tape: Tape, the_plan: Plan, constants: dict):
        self.tape, self.plan = tape, the_plan
        self.constants = constants
        self.input_index = {int(s): i for i, s in enumerate(tape.inputs)}
        self.owner = the_plan.owner
        self.useful = _leads_to_input(tape.op.astype(np.int64), tape.a, tape.b, tape.c, DIFF_MASK, INPUT)
        self.adjoint_arrays: set = set()  # (loop, position) whose adjoints live in an array
        self.carry_seeded: set = set()    # (loop, position) whose k<L>_<i> later code adds to
        self.versions: dict = {}          # variable -> version of its current value (_step_line)
        self.sizes = {"V": 0, "A": 0}     # lengths of the value and adjoint buffers (_at)
        self.tag = ""                      # names the loop being written (_local)
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

    def _local(self, letter: str, i) -> str:
        """A name local to the loop being written (``tag``): each is assigned in one place only,
        since Numba's compile time grows with reassigned variables times blocks."""
        return f"{letter}{self.tag}_{i}"

    def _at(self, array: str, L: int, i: int, index) -> str:
        """Element ``index`` of position i's values (``array`` "V") or adjoints ("A") over loop L's
        copies. All such arrays are parts of one buffer per function (one allocation, not one per
        array), at offsets named by module constants."""
        name = f"{array}{L}_{i}"
        if name not in self.constants:
            self.constants[name] = str(self.sizes[array])
            self.sizes[array] += self.plan.loops[L].count
        return f"{array}[{name} + {index}]"

    def value(self, slot) -> str:
        """A fixed slot's value, outside loops."""
        op = self.tape.op[slot]
        if op == INPUT:
            return f"x[{self.input_index[slot]}]"
        if op == CONST:
            return literal(self.tape.lit[slot], slot, self.constants)
        if self.owner[slot] >= 0:
            L, i, t = self._position(slot)
            return f"c{L}_{i}" if self._last_carried(slot) else self._at("V", L, i, t)
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
            return self._at("A", L, i, t)
        return f"g{slot}"

    def ref_value(self, ref, carried_prefix) -> str:
        kind = ref[0]
        if kind == "same":
            return self._local("u", ref[1])
        if kind == "carried":
            return f"{carried_prefix}{ref[1]}"
        if kind in ("const", "straight"):
            return self.value(ref[1])
        if kind == "input":
            return f"x[{_step(*ref[1:])}]"
        return self._at("V", ref[1], ref[2], _step(*ref[3:]))

    def ref_adjoint(self, loop, ref):
        kind = ref[0]
        if kind == "same":
            return self._local("a", ref[1]) if self._position_useful(loop, ref[1]) else None
        if kind in ("const", "straight"):
            return self.adjoint(ref[1])
        if kind == "input":
            return f"grad[{_step(*ref[1:])}]"
        if kind == "kept":
            other = self.plan.loops[ref[1]]
            if not self._position_useful(other, ref[2]):
                return None
            self.adjoint_arrays.add((ref[1], ref[2]))
            return self._at("A", ref[1], ref[2], _step(*ref[3:]))
        raise AssertionError(kind)

    def _position_useful(self, loop, i) -> bool:
        return bool(self.useful[loop.start + i: loop.stop: loop.period].any())

    def _reverse_needs(self, loop):
        """(positions the reverse sweep recomputes for its partials, with what computing them
        needs; carried positions it reads from the copy before; positions it reads as the forward
        sweep stored them, those of ``STORED_OPS``)."""
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
        stored = set()
        for i in range(loop.period - 1, -1, -1):  # what the needed positions are computed from
            if i in need and self.tape.op[loop.start + i] in STORED_OPS:
                stored.add(i)
            elif i in need:
                for ref in loop.refs[i]:
                    want(ref)
        return need - stored, carried, stored

    # code
    def _names(self, op, k, operand_values, own) -> dict:
        L = int(self.owner[k])
        loop = self.plan.loops[L] if L >= 0 else None
        i = -1 if loop is None else (k - loop.start) % loop.period
        if loop is not None and i in loop.tables:  # a literal that differs per copy
            self.constants[f"K{L}_{i}"] = loop.tables[i]
            lit = f"K{L}_{i}[t]"
        else:
            lit = literal(self.tape.lit[k], k, self.constants)
        names = dict(y=own, lit=lit)
        names.update(zip("abc", operand_values))
        return names

    def _name(self, variable) -> str:
        """The current name of a variable written in SSA form (see ``_step_line``)."""
        version = self.versions.get(variable)
        return variable if version is None else f"{variable}_{version}"

    def _step_line(self, target, partial, g, fresh=False) -> str:
        """``target`` plus partial times adjoint g, as the interpreter adds it (see straight.py).
        Variables in ``versions`` (straight adjoints, a loop copy's adjoints) get a new name per step
        where ``fresh`` (straight code within one block): Numba's compile time grows with the number
        of reassigned variables times blocks. In a loop over copies a straight adjoint is updated in
        place."""
        old = self._name(target)
        if fresh and target in self.versions:
            self.versions[target] += 1
        new = self._name(target)
        if constant_partial(partial):
            c = float(partial.strip("()"))
            if c == 1.0:
                return f"{new} = {old} + {g}"
            if c == -1.0:
                return f"{new} = {old} - {g}"
            return f"{new} = muladd({old}, {partial}, {g})"
        return f"{new} = acc({old}, {partial}, {g})"

    def forward(self, for_reverse: bool) -> list:
        lines = []
        for seg in self.plan.segments:
            if isinstance(seg, Loop):
                lines += self._loop_forward(seg, for_reverse)
            elif self.tape.op[seg] not in (INPUT, CONST):
                op = OPS[self.tape.op[seg]]
                names = self._names(op, seg, [self.value(s) for s in self._operands(seg)], f"v{seg}")
                lines.append(f"v{seg} = {expr(op, None, names)}")
        return lines

    def _body(self, loop, carried_prefix, positions) -> list:
        lines = []
        for i in positions:
            k = loop.start + i
            op = OPS[self.tape.op[k]]
            values = [self.ref_value(ref, carried_prefix) for ref in loop.refs[i]]
            own = self._local("u", i)
            lines.append(f"{own} = {expr(op, None, self._names(op, k, values, own))}")
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
        self.tag = str(L)
        kept = sorted(loop.kept | (self.recompute[L][1] | self.recompute[L][2] if for_reverse else set()))
        lines = []
        lines += [f"c{L}_{i} = {self.ref_value(ref, 'c')}" for i, ref in sorted(self._carried_initial(loop).items())]
        lines += _header(loop, reverse=False)
        body = self._body(loop, f"c{L}_", range(loop.period))
        body += [f"{self._at('V', L, i, 't')} = {self._local('u', i)}" for i in kept]
        body += [f"c{L}_{i} = {self._local('u', i)}" for i in sorted(loop.carried)]
        return lines + [_indent(loop) + line for line in body]

    def reverse(self, out: int) -> list:
        """The reverse sweep after the forward lines, seeded at slot ``out``."""
        seed = self.adjoint(out)  # first: it may put the output's adjoint in an array
        straight = [k for k in range(len(self.tape)) if self.owner[k] < 0 and self.useful[k]
                    and self.tape.op[k] not in (INPUT, CONST)]
        self.versions.update((f"g{k}", 0) for k in straight)
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
                        lines.append(self._step_line(target, expr(op, j, names), self._name(f"g{seg}"), fresh=True))
        start = ["for i in range(grad.shape[0]):", "    grad[i] = 0.0"]
        for L, i in sorted(self.adjoint_arrays):
            self._at("A", L, i, 0)
        if self.sizes["A"]:
            start.append(f"A = np.zeros({self.sizes['A']})")
        start += [f"k{L}_{i} = 0.0" for L, i in sorted(self.carry_seeded)]
        start += [f"g{k}_0 = " + ("1.0" if seed == f"g{k}" else "0.0") for k in straight]
        if seed is not None and seed not in {f"g{k}" for k in straight}:
            start.append(f"{seed} = 1.0")
        return start + lines

    def _loop_reverse(self, loop) -> list:
        L = self.plan.loops.index(loop)
        self.tag = f"{L}b"
        m, p = loop.count, loop.period
        initial = self._carried_initial(loop)
        need, carried_need, stored = self.recompute[L]
        arrays = {i for (M, i) in self.adjoint_arrays if M == L}
        useful = [self._position_useful(loop, i) for i in range(p)]
        if not any(useful):  # no adjoint reaches an input through it (comparisons): nothing to write,
            return []        # and a ``for`` without a body would not even parse
        # k<L>_<i>: the adjoint so far of carried position i in the copy the next step processes;
        # later code may have added to it already (the last copy's value is read as c<L>_<i>).
        lines = [f"k{L}_{i} = " + (self._at("A", L, i, m - 1) if i in arrays else "0.0")
                 for i in sorted(loop.carried) if (L, i) not in self.carry_seeded]
        lines += _header(loop, reverse=True)
        body = [f"{self._local('u', i)} = {self._at('V', L, i, 't')}" for i in sorted(stored)]
        body += [f"{self._local('r', i)} = {self._at('V', L, i, 't - 1')} if t > 0 else {self.ref_value(initial[i], 'c')}"
                 for i in sorted(carried_need)]
        body += self._body(loop, self._local("r", ""), sorted(need))
        for i in range(p):
            if useful[i]:
                self.versions[self._local("a", i)] = 0
                body.append(f"{self._name(self._local('a', i))} = " + (f"k{L}_{i}" if i in loop.carried else (self._at("A", L, i, "t") if i in arrays else "0.0")))
        for i in sorted(loop.carried):
            body.append(f"k{L}_{i} = " + (f"{self._at('A', L, i, 't - 1')} if t > 0 else 0.0" if i in arrays else "0.0"))
        deferrable = self._deferrable(loop)
        deferred = []  # (straight adjoint, carried position): copy 0's step into it, after the loop
        for i in range(p - 1, -1, -1):
            if not useful[i]:
                continue
            k = loop.start + i
            op = OPS[self.tape.op[k]]
            values = [self.ref_value(ref, self._local("r", "")) for ref in loop.refs[i]]
            names = self._names(op, k, values, self._local("u", i))
            g = self._name(self._local("a", i))
            for j, ref in enumerate(loop.refs[i]):
                if not DIFF_MASK[self.tape.op[k], j]:
                    continue
                partial = expr(op, j, names)
                if ref[0] == "carried":
                    outside = self.ref_adjoint(loop, ref[2]) if ref[2][0] != "const" else None
                    if outside is None or ref[1] in deferrable:
                        body.append(self._step_line(f"k{L}_{ref[1]}", partial, g))
                        if outside is not None:
                            deferred.append((outside, ref[1]))
                        continue
                    body.append("if t > 0:")
                    body.append("    " + self._step_line(f"k{L}_{ref[1]}", partial, g))
                    if outside is not None:
                        body += ["else:", "    " + self._step_line(outside, partial, g)]
                    continue
                target = self.ref_adjoint(loop, ref)
                if target is not None:
                    body.append(self._step_line(target, partial, g, fresh=ref[0] == "same"))
        after = [self._step_line(outside, "1.0", f"k{L}_{i}", fresh=True) for outside, i in deferred]
        return lines + [_indent(loop) + line for line in body] + after

    def _deferrable(self, loop) -> set:
        """Carried positions whose copy-0 step can leave the loop. Copy t's step into carried
        position i goes to copy t - 1's adjoint, but copy 0's to the fixed operand it reads instead
        (``initial``), which took a branch in every copy (20 % of Rosenbrock's batch time). Where
        that operand is a straight slot that nothing else in the loop steps into, and position i
        gets one step per copy, copy 0 can step into k<L>_<i> (starting from 0.0) like the others,
        and the straight adjoint add it after the loop: the same sum, bit for bit (x + (0.0 + y)
        is x + y for an adjoint x, which is never -0.0)."""
        steps, straight = {}, []
        for i, refs in enumerate(loop.refs):
            for j, ref in enumerate(refs):
                if not DIFF_MASK[self.tape.op[loop.start + i], j]:
                    continue
                if ref[0] == "carried":
                    steps[ref[1]] = steps.get(ref[1], 0) + 1
                    ref = ref[2]
                if ref[0] == "straight":
                    straight.append(ref[1])
        initial = self._carried_initial(loop)
        return {i for i, n in steps.items() if n == 1 and initial[i][0] == "straight"
                and straight.count(initial[i][1]) == 1}

    def value_buffer(self) -> list:
        """The allocation of the value buffer, as large as the lines written so far need."""
        return [f"V = np.empty({self.sizes['V']})"] if self.sizes["V"] else []

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
                lines += [f"for t in range({len(copies)}):", f"    ok = ok & (({self._at('V', L, i, 't')} != 0.0) == {want})"]
            else:
                lines += [f"ok = ok & (({self._at('V', L, i, t)} != 0.0) == {want})" for t in copies]
        return lines


def function_bodies(tape: Tape, the_plan: Plan, constants: dict):
    """(evaluate body, value_and_grad body) as lists of lines, indented for a function; the module
    constants they use added to ``constants``."""
    writer = _Writer(tape, the_plan, constants)
    guards = writer.guard_test()
    outputs = [int(s) for s in tape.outputs]
    ev = writer.forward(False) + guards + [f"out[{i}] = {writer.value(s)}" for i, s in enumerate(outputs)]
    ev = writer.value_buffer() + ev + ["return ok"]
    if outputs:
        value = writer.value(outputs[0])
        vg = writer.forward(True) + guards + ["if not ok:", f"    return {value}, False"]
        vg += writer.reverse(outputs[0]) + [f"return {value}, True"]
        vg = writer.value_buffer() + vg
    else:
        vg = ["return 0.0, False"]
    return ["    " + line for line in ev], ["    " + line for line in vg]
