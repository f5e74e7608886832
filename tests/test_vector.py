"""The interpreter's vector form (scalargrad/jit/vector.py): loop-structured tapes renumbered into
vector instructions give the scalar interpreter's bits (values, gradients, outputs, guards), and the
default backend switches to it in the background."""
from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.bench import workloads
from scalargrad.core.ops import OPCODE, USER_OPS
from scalargrad.jit import generate, kernels, tier, vector
from scalargrad.jit.codegen import loops
from scalargrad.jit.passes import optimize

from helpers import (SPECIAL, assert_identical, central_diff, compiled_evaluate, compiled_value_and_grad,
                     random_loop_body, rosen, two_loop_function)
from test_rolled import dense_net, loop_function


VECTOR_USER_OPS = [op for op in USER_OPS if op.name in generate.VECTOR_OPS]


@pytest.fixture(autouse=True)
def vectorize_small_tapes(monkeypatch):
    monkeypatch.setattr(vector, "MIN_OPS", 0)


def vector_form(fun, x):
    tape = optimize(sg.trace(fun, x))
    vp = vector.build(tape)
    assert vp is not None, "expected vector runs"
    return tape, vp


def check_against_scalar(tape, vp, points):
    """At every point the vector form gives the scalar sweeps' bits and guard result."""
    program = kernels.Program(tape)
    for x in points:
        grad = np.empty(len(x))
        value, ok = vp.value_and_grad(x, grad)
        i_value, i_grad, i_ok = compiled_value_and_grad(program, x)
        assert ok == i_ok
        if ok:
            assert_identical([value, *grad], [i_value, *i_grad], f"value and gradient at {x}")
        else:
            assert_identical(value, i_value, f"value at {x}")
        out = np.empty(len(tape.outputs))
        assert vp.evaluate(x, out) == i_ok
        i_out, _ = compiled_evaluate(program, x)
        if ok:
            assert_identical(out, i_out, f"outputs at {x}")


def edges(x, rng):
    n = len(x)
    return [x, -x, rng.uniform(-3, 3, n)] + [np.where(rng.random(n) < 0.3, v, x) for v in SPECIAL[:5]]


def test_rosenbrock_runs_as_vector_instructions_with_a_scatter_pass_and_a_running_sum():
    """x[i] gets adjoints from copies i and i - 1 at different positions: they go through the
    scatter pass, in the scalar order; the sum's adjoint is carried in a register."""
    x = np.random.default_rng(0).uniform(-2, 2, 50)
    tape, vp = vector_form(rosen, x)
    assert vp.covered > 0.8 and len(vp.vop) < 30
    kinds = set(vp.segments[0])
    assert {vector.SCATTER_PASS, vector.RUNNING_SUM} <= kinds
    check_against_scalar(tape, vp, edges(x, np.random.default_rng(1)))


@pytest.mark.parametrize("seed", range(12))
def test_random_loop_bodies_match_the_scalar_sweeps_bit_for_bit(seed):
    """Every op of the table in loop bodies, at IEEE edge values (0, -0, inf, NaN)."""
    rng = np.random.default_rng(seed)
    n = 24
    for _ in range(20):  # redraw bodies that fold to constants (no run left)
        f = loop_function(random_loop_body(rng, VECTOR_USER_OPS), outputs_per_copy=bool(seed % 2))
        x = rng.uniform(0.3, 1.7, n) * rng.choice([-1.0, 1.0], n)
        tape = optimize(sg.trace(f, x))
        vp = vector.build(tape)
        if vp is not None and vp.covered > 0:
            break
    assert vp is not None
    check_against_scalar(tape, vp, edges(x, rng))


@pytest.mark.parametrize("seed", range(6))
def test_random_pairs_of_loops_with_guards_match_the_scalar_sweeps(seed):
    rng = np.random.default_rng(1000 + seed)
    n = 20
    for _ in range(20):
        f = two_loop_function(random_loop_body(rng, VECTOR_USER_OPS), random_loop_body(rng, VECTOR_USER_OPS),
                              guard=bool(seed % 2))
        x = rng.uniform(0.3, 1.7, n)
        tape = optimize(sg.trace(f, x))
        vp = vector.build(tape)
        if vp is not None:
            break
    assert vp is not None
    check_against_scalar(tape, vp, edges(x, rng))


def test_matrix_products_run_as_grid_instructions():
    rng = np.random.default_rng(8)
    points = rng.uniform(-1, 1, (12, 2)).astype(object)
    f, n = dense_net(points, width=9)
    params = rng.uniform(-1, 1, n)
    tape, vp = vector_form(f, params)
    assert ((vp.vx[1] > 1) & (vp.vx[2] > 1)).any()  # a grid: copies along units and along points
    check_against_scalar(tape, vp, edges(params, rng))


def test_a_shared_value_read_at_two_positions_goes_through_the_scatter_pass():
    """w is read by every copy at two positions: summed position by position, its adjoint would be
    added in another order than the scalar sweep's."""
    def f(x):
        w = x[0]
        return sum(sg.sin(w * x[i]) + w * sg.cos(x[i]) for i in range(1, len(x)))

    x = np.linspace(-1.0, 1.3, 40)
    tape, vp = vector_form(f, x)
    assert vector.SCATTER_PASS in vp.segments[0]
    check_against_scalar(tape, vp, edges(x, np.random.default_rng(2)))
    value, g = sg.value_and_grad(f, backend="interp")(x)
    np.testing.assert_allclose(g, central_diff(lambda *v: f(np.array(v)), x), rtol=1e-6, atol=1e-8)


