"""Benchmark problems shipped with the package, used by ``scalargrad bench`` and the tests.

Each ``Workload.make(size)`` returns ``(fun, x0)``: ``fun`` maps one float64 array to a scalar and
``x0`` is a deterministic point where ``fun`` is smooth, finite and in every op's domain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

import scalargrad as sg


@dataclass(frozen=True)
class Workload:
    """A named problem. ``sizes`` are the bench rows (``name-size``; empty: one row at the default
    size), ``quick_sizes`` those of ``bench --quick``, ``growth_sizes`` those of ``bench --plot``
    (time against tape size). A workload with a ``check`` (returning a list
    of failure messages) is a correctness check that the bench runs instead of timing."""

    name: str
    description: str
    make: Callable[..., tuple[Callable, np.ndarray]]
    sizes: tuple[int, ...] = ()
    quick_sizes: tuple[int, ...] = ()
    check: Callable[[], list[str]] | None = None
    growth_sizes: tuple[int, ...] = ()  # ``bench --plot``: sizes spanning decades, so growth shows


# --- rosenbrock -----------------------------------------------------------------------------------

def make_rosenbrock(size: int | None = None):
    """The n-dimensional Rosenbrock function (about 11 instructions per dimension)."""
    def rosenbrock(x):
        return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))

    return rosenbrock, np.linspace(-1.2, 1.2, size or 1000)


# --- mlp ------------------------------------------------------------------------------------------

MLP_LAYERS = (2, 16, 16, 1)
MLP_SHAPES = tuple(zip(MLP_LAYERS[:-1], MLP_LAYERS[1:]))  # (inputs, outputs) per layer


def two_moons(n: int = 100, noise: float = 0.1, seed: int = 0):
    """Two interleaving half circles (as sklearn's make_moons, unshuffled): points, labels ±1."""
    rng = np.random.default_rng(seed)
    n_top = n // 2
    t_top, t_bottom = np.linspace(0.0, np.pi, n_top), np.linspace(0.0, np.pi, n - n_top)
    top = np.column_stack([np.cos(t_top), np.sin(t_top)])
    bottom = np.column_stack([1.0 - np.cos(t_bottom), 0.5 - np.sin(t_bottom)])
    points = np.vstack([top, bottom]) + noise * rng.standard_normal((n, 2))
    labels = np.concatenate([-np.ones(n_top), np.ones(n - n_top)])
    return points, labels


def make_mlp(size: int | None = None):
    """SVM max-margin loss of a 2-16-16-1 tanh MLP on ``size`` (default 100) two-moons points, as
    in micrograd's demo; the argument is the flat parameter vector (337 floats: per layer, the
    weights row-major, then the biases)."""
    points, labels = two_moons(size or 100)
    # Python floats, so that float * Variable takes the recorder's fast path.
    points, labels = points.astype(object), labels.astype(object)

    def loss(params):
        return mlp_loss(params, points, labels, sg.tanh, sg.relu)

    rng = np.random.default_rng(1)
    parts = []
    for n_in, n_out in MLP_SHAPES:
        parts += [rng.uniform(-1.0, 1.0, n_in * n_out) / math.sqrt(n_in), np.zeros(n_out)]
    return loss, np.concatenate(parts)


def mlp_loss(params, points, labels, tanh, relu):
    """The MLP workload's loss over any array type with ``@`` (NumPy object arrays of Variables, or
    ``jax.numpy`` arrays for the jax-jnp peer), given its ``tanh`` and ``relu``."""
    h, offset = points, 0
    for i, (n_in, n_out) in enumerate(MLP_SHAPES):
        w = params[offset:offset + n_in * n_out].reshape(n_in, n_out)
        b = params[offset + n_in * n_out:offset + (n_in + 1) * n_out]
        offset += (n_in + 1) * n_out
        h = h @ w + b
        if i < len(MLP_SHAPES) - 1:
            h = tanh(h)
    margins = relu(1.0 - labels * h[:, 0])
    return margins.sum() * (1.0 / len(margins)) + 1e-4 * (params * params).sum()


# --- random straight-line program -----------------------------------------------------------------

RANDOM_INPUTS = 16
RANDOM_OUTPUTS = 32   # the result is the sum of the last 32 values
RANDOM_WINDOW = 32    # operands come from the last 32 values ...
RANDOM_INPUT_RATE = 0.1  # ... or, this often, from the inputs, so the gradient reaches them all

# Statements of the random program: (weight, builder). Given operands with |a|, |b| <= 1, each
# keeps its result in [-1, 1] and every op inside its domain, so 10^5 of them stay finite.
# ``e(name, *operands)`` emits one instruction; an operand is a value index or a float constant.
_STATEMENTS = (
    (6, lambda e, a, b: e("mul", a, b)),
    (5, lambda e, a, b: e("mul", e("add", a, b), 0.5)),
    (5, lambda e, a, b: e("mul", e("sub", a, b), 0.5)),
    (4, lambda e, a, b: e("div", a, e("add", e("square", b), 1.0))),
    (3, lambda e, a, b: e("neg", a)),
    (3, lambda e, a, b: e("square", a)),
    (2, lambda e, a, b: e("mul", e("add", e("mul", a, b), a), 0.5)),
    (1, lambda e, a, b: e("sin", a)),
    (1, lambda e, a, b: e("cos", a)),
    (1, lambda e, a, b: e("tanh", a)),
    (1, lambda e, a, b: e("arctan", a)),
    (1, lambda e, a, b: e("sigmoid", a)),
    (1, lambda e, a, b: e("exp", e("neg", e("square", a)))),
    (1, lambda e, a, b: e("mul", e("exp", e("tanh", a)), 0.36)),
    (1, lambda e, a, b: e("log", e("add", e("square", a), 1.0))),
    (1, lambda e, a, b: e("sqrt", e("sigmoid", a))),
    (1, lambda e, a, b: e("mul", e("log", e("sigmoid", a)), 0.5)),
    (1, lambda e, a, b: e("log1p", e("square", a))),
    (1, lambda e, a, b: e("mul", e("expm1", a), 0.5)),
    (1, lambda e, a, b: e("mul", e("sinh", a), 0.5)),
    (1, lambda e, a, b: e("sub", e("cosh", a), 1.0)),
    (1, lambda e, a, b: e("tan", e("mul", a, 0.5))),
    (1, lambda e, a, b: e("arcsin", e("mul", a, 0.5))),
    (1, lambda e, a, b: e("arctan2", a, e("add", e("square", b), 1.0))),
)


class _ProgramBuilder:
    """Collects instructions ``(name, *operands)``; value index k >= RANDOM_INPUTS is the result of
    instruction k - RANDOM_INPUTS. ``recorded`` counts tape instructions (a constant records one)."""

    def __init__(self):
        self.instructions: list[tuple] = []
        self.recorded = RANDOM_INPUTS

    def emit(self, name: str, *operands) -> int:
        self.instructions.append((name, *operands))
        self.recorded += 1 + sum(type(o) is float for o in operands)
        return RANDOM_INPUTS + len(self.instructions) - 1


def random_program(size: int, seed: int = 0):
    """(instructions, output value indices) of a program recording about ``size`` instructions."""
    rng = np.random.default_rng(seed)
    weights = np.array([w for w, _ in _STATEMENTS], dtype=float)
    # Draw in bulk; every statement records at least one instruction, so `size` draws suffice.
    kinds = rng.choice(len(_STATEMENTS), size=size, p=weights / weights.sum())
    from_input = rng.random((size, 2)) < RANDOM_INPUT_RATE
    picks = rng.random((size, 2))
    builder = _ProgramBuilder()
    results = list(range(RANDOM_INPUTS))  # values statements may use: inputs, then results
    output_cost = RANDOM_OUTPUTS + 1      # sum(): an add per output and the constant 0 it starts from
    for kind, use_input, pick in zip(kinds, from_input, picks):
        if builder.recorded + output_cost >= size:
            break
        recent = results[-RANDOM_WINDOW:]
        a, b = (int(p * RANDOM_INPUTS) if inp else recent[int(p * len(recent))]
                for inp, p in zip(use_input, pick))
        results.append(_STATEMENTS[kind][1](builder.emit, a, b))
    return builder.instructions, results[-RANDOM_OUTPUTS:]


def make_random(size: int | None = None, seed: int = 0):
    """A fixed pseudo-random straight-line program of about ``size`` (default 10^5) instructions
    over 16 inputs: besides constants, about three quarters arithmetic (add sub mul div square neg),
    the rest unary math; every value stays in [-1, 1] (the output: the sum of the last 32)."""
    instructions, outputs = random_program(size or 100_000, seed)
    ops = {name: getattr(sg, name) for name in {ins[0] for ins in instructions}}

    def program(x):
        values = list(x)
        for name, *operands in instructions:
            values.append(ops[name](*(values[o] if type(o) is int else o for o in operands)))
        return sum(values[k] for k in outputs)

    return program, np.linspace(-0.9, 0.9, RANDOM_INPUTS)


# --- seed: textbook examples ----------------------------------------------------------------------

# (name, function, arguments, value, gradient): exact float64 results of the textbook examples
# (DeZero / "Deep Learning from Scratch" shopping examples, and x*x + y*y).
TEXTBOOK_EXAMPLES = (
    ("apple", lambda apple, num, tax: apple * num * tax, (100.0, 2.0, 1.1),
     220.00000000000003, (2.2, 110.00000000000001, 200.0)),
    ("apples & oranges",
     lambda apple, apple_num, orange, orange_num, tax: (apple * apple_num + orange * orange_num) * tax,
     (100.0, 2.0, 150.0, 3.0, 1.1),
     715.0000000000001, (2.2, 110.00000000000001, 3.3000000000000003, 165.0, 650.0)),
    ("x*x + y*y", lambda x, y: x * x + y * y, (2.0, 3.0), 13.0, (4.0, 6.0)),
)


def _eager_value_and_grad(fun, args):
    leaves = [sg.Variable(a) for a in args]
    out = fun(*leaves)
    out.backward()
    return out.data, tuple(v.grad for v in leaves)


def _compiled_value_and_grad(fun, args):
    return sg.value_and_grad(fun, argnums=tuple(range(len(args))))(*args)


def check_textbook_examples() -> list[str]:
    """Failure messages (empty if all pass) of every example, eager and compiled."""
    failures = []
    modes = (("eager", _eager_value_and_grad), ("value_and_grad", _compiled_value_and_grad))
    for name, fun, args, value, grads in TEXTBOOK_EXAMPLES:
        for mode, evaluate in modes:
            got_value, got_grads = evaluate(fun, args)
            got, expected = (got_value, *got_grads), (value, *grads)
            if not all(math.isclose(g, e, rel_tol=1e-12) for g, e in zip(got, expected)):
                failures.append(f"{name} ({mode}): got {got_value!r}, {got_grads!r}; "
                                f"expected {value!r}, {grads!r}")
    return failures


def make_seed(size: int | None = None):
    """The apples & oranges example as a function of one array (apple, num, orange, num, tax)."""
    def price(p):
        return (p[0] * p[1] + p[2] * p[3]) * p[4]

    return price, np.array(TEXTBOOK_EXAMPLES[1][2])


# --- registry and gradient check ------------------------------------------------------------------

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("seed", "textbook examples (apple, apples & oranges, x*x + y*y), eager and compiled",
             make_seed, check=check_textbook_examples),
    Workload("rosenbrock", "n-dimensional Rosenbrock function, x0 = linspace(-1.2, 1.2, n)",
             make_rosenbrock, sizes=(1_000, 10_000), quick_sizes=(100, 1_000), growth_sizes=(100, 1_000, 10_000)),
    Workload("mlp", "2-16-16-1 tanh MLP, SVM max-margin loss on 100 two-moons points (337 params); "
             "size = points", make_mlp, growth_sizes=(10, 30, 100)),
    Workload("random", "fixed pseudo-random straight-line program, 16 inputs, size = instructions",
             make_random, sizes=(100_000,), quick_sizes=(10_000,), growth_sizes=(1_000, 10_000, 100_000)),
)}


