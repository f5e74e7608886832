"""vmap(device="cuda"): checked under Numba's CUDA simulator (in a subprocess, since the simulator
must be chosen before numba.cuda is imported), and the clear error where no GPU is usable."""
import textwrap

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.jit.cuda import unavailable_reason

from helpers import assert_runs_under_cuda_simulator

SIMULATED = textwrap.dedent("""
    import numpy as np, scalargrad as sg
    def rosen(x):
        return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))
    vg = sg.value_and_grad(rosen)
    X = np.random.default_rng(0).uniform(-1, 1, (5, 4))
    v, G = sg.vmap(vg, device="cuda")(X)
    v_cpu, G_cpu = sg.vmap(vg)(X)
    assert np.allclose(v, v_cpu, rtol=1e-14) and np.allclose(G, G_cpu, rtol=1e-13), (v, v_cpu)
    def f(x):
        if x > 0:
            return x * x
        return -3.0 * x
    xs = np.array([-2.0, 3.0, -1.0, 4.0])
    assert np.array_equal(sg.vmap(sg.grad(f), device="cuda")(xs), [-3.0, 6.0, -3.0, 8.0])
    assert np.array_equal(sg.vmap(sg.jit(f), device="cuda")(xs), [6.0, 9.0, 3.0, 16.0])
    print("simulated ok")
""")


def test_cuda_batch_agrees_with_cpu_under_the_simulator():
    assert_runs_under_cuda_simulator(SIMULATED)


@pytest.mark.skipif(unavailable_reason() is None, reason="a CUDA device is usable here")
def test_cuda_without_gpu_fails_clearly():
    with pytest.raises(RuntimeError, match="NVIDIA GPU"):
        sg.vmap(sg.jit(lambda x: x), device="cuda")


def test_vmap_rejects_unknown_device():
    with pytest.raises(ValueError, match="device"):
        sg.vmap(sg.jit(lambda x: x), device="tpu")
    assert np.isfinite(sg.vmap(sg.jit(lambda x: x * 2.0))(np.ones(3))).all()
