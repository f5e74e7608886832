"""Plain helpers shared by the test modules: oracles (finite differences, bit-for-bit comparison),
op-table sampling, random programs and loop bodies over the op table, the compiled kernels
called the way the library calls them, and for the bench the documented JSON keys and made-up
default-path numbers.

Test modules import them with ``from helpers import ...``: pytest puts tests/ (which has no
``__init__.py``) on sys.path, for a run of the whole suite and of one file alike. No test module
imports another; fixtures live in conftest.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np

import scalargrad as sg
from scalargrad.jit import codegen, kernels
from scalargrad.jit.codegen import points
from scalargrad.core.ops import COMPARISONS, USER_OPS
from scalargrad.record.operators import FUNCTIONS_BY_NAME

# Literals for the ops that take one (powc: x ** lit, cpow: lit ** x).
LITERALS = (2.5, 0.5, 3.0)
# Inputs where IEEE semantics matter.
SPECIAL = (0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5)


def op_id(op) -> str:
    """Test id of an op-table row: its name."""
    return op.name


def op_cases():
    """(op, literal) for every user op; literal ops once per literal, the others with None."""
    cases = []
    for op in USER_OPS:
        for lit in (LITERALS if op.literal else (None,)):
            cases.append((op, lit))
    return cases


def case_id(case) -> str:
    """Test id of an ``op_cases()`` entry: the op's name, with the literal for literal ops."""
    op, lit = case
    return op.name if lit is None else f"{op.name}-{lit}"


def op_function(op, lit=None):
    """``f(*operands)`` applying ``sg.<op.name>`` (with the literal appended for literal ops)."""
    fn = getattr(sg, op.name)
    if op.literal:
        return lambda *xs: fn(*xs, lit)
    return fn


def sample_domain(op, rng, n_points: int) -> np.ndarray:
    """``n_points`` rows of operands drawn uniformly from the op's declared domain. An operand that
    selects rather than carries a derivative (the condition of ``where``) is exactly 0.0 in every
    other row, so that both of its cases are sampled (not in ops where no operand carries one, such
    as floor: 0.0 is where it jumps)."""
    lows = np.array([lo for lo, _ in op.domain])
    highs = np.array([hi for _, hi in op.domain])
    x = rng.uniform(lows, highs, size=(n_points, op.arity))
    if op.name not in COMPARISONS and any(op.differentiable):
        for j, carries in enumerate(op.differentiable):
            if not carries:
                x[::2, j] = 0.0
    return x


# --- oracles ------------------------------------------------------------------------------------

def central_diff(f, x, h: float = 1e-6) -> np.ndarray:
    """Central finite-difference gradient of scalar ``f(*x)``."""
    x = np.asarray(x, dtype=np.float64)
    g = np.empty(len(x))
    for i in range(len(x)):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        g[i] = (float(f(*up)) - float(f(*down))) / (2 * h)
    return g


def second_diff(f, x, h: float = 1e-4) -> np.ndarray:
    """Hessian of scalar ``f(*x)`` by second central differences of ``f`` itself."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    hess = np.empty((n, n))

    def at(*steps):
        y = x.copy()
        for i, s in steps:
            y[i] += s * h
        return float(f(*y))

    for i in range(n):
        hess[i, i] = (at((i, 1)) - 2 * float(f(*x)) + at((i, -1))) / (h * h)
        for j in range(i):
            hess[i, j] = hess[j, i] = (at((i, 1), (j, 1)) - at((i, 1), (j, -1)) - at((i, -1), (j, 1))
                                       + at((i, -1), (j, -1))) / (4 * h * h)
    return hess


def assert_same(actual, expected, rtol=1e-12, atol=0.0, what=""):
    """Equal within rtol/atol, with NaN, +inf and -inf in exactly the same places."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def assert_identical(actual, expected, what=""):
    """Bit-identical floats (so +0.0 differs from -0.0), except that any NaN equals any NaN: the
    backends agree on where NaNs are, not on their sign bits (see test_codegen.py's
    test_every_op_at_special_values_agrees_across_backends_except_in_nan_signs)."""
    a = np.atleast_1d(np.asarray(actual, dtype=np.float64))
    e = np.atleast_1d(np.asarray(expected, dtype=np.float64))
    assert a.shape == e.shape, what
    nan = np.isnan(e)
    assert np.array_equal(np.isnan(a), nan), f"NaN in different places {what}: {a} vs {e}"
    assert np.array_equal(a[~nan].view(np.uint64), e[~nan].view(np.uint64)), f"{what}: {a} vs {e}"