def relative_error(got, want) -> float:
    """The largest ``|got - want| / max(1, |want|)`` over the elements (0 when empty; NaN when any
    element is NaN, so that a check ``err <= tolerance`` fails on it): the one definition of relative
    error in the bench, peers and higher-order rows included.

    Each number is judged by its own magnitude, not by the largest of the vector (a norm-wise
    ``max|got - want| / max|want|``): the bench compares vectors that mix a value with gradient
    components, or components of different scales, and one large element must not hide a wrong
    small one. The floor of 1 makes it an absolute error near zero, where an element that cancels
    to almost nothing would otherwise turn rounding into a huge relative error (np.isclose with
    rtol = atol = tolerance)."""
    want = np.asarray(want, dtype=float)
    return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)), initial=0.0))


def finite_difference_check(fun, x, grad, seed: int = 0, step: float = 1e-3) -> float:
    """The ``relative_error`` ``|fd - g·v| / max(1, |g·v|)`` of the gradient along a random unit
    direction v, where fd is a fourth-order central difference of ``sg.jit(fun)`` with step
    ``step * max(1, |x|_inf)`` (truncation error O(h^4), so a moderate step keeps rounding error small)."""
    forward = sg.jit(fun)
    x = np.asarray(x, dtype=np.float64)
    direction = np.random.default_rng(seed).standard_normal(x.shape)
    direction /= np.linalg.norm(direction)
    h = step * max(1.0, float(np.abs(x).max(initial=0.0)))

    def along(t):
        return forward(x + t * direction)

    fd = (8.0 * (along(h) - along(-h)) - (along(2.0 * h) - along(-2.0 * h))) / (12.0 * h)
    exact = float(np.ravel(grad) @ direction.ravel())
    return relative_error(fd, exact)
