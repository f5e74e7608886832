"""Backends agree: the compiled Numba sweeps against the pure-Python reference sweeps, on random
programs over the op table and on every op at IEEE special values; reverse-operand layout; and the
interpreter never reads outside its buffers for a valid tape with unused (-1) operands."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.core import reference
from scalargrad.jit import _interp, kernels
from scalargrad.core.ops import CONST, DIFF_MASK, INPUT, OPCODE, OPS, USER_OPS
from scalargrad.core.tape import Tape

from helpers import (SPECIAL, assert_same, compiled_evaluate, compiled_value_and_grad, op_function,
                     random_program, trace_program)

N_PROGRAMS = 50


def _points(rng, x):
    """The generation point (mostly finite values), a nearby point and a random one."""
    return [x, x * rng.uniform(0.9, 1.1, len(x)), rng.uniform(-2.0, 2.0, len(x))]


@pytest.mark.parametrize("seed", range(N_PROGRAMS))
def test_random_program_compiled_equals_reference(seed):
    rng = np.random.default_rng(seed)
    program, x, outputs = random_program(rng, n_inputs=4, n_ops=50)
    tape = trace_program(program, x, outputs)
    assert len(tape.outputs) == len(outputs)
    compiled = kernels.Program(tape)
    for point in _points(rng, x):
        out, ok = compiled_evaluate(compiled, point)
        assert ok
        assert_same(out, reference.evaluate(tape, point), rtol=1e-9, what=f"outputs at {point}")
        value, grad, ok = compiled_value_and_grad(compiled, point)
        assert ok
        ref_value, ref_grad = reference.value_and_grad(tape, point)
        assert_same(value, ref_value, rtol=1e-9, what=f"value at {point}")
        assert_same(grad, ref_grad, rtol=1e-9, what=f"gradient at {point}")


@pytest.mark.parametrize("seed", range(0, N_PROGRAMS, 5))
def test_random_program_traced_values_equal_plain_python(seed):
    """Recording does not change values: the reference sweep at the trace point reproduces the
    values the program computed on plain floats."""
    rng = np.random.default_rng(seed)
    program, x, outputs = random_program(rng)
    tape = trace_program(program, x, outputs)
    plain = replay_floats(program, x)
    assert_same(reference.evaluate(tape, x), [plain[i] for i in outputs], rtol=1e-12)


def replay_floats(program, x):
    from helpers import replay
    return [float(v) for v in replay(program, [float(v) for v in x])]


@pytest.mark.parametrize("seed", range(0, N_PROGRAMS, 5))
def test_eager_backward_kernel_equals_reference(seed):
    """The eager kernel (input values carried in ``lit``) on a traced tape gives the reference
    adjoints of every input."""
    rng = np.random.default_rng(seed)
    program, x, outputs = random_program(rng)
    tape = trace_program(program, x, outputs)
    lit = tape.lit.copy()
    lit[tape.inputs] = x
    adj = kernels.eager_backward(tape.op, tape.a, tape.b, tape.c, lit,
                                 np.array([tape.outputs[0]], np.int32), np.array([1.0]))
    assert adj.shape == (len(tape),)
    assert_same(adj[tape.inputs], reference.value_and_grad(tape, x)[1], rtol=1e-9)


def _special_literals(op):
    return (2.0, 0.5, 3.0, -1.0, 0.0) if op.literal else (None,)


@pytest.mark.parametrize("op", USER_OPS, ids=lambda op: op.name)
def test_compiled_gradient_equals_reference_at_special_values(op):
    """0, -0, ±inf and NaN in every operand position: compiled partials equal the reference's."""
    for lit in _special_literals(op):
        tape = sg.trace(op_function(op, lit), *([1.5] * op.arity))
        compiled = kernels.Program(tape)
        for x in itertools.product(SPECIAL, repeat=op.arity):
            x = np.array(x)
            value, grad, ok = compiled_value_and_grad(compiled, x)
            ref_value, ref_grad = reference.value_and_grad(tape, x)
            assert_same([value, *grad], [ref_value, *ref_grad], rtol=1e-12,
                        what=f"{op.name} lit={lit} at {x.tolist()}: value, gradient")


