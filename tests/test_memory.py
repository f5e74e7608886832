"""Memory: repeated compiled calls do not grow the resident set, and a Program costs a fixed, small
number of bytes per tape instruction (run with ``-s`` to see the numbers)."""
from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.jit import kernels

STATM = "/proc/self/statm"
pytestmark = pytest.mark.skipif(not os.path.exists(STATM), reason="needs /proc/self/statm (Linux)")
MAX_DRIFT = 4 << 20  # bytes: allocator noise, not a per-call leak (10^6 calls x 4 bytes would exceed it)


def rss_bytes() -> int:
    with open(STATM) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _f(x, y):
    return sg.tanh(x * y) + sg.exp(-x) * y ** 2


def _rss_drift(calls: int) -> int:
    # The interpreter: with backend="auto" this small tape would tier up during the warm-up and the
    # background compile (LLVM's memory) would land in the measured window.
    vg = sg.value_and_grad(_f, argnums=(0, 1), backend="interp")
    x = np.linspace(-2.0, 2.0, 1000)
    for i in range(5_000):  # warm up: compile, fill caches and allocator pools
        vg(float(x[i % 1000]), 0.5)
    gc.collect()
    before = rss_bytes()
    for i in range(calls):
        vg(float(x[i % 1000]), 0.5)
    gc.collect()
    drift = rss_bytes() - before
    print(f"\n{calls} calls: RSS {before / 2**20:.1f} MiB -> drift {drift / 1024:+.0f} KiB "
          f"({drift / calls:.3f} bytes per call)")
    return drift


def test_rss_does_not_grow_over_many_compiled_calls():
    assert _rss_drift(200_000) < MAX_DRIFT


@pytest.mark.slow
def test_rss_does_not_grow_over_a_million_compiled_calls():
    assert _rss_drift(1_000_000) < MAX_DRIFT


def test_program_bytes_per_tape_instruction():
    rng = np.random.default_rng(0)
    n = 100_000
    # A synthetic 10^5-instruction tape: 10 inputs, then adds/muls of earlier slots.
    from scalargrad.core.ops import OPCODE
    from scalargrad.core.tape import Tape
    n_in = 10
    op = np.full(n, OPCODE["add"], np.int8)
    op[:n_in] = OPCODE["input"]
    op[n_in::2] = OPCODE["mul"]
    k = np.arange(n)
    a = np.where(k < n_in, -1, (k * rng.random(n)).astype(np.int32))
    b = np.where(k < n_in, -1, k - 1)
    tape = Tape(op, a, b, np.full(n, -1), np.zeros(n), np.arange(n_in), [n - 1])
    program = kernels.Program(tape)
    work = program.workspace()
    parts = {"ins": program.ins.nbytes, "lit": program.lit.nbytes, "io": program.io.nbytes,
             "workspace": work.nbytes}
    per_op = sum(parts.values()) / n
    tape_per_op = sum(arr.nbytes for arr in tape.arrays().values()) / n
    print(f"\nProgram of a {n}-op tape: " + ", ".join(f"{k} {v / n:.1f}" for k, v in parts.items())
          + f" -> {per_op:.1f} bytes/op (+ the Tape itself: {tape_per_op:.1f} bytes/op)")
    # ins 6 x int32, lit float64, workspace 4 float64 per instruction.
    assert per_op == pytest.approx(6 * 4 + 8 + 4 * 8, abs=0.01)
    value, ok = kernels.value_and_grad(program.ins, program.lit, program.io, np.ones(n_in),
                                       np.empty(n_in), work)
    assert ok  # values may overflow to inf on this synthetic tape; only the layout matters
