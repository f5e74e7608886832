"""Other AD libraries on the shipped workloads, for ``scalargrad bench --compare``.

Each peer computes the same scalar-level program as the workload (one peer op per scalargrad op), in
its own idiom: micrograd Values and PyTorch 0-d tensors build an eager graph; autograd and JAX
differentiate a NumPy-style function that indexes its array argument elementwise (JAX jitted);
CasADi builds SX expressions and evaluates a gradient ``casadi.Function`` in its SX virtual machine;
``jax-jnp`` is not the scalar program but the vectorised rewrite a JAX user would write instead
(``jnp`` array expressions, rosenbrock and mlp only); ``numba`` is hand-written Numba code for the
workload (handwritten.py), the physical limit.
Peers are imported lazily, and each (peer, workload) runs in a child process so that a peer over its
time budget (or one that crashes, e.g. on deep recursion) can be stopped and reported. A peer name
``module:function`` names an adapter outside this table (the tests use one).
"""
from __future__ import annotations

import atexit
import math
import multiprocessing
import operator
import shutil
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np

from .handwritten import numba_peer
from .timing import MIN_SECONDS, sample_seconds, without_gc
from .workloads import relative_error

PEERS = ("micrograd", "autograd", "torch", "jax", "jax-jnp", "casadi", "numba")
MODULES = {"micrograd": "micrograd.engine", "autograd": "autograd", "torch": "torch", "jax": "jax",
           "jax-jnp": "jax", "casadi": "casadi", "numba": "numba"}
VECTORISED = ("rosenbrock", "mlp")  # the workloads jax-jnp has a rewrite of
# Peer value and gradient must match scalargrad's to this relative error (workloads.relative_error):
# the same program in another library rounds differently (other libm, other summation order), by
# about 1e-15 of the terms; a wrong derivative is off by far more.
RTOL = 1e-8
BUDGET_S = 10.0             # per (peer, workload): record + compile + checks + timing
MIN_REPEATS = 3             # each timing as the bench's (>= MIN_SECONDS), but >= 3 calls, unless over the budget


# --- the workloads at scalar level, over any scalar type with an op namespace -------------------

def make_scalar_program(workload: str, size):
    """``program(xs, ops)`` computing workload ``workload`` (at ``size``) from a list of scalars;
    ``program.workload`` and ``program.size`` name it (for peers that do not run it: numba)."""
    program = _scalar_program(workload, size)
    program.workload, program.size = workload, size
    return program


def _scalar_program(workload: str, size):
    from .workloads import MLP_SHAPES, random_program, two_moons
    if workload == "rosenbrock":
        def program(x, ops):
            return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))
        return program
    if workload == "mlp":
        points, labels = two_moons(size or 100)
        points, labels = points.tolist(), labels.tolist()
        layers = MLP_SHAPES

        def program(params, ops):
            shapes, offset = [], 0
            for n_in, n_out in layers:
                w = [params[offset + i * n_out:offset + (i + 1) * n_out] for i in range(n_in)]
                b = params[offset + n_in * n_out:offset + (n_in + 1) * n_out]
                shapes.append((w, b))
                offset += (n_in + 1) * n_out
            total = 0.0
            for point, label in zip(points, labels):
                h = point
                for depth, (w, b) in enumerate(shapes):
                    h = [sum(h[i] * w[i][j] for i in range(len(h))) + b[j] for j in range(len(b))]
                    if depth < len(shapes) - 1:
                        h = [ops.tanh(v) for v in h]
                total = total + ops.relu(1.0 - label * h[0])
            return total * (1.0 / len(points)) + 1e-4 * sum(p * p for p in params)
        return program
    if workload == "random":
        instructions, outputs = random_program(size or 100_000)

        def program(x, ops):
            values = list(x)
            for name, *operands in instructions:
                values.append(getattr(ops, name)(*(values[o] if type(o) is int else o for o in operands)))
            return sum(values[k] for k in outputs)
        return program
    raise KeyError(workload)