def test_multiple_outputs_are_all_evaluated():
    tape = sg.trace(lambda x, y: (x * y, x - y, sg.exp(x), 7.0), 2.0, 3.0)
    out, ok = compiled_evaluate(kernels.Program(tape), np.array([1.5, -2.0]))
    assert ok
    np.testing.assert_allclose(out, [-3.0, 3.5, np.exp(1.5), 7.0], rtol=1e-15)


def test_kernels_report_failed_guards_like_the_reference():
    def f(x):
        return x * 2.0 if x > 1.0 else x * x
    tape = sg.trace(f, 3.0)
    assert len(tape.guards) == 1
    compiled = kernels.Program(tape)
    for x, holds in [(3.0, True), (1.5, True), (1.0, False), (-4.0, False)]:
        _, ok = compiled_evaluate(compiled, np.array([x]))
        assert ok is holds
        _, _, ok = compiled_value_and_grad(compiled, np.array([x]))
        assert ok is holds
        assert reference.guards_hold(tape, reference.forward(tape, [x])) is holds


def test_gradient_of_an_output_that_ignores_an_input_is_zero():
    tape = sg.trace(lambda x, y: x * 3.0, 1.0, 2.0)
    value, grad, ok = compiled_value_and_grad(kernels.Program(tape), np.array([2.0, 5.0]))
    assert (value, grad.tolist(), ok) == (6.0, [3.0, 0.0], True)


# --- reverse operands ------------------------------------------------------------------------------

def _one_instruction_per_op():
    """A valid tape: three inputs, then every user op applied to them (unused operands -1)."""
    ops, a, b, c, lit = [INPUT] * 3, [-1] * 3, [-1] * 3, [-1] * 3, [0.0] * 3
    for op in USER_OPS:
        ops.append(OPCODE[op.name])
        slots = [0, 1, 2][: op.arity] + [-1] * (3 - op.arity)
        a.append(slots[0])
        b.append(slots[1])
        c.append(slots[2])
        lit.append(2.0 if op.literal else 0.0)
    ops.append(CONST)
    a.append(-1)
    b.append(-1)
    c.append(-1)
    lit.append(4.0)
    n = len(ops)
    return Tape(ops, a, b, c, lit, inputs=[0, 1, 2], outputs=list(range(3, n)))


def test_reverse_operands_list_the_differentiable_operands_then_the_scratch_slot():
    tape = _one_instruction_per_op()
    n = len(tape)
    ra, rb = kernels.reverse_operands(tape.op, tape.a, tape.b, tape.c)
    for k in range(n):
        carried = [int(s) for j, s in enumerate((tape.a[k], tape.b[k], tape.c[k])) if DIFF_MASK[tape.op[k], j]]
        assert [int(ra[k]), int(rb[k])] == (carried + [n, n])[:2], OPS[tape.op[k]].name
    assert ra.min() >= 0 and rb.min() >= 0 and ra.max() <= n and rb.max() <= n


def test_reverse_operands_for_a_few_ops_by_hand():
    tape = sg.trace(lambda x, y, z: (x * y, sg.exp(x), sg.where(x, y, z), x < y, 2.0), 1.0, 2.0, 3.0)
    names = [OPS[o].name for o in tape.op]
    n = len(tape)
    ra, rb = kernels.reverse_operands(tape.op, tape.a, tape.b, tape.c)
    expected = {"mul": (0, 1), "exp": (0, n), "where": (1, 2), "lt": (n, n), "input": (n, n),
                "const": (n, n)}
    for k, name in enumerate(names):
        assert (int(ra[k]), int(rb[k])) == expected[name], name


def test_no_op_carries_more_than_two_derivatives():
    assert DIFF_MASK.sum(axis=1).max() <= 2


# --- bounds ----------------------------------------------------------------------------------------

class StrictBuffer:
    """A float buffer for the pure-Python versions of the sweeps that raises on any index outside
    [0, limit), negative indices included (which NumPy would silently wrap)."""

    def __init__(self, size, limit=None, fill=np.nan):
        self.data = np.full(size, fill)
        self.limit = size if limit is None else limit

    def _check(self, i):
        i = int(i)
        if not 0 <= i < self.limit:
            raise IndexError(f"index {i} outside [0, {self.limit})")
        return i

    def __getitem__(self, i):
        return float(self.data[self._check(i)])

    def __setitem__(self, i, value):
        self.data[self._check(i)] = value


