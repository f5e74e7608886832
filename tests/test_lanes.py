"""Lane code (jit/codegen/lanes.py): generated batch functions that run 32 points per vectorised
loop give the per-point generated functions' bits at every point, flag the same failing guards, and
give way to batches by the per-point functions (codegen/points.py) where the rewrite does not apply."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import scalargrad as sg
from scalargrad.jit import codegen
from scalargrad.jit.codegen import intrinsics, lanes, text as codegen_text
from scalargrad.jit.passes import optimize

from helpers import SPECIAL, batches_match_points, random_loop_body, rosen, two_loop_function


@pytest.fixture(autouse=True)
def roll_small_tapes(monkeypatch):
    monkeypatch.setattr(codegen_text, "ROLL_MIN_OPS", 60)


@njit
def _transpose_with(src, s, ss, dst, d, ds):
    intrinsics.transpose4(src, s, ss, dst, d, ds)


def test_transpose4_moves_a_block_at_any_offset_and_stride():
    src = np.arange(200.0)
    for s, ss, d, ds in [(0, 4, 0, 4), (3, 7, 5, 9), (11, 40, 1, 33)]:
        dst = np.full(200, -1.0)
        _transpose_with(src, s, ss, dst, d, ds)
        want = np.full(200, -1.0)
        for i in range(4):
            for j in range(4):
                want[d + i * ds + j] = src[s + j * ss + i]
        np.testing.assert_array_equal(dst, want)


# About 10 s a seed (a lane program of its own to compile): seed 0 always, the others with -m slow.
@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=pytest.mark.slow) for s in range(1, 4))])
def test_lane_batches_of_random_loops_with_guards_match_the_per_point_code_bit_for_bit(seed):
    rng = np.random.default_rng(2000 + seed)
    n = 14  # not a multiple of 4: the transposes' remainders
    for _ in range(20):
        f = two_loop_function(random_loop_body(rng), random_loop_body(rng), guard=True)
        x = rng.uniform(0.3, 1.7, n)
        tape = optimize(sg.trace(f, x))
        the_plan = codegen.rolled_plan(tape)
        if the_plan is not None and len(the_plan.loops) >= 2 and len(tape.guards):
            break
    assert len(the_plan.loops) >= 2 and len(tape.guards)
    points = 37  # a partial group of lanes, and a partial block of 4 in it
    X = x * rng.uniform(0.9, 1.1, (points, n))
    X[5, 3] = -1.0  # another branch: its guard fails in the middle of a lane group
    X[36, 0] = -0.5
    X[7] = np.where(rng.random(n) < 0.3, SPECIAL[seed % len(SPECIAL)], X[7])
    ok = batches_match_points(tape, X)
    assert not ok[5] and not ok[36] and ok[:5].all()


def test_lane_batches_of_straight_code_match_the_per_point_code():
    def f(x):
        return sg.sin(x[0]) * x[1] + sg.sqrt(x[2] * x[2] + 1.0) / (x[3] if x[3] > 0 else -x[3])

    X = np.random.default_rng(7).uniform(-1.0, 1.0, (33, 5))
    X[0, 3] = 0.5
    tape = optimize(sg.trace(f, X[0]))
    assert codegen.rolled_plan(tape) is None
    ok = batches_match_points(tape, X)
    assert ok.any() and not ok.all()


def test_vmap_of_a_rolled_tape_runs_the_lanes_with_the_interpreters_results():
    X = np.random.default_rng(8).uniform(-1.2, 1.2, (70, 30))
    values, G = sg.vmap(sg.value_and_grad(rosen, backend="codegen"))(X)
    want_values, want_G = sg.vmap(sg.value_and_grad(rosen, backend="interp"))(X)
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(G, want_G)
    h = 1e-6  # and one point against central differences
    fd = [(rosen(X[3] + h * e) - rosen(X[3] - h * e)) / (2 * h) for e in np.eye(30)]
    np.testing.assert_allclose(G[3], fd, rtol=1e-5, atol=1e-6)


def test_a_buffer_over_max_rows_has_no_lane_code_and_runs_batches_by_the_per_point_functions(monkeypatch):
    tape = optimize(sg.trace(rosen, np.linspace(-1, 1, 29)))
    assert "def value_and_grad_lanes" in codegen.batch_source(tape)
    monkeypatch.setattr(lanes, "MAX_ROWS", 40)  # 29 inputs and 29 gradient rows do not fit
    with pytest.raises(lanes.Unsupported, match="MAX_ROWS"):
        codegen.batch_source(tape)
    X = np.random.default_rng(8).uniform(-2.0, 2.0, (37, 29))
    assert batches_match_points(tape, X, lane_code=False).all()
    # vmap under backend "codegen" runs them, with the interpreter's bits
    vg = sg.value_and_grad(rosen, backend="codegen")
    values, G = sg.vmap(vg)(X)
    assert next(iter(vg.cache.values())).paths[0].tier.running_batch() == "points"
    want_values, want_G = sg.vmap(sg.value_and_grad(rosen, backend="interp"))(X)
    np.testing.assert_array_equal(values.view(np.uint64), want_values.view(np.uint64))
    np.testing.assert_array_equal(G.view(np.uint64), want_G.view(np.uint64))
    with pytest.raises(lanes.Unsupported, match="MAX_ROWS"):
        lanes.lane_function("evaluate", ["    v1 = x[0]", "    out[0] = v1", "    return True"], 50, 1)


def test_constructs_the_rewrite_does_not_know_are_refused():
    with pytest.raises(lanes.Unsupported, match="While"):
        lanes.lane_function("evaluate", ["    v1 = x[0]", "    while v1 > 1.0:", "        v1 = v1 * 0.5",
                                         "    out[0] = v1", "    return True"], 1, 1)
    with pytest.raises(lanes.Unsupported, match="already uses"):
        lanes.lane_function("evaluate", ["    buf = x[0]", "    out[0] = buf", "    return True"], 1, 1)