ARITHMETIC = dict(add=operator.add, sub=operator.sub, mul=operator.mul, div=operator.truediv,
                  neg=operator.neg, square=lambda a: a * a)


def float_ops() -> SimpleNamespace:
    """The op namespace over plain Python floats (``math``): the programs' own reference."""
    names = dict(sin=math.sin, cos=math.cos, tanh=math.tanh, exp=math.exp, log=math.log, sqrt=math.sqrt,
                 log1p=math.log1p, expm1=math.expm1, sinh=math.sinh, cosh=math.cosh, tan=math.tan,
                 arctan=math.atan, arcsin=math.asin, arctan2=math.atan2)
    return SimpleNamespace(**names, **ARITHMETIC, relu=lambda a: a if a > 0.0 else 0.0,
                           sigmoid=lambda a: 1.0 / (1.0 + math.exp(-a)))


def array_ops(np_like, **extra) -> SimpleNamespace:
    """The op namespace for a NumPy-like module (autograd.numpy, jax.numpy, torch, casadi)."""
    names = ("sin", "cos", "tanh", "exp", "log", "sqrt", "log1p", "expm1", "sinh", "cosh", "tan",
             "arctan", "arcsin", "arctan2")
    ops = {name: getattr(np_like, name) for name in names if hasattr(np_like, name)}
    ops.update(ARITHMETIC, sigmoid=lambda a: 1.0 / (1.0 + ops["exp"](-a)))
    ops.update(extra)
    return SimpleNamespace(**ops)


# --- peers: each returns dict(record, compile, fwd, vg) callables ----------------------------------
# ``record()`` builds what the peer needs per point (eager graph / trace / SX expressions) and returns
# seconds of one-time work beyond that (compile); fwd(x) -> value; vg(x) -> (value, gradient).

def micrograd_peer(program, n):
    from micrograd.engine import Value

    def unary(f, df):
        def op(a):
            out = Value(f(a.data), (a,), f.__name__)

            def _backward():
                a.grad += df(a.data, out.data) * out.grad
            out._backward = _backward
            return out
        return op

    def arctan2(a, b):
        out = Value(math.atan2(a.data, b.data), (a, b), "atan2")

        def _backward():
            r = a.data * a.data + b.data * b.data
            a.grad += b.data / r * out.grad
            b.grad += -a.data / r * out.grad
        out._backward = _backward
        return out

    def sigmoid(x):
        return 1.0 / (1.0 + math.exp(-x))

    ops = SimpleNamespace(**{
        **ARITHMETIC, **dict(tanh=unary(math.tanh, lambda a, y: 1.0 - y * y),
        relu=unary(lambda v: 0.0 if v <= 0.0 else v, lambda v, y: 1.0 if v > 0.0 else 0.0),
        sin=unary(math.sin, lambda a, y: math.cos(a)), cos=unary(math.cos, lambda a, y: -math.sin(a)),
        exp=unary(math.exp, lambda a, y: y), log=unary(math.log, lambda a, y: 1.0 / a),
        sqrt=unary(math.sqrt, lambda a, y: 0.5 / y), log1p=unary(math.log1p, lambda a, y: 1.0 / (1.0 + a)),
        expm1=unary(math.expm1, lambda a, y: y + 1.0), sinh=unary(math.sinh, lambda a, y: math.cosh(a)),
        cosh=unary(math.cosh, lambda a, y: math.sinh(a)), tan=unary(math.tan, lambda a, y: 1.0 + y * y),
        arctan=unary(math.atan, lambda a, y: 1.0 / (1.0 + a * a)),
        arcsin=unary(math.asin, lambda a, y: 1.0 / math.sqrt(1.0 - a * a)),
        sigmoid=unary(sigmoid, lambda a, y: y * (1.0 - y)), arctan2=arctan2)})
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 100 * n + 1_000_000))  # its topological sort recurses

    def build(x):
        xs = [Value(float(v)) for v in x]
        return xs, program(xs, ops)

    def vg(x):
        xs, out = build(x)
        out.backward()
        return out.data, np.array([v.grad for v in xs], dtype=np.float64)

    return dict(record=lambda x: build(x) and None, fwd=lambda x: build(x)[1].data, vg=vg)