def batches_match_points(tape, X, lane_code=True):
    """The generated batch module's functions (lane code, or with ``lane_code`` False the
    batches by the per-point functions, codegen/points.py) against the per-point module's functions,
    bit for bit, at every row of X whose guards hold; returns the batch's ok flags."""
    module = codegen.load_module(tape)
    if lane_code:
        vg_batch = ev_batch = codegen.load_module(tape, batch=True)
    else:
        vg_batch, ev_batch = (points.PointBatches.of(codegen.compile_kernel(tape, kind), kind)
                              for kind in ("value_and_grad", "evaluate"))
    n_out = len(tape.outputs)
    values, G, ok = codegen.value_and_grad_batch(vg_batch, X, len(tape.inputs))
    out, ok_out = codegen.evaluate_batch(ev_batch, X, n_out)
    for p, x in enumerate(X):
        g, y = np.empty(len(x)), np.empty(n_out)
        value, good = module.value_and_grad(x, g)
        assert ok[p] == good and ok_out[p] == module.evaluate(x, y), p
        if good:  # a failing point's results are discarded (vmap recomputes it)
            np.testing.assert_array_equal(np.append(values[p], G[p]).view(np.uint64),
                                          np.append(value, g).view(np.uint64), err_msg=f"point {p}")
            np.testing.assert_array_equal(out[p].view(np.uint64), y.view(np.uint64), err_msg=f"point {p}")
    return ok


# --- random programs over the op table ---------------------------------------------------------

PROGRAM_LITERALS = (2.0, 0.5, 3.0, -1.0, 1.5)


def replay(program, inputs):
    """Run a program (a list of (op name, operands, literal)) on floats or Variables.

    Operands are ints (index of an earlier value; inputs come first) or floats (constants).
    Returns every value, inputs included."""
    vals = list(inputs)
    for name, operands, lit in program:
        args = [vals[o] if type(o) is int else o for o in operands]
        if lit is not None:
            args.append(lit)
        vals.append(getattr(sg, name)(*args))
    return vals


def random_program(rng, n_inputs: int = 4, n_ops: int = 50):
    """(program, input values, output indices) of a random program over USER_OPS.

    Ops are drawn uniformly; operands from earlier values (sometimes a constant). A result that is
    not finite or is huge is redrawn a few times, so most values stay finite but some NaN/inf
    survive. Output 0 is the sum of a random subset of values, so gradients reach most inputs."""
    x = rng.uniform(0.2, 2.0, n_inputs) * rng.choice([-1.0, 1.0], n_inputs, p=[0.2, 0.8])
    vals = [float(v) for v in x]
    program = []
    while len(program) < n_ops:
        for attempt in range(10):
            op = USER_OPS[rng.integers(len(USER_OPS))]
            operands = []
            for _ in range(op.arity):
                if rng.random() < 0.1:
                    operands.append(float(rng.choice([0.5, 2.0, -1.0, 3.0])))
                else:
                    # Favour recent values so that chains get deep.
                    n = len(vals)
                    operands.append(int(n - 1 - int(rng.exponential(12.0)) % n))
            lit = float(rng.choice(PROGRAM_LITERALS)) if op.literal else None
            step = (op.name, tuple(operands), lit)
            y = replay([step], vals)[-1]
            if np.isfinite(y) and abs(y) < 1e6:
                break
            if attempt == 9 and rng.random() < 0.5:
                break  # keep an occasional NaN/inf
        else:
            continue
        program.append(step)
        vals.append(float(y))
    n = len(vals)
    summed = sorted(set(int(i) for i in rng.integers(0, n, 8)) | {n - 1})
    total = summed[0]
    for i in summed[1:]:
        program.append(("add", (total, i), None))
        total = n_inputs + len(program) - 1
    extra = [int(i) for i in rng.integers(0, n, 4)]
    return program, x, [total, *extra]


