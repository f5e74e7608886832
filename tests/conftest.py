"""Shared test oracles: finite differences, op-table sampling and random programs over the op table.

Test modules import these helpers with ``from conftest import ...`` (tests/ is on sys.path).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

# Generated per-tape code (scalargrad/jit/codegen.py) goes to a throwaway directory, never the
# user's cache; subprocesses started by tests inherit it.
os.environ["SCALARGRAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="scalargrad-test-cache-")
atexit.register(shutil.rmtree, os.environ["SCALARGRAD_CACHE_DIR"], ignore_errors=True)

import scalargrad as sg
from scalargrad.ops import COMPARISONS, USER_OPS

# Literals for the ops that take one (powc: x ** lit, cpow: lit ** x).
LITERALS = (2.5, 0.5, 3.0)
# Inputs where IEEE semantics matter.
SPECIAL = (0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5)


def op_id(op) -> str:
    return op.name


def op_cases():
    """(op, literal) for every user op; literal ops once per literal, the others with None."""
    cases = []
    for op in USER_OPS:
        for lit in (LITERALS if op.literal else (None,)):
            cases.append((op, lit))
    return cases


def case_id(case) -> str:
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
    other row, so that both of its cases are sampled."""
    lows = np.array([lo for lo, _ in op.domain])
    highs = np.array([hi for _, hi in op.domain])
    x = rng.uniform(lows, highs, size=(n_points, op.arity))
    if op.name not in COMPARISONS:
        for j, carries in enumerate(op.differentiable):
            if not carries:
                x[::2, j] = 0.0
    return x


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
    def f(*xs):
        vals = replay(program, xs)
        return tuple(vals[i] for i in outputs)
    return sg.trace(f, *x)


# --- the compiled kernels, called the way api.py calls them ----------------------------------------

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


@pytest.fixture(autouse=True, scope="module")
def cache_dir(tmp_path_factory):
    """Generated code (jit/codegen.py) of each test module goes to its own temporary directory
    (compiled once per module), never to the user's cache."""
    path = tmp_path_factory.mktemp("codegen-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALARGRAD_CACHE_DIR", str(path))
        yield path