def torch_peer(program, n):
    import torch
    torch.set_num_threads(1)
    ops = array_ops(torch, arctan=torch.atan, arcsin=torch.asin, arctan2=torch.atan2, relu=torch.relu,
                    sigmoid=lambda a: 1.0 / (1.0 + torch.exp(-a)))

    def build(x):
        xs = [torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for v in x]
        return xs, program(xs, ops)

    def fwd(x):
        with torch.no_grad():
            return float(program([torch.tensor(float(v), dtype=torch.float64) for v in x], ops))

    def vg(x):
        xs, out = build(x)
        out.backward()
        return out.item(), np.array([v.grad.item() if v.grad is not None else 0.0 for v in xs])

    return dict(record=lambda x: build(x) and None, fwd=fwd, vg=vg)


def autograd_peer(program, n):
    import autograd
    import autograd.numpy as anp
    ops = array_ops(anp, relu=lambda a: anp.maximum(a, 0.0))

    def f(x):
        return program([x[i] for i in range(len(x))], ops)

    value_and_grad = autograd.value_and_grad(f)

    def vg(x):
        value, grad = value_and_grad(x)
        return float(value), np.asarray(grad, dtype=np.float64)

    return dict(fwd=lambda x: float(f(x)), vg=vg)  # autograd records anew inside every vg call


def jax_peer(program, n):
    jnp = _jax()
    ops = array_ops(jnp, relu=lambda a: jnp.maximum(a, 0.0))
    return _jitted(lambda x: program([x[i] for i in range(n)], ops))


def jax_jnp_peer(program, n):
    """The workload as a JAX user would rewrite it, in array expressions: what scalar code is
    measured against when the alternative is a rewrite (rosenbrock and mlp)."""
    if program.workload not in VECTORISED:
        raise ValueError(f"jax-jnp has no array rewrite of the {program.workload} workload "
                         f"({' and '.join(VECTORISED)} have one)")
    jnp = _jax()
    if program.workload == "rosenbrock":
        return _jitted(lambda x: jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))
    from .workloads import mlp_loss, two_moons
    points, labels = (jnp.asarray(a) for a in two_moons(program.size or 100))
    return _jitted(lambda params: mlp_loss(params, points, labels, jnp.tanh, lambda a: jnp.maximum(a, 0.0)))


def _jax():
    """jax.numpy, with float64 on the CPU."""
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import jax.numpy as jnp
    return jnp


def _jitted(f):
    """The adapter for a JAX function ``f(x)``: jax.jit of it and of its value_and_grad."""
    import jax
    forward, value_and_grad = jax.jit(f), jax.jit(jax.value_and_grad(f))
    # JAX's persistent compilation cache, in a fresh directory: the first compile is cold and
    # writes it; compiling again after clearing the in-memory caches reads it (warm).
    cache = tempfile.mkdtemp(prefix="scalargrad-jax-cache-")
    atexit.register(shutil.rmtree, cache, True)
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    def record(x):
        # Tracing (Python -> jaxpr) is the record time; lowering + XLA compiling is the compile time.
        t0 = time.perf_counter()
        lowered_fwd, lowered_vg = forward.lower(x), value_and_grad.lower(x)
        traced = time.perf_counter() - t0
        t0 = time.perf_counter()
        lowered_fwd.compile(), lowered_vg.compile()
        cold = time.perf_counter() - t0
        jax.clear_caches()
        lowered_fwd, lowered_vg = forward.lower(x), value_and_grad.lower(x)
        t0 = time.perf_counter()
        state.update(fwd=lowered_fwd.compile(), vg=lowered_vg.compile())
        return cold, traced, time.perf_counter() - t0

    state = {}

    def vg(x):
        value, grad = state["vg"](x)
        grad.block_until_ready()
        return float(value), np.asarray(grad, dtype=np.float64)

    return dict(record=record, fwd=lambda x: float(state["fwd"](x)), vg=vg)


