"""Peers for ``bench --compare`` (scalargrad.bench.peers): the scalar programs, the child-process runner
with its budget, and (when installed) the real libraries on every workload."""
import math

import numpy as np

import pytest

import scalargrad as sg
from scalargrad.bench import peers
from scalargrad.bench.workloads import WORKLOADS, random_program

SMALL = {"rosenbrock": 10, "mlp": 4, "random": 500}  # random-500 uses every op of the random program


@pytest.fixture(scope="module")
def expected():
    """(x0, value, gradient) of scalargrad on each small workload."""
    out = {}
    for name, size in SMALL.items():
        fun, x0 = WORKLOADS[name].make(size)
        value, grad = sg.value_and_grad(fun)(x0)
        out[name] = (x0, value, grad)
    return out


@pytest.mark.parametrize("workload", SMALL)
def test_scalar_program_with_floats_matches_workload(workload, expected):
    x0, value, _ = expected[workload]
    program = peers.make_scalar_program(workload, SMALL[workload])
    got = program([float(v) for v in x0], peers.float_ops())
    assert type(got) is float
    assert math.isclose(got, value, rel_tol=1e-12)
    assert math.isclose(got, sg.jit(WORKLOADS[workload].make(SMALL[workload])[0])(x0), rel_tol=1e-12)


def test_random_program_at_500_uses_every_op():
    instructions, _ = random_program(500)
    used = {ins[0] for ins in instructions}
    assert used == set(vars(peers.float_ops())) - {"relu"}


def test_unknown_workload_and_peer():
    with pytest.raises(KeyError):
        peers.make_scalar_program("nope", None)
    with pytest.raises(KeyError, match="unknown peer 'nope'"):
        peers.module_of("nope")


@pytest.mark.parametrize("workload", SMALL)
def test_fake_peer_in_process_verifies_and_times(workload, expected):
    x0, value, grad = expected[workload]
    stages = []
    row = peers.measure_peer("fake_peer:exact", workload, SMALL[workload], x0, value, grad, budget=5.0,
                             report=lambda stage, row: stages.append(stage))
    assert row["ok"] and row["detail"] == "", row
    assert min(row["record_ms"], row["fwd_us"], row["vg_us"], row["ratio"]) > 0 and row["calls"] >= peers.MIN_REPEATS
    assert stages == ["recording", "recording again", "checking value and gradient", "timing the forward pass",
                      "timing value and gradient"]
    assert set(row) == set(peers.ROW_KEYS)


def test_wrong_value_or_gradient_is_a_mismatch(expected):
    x0, value, grad = expected["rosenbrock"]
    for fake in ("wrong", "zero_gradient"):
        row = peers.measure_peer(f"fake_peer:{fake}", "rosenbrock", SMALL["rosenbrock"], x0, value, grad, budget=5.0)
        assert not row["ok"] and row["mismatch"] and row["vg_us"] is None
        assert "differs from scalargrad" in row["detail"]


def test_child_process_row_matches_in_process(expected):
    x0, value, grad = expected["rosenbrock"]
    row = peers.run_peer("fake_peer:exact", "rosenbrock", SMALL["rosenbrock"], x0, value, grad, budget=5.0)
    assert row["ok"] and row["vg_us"] > 0, row


def test_over_budget_is_reported_with_its_stage(expected):
    x0, value, grad = expected["rosenbrock"]
    row = peers.run_peer("fake_peer:slow", "rosenbrock", SMALL["rosenbrock"], x0, value, grad, budget=0.5)
    assert row["over_budget"] and not row["ok"]
    assert row["detail"] == "over budget (> 0.5 s) while recording; stopped"