def test_sweeps_never_index_outside_their_buffers():
    """Run the interpreter's Python source on a tape using every op with unused operands = -1:
    forward sweeps read and write only slots 0..n-1, the reverse sweep adjoints 0..n (n is the
    scratch slot), and the results equal the compiled ones."""
    tape = _one_instruction_per_op()
    compiled = kernels.Program(tape)
    n = len(tape)
    x = np.array([0.5, 0.7, 0.3])  # inside every op's domain
    ins = compiled.ins

    vals = StrictBuffer(n + 1, limit=n)
    for slot, value in zip(tape.inputs, x):
        vals[slot] = value
    _interp._forward_table.py_func(ins[0], ins[1], ins[2], ins[3], compiled.lit, vals, n)
    out, ok = compiled_evaluate(compiled, x)
    assert ok
    assert_same(vals.data[tape.outputs], out, rtol=1e-15)

    vals2 = StrictBuffer(n + 1, limit=n)
    for slot, value in zip(tape.inputs, x):
        vals2[slot] = value
    pa, pb = StrictBuffer(n), StrictBuffer(n)
    _interp._forward_partials_table.py_func(ins[0], ins[1], ins[2], ins[3], compiled.lit, vals2, pa, pb, n)
    assert_same(vals2.data[:n], vals.data[:n], rtol=0)

    # Ops that carry fewer than two derivatives leave pa/pb unset; the reverse sweep multiplies them
    # into the scratch slot only, so give them a finite filler.
    pa.data[np.isnan(pa.data)] = 0.0
    pb.data[np.isnan(pb.data)] = 0.0
    ra, rb = kernels.reverse_operands(tape.op, tape.a, tape.b, tape.c)
    adj = StrictBuffer(n + 1, fill=0.0)
    for k in tape.outputs:
        adj[k] = 1.0
    kernels.reverse.py_func(ra, rb, pa, pb, adj, n)
    assert np.isfinite(adj.data[:3]).all()


def test_kernel_results_with_unused_operands_equal_the_reference():
    tape = _one_instruction_per_op()
    compiled = kernels.Program(tape)
    x = np.array([0.5, 0.7, 0.3])
    out, ok = compiled_evaluate(compiled, x)
    assert ok
    assert_same(out, reference.evaluate(tape, x), rtol=1e-14)
    for output in range(len(tape.outputs)):
        reordered = Tape(*(tape.arrays()[k] for k in ("op", "a", "b", "c", "lit", "inputs")),
                         outputs=np.roll(tape.outputs, -output))
        value, grad, ok = compiled_value_and_grad(kernels.Program(reordered), x)
        ref_value, ref_grad = reference.value_and_grad(reordered, x)
        assert ok
        assert_same([value, *grad], [ref_value, *ref_grad], rtol=1e-14,
                    what=OPS[tape.op[tape.outputs[output]]].name)


def test_partials_an_op_does_not_carry_read_as_zero():
    """The reverse sweep multiplies both partial slots of every instruction; a slot the op never
    writes must hold 0.0, not leftover memory (subnormal garbage made a reverse sweep 10x slower),
    in the single-point workspace and the batch buffers."""
    from scalargrad.jit import batch
    tape = sg.trace(lambda x: sg.tanh(x[0]) * sg.exp(-x[1]) + x[0] ** 2, np.array([0.3, 0.7]))
    program = kernels.Program(tape)
    assert not program.workspace().any()
    carried = DIFF_MASK[tape.op.astype(np.int64)].sum(axis=1)
    compiled_value_and_grad(program, np.array([0.3, 0.7]))
    _, pa, pb, _ = kernels.split_workspace(program.workspace(), len(tape))
    assert (pb[carried < 2] == 0.0).all() and (pa[carried < 1] == 0.0).all()
    batch._prepared(program)
    assert not program.local.batch_work.any()