def casadi_peer(program, n):
    import casadi
    ops = array_ops(casadi, arctan=casadi.atan, arcsin=casadi.asin, arctan2=casadi.atan2,
                    relu=lambda a: casadi.fmax(a, 0.0))
    state = {}

    def record(x):
        t0 = time.perf_counter()
        sym = casadi.SX.sym("x", n)
        out = program([sym[i] for i in range(n)], ops)
        traced = time.perf_counter() - t0
        t0 = time.perf_counter()
        state["fwd"] = casadi.Function("f", [sym], [out])
        state["vg"] = casadi.Function("vg", [sym], [out, casadi.gradient(out, sym)])
        return time.perf_counter() - t0, traced

    def vg(x):
        value, grad = state["vg"](x)
        return float(value), np.asarray(grad, dtype=np.float64).reshape(-1)

    return dict(record=record, fwd=lambda x: float(state["fwd"](x)), vg=vg)


ADAPTERS = {"micrograd": micrograd_peer, "autograd": autograd_peer, "torch": torch_peer, "jax": jax_peer,
            "jax-jnp": jax_jnp_peer, "casadi": casadi_peer, "numba": numba_peer}


def applies(peer: str, workload: str) -> bool:
    """Whether ``peer`` runs ``workload``: every peer does, except numba (hand-written code for
    some workloads only) and jax-jnp (a rewrite of some)."""
    from . import handwritten
    if peer == "jax-jnp":
        return workload in VECTORISED
    return peer != "numba" or workload in handwritten.WORKLOADS


def module_of(peer: str) -> str:
    """The module a peer needs: from MODULES, or the ``module`` of ``module:function``."""
    if peer in MODULES:
        return MODULES[peer]
    if ":" in peer:
        return peer.partition(":")[0]
    raise KeyError(f"unknown peer {peer!r}; choose from {', '.join(PEERS)} or give module:function")


def adapter_of(peer: str):
    if peer in ADAPTERS:
        return ADAPTERS[peer]
    import importlib
    module, _, name = peer.partition(":")
    return getattr(importlib.import_module(module), name)


def missing(peer: str) -> str | None:
    """Why ``peer`` cannot run here (None when it can), without importing it."""
    import importlib.util
    module = module_of(peer)
    try:
        found = importlib.util.find_spec(module.split(".")[0]) is not None and \
            importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"{peer} is not installed (pip install {module.split('.')[0]})"


def version(peer: str) -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version
    try:
        return dist_version(module_of(peer).split(".")[0] if peer in MODULES else peer)
    except PackageNotFoundError:
        return "?"


# --- measuring one (peer, workload) in a child process --------------------------------------------

# Every peer row has these keys (None: not measured); the bench adds ns/op and the ratio to scalargrad.
ROW_KEYS = ("record_ms", "compile_ms", "compile_warm_ms", "fwd_us", "vg_us", "ratio", "calls", "ok", "detail")


def _median(call, deadline: float, first: float | None = None) -> tuple[float, int]:
    """(median seconds, calls) of ``call()`` over >= MIN_SECONDS and >= MIN_REPEATS calls, stopping
    early when another call would pass ``deadline``; ``first``: the checking call's time, counted as
    a sample (alone when even one more call would pass the deadline)."""
    times = sample_seconds(call, min_repeats=MIN_REPEATS, min_seconds=MIN_SECONDS, deadline=deadline, first=first)
    return statistics.median(times), len(times)


