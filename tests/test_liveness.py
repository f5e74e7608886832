"""Row packing of the batch sweeps (jit/liveness.py): no value is overwritten while it is still read,
pinned values keep their rows, and the batch kernels agree with single points on packed programs."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_same, random_program, trace_program

import scalargrad as sg
from scalargrad.jit import batch, kernels, liveness
from scalargrad.core.ops import INPUT
from scalargrad.jit.passes import optimize
from scalargrad.core.tape import Tape
from scalargrad.bench.workloads import WORKLOADS


def _check_rows(program):
    """Replays the packed program's writes: every operand must still be in its row when read, no
    instruction may write a row it reads, and inputs, outputs and guards must be in theirs at the end."""
    ins, io, rows = liveness.packed_ins(program)
    op, a, b, c = program.ins[:4]
    n = len(op)
    row = ins[6]
    owner = {}
    for k in range(n):
        operands = [int(x) for x in (a[k], b[k], c[k]) if x >= 0]
        for x in operands:
            assert owner.get(int(row[x])) == x, f"instruction {k} reads slot {x}, overwritten in row {row[x]}"
        assert int(row[k]) not in {int(row[x]) for x in operands}, f"instruction {k} writes a row it reads"
        for i, x in enumerate((a[k], b[k], c[k])):
            assert ins[1 + i, k] == (row[x] if x >= 0 else rows - 1)
        owner[int(row[k])] = k
    pinned = program.io[3: 3 + program.n_inputs + program.n_outputs + program.n_guards]
    for s, packed in zip(pinned, io[3: 3 + len(pinned)]):
        assert owner[int(packed)] == s and row[s] == packed
    assert row.max() < rows - 1  # the last row is scratch: no value lives there
    assert np.array_equal(ins[7], np.where(op == INPUT, rows - 1, row))
    return rows


@pytest.mark.parametrize("seed", range(20))
def test_random_programs_never_overwrite_a_live_value(seed):
    rng = np.random.default_rng(seed)
    program, x, outputs = random_program(rng, n_ops=80)
    _check_rows(kernels.Program(trace_program(program, x, outputs)))


def test_a_long_program_with_short_lifetimes_needs_few_rows():
    f, x0 = WORKLOADS["random"].make(10_000)  # operands from the last 32 values
    program = kernels.Program(optimize(sg.trace(f, x0)))
    rows = _check_rows(program)
    assert rows < 200 < len(program.tape) / 10


def test_inputs_outputs_and_guards_keep_their_rows():
    def f(x, y):
        z = x * y
        if z > 0.0:  # a guard, read after the sweep
            z = sg.sin(z) + x
        return z, y, x * 2.0  # an input as an output
    tape = sg.trace(f, 1.5, 0.5)
    program = kernels.Program(tape)
    _check_rows(program)
    X = np.array([[1.5, 0.5], [1.0, 2.0], [-1.0, 2.0]])
    out, ok = batch.evaluate(program, X)
    assert list(ok) == [True, True, False]  # the third point takes the other branch
    for p in range(2):
        x, y = X[p]
        assert_same(out[p], [np.sin(x * y) + x, y, 2 * x], what=f"point {p}")


def test_an_input_used_only_early_keeps_its_gradient():
    # x is last read by the first instruction; rows freed later must not take its adjoint row.
    def f(x, y):
        z = x * 3.0
        for _ in range(20):
            z = sg.sin(z) * y + z
        return z
    vg = sg.value_and_grad(f, argnums=(0, 1))
    X = np.random.default_rng(1).uniform(-1, 1, (9, 2))
    program = kernels.Program(optimize(sg.trace(f, 0.3, 0.7)))
    _check_rows(program)
    values, G, ok = batch.value_and_grad(program, X)
    assert ok.all()
    for p, (x, y) in enumerate(X):
        value, (gx, gy) = vg(x, y)
        assert_same(values[p], value, what=f"value at point {p}")
        assert_same(G[p], [gx, gy], what=f"gradient at point {p}")


def test_empty_and_leaf_only_programs():
    empty = Tape(op=[], a=[], b=[], c=[], lit=[], inputs=[], outputs=[])
    ins, io, rows = liveness.packed_ins(kernels.Program(empty))
    assert ins.shape == (8, 0) and rows == 1
    _check_rows(kernels.Program(sg.trace(lambda x: x, 2.0)))
