"""Threads: one compiled function called from many threads gives every thread its own right answer
(kernels are pure and nogil; each thread has its own workspace), on small and large tapes and on
paths retraced concurrently. Throughput is not tested here (timings belong to ``scalargrad bench``)."""
from __future__ import annotations

import threading
import warnings

import numpy as np

import scalargrad as sg
from scalargrad.jit import kernels

from helpers import rosen

N_THREADS = 8
CALLS = 2000


def _f(x):
    return sg.sin(x[0]) * x[1] + sg.exp(x[2] * 0.5) + x[0] * x[0] * x[2] + sg.tanh(x[1] - x[2])


def _expected(x):
    x0, x1, x2 = x
    t = np.tanh(x1 - x2)
    value = np.sin(x0) * x1 + np.exp(0.5 * x2) + x0 * x0 * x2 + t
    grad = np.array([np.cos(x0) * x1 + 2 * x0 * x2,
                     np.sin(x0) + (1 - t * t),
                     0.5 * np.exp(0.5 * x2) + x0 * x0 - (1 - t * t)])
    return value, grad


def _run_threads(target, n):
    errors = []
    barrier = threading.Barrier(n)

    def wrapped(i):
        try:
            barrier.wait()
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_one_compiled_function_from_many_threads_gives_each_its_own_result():
    vg = sg.value_and_grad(_f)
    vg(np.array([0.1, 0.2, 0.3]))  # trace and compile once, before the threads start
    wrong = []

    def worker(i):
        rng = np.random.default_rng(i)
        for _ in range(CALLS):
            x = rng.uniform(-2.0, 2.0, 3) + 10.0 * i  # disjoint ranges per thread
            value, grad = vg(x)
            want_value, want_grad = _expected(x)
            if not (np.isclose(value, want_value, rtol=1e-12)
                    and np.allclose(grad, want_grad, rtol=1e-12, atol=1e-300)):
                wrong.append((i, x, value, grad))

    errors = _run_threads(worker, N_THREADS)
    assert not errors
    assert not wrong, wrong[:3]


def test_threads_calling_the_kernels_directly_use_separate_workspaces():
    tape = sg.trace(_f, np.array([0.1, 0.2, 0.3]))
    program = kernels.Program(tape)
    spaces = {}
    wrong = []

    def worker(i):
        work = program.workspace()
        spaces[i] = work
        grad = np.empty(3)
        x = np.array([0.3, -0.1, 0.7]) + i
        want_value, want_grad = _expected(x)
        for _ in range(CALLS):
            value, ok = kernels.value_and_grad(program.ins, program.lit, program.io, x, grad, work)
            if not ok or not np.isclose(value, want_value, rtol=1e-12) \
                    or not np.allclose(grad, want_grad, rtol=1e-12):
                wrong.append(i)
                return

    assert not _run_threads(worker, N_THREADS)
    assert not wrong
    assert len({id(w) for w in spaces.values()}) == N_THREADS


def test_threads_sweeping_a_large_tape_at_once_get_the_single_thread_bits():
    """Two threads sweep a ~10^5-op tape at the same time (the interpreter's sweeps release the GIL,
    so their calls overlap), each at its own point: every result has the bits one thread alone gets
    there, and the path traced before the threads started is the only one. (``interp``: no
    background tier-up to generated code in the middle of the test.)"""
    vg = sg.value_and_grad(rosen, backend="interp")
    points = [np.linspace(-1.0, 1.0, 10_000), np.linspace(1.5, -0.5, 10_000)]
    want = [np.append(*vg(x)).view(np.uint64) for x in points]  # one thread, one call per point
    assert not np.array_equal(want[0], want[1])
    wrong = []

    def worker(i):
        for _ in range(20):
            got = np.append(*vg(points[i])).view(np.uint64)
            if not np.array_equal(got, want[i]):
                wrong.append((i, int(np.sum(got != want[i]))))

    assert not _run_threads(worker, 2)
    assert not wrong, wrong[:3]
    (sig,) = vg.cache.values()
    assert len(sig.paths) == 1


def _branchy(x, y):
    if x > 0.0:
        return x * y
    if y > 0.0:
        return x + y
    return x - y


def test_threads_taking_different_control_flow_paths_get_correct_results():
    """Paths are retraced and reordered concurrently (the transforms' path list is not locked: a thread can
    miss a path that another is moving to the front and retrace a duplicate), but every result must
    still be right."""
    vg = sg.value_and_grad(_branchy, argnums=(0, 1))
    wrong = []

    def worker(i):
        rng = np.random.default_rng(i)
        for _ in range(500):
            x, y = rng.uniform(-1.0, 1.0, 2)
            value, grad = vg(x, y)
            want = (x * y, (y, x)) if x > 0 else ((x + y, (1.0, 1.0)) if y > 0 else (x - y, (1.0, -1.0)))
            if value != want[0] or grad != want[1]:
                wrong.append((x, y, value, grad))

    assert not _run_threads(worker, N_THREADS)
    assert not wrong, wrong[:3]


def test_threads_retracing_the_same_new_path_at_once_cache_it_once():
    """8 threads meet each of the 32 sign patterns of 5 inputs at the same moment: each pattern is
    one control-flow path (MAX_PATHS of them), so no duplicate may be cached and nothing evicted."""
    def f(x):
        return sum(x[i] if x[i] > 0 else -2.0 * x[i] for i in range(5))
    vg = sg.value_and_grad(f)
    patterns = [np.array([1.0 if (p >> i) & 1 else -1.0 for i in range(5)]) * 0.5 for p in range(32)]
    barrier = threading.Barrier(8)

    def worker(i):
        for x in patterns:
            barrier.wait()
            value, grad = vg(x)
            assert value == sum(v if v > 0 else -2.0 * v for v in x)
            np.testing.assert_array_equal(grad, np.where(x > 0, 1.0, -2.0))

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "more than 32 paths" would fail the thread
        assert not _run_threads(worker, 8)
    (sig,) = vg.cache.values()
    assert len(sig.paths) == 32