def test_a_run_whose_position_reads_a_later_position_of_the_copy_before_stays_scalar():
    """s_t = s_{t-1} * 0.5 + x_t, written so that position 0 reads position 1 of the copy before:
    positions cannot run one after the other, so the run stays scalar, with the same bits."""
    def f(x):
        s = x[0]
        for i in range(1, len(x)):
            half = s * 0.5
            s = half + x[i] * x[i]
        return s

    x = np.linspace(-1.0, 1.0, 40)
    tape = optimize(sg.trace(f, x))
    assert sum(loop.period * loop.count for loop in loops.plan(tape).loops) > 0.5 * len(tape)  # a run ...
    assert vector.build(tape) is None  # ... that cannot be run position by position


def test_a_running_sum_written_with_the_sum_second_is_correct():
    def f(x):
        s = x[0]
        for i in range(1, len(x)):
            s = sg.tanh(x[i]) + s
        return s

    x = np.linspace(-1.0, 1.0, 40)
    tape, vp = vector_form(f, x)
    check_against_scalar(tape, vp, edges(x, np.random.default_rng(3)))


def test_tapes_without_runs_or_with_ops_lacking_vector_instructions_have_no_vector_form():
    program, x = workloads.make_random(2000)
    assert vector.build(optimize(sg.trace(program, x))) is None
    assert vector.build(optimize(sg.trace(lambda x: sum(sg.arctan(x[i]) * x[i + 1] for i in range(len(x) - 1)),
                                          np.ones(30)))) is None
    cube = sg.custom_op("vector_test_cube", lambda a: a ** 3, [lambda a: 3.0 * a ** 2])
    tape = optimize(sg.trace(lambda x: sum(cube(x[i]) * x[i + 1] for i in range(len(x) - 1)), np.ones(30)))
    assert tape.op.max() >= OPCODE["custom1"] and vector.build(tape) is None


def test_the_default_backend_switches_to_the_vector_form_in_the_background():
    vector.warm_up()  # compiled (or loaded) and marked cached: paths ask for their vector form at once
    assert vector.cached()
    x = np.random.default_rng(4).uniform(-2, 2, 300)
    vg = sg.value_and_grad(rosen, backend="interp")
    first = vg(x)
    path_tier = next(iter(vg.cache.values())).paths[0].tier
    deadline = time.perf_counter() + 120
    while path_tier.running() != "vector" and time.perf_counter() < deadline:
        time.sleep(0.05)
        vg(x)
    assert path_tier.running() == "vector"
    value, g = vg(x)
    assert_identical([value, *g], [first[0], *first[1]])
    copy = pickle.loads(pickle.dumps(path_tier))  # as sent to Dask workers: afresh, without its vector form
    assert copy.running() == "interp" and np.array_equal(copy.tape.op, path_tier.tape.op)
    np.testing.assert_allclose(g, central_diff(lambda *v: rosen(np.array(v)), x), rtol=1e-5, atol=1e-6)


def test_a_failing_vector_form_leaves_the_path_on_the_scalar_sweeps(monkeypatch):
    def broken(tape):
        raise RuntimeError("no vector form today")
    monkeypatch.setattr(vector, "build", broken)
    monkeypatch.setitem(tier._VECTOR, "state", "ready")
    x = np.linspace(-1.0, 1.0, 100)
    vg = sg.value_and_grad(rosen, backend="interp")
    with pytest.warns(RuntimeWarning, match="vector form failed"):
        first = vg(x)
        tier.wait_for_compiles()
        while tier._VECTOR["worker"] is not None:
            time.sleep(0.01)
    assert next(iter(vg.cache.values())).paths[0].tier.running() == "interp"
    value, g = vg(x)
    assert_identical([value, *g], [first[0], *first[1]])


def test_before_the_sweeps_are_cached_a_path_asks_once_it_has_cost_time(monkeypatch):
    """A cold cache: the one-time compile starts only for a path that has run the interpreter for
    COLD_VECTOR_SECONDS, so that a short script does not wait at exit for it."""
    asked = []
    monkeypatch.setattr(vector, "cached", lambda: False)
    monkeypatch.setitem(tier._VECTOR, "state", "cold")
    monkeypatch.setattr(tier, "_request_vector_form", asked.append)
    monkeypatch.setattr(tier, "COLD_VECTOR_SECONDS", 0.01)
    vg = sg.value_and_grad(rosen, backend="interp")
    x = np.linspace(-1.0, 1.0, 100)
    vg(x)
    path_tier = next(iter(vg.cache.values())).paths[0].tier
    assert asked == [] and path_tier.vector_after == 0.01
    for _ in range(100_000):
        vg(x)
        if asked:
            break
    assert asked == [path_tier] and path_tier.vector_after is None
    assert path_tier.calls * path_tier.rent >= 0.01