def trace_program(program, x, outputs) -> sg.Tape:
    """The tape of ``random_program``'s program traced at ``x``, with the values at ``outputs`` as outputs."""
    def f(*xs):
        vals = replay(program, xs)
        return tuple(vals[i] for i in outputs)
    return sg.trace(f, *x)


# --- loops over array elements (rolled generated code) ---------------------------------------------

def rosen(x):
    """Rosenbrock's function of any length, summed in Python: every element records the same block
    of instructions, which rolled generated code turns into a loop."""
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def random_loop_body(rng, ops=USER_OPS):
    """A loop body: ``ops`` over x[i], x[i + 1], the copy before's result and constants."""
    steps = []
    for _ in range(rng.integers(3, 9)):
        op = ops[rng.integers(len(ops))]
        steps.append((op, rng.integers(0, 100, size=3), rng.choice([0.5, 2.0, -1.5])))
    return steps


def apply_op(op, args, literal):
    """Apply op-table row ``op`` to ``args`` (only its first ``op.arity`` are used), with ``literal``
    for the literal ops (powc: ``x ** literal``, cpow: ``literal ** x``)."""
    if op.name == "powc":
        return args[0] ** literal
    if op.name == "cpow":
        return literal ** args[0]
    return FUNCTIONS_BY_NAME[op.name](*args[: op.arity])


def two_loop_function(first, second, guard):
    """A loop over x making ys and a running value c, then a loop over ys carrying s (with a
    guard in each copy if ``guard``); outputs read both loops."""
    def f(x):
        ys, c = [], x[0] * 0.25
        for i in range(len(x) - 1):
            vals = [x[i], x[i + 1], c]
            for op, picks, literal in first:
                vals.append(apply_op(op, [vals[p % len(vals)] if p < 90 else literal for p in picks], literal))
            ys.append(vals[-1])
            c = vals[-1] * 0.5 + c
        s = c
        for i in range(len(ys) - 1):
            vals = [ys[i], ys[i + 1], s]
            for op, picks, literal in second:
                vals.append(apply_op(op, [vals[p % len(vals)] if p < 90 else literal for p in picks], literal))
            s = s + vals[-1] if (not guard or x[i] > 0) else s - vals[-1]
        return [s, ys[2], c] if guard else s + ys[3]
    return f


# --- the compiled kernels, called the way the transforms call them ----------------------------------------

def _kernel_extra(kernel, program):
    """Trailing arguments beyond (ins, lit, io, x, out): the per-program workspace, if taken."""
    import inspect
    params = list(inspect.signature(kernel.py_func).parameters)
    return (program.workspace(),) if len(params) > 5 else ()


def compiled_evaluate(program, x) -> tuple[np.ndarray, bool]:
    """(outputs, guards hold) from ``kernels.evaluate`` on a ``Program``."""
    from scalargrad.jit import kernels
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty(program.n_outputs)
    ok = kernels.evaluate(program.ins, program.lit, program.io, x, out,
                          *_kernel_extra(kernels.evaluate, program))
    return out, bool(ok)


def compiled_value_and_grad(program, x) -> tuple[float, np.ndarray, bool]:
    """(value of output 0, gradient, guards hold) from ``kernels.value_and_grad``."""
    from scalargrad.jit import kernels
    x = np.ascontiguousarray(x, dtype=np.float64)
    grad = np.empty(len(x))
    value, ok = kernels.value_and_grad(program.ins, program.lit, program.io, x, grad,
                                       *_kernel_extra(kernels.value_and_grad, program))
    return float(value), grad, bool(ok)


# --- generated code (jit/codegen/) against the interpreter -----------------------------------------

def generated_value_and_grad(tape, x):
    """(value of output 0, gradient, guards hold) from the generated code of ``tape``."""
    k = codegen.compile_kernel(tape, "value_and_grad")
    g = np.empty(len(tape.inputs))
    value, ok = k(np.ascontiguousarray(x, dtype=np.float64), g)
    return value, g, bool(ok)


