"""Figures for the compiled-code tier (scalargrad/jit/codegen/), measured in one run.

Run: python bench/codegen_tier.py [compile|speed|load|tierup|all]
  compile  compile time of the generated value_and_grad vs optimised tape size (fresh cache dir)
  speed    Rosenbrock value-and-gradient per call: generated vs hand-written Numba vs interpreter,
           timed inside an njit loop (no Python dispatch) and through sg.value_and_grad
  load     time for a fresh process to be ready from the disk cache
  tierup   backend="auto": call times before, during and after the background compile
Generated files go to SCALARGRAD_CACHE_DIR when it is set: scalargrad's own cache setting, so point
it at a scratch directory (compile figures are cold only while it starts empty), e.g.
  SCALARGRAD_CACHE_DIR=/tmp/sg-bench python bench/codegen_tier.py compile
Unset, they go to a fresh temporary directory removed at exit, never the user's default cache.
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np

if not os.environ.get("SCALARGRAD_CACHE_DIR"):  # a fresh directory, so that compiles are cold
    os.environ["SCALARGRAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="sg-codegen-bench-")
    atexit.register(shutil.rmtree, os.environ["SCALARGRAD_CACHE_DIR"], ignore_errors=True)

import scalargrad as sg  # noqa: E402
from scalargrad.bench.handwritten import rosen_value_and_grad  # noqa: E402
from scalargrad.bench.timing import interleaved_seconds  # noqa: E402
from scalargrad.jit import codegen, kernels, tier as tiering  # noqa: E402
from scalargrad.jit.passes import optimize  # noqa: E402
from scalargrad.bench.workloads import make_random, make_rosenbrock  # noqa: E402


def rosen_tape(n):
    fun, _ = make_rosenbrock(n)
    return optimize(sg.trace(fun, np.linspace(-1.2, 1.2, n)))


def random_tape(size):
    fun, x = make_random(size)
    return optimize(sg.trace(fun, x))


def compile_figures():
    print("compile time of generated value_and_grad (fresh cache), by optimised tape size")
    print(f"{'tape':>12} {'ops':>6} {'source ms':>10} {'compile s':>10} {'cpu s':>6} {'s/100 ops':>10}")
    cases = [("rosenbrock", n, rosen_tape(n)) for n in (6, 11, 20, 47, 93)]
    cases += [("random", s, random_tape(s)) for s in (50, 100, 200, 500, 1000)]
    for name, size, tape in cases:
        t = time.perf_counter()
        codegen.source(tape)
        src = time.perf_counter() - t
        t, cpu = time.perf_counter(), time.process_time()
        codegen.compile_kernel(tape, "value_and_grad")
        comp, cpu = time.perf_counter() - t, time.process_time() - cpu
        print(f"{name + '-' + str(size):>12} {len(tape):>6} {src * 1e3:>10.1f} {comp:>10.2f} {cpu:>6.2f} "
              f"{100 * comp / len(tape):>10.3f}")


@numba.njit
def _loop(k, x, g, reps):
    s = 0.0
    for i in range(reps):
        x[0] += 1e-12
        s += k(x, g)[0]
    return s


@numba.njit
def _loop_hand(x, g, reps):
    s = 0.0
    for i in range(reps):
        x[0] += 1e-12
        s += rosen_value_and_grad(x, g)
    return s


@numba.njit
def _loop_interp(ins, lit, io, x, g, work, reps):
    s = 0.0
    for i in range(reps):
        x[0] += 1e-12
        s += kernels.value_and_grad(ins, lit, io, x, g, work)[0]
    return s


def per_call(fns, reps, rounds):
    """Seconds per call of each ``fn(reps)`` (a loop of ``reps`` calls): the minimum over ``rounds``
    rounds that run every function once in turn (on a shared machine, interleaving exposes all of
    them to the same load)."""
    loops = [lambda fn=fn: fn(reps) for fn in fns]
    return [seconds / reps for seconds in interleaved_seconds(*loops, rounds=rounds, best=True)]


def speed_figures():
    print("Rosenbrock value and gradient, ns per call (minimum over 21 interleaved rounds; interp: best of 7)")
    print(f"{'n':>4} {'ops':>5} {'hand njit':>10} {'codegen':>9} {'interp':>8} {'cg/hand':>8} "
          f"{'interp/cg':>9} | from Python: {'hand':>6} {'codegen':>8} {'interp':>7}")
    for n in (10, 18, 50):
        tape = rosen_tape(n)
        prog = kernels.Program(tape)
        k = codegen.compile_kernel(tape, "value_and_grad")
        x, g = np.linspace(-1.2, 1.2, n), np.empty(n)
        work = prog.workspace()
        hand, gen = per_call([lambda r: _loop_hand(x, g, r), lambda r: _loop(k, x, g, r)], 20_000, 21)
        interp, = per_call([lambda r: _loop_interp(prog.ins, prog.lit, prog.io, x, g, work, r)], 20_000, 7)
        fun, _ = make_rosenbrock(n)
        py = {}
        for backend in ("interp", "codegen"):
            vg = sg.value_and_grad(fun, backend=backend)
            py[backend], = per_call([lambda r: [vg(x) for _ in range(r)]], 20_000, 7)
        py_hand, = per_call([lambda r: [rosen_value_and_grad(x, g) for _ in range(r)]], 20_000, 7)
        print(f"{n:>4} {len(tape):>5} {hand * 1e9:>10.1f} {gen * 1e9:>9.1f} {interp * 1e9:>8.1f} "
              f"{gen / hand:>8.2f} {interp / gen:>9.2f} | {'':>13} {py_hand * 1e9:>6.0f} "
              f"{py['codegen'] * 1e9:>8.0f} {py['interp'] * 1e9:>7.0f}")


_CHILD = """
import time, numpy as np
t0 = time.perf_counter()
import scalargrad as sg
from scalargrad.jit import codegen
from scalargrad.jit.passes import optimize
from scalargrad.bench.workloads import make_rosenbrock
t1 = time.perf_counter()
fun, x = make_rosenbrock({n})
tape = optimize(sg.trace(fun, x))
t2 = time.perf_counter()
k = codegen.compile_kernel(tape, "value_and_grad")
g = np.empty(len(x)); k(x, g)
t3 = time.perf_counter()
print(f"{{len(tape)}} {{t1 - t0:.3f}} {{t2 - t1:.3f}} {{t3 - t2:.3f}}")
"""


def load_figures():
    print("fresh process: import scalargrad / trace+optimise / generated kernel ready (s)")
    for n in (16, 40):  # sizes no other section compiles, so that the first compile is cold
        fun, x = make_rosenbrock(n)
        tape = optimize(sg.trace(fun, x))
        t = time.perf_counter()
        codegen.compile_kernel(tape, "value_and_grad")
        first = time.perf_counter() - t
        out = subprocess.run([sys.executable, "-c", _CHILD.format(n=n)], capture_output=True, text=True,
                             env=os.environ, check=True).stdout.split()
        ops, imp, tr, ready = out
        print(f"rosenbrock-{n} ({ops} ops): compile in this process {first:.2f} s; second process: "
              f"import {imp} s, trace {tr} s, kernel ready from disk cache {ready} s")


def tierup_figures(n=17):  # a size no other section compiles
    """backend="auto" on Rosenbrock n: per-call wall time before, during and after the background
    compile, and how long the compile took from the hot call to the switch."""
    fun, x = make_rosenbrock(n)
    vg = sg.value_and_grad(fun)
    vg(x)
    tier = next(iter(vg.cache.values())).paths[0].tier
    phases = {"interpreter": [], "while compiling": [], "generated": []}
    started = ready = None
    while True:
        t = time.perf_counter()
        vg(x)
        dt = time.perf_counter() - t
        if tier.kernel is not None:
            ready = ready or t
            phases["generated"].append(dt)
            if len(phases["generated"]) >= 20_000:
                break
        elif tier.started:
            started = started or t
            phases["while compiling"].append(dt)
        else:
            phases["interpreter"].append(dt)
    if started is None:
        print(f"tier-up, rosenbrock-{n}: already compiled in this process; run the tierup section alone")
        return
    print(f"tier-up, rosenbrock-{n} ({len(tier.tape)} ops): hot after {len(phases['interpreter'])} calls "
          f"({1e6 * tier.rent:.1f} µs each, predicted compile {tiering.predicted_compile_seconds(tier.tape):.2f} s), "
          f"compiled in the background in {ready - started:.2f} s (compile thread: "
          f"{tier.compile_times[0]:.2f} s wall, {tier.compile_times[1]:.2f} s CPU)")
    for phase, times in phases.items():
        times = np.array(times) * 1e6
        print(f"  {phase:>16}: {len(times):>6} calls, median {np.median(times):7.1f} µs, "
              f"99th percentile {np.percentile(times, 99):7.1f} µs, max {times.max():8.1f} µs")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("compile", "all"):
        compile_figures()
    if what in ("speed", "all"):
        speed_figures()
    if what in ("load", "all"):
        load_figures()
    if what in ("tierup", "all"):
        tierup_figures()
