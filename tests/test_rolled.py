"""Rolled generated code (scalargrad/jit/codegen/loops.py, rolled.py): tapes recorded from loops
over array elements become loops in the generated code, bit-identical to the interpreter."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.jit import codegen, tier
from scalargrad.jit.codegen import loops, text as codegen_text
from scalargrad.core.ops import OPCODE
from scalargrad.jit.passes import optimize

from helpers import (SPECIAL, apply_op, assert_identical, central_diff, check_against_interpreter, hot_after,
                     random_loop_body, random_program, rosen, trace_program, two_loop_function, wait_for_kernel)


@pytest.fixture(autouse=True)
def roll_small_tapes(monkeypatch):
    """Roll tapes from 60 instructions, so that the tests compile quickly."""
    monkeypatch.setattr(codegen_text, "ROLL_MIN_OPS", 60)


def rolled_tape(fun, x):
    tape = optimize(sg.trace(fun, x))
    assert codegen.rolled_plan(tape) is not None, "expected a loop"
    return tape


def test_rosenbrock_is_one_loop_of_its_block():
    tape = optimize(sg.trace(rosen, np.full(200, 0.5)))
    the_plan = loops.plan(tape)
    assert [(loop.period, loop.count) for loop in the_plan.loops] == [(8, 198)]
    assert the_plan.statements < 20 and codegen.generated_size(tape) == the_plan.statements
    assert "for t in range(198):" in codegen.source(tape)


def test_no_loop_in_a_tape_without_repetition():
    program, x, outputs = random_program(np.random.default_rng(3), n_ops=120)
    tape = optimize(trace_program(program, x, outputs))
    assert loops.plan(tape).loops == [] and codegen.rolled_plan(tape) is None


@pytest.mark.parametrize("n", [12, 61])
def test_rosenbrock_matches_the_interpreter_bit_for_bit(n):
    x = np.random.default_rng(n).uniform(-2, 2, n)
    tape = rolled_tape(rosen, x)
    points = [x, -x, np.where(np.arange(n) % 3, x, 0.0), np.where(np.arange(n) % 5, x, -0.0),
              np.where(np.arange(n) == 4, np.inf, x), np.where(np.arange(n) == 7, np.nan, x)]
    check_against_interpreter(tape, points)


def loop_function(steps, outputs_per_copy=False):
    def f(x):
        carried = x[0] * 0.5
        outs = []
        for i in range(len(x) - 1):
            vals = [x[i], x[i + 1], carried]
            for op, picks, literal in steps:
                args = [vals[p % len(vals)] if p < 90 else literal for p in picks]
                vals.append(apply_op(op, args, literal))
            carried = vals[-1] + carried
            outs.append(vals[-1])
        return [carried] + outs[::7] if outputs_per_copy else carried
    return f


@pytest.mark.parametrize("seed", range(12))
def test_random_loop_bodies_match_the_interpreter_bit_for_bit(seed):
    """Every op of the table in loop bodies, values at IEEE edges (0, -0, inf, NaN) included."""
    rng = np.random.default_rng(seed)
    n = 20
    for _ in range(20):  # a body whose copies differ after the passes (all constant: folded) is redrawn
        f = loop_function(random_loop_body(rng), outputs_per_copy=bool(seed % 2))
        x = rng.uniform(0.3, 1.7, n) * rng.choice([-1.0, 1.0], n)
        tape = optimize(sg.trace(f, x))
        if codegen.rolled_plan(tape) is not None:
            break
    assert codegen.rolled_plan(tape) is not None
    points = [x, rng.uniform(-3, 3, n)] + [np.where(rng.random(n) < 0.3, v, x) for v in SPECIAL[:5]]
    check_against_interpreter(tape, points)


@pytest.mark.parametrize("seed", range(6))
def test_random_pairs_of_loops_match_the_interpreter_bit_for_bit(seed):
    rng = np.random.default_rng(1000 + seed)
    n = 16
    for _ in range(20):
        f = two_loop_function(random_loop_body(rng), random_loop_body(rng), guard=bool(seed % 2))
        x = rng.uniform(0.3, 1.7, n)
        tape = optimize(sg.trace(f, x))
        the_plan = codegen.rolled_plan(tape)
        if the_plan is not None and len(the_plan.loops) >= 2:
            break
    assert len(the_plan.loops) >= 2
    points = [x, rng.uniform(-3, 3, n)] + [np.where(rng.random(n) < 0.3, v, x) for v in SPECIAL[:5]]
    check_against_interpreter(tape, points)


def test_a_loop_reading_an_earlier_loop_and_straight_code_reading_both():
    def f(x):
        y = [sg.sin(x[i]) * x[i] for i in range(len(x))]
        s = sum(y[i] * y[i + 1] + sg.exp(y[i]) for i in range(len(x) - 1))
        return s * y[3] + y[len(x) - 2]

    x = np.linspace(-1.0, 1.3, 40)
    tape = rolled_tape(f, x)
    assert len(codegen.rolled_plan(tape).loops) >= 2
    check_against_interpreter(tape, [x, x[::-1].copy(), np.where(np.arange(40) == 9, np.nan, x)])
    value, g = sg.value_and_grad(f, backend="codegen")(x)
    np.testing.assert_allclose(g, central_diff(lambda *v: f(np.array(v)), x), rtol=1e-6, atol=1e-8)


def test_constants_that_differ_per_copy_become_a_table():
    """``c[i] * x[i]`` with Python floats c: each copy records its own constant; the loop reads it
    from a table (non-finite constants and -0.0 kept bit for bit)."""
    rng = np.random.default_rng(5)
    c = rng.uniform(-2, 2, 40)
    c[[3, 11, 12]] = [-0.0, np.inf, -np.inf]
    c = [float(v) for v in c]

    def f(x):
        return sum(sg.sin(c[i] * x[i]) * x[i + 1] + c[i] for i in range(len(x) - 1))

    x = np.linspace(-1.0, 1.3, 41)
    tape = rolled_tape(f, x)
    assert any(loop.tables for loop in codegen.rolled_plan(tape).loops)
    assert "np.uint64).view(np.float64)" in codegen.source(tape)  # the table with infinities, from its bits
    check_against_interpreter(tape, [x, -x, np.where(np.arange(41) == 9, np.nan, x)])
    input_first = rolled_tape(lambda x: [x[2], f(x)], x)  # the gradient of output 0, an input
    check_against_interpreter(input_first, [x])
    finite = [v if np.isfinite(v) else 0.5 for v in c]

    def g(x):
        return sum(sg.sin(finite[i] * x[i]) * x[i + 1] + finite[i] for i in range(len(x) - 1))

    value, grad = sg.value_and_grad(g, backend="codegen")(x)
    np.testing.assert_allclose(grad, central_diff(lambda *v: g(np.array(v)), x), rtol=1e-6, atol=1e-8)


def dense_net(points, width):
    """Two tanh layers on constant points, as a matrix product of object arrays records them: per
    point and output unit, a dot product over the inputs (the MLP workload's shape, smaller)."""
    n_in = points.shape[1]

    def f(params):
        w1 = params[: n_in * width].reshape(n_in, width)
        w2 = params[n_in * width:].reshape(width, width)
        h = sg.tanh(points @ w1)
        return (sg.tanh(h @ w2) * 0.5).sum()
    return f, n_in * width + width * width


def test_matrix_products_become_grid_loops():
    """Per point a block of ``width`` dot products (longer than MAX_PERIOD): a loop over points of a
    loop over units, whose operands move one way along units and another along points."""
    rng = np.random.default_rng(8)
    points = rng.uniform(-1, 1, (10, 2)).astype(object)
    f, n = dense_net(points, width=9)
    params = rng.uniform(-1, 1, n)
    tape = rolled_tape(f, params)
    the_plan = codegen.rolled_plan(tape)
    grids = [loop for loop in the_plan.loops if loop.inner]
    assert grids and max(loop.inner * loop.period for loop in grids) > loops.MAX_PERIOD
    assert the_plan.statements * 10 < len(tape)
    assert "    for ti in range(9):" in codegen.source(tape)
    special = [np.where(rng.random(n) < 0.2, v, params) for v in SPECIAL[:5]]
    check_against_interpreter(tape, [params, -params] + special)
    value, grad = sg.value_and_grad(f, backend="codegen")(params)
    np.testing.assert_allclose(grad, central_diff(lambda *v: f(np.array(v)), params), rtol=1e-6, atol=1e-8)


def test_a_run_over_two_loops_copies_is_rolled_up_to_the_border():
    """tanh over the values of two loops (as ``relu`` over the MLP's margins, which it computes in
    two halves): one periodic run whose operand passes from one loop to the other; rolled as two."""
    def f(x):
        y = [sg.sin(x[i]) * x[i] for i in range(20)] + [sg.cos(x[i]) * x[i] for i in range(20)]
        return sum(sg.tanh(v) for v in y)

    x = np.linspace(-1.0, 1.3, 20)
    tape = rolled_tape(f, x)
    the_plan = codegen.rolled_plan(tape)
    tanh = np.flatnonzero(tape.op == OPCODE["tanh"])
    assert len(tanh) == 40 and (the_plan.owner[tanh] < 0).sum() <= 1  # sum's first term is apart
    check_against_interpreter(tape, [x, -x, np.where(np.arange(20) == 3, np.nan, x)])


@pytest.mark.parametrize("reads_start", [False, True])
def test_a_running_sum_from_a_straight_value(reads_start):
    """Copy 0's step into the sum's start (a straight value) leaves the loop unless the loop also
    reads that value (then it stays in the loop, in the interpreter's order): bit-identical both ways."""
    def f(x):
        c = sg.sin(x[0]) * 0.5
        s = c
        for i in range(1, len(x)):
            s = s + x[i] * (c if reads_start else x[i - 1])
        return s * c

    x = np.linspace(-1.0, 1.3, 30)
    tape = rolled_tape(f, x)
    text = codegen.source(tape)
    assert ("if t > 0:" in text) == reads_start
    check_against_interpreter(tape, [x, -x, np.where(np.arange(30) == 0, 0.0, x), np.where(np.arange(30) == 4, np.inf, x)])


def test_guards_inside_a_loop():
    def f(x):
        s = 0.0
        for i in range(len(x)):
            s = s + (x[i] * x[i] if x[i] > 0 else -x[i])
        return s

    x = np.linspace(0.1, 2.0, 50)
    tape = rolled_tape(f, x)
    y = x.copy()
    y[17] = -1.0  # another path: the guards fail, in both kernels
    check_against_interpreter(tape, [x, y])
    vg = sg.value_and_grad(f, backend="codegen")
    assert_identical([*vg(y)[1]], [*sg.value_and_grad(f, backend="interp")(y)[1]])


@pytest.mark.parametrize("fun", [  # where and two_wheres: 13 s and 34 s (compiles), so with -m slow
    lambda x: np.maximum(0.0, 1.0 - x).sum(),  # a loop of guarded comparisons
    pytest.param(lambda x: sg.where(x > 0.7, x, 0.0).sum(), marks=pytest.mark.slow),  # a loop of conditions
    pytest.param(lambda x: (sg.where(x > 0.7, x * x, 1.0) + sg.where(x < 0.2, x, -1.0)).sum(),
                 marks=pytest.mark.slow),
], ids=["maximum", "where", "two_wheres"])
def test_loops_without_a_derivative_write_no_reverse_loop(fun):
    # No adjoint reaches an input through a loop of comparisons: its reverse loop had an empty body
    # (an IndentationError in the generated module).
    x = np.linspace(0.1, 0.9, 100)
    x[0] = 0.5
    value, g = sg.value_and_grad(fun, backend="codegen")(x)
    i_value, i_g = sg.value_and_grad(fun, backend="interp")(x)
    assert_identical([value, *g], [i_value, *i_g])
    np.testing.assert_allclose(g, central_diff(lambda *v: fun(np.array(v)), x), rtol=1e-6, atol=1e-8)
    X = np.stack([x, x[::-1], x / 2])
    values, G = sg.vmap(sg.value_and_grad(fun, backend="codegen"))(X)  # the batch (lane) code
    i_values, i_G = sg.vmap(sg.value_and_grad(fun, backend="interp"))(X)
    assert_identical([*values, *G.ravel()], [*i_values, *i_G.ravel()])


def test_large_tapes_compile_as_loops_under_the_codegen_backend():
    x = np.random.default_rng(1).uniform(-1, 1, 3000)  # 27,000 instructions, far over the cap
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "runs on the interpreter" warning
        value, g = sg.value_and_grad(rosen, backend="codegen")(x)
    i_value, i_g = sg.value_and_grad(rosen, backend="interp")(x)
    assert_identical([value, *g], [i_value, *i_g])


def test_auto_tiers_up_a_large_tape_that_rolls(monkeypatch):
    hot_after(monkeypatch, 3)
    x = np.linspace(-1, 1, 500)
    vg = sg.value_and_grad(rosen)
    first = vg(x)
    tier.wait_for_compiles()  # a first compile of the vector sweeps holds the compile lock a while
    for _ in range(4):
        vg(x)
    path_tier = next(iter(vg.cache.values())).paths[0].tier
    wait_for_kernel(path_tier)
    assert_identical([first[0], *first[1]], [vg(x)[0], *vg(x)[1]])