def generated_evaluate(tape, x):
    """(outputs, guards hold) from the generated code of ``tape``."""
    k = codegen.compile_kernel(tape, "evaluate")
    out = np.empty(len(tape.outputs))
    ok = k(np.ascontiguousarray(x, dtype=np.float64), out)
    return out, bool(ok)


def check_against_interpreter(tape, points, evaluate=True):
    """At every point, the generated code of ``tape`` gives the interpreter's bits (``assert_identical``)
    and the same guard result: value and gradient, and the outputs unless ``evaluate`` is False."""
    program = kernels.Program(tape)
    for x in points:
        value, grad, ok = generated_value_and_grad(tape, x)
        i_value, i_grad, i_ok = compiled_value_and_grad(program, x)
        assert ok == i_ok
        if ok:  # after a failed guard only the value is defined (the gradient is not written)
            assert_identical([value, *grad], [i_value, *i_grad], f"value and gradient at {x}")
        else:
            assert_identical(value, i_value, f"value at {x}")
        if evaluate:
            out, ok = generated_evaluate(tape, x)
            i_out, i_ok = compiled_evaluate(program, x)
            assert ok == i_ok
            assert_identical(out, i_out, f"outputs at {x}")


def wait_for_kernel(path_tier, timeout=120.0):
    """Wait until the background compile of ``path_tier`` (a ``tier`` of a cached path) has a kernel;
    fail on its error or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while path_tier.kernel is None and path_tier.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path_tier.error is None, path_tier.error
    assert path_tier.kernel is not None, "background compile did not finish"


@numba.njit
def descend(k, x, steps, lr):
    """Gradient descent written as the user's own @njit loop around a compiled kernel ``k(x, g)``."""
    g = np.empty_like(x)
    for _ in range(steps):
        k(x, g)
        x -= lr * g
    return x


# --- tiering -----------------------------------------------------------------------------------------

def hot_after(monkeypatch, calls: int) -> None:
    """Backend "auto" tiers a path up at its ``calls``-th interpreter call, its compile predicted to
    be instant (jit/tier.py's rule waits AUTO_HOT_CALLS calls, and longer for a long compile)."""
    from scalargrad.jit import tier
    monkeypatch.setattr(tier, "AUTO_HOT_CALLS", calls)
    monkeypatch.setattr(tier, "predicted_compile_seconds", lambda tape, batch=False: 0.0)


# --- the benchmark harness ---------------------------------------------------------------------------

def documented_keys() -> dict[str, list[str]]:
    """Keys listed per section of docs/bench-json.md (section title -> keys in order)."""
    doc = (Path(__file__).parent.parent / "docs" / "bench-json.md").read_text()
    sections, title = {}, None
    for line in doc.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            sections[title] = []
        elif title and (match := re.match(r"\| `(\w+)` \|", line)):
            sections[title].append(match.group(1))
    return sections


def fake_first_calls(row, run) -> dict:
    """Made-up numbers in the layout of scalargrad/bench/first_calls.py's, for a default-path row
    (``default_path.run_child`` without its child process): first call 0.1 s, first window 40 µs,
    after tier-up 20 µs (when the run waits for it), hand-written Numba 10 µs."""
    waits = run.tier_up_wait_s > 0
    return dict(first_call_s=0.1, first_call_kernel="interp", first_window_s=40e-6, first_window_calls=1000,
                first_window_codegen_calls=600, first_window_kernel="interp→codegen", tier_up_s=0.5,
                after_tier_up_s=20e-6 if waits else None, after_tier_up_kernel="codegen" if waits else None,
                handwritten_s=10e-6, cache_dir="/nonexistent", cache_files_at_start=0, ok=True, detail="")


# --- the CUDA path without a GPU -----------------------------------------------------------------

def assert_runs_under_cuda_simulator(script: str) -> None:
    """Run ``script`` in a child process under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, which
    must be set before Numba is imported); it must exit 0 and print "simulated ok"."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "simulated ok" in result.stdout