def measure_peer(peer: str, workload: str, size, x0, expected_value, expected_grad, budget: float,
                 report=None) -> dict:
    """Record, compile, verify and time one peer on one workload (in the current process).
    ``report(stage, row)`` is told each stage before it starts, with the numbers so far."""
    report = report or (lambda stage, row: None)
    row = dict.fromkeys(ROW_KEYS)
    row.update(ok=True, detail="")
    deadline = time.perf_counter() + budget
    report("recording", row)
    program = make_scalar_program(workload, size)
    adapter = adapter_of(peer)(program, len(x0))
    if "record" in adapter:
        # Eager peers: best of two graph builds (as the bench's trace time). Staged peers (jax, casadi)
        # record once and return (compile seconds, trace seconds[, warm compile seconds from the
        # peer's compilation cache]).
        staged, record_s = without_gc(lambda: adapter["record"](x0))
        if isinstance(staged, tuple):
            row["compile_ms"], record_s = 1e3 * staged[0], staged[1]
            if len(staged) > 2:
                row["compile_warm_ms"] = 1e3 * staged[2]
        else:
            report("recording again", dict(row, record_ms=1e3 * record_s))
            record_s = min(record_s, without_gc(lambda: adapter["record"](x0))[1])
        row["record_ms"] = 1e3 * record_s
    report("checking value and gradient", row)
    (value, grad), check_s = without_gc(lambda: adapter["vg"](x0))
    grad = np.asarray(grad, dtype=np.float64).reshape(np.shape(expected_grad))
    grad_err = relative_error(grad, expected_grad)
    if not relative_error(value, expected_value) <= RTOL or not grad_err <= RTOL:
        row.update(ok=False, mismatch=True, detail=f"differs from scalargrad: value {value!r} vs "
                   f"{expected_value!r}, max relative gradient error {grad_err:.1e}")
        return row
    # Near the budget each median shrinks to one call; vg can reuse the checking call's time.
    report("timing the forward pass", row)
    fwd_s, _ = _median(lambda: adapter["fwd"](x0), deadline)
    row["fwd_us"] = 1e6 * fwd_s
    report("timing value and gradient", row)
    vg_s, calls = _median(lambda: adapter["vg"](x0), deadline, first=check_s)
    row.update(vg_us=1e6 * vg_s, ratio=vg_s / fwd_s, calls=calls)
    return row


def _first_line(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0][:200] if text else ''}"


def _child(conn, peer, workload, size, x0, expected_value, expected_grad, budget):
    try:
        __import__(module_of(peer))  # imports do not count against the budget
        conn.send(("ready", None, None))

        def report(stage, row):
            conn.send(("stage", stage, dict(row)))

        conn.send(("done", None, measure_peer(peer, workload, size, x0, expected_value, expected_grad,
                                               budget, report)))
    except BaseException as error:  # report every failure to the parent instead of a traceback
        conn.send(("done", None, dict(dict.fromkeys(ROW_KEYS), ok=False, detail=_first_line(error))))
    finally:
        conn.close()


def run_peer(peer, workload, size, x0, expected_value, expected_grad, budget: float = BUDGET_S,
             import_timeout: float = 120.0) -> dict:
    """``measure_peer`` in a child process. A child still busy ``budget * 1.5 + 2`` seconds after its
    imports (it stops timing by itself at ``budget``) is stopped: its row has ``over_budget`` and the
    numbers it had measured, and says in which stage it was; one that dies says so."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(child, peer, workload, size, x0, expected_value,
                                                   np.asarray(expected_grad), budget), daemon=True)
    process.start()
    child.close()
    row = dict(dict.fromkeys(ROW_KEYS), ok=False, detail="")
    try:
        if not parent.poll(import_timeout):
            return dict(row, over_budget=True, detail=f"import of {module_of(peer)} took over {import_timeout:.0f} s")
        kind, _, got = parent.recv()
        if kind == "done":
            return got
        stage = "starting"
        stop = time.perf_counter() + budget * 1.5 + 2.0
        while True:
            left = stop - time.perf_counter()
            if left <= 0 or not parent.poll(left):
                return dict(row, ok=False, over_budget=True,
                            detail=f"over budget (> {budget:g} s) while {stage}; stopped")
            kind, stage_now, got = parent.recv()
            if kind == "done":
                return got
            stage, row = stage_now, dict(got, ok=False)
    except EOFError:
        process.join(5)
        return dict(row, ok=False, detail=f"the {peer} process died (exit code {process.exitcode})")
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        parent.close()
