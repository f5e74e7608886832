"""sg.vmap over Dask arrays: chunks mapped through the batch kernels, Dask arrays back, same results."""
import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import scalargrad as sg  # noqa: E402


def rosen(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def branchy(x, s):
    if x[0] > 0.0:  # a guard: points with x[0] <= 0 take the other path
        return s * x[0] * x[1]
    return sg.sin(x[1]) - x[0]


X = np.random.default_rng(1).uniform(-2.0, 2.0, (300, 4))


def test_value_and_grad_over_chunks_is_lazy_and_equals_the_numpy_batch():
    D = da.from_array(X, chunks=(64, 4))
    values, grads = sg.vmap(sg.value_and_grad(rosen))(D)
    assert isinstance(values, da.Array) and isinstance(grads, da.Array)
    assert values.chunks == ((64, 64, 64, 64, 44),) and grads.chunks[0] == values.chunks[0]
    expected_values, expected_grads = sg.vmap(sg.value_and_grad(rosen))(X)
    np.testing.assert_array_equal(values.compute(scheduler="threads"), expected_values)
    np.testing.assert_array_equal(grads.compute(scheduler="threads"), expected_grads)


def test_points_on_other_branches_and_unbatched_arguments():
    D = da.from_array(X[:, :2], chunks=(50, 1))  # chunked along the inputs too: rechunked
    g = sg.grad(branchy, argnums=(0, 1))
    gx, gs = sg.vmap(g, in_axes=(0, None))(D, 3.0)
    gx, gs = gx.compute(scheduler="synchronous"), gs.compute(scheduler="synchronous")
    for p in range(0, 300, 7):
        ex, es = g(X[p, :2], 3.0)
        np.testing.assert_array_equal(gx[p], ex)
        assert gs[p] == es
    h = 1e-6  # and against central differences, on both branches
    for p in (0, 1, 2, 3):
        for j in range(2):
            step = np.zeros(2)
            step[j] = h
            fd = (branchy(X[p, :2] + step, 3.0) - branchy(X[p, :2] - step, 3.0)) / (2 * h)
            assert gx[p, j] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_jit_with_tuple_outputs_and_a_batched_scalar_argument():
    f = sg.jit(lambda x, s: (x[0] * s, sg.where(x[1] > 0.0, x[1], -x[1])))
    s = da.from_array(np.linspace(0.0, 1.0, 300), chunks=100)
    a, b = sg.vmap(f)(da.from_array(X, chunks=(100, 4)), s)
    np.testing.assert_array_equal(a.compute(), X[:, 0] * np.linspace(0.0, 1.0, 300))
    np.testing.assert_array_equal(b.compute(), np.abs(X[:, 1]))


def test_chunks_run_in_worker_processes():
    values, grads = sg.vmap(sg.value_and_grad(rosen))(da.from_array(X, chunks=(150, 4)))
    values, grads = da.compute(values, grads, scheduler="processes", num_workers=2)
    expected_values, expected_grads = sg.vmap(sg.value_and_grad(rosen))(X)
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(grads, expected_grads)


def test_chunks_run_on_a_distributed_cluster_of_worker_processes():
    """A dask.distributed LocalCluster of two worker processes (started and stopped here), as a real
    cluster would run it: the traced program travels to the workers, each chunk's task runs there
    (the workers' process ids say so), and the results equal the NumPy batch's, branches included."""
    distributed = pytest.importorskip("distributed")
    import os
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        g = sg.grad(branchy, argnums=(0, 1))
        D = da.from_array(X[:, :2], chunks=(75, 2))
        (gx, gs), = [sg.vmap(g, in_axes=(0, None))(D, 3.0)]
        gx, gs = client.compute([gx, gs], sync=True)
        values, grads = client.compute(list(sg.vmap(sg.value_and_grad(rosen))(da.from_array(X, chunks=(75, 4)))),
                                       sync=True)
        workers = set(client.run(os.getpid).values())
    assert len(workers) == 2 and os.getpid() not in workers
    expected_gx, expected_gs = sg.vmap(g, in_axes=(0, None))(X[:, :2], 3.0)
    np.testing.assert_array_equal(gx, expected_gx)
    np.testing.assert_array_equal(gs, expected_gs)
    expected_values, expected_grads = sg.vmap(sg.value_and_grad(rosen))(X)
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(grads, expected_grads)
