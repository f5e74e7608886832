"""Memory pre-checks: a tape too large for memory fails with MemoryError before any allocation, and
a gradient of a 10^7-instruction tape fits in 2 GiB (run with ``-s`` to see bytes per op)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.core import resources
from scalargrad.jit import kernels

LINUX = os.path.exists("/proc/self/statm")


@pytest.fixture
def scarce(monkeypatch):
    """Pretend only 1 MiB is available, and check every request however small."""
    monkeypatch.setattr(resources, "available_bytes", lambda: (1 << 20, "pretend"))
    monkeypatch.setattr(resources, "CHECK_ABOVE", 0)


def _rosen(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def test_compiling_too_large_a_tape_fails_before_allocating(scarce, monkeypatch):
    tape = sg.trace(_rosen, np.zeros(2000))  # ~22,000 instructions: ~1.7 MiB of buffers > 1 MiB
    calls = []
    monkeypatch.setattr(kernels, "reverse_operands", lambda *a: calls.append(a))
    with pytest.raises(MemoryError) as info:
        kernels.Program(tape)
    message = str(info.value)
    assert f"compiling a tape of {len(tape):,} instructions needs about" in message
    per_op = resources.PROGRAM_BYTES_PER_OP + resources.TRANSIENT_BYTES_PER_OP
    assert f"{len(tape) * per_op:,} bytes" in message and "only 1.0 MiB (1,048,576 bytes) is available (pretend)" in message
    assert calls == []  # nothing was built


def test_transformed_function_reports_memory_error(scarce):
    with pytest.raises(MemoryError, match="compiling a tape of"):
        sg.value_and_grad(_rosen)(np.zeros(2000))
    with pytest.raises(MemoryError, match="compiling a tape of"):
        sg.jit(_rosen)(np.zeros(2000))
    assert sg.grad(_rosen)(np.zeros(3)) == pytest.approx([-2.0, -2.0, 0.0])  # small ones still fit


def test_each_new_thread_workspace_is_checked(monkeypatch):
    program = kernels.Program(sg.trace(_rosen, np.zeros(5000)))  # workspace ~1.8 MiB
    monkeypatch.setattr(resources, "available_bytes", lambda: (1 << 20, "pretend"))
    monkeypatch.setattr(resources, "CHECK_ABOVE", 0)
    errors = []

    def other_thread():
        try:
            program.workspace()
        except MemoryError as e:
            errors.append(str(e))

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "a workspace for a program of" in errors[0]


def test_requests_beyond_physical_memory_fail_for_real():
    # No monkeypatching: 10^12 instructions would need 76 TB on any machine this runs on.
    available, _ = resources.available_bytes()
    if available is None:
        pytest.skip("available memory cannot be read on this platform")
    with pytest.raises(MemoryError, match="compiling a tape of 1,000,000,000,000 instructions"):
        resources.require_program(10**12)
    resources.require_program(1000)  # small requests pass


def test_available_bytes_sources(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  2048 kB\nMemFree:  100 kB\nMemAvailable:   1024 kB\n")
    assert resources._meminfo_available(str(meminfo)) == 1 << 20
    meminfo.write_text("garbage\n")
    assert resources._meminfo_available(str(meminfo)) is None
    assert resources._meminfo_available(str(tmp_path / "missing")) is None
    available, source = resources.available_bytes()
    if LINUX:
        assert available > 0 and source
    # Without /proc/meminfo: the OS's free pages, or None where even that is unknown (no check).
    monkeypatch.setattr(resources, "_meminfo_available", lambda: None)
    available, source = resources.available_bytes()
    assert available is None or (available > 0 and source in ("free physical pages",
                                                              "room under the cgroup memory limit"))


_PEAK = r"""
import resource, sys, numpy as np
import scalargrad as sg
from scalargrad.jit import kernels
from scalargrad.core.ops import OPCODE
from scalargrad.core.tape import Tape
mode, n = sys.argv[1], int(sys.argv[2])

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

def reset_peak():  # so that compiling the kernels (a larger peak when the cache is cold) is not counted
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

def peak_rss(since_reset):
    if since_reset:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def chain_tape(n):  # x, then sin, mul by x, tanh, add x, ... : one long dependent chain
    k = np.arange(n)
    op = np.array([OPCODE[o] for o in ("sin", "mul", "tanh", "add")], np.int8)[k % 4]
    op[0] = OPCODE["input"]
    a = (k - 1).astype(np.int32)
    a[0] = -1
    b = np.where((op == OPCODE["mul"]) | (op == OPCODE["add"]), 0, -1).astype(np.int32)
    return Tape(op, a, b, np.full(n, -1, np.int32), np.zeros(n), [0], [n - 1])

def chain(x):
    for _ in range(n // 6):  # 6 instructions per step: sin, const, mul, tanh, const, add
        x = sg.tanh(sg.sin(x) * 1.0001) + 0.5
    return x

small = kernels.Program(chain_tape(100))  # compile/load the kernels before the baseline
kernels.value_and_grad(small.ins, small.lit, small.io, np.ones(1), np.empty(1), small.workspace())
sg.value_and_grad(lambda x: sg.tanh(sg.sin(x) * 1.0001) + 0.5)(0.3)
base = rss()
since_reset = reset_peak()
if mode == "tape":
    p = kernels.Program(chain_tape(n))
    g = np.empty(1)
    value, ok = kernels.value_and_grad(p.ins, p.lit, p.io, np.array([0.3]), g, p.workspace())
    instructions = n
else:
    value, g = sg.value_and_grad(chain)(0.3)
    instructions = 1 + 6 * (n // 6)
peak = peak_rss(since_reset)
print(instructions, base, peak, float(value), float(np.ravel(g)[0]))
"""


def _peak_rss(mode: str, n: int) -> tuple[int, int, int]:
    out = subprocess.run([sys.executable, "-c", _PEAK, mode, str(n)], capture_output=True, text=True,
                         check=True, timeout=600)
    instructions, base, peak, value, grad = out.stdout.split()
    assert np.isfinite(float(value)) and np.isfinite(float(grad))
    per_op = (int(peak) - int(base)) / int(instructions)
    print(f"\n{mode} {int(instructions):,} instructions: baseline RSS {int(base) / 2**20:.0f} MiB, peak "
          f"{int(peak) / 2**20:.0f} MiB, {per_op:.1f} bytes per instruction above the baseline")
    return int(instructions), int(peak), per_op


needs_linux = pytest.mark.skipif(not LINUX, reason="reads /proc/self/statm")


@needs_linux
def test_gradient_of_a_million_op_tape_costs_under_128_bytes_per_op():
    _, _, per_op = _peak_rss("tape", 10**6)
    assert per_op < 128  # Tape 29 + Program 32 + one workspace 32 + building temporaries


@needs_linux
@pytest.mark.slow
@pytest.mark.parametrize("mode", [
    "tape",  # a generated Tape straight into a Program: ~5 s
    "trace",  # traced through sg.value_and_grad: ~30 s and 1.2 GiB
])
def test_gradient_of_a_ten_million_op_tape_fits_in_two_gib(mode):
    _, peak, _ = _peak_rss(mode, 10**7)
    assert peak < 2 << 30