def test_a_peer_that_dies_or_raises_is_reported(expected):
    x0, value, grad = expected["rosenbrock"]
    died = peers.run_peer("fake_peer:crash", "rosenbrock", SMALL["rosenbrock"], x0, value, grad, budget=5.0)
    assert not died["ok"] and died["detail"] == "the fake_peer:crash process died (exit code 3)"
    raised = peers.run_peer("fake_peer:raises", "rosenbrock", SMALL["rosenbrock"], x0, value, grad, budget=5.0)
    assert not raised["ok"] and raised["detail"] == "ValueError: this peer cannot do that"


def test_missing_peer_note():
    assert peers.missing("no_such_module_for_scalargrad:peer") == \
        "no_such_module_for_scalargrad:peer is not installed (pip install no_such_module_for_scalargrad)"
    assert peers.missing("fake_peer:exact") is None


# --- the real libraries, where installed ------------------------------------------------------------

@pytest.mark.parametrize("workload", SMALL)
@pytest.mark.parametrize("peer", [p for p in peers.PEERS if not p.startswith("jax")])
def test_real_peer_matches_scalargrad(peer, workload, expected, monkeypatch):
    pytest.importorskip(peers.MODULES[peer])
    monkeypatch.setattr(peers, "MIN_SECONDS", 0.0)  # one timed call each: checking is the point here
    monkeypatch.setattr(peers, "MIN_REPEATS", 1)
    x0, value, grad = expected[workload]
    if peer == "numba" and workload == "random":  # nothing hand-written: the row says so
        with pytest.raises(ValueError, match="no hand-written Numba reference for the random workload"):
            peers.measure_peer(peer, workload, SMALL[workload], x0, value, grad, budget=30.0)
        return
    row = peers.measure_peer(peer, workload, SMALL[workload], x0, value, grad, budget=30.0)
    assert row["ok"], row["detail"]
    assert row["vg_us"] > 0 and row["fwd_us"] > 0


@pytest.mark.parametrize("workload", ["rosenbrock", "mlp"])
def test_real_jax_array_rewrite_in_a_child_process(workload, expected):
    """jax-jnp: the vectorised rewrite gives scalargrad's value and gradient (to RTOL)."""
    pytest.importorskip("jax")
    x0, value, grad = expected[workload]
    row = peers.run_peer("jax-jnp", workload, SMALL[workload], x0, value, grad, budget=60.0)
    assert row["ok"], row["detail"]
    assert row["vg_us"] > 0


def test_jax_array_rewrite_applies_to_rosenbrock_and_mlp_only():
    assert [w for w in ("rosenbrock", "mlp", "random") if peers.applies("jax-jnp", w)] == ["rosenbrock", "mlp"]
    program = peers.make_scalar_program("random", 50)
    with pytest.raises(ValueError, match="no array rewrite of the random workload"):
        peers.jax_jnp_peer(program, 16)


def test_real_jax_in_a_child_process(expected):
    # In a child: JAX's x64 switch is process-wide, and the compile is the slow part.
    pytest.importorskip("jax")
    x0, value, grad = expected["rosenbrock"]
    row = peers.run_peer("jax", "rosenbrock", SMALL["rosenbrock"], x0, value, grad, budget=60.0)
    assert row["ok"], row["detail"]
    assert row["compile_ms"] > 0 and row["record_ms"] > 0 and row["vg_us"] > 0
    assert 0 < row["compile_warm_ms"]  # compiled again from JAX's persistent cache
    print(f"jax compile cold {row['compile_ms']:.0f} ms, warm {row['compile_warm_ms']:.0f} ms")


@pytest.mark.parametrize("workload", ["rosenbrock", "mlp"])
def test_handwritten_forward_is_its_value_and_gradients_value(workload, expected):
    from scalargrad.bench.handwritten import reference
    x0, value, grad = expected[workload]
    forward, value_and_grad = reference(workload, SMALL[workload])
    g = np.empty(len(x0))
    assert forward(x0) == value_and_grad(x0, g)
    assert math.isclose(forward(x0), value, rel_tol=1e-12) and np.allclose(g, grad, rtol=1e-10, atol=1e-14)
