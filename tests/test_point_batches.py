"""Batches by a tape's compiled per-point function (jit/codegen/points.py): one parallel driver,
compiled once, calls the function's address at each row, giving its bits at every point (NaNs,
failing guards and several outputs included); vmap runs them from a path's tier-up on, and keeps
them for tapes that have no lane code."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.jit import codegen, tier
from scalargrad.jit.codegen import lanes, points
from scalargrad.jit.passes import optimize

from helpers import (SPECIAL, batches_match_points, central_diff, hot_after, random_loop_body, rosen,
                     two_loop_function, wait_for_kernel)


def _bits(a):
    return np.asarray(a, dtype=np.float64).view(np.uint64)


def _batches(tape):
    return {kind: points.PointBatches.of(codegen.compile_kernel(tape, kind), kind)
            for kind in ("value_and_grad", "evaluate")}


def test_point_batches_give_the_per_point_functions_bits_with_guards_nans_and_several_outputs():
    rng = np.random.default_rng(31)
    n = 9
    for _ in range(20):
        f = two_loop_function(random_loop_body(rng), random_loop_body(rng), guard=True)
        x = rng.uniform(0.3, 1.7, n)
        tape = optimize(sg.trace(f, x))
        if len(tape.guards) and len(tape.outputs) > 1:
            break
    assert len(tape.guards) and len(tape.outputs) > 1
    X = x * rng.uniform(0.9, 1.1, (41, n))
    X[5, 3] = -1.0  # another branch: its guard fails
    X[9] = np.where(rng.random(n) < 0.4, SPECIAL[2], X[9])
    X[11, 0] = np.nan
    ok = batches_match_points(tape, X, lane_code=False)
    assert not ok[5] and ok[:5].all()


def test_point_batches_gradients_match_central_differences():
    X = np.random.default_rng(4).uniform(-1.2, 1.2, (24, 12))
    tape = optimize(sg.trace(rosen, X[0]))
    values, G, ok = codegen.value_and_grad_batch(_batches(tape)["value_and_grad"], X, 12)
    assert ok.all()
    for p in (0, 13, 23):
        assert values[p] == pytest.approx(rosen(X[p]), rel=1e-13)
        np.testing.assert_allclose(G[p], central_diff(lambda *x: rosen(x), X[p]), rtol=1e-6, atol=1e-6)


def test_kernel_address_refuses_what_the_drivers_cannot_call():
    tape = optimize(sg.trace(lambda x: x[0] * sg.exp(x[1]), np.ones(2)))
    evaluate = codegen.compile_kernel(tape, "evaluate")
    assert points.kernel_address(evaluate, "evaluate") > 0
    assert points.kernel_address(evaluate, "value_and_grad") is None  # returns ok alone, not (value, ok)
    module = codegen.load_module(optimize(sg.trace(lambda x: x[0] - x[1], np.ones(2))))
    assert points.kernel_address(module.value_and_grad, "value_and_grad") is None  # not compiled yet


def test_a_path_without_lane_code_keeps_the_point_batches_under_auto(monkeypatch):
    hot_after(monkeypatch, 3)
    monkeypatch.setattr(lanes, "MAX_ROWS", 8)  # no lane code for this tape
    X = np.random.default_rng(6).uniform(-1.0, 1.0, (30, 10))
    fn = sg.value_and_grad(rosen)
    batched = sg.vmap(fn)
    first = batched(X)
    path_tier = next(iter(fn.cache.values())).paths[0].tier
    wait_for_kernel(path_tier)
    path_tier.settle()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no lane code is no failure: nothing to warn about
        second = batched(X)  # runs the point batches and finds the tape has no lane code
        path_tier.settle()
        third = batched(X)
    assert path_tier.lane_code == "none" and path_tier.running_batch() == "points" and path_tier.batch_settled()
    want = sg.vmap(sg.value_and_grad(rosen, backend="interp"))(X)
    for got in (first, second, third):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(_bits(a), _bits(b))


def test_a_failing_driver_leaves_vmap_on_the_batch_interpreter_with_a_warning(monkeypatch):
    def broken(kernel, kind):
        raise RuntimeError("no driver")

    monkeypatch.setattr(points.PointBatches, "of", staticmethod(broken))
    monkeypatch.setattr(tier, "predicted_compile_seconds", lambda tape, batch=False: 1e6 if batch else 0.0)
    X = np.random.default_rng(9).uniform(-1.0, 1.0, (8, 4))
    fn = sg.value_and_grad(rosen, backend="codegen")
    fn(X[0])
    monkeypatch.setattr(lanes, "MAX_ROWS", 4)  # and no lane code to fall back on
    with pytest.warns(RuntimeWarning, match="per-point batch driver failed.*no driver"):
        values, G = sg.vmap(fn)(X)
    assert next(iter(fn.cache.values())).paths[0].tier.running_batch() == "interp"
    want_values, want_G = sg.vmap(sg.value_and_grad(rosen, backend="interp"))(X)
    np.testing.assert_array_equal(_bits(values), _bits(want_values))
    np.testing.assert_array_equal(_bits(G), _bits(want_G))


def test_a_driver_that_failed_to_compile_is_not_tried_again(monkeypatch):
    calls = []

    def failing(kind):
        calls.append(kind)
        raise RuntimeError("no driver")

    monkeypatch.setattr(points, "warm_up", failing)
    monkeypatch.setattr(points, "_FAILED", {})
    tape = optimize(sg.trace(lambda x: x[0] * sg.exp(x[1]), np.ones(2)))
    kernel = codegen.compile_kernel(tape, "value_and_grad")
    with pytest.raises(RuntimeError, match="no driver"):  # the first time: the caller warns
        points.PointBatches.of(kernel, "value_and_grad")
    assert points.PointBatches.of(kernel, "value_and_grad") is None  # later: quietly none
    assert calls == ["value_and_grad"]
