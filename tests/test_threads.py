"""Threads: one compiled function called from many threads gives every thread its own right answer
(kernels are pure and nogil; each thread has its own workspace), and a printed throughput check that
the sweeps release the GIL (run with ``-s`` to see it)."""
from __future__ import annotations

import os
import threading
import warnings
import time

import numpy as np

import scalargrad as sg
from scalargrad.jit import kernels

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


def _rosenbrock(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def test_print_throughput_of_one_and_two_threads_on_a_large_tape():
    """Not asserted (timings belong to ``scalargrad bench``): prints calls/s for 1 and 2 threads on
    a ~10^5-op tape. Near 2x with 2 threads means the sweeps run without the GIL."""
    vg = sg.value_and_grad(_rosenbrock)
    x = np.linspace(-1.0, 1.0, 10_000)
    vg(x)
    n_ops = len(vg.tape(x))
    seconds = 1.0
    rates = {}
    for n_threads in (1, 2):
        counts = [0] * n_threads

        def worker(i):
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                vg(x)
                counts[i] += 1

        start = time.perf_counter()
        assert not _run_threads(worker, n_threads)
        rates[n_threads] = sum(counts) / (time.perf_counter() - start)
    print(f"\n{n_ops} ops, {os.cpu_count()} CPUs: 1 thread {rates[1]:.0f} calls/s, 2 threads "
          f"{rates[2]:.0f} calls/s (speed-up {rates[2] / rates[1]:.2f}x)")


def _branchy(x, y):
    if x > 0.0:
        return x * y
    if y > 0.0:
        return x + y
    return x - y


def test_threads_taking_different_control_flow_paths_get_correct_results():
    """Paths are retraced and reordered concurrently (api.py's path list is not locked: a thread can
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
