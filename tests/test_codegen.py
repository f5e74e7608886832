"""The compiled-code tier (scalargrad/jit/codegen/): generated straight-line code agrees bit for
bit with the interpreter (inf and signed zeros included; NaN in the same places, its sign bit
excepted: see test_every_op_at_special_values_agrees_across_backends_except_in_nan_signs), with the
reference sweeps and with finite differences; guards, the zero-adjoint rule, the disk cache, atomic
writes and tiering."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import scalargrad as sg
from scalargrad.core import reference
from scalargrad.jit import codegen, tier
from scalargrad.jit.codegen import cache, load, points
from scalargrad.jit.passes import optimize
from scalargrad.core.tape import Tape
from scalargrad.core.ops import OPCODE

from helpers import (SPECIAL, assert_identical, assert_same, central_diff, check_against_interpreter, descend,
                     generated_evaluate, generated_value_and_grad, hot_after, op_cases, op_function,
                     random_program, sample_domain, trace_program, wait_for_kernel)


# --- the generated text ------------------------------------------------------------------------------

def test_source_has_one_line_per_instruction_with_its_listing():
    tape = sg.trace(lambda x, y: x * y + sg.sin(x), 2.0, 3.0)
    text = codegen.source(tape)
    compile(text, "generated", "exec")
    assert "v2 = v0 * v1  # %2 = mul %0 %1" in text
    assert "v3 = sin(v0)  # %3 = sin %0" in text
    for line in str(tape).splitlines()[: len(tape)]:
        assert f"# {line}" in text, line
    assert "GENERATED" in text and codegen.tape_key(tape) in text


def test_generated_code_does_not_branch():
    """Conditionals of the op table become selects (Numba compiles straight-line code much faster)."""
    assert codegen.branchless("1.0 if {a} > 0.0 else (0.5 if {a} == {b} else 0.0)") == \
        "select({a} > 0.0, 1.0, select({a} == {b}, 0.5, 0.0))"
    assert codegen.branchless("{a} if ({a} >= {b} or isnan({a})) else {b}") == \
        "select(({a} >= {b}) | isnan({a}), {a}, {b})"
    tape = sg.trace(lambda x, y: sg.maximum(x, y) + sg.where(x > y, sg.abs(x), y ** 2.5), 1.0, 2.0)
    body = codegen.source(tape).split('"""')[-1]
    assert " if " not in body and " and " not in body and " or " not in body


def test_key_follows_the_tape_contents():
    f = lambda x: x * 2.0 + 1.0  # noqa: E731
    assert codegen.tape_key(sg.trace(f, 1.0)) == codegen.tape_key(sg.trace(f, 5.0))
    assert codegen.tape_key(sg.trace(f, 1.0)) != codegen.tape_key(sg.trace(lambda x: x * 2.0 + 1.5, 1.0))


def test_key_follows_every_generator_source():
    """Editing any module of jit/codegen/ (writers, intrinsics) gives new file names, never a stale
    cached file."""
    text = cache.generator_text()
    files = list(Path(codegen.__file__).parent.glob("*.py"))
    assert {"intrinsics.py", "straight.py", "rolled.py", "lanes.py", "text.py"} <= {f.name for f in files}
    for path in files:
        assert path.read_text("utf-8") in text


# --- agreement with the interpreter, the reference and finite differences ----------------------------

@pytest.mark.parametrize("seed", range(4))
def test_random_programs_agree_with_interpreter_and_reference(seed):
    rng = np.random.default_rng(100 + seed)
    program, x, outputs = random_program(rng, n_inputs=4, n_ops=40)
    tape = optimize(trace_program(program, x, outputs))
    points = [x, x * 0.5, rng.uniform(-2, 2, 4)]
    points += [np.where(np.arange(4) == i, s, x) for i in range(4) for s in SPECIAL]
    check_against_interpreter(tape, points)
    for point in points[:3]:
        value, grad, _ = generated_value_and_grad(tape, point)
        ref_value, ref_grad = reference.value_and_grad(tape, point)
        assert_same([value, *grad], [ref_value, *ref_grad], rtol=1e-9, what=f"at {point}")
        out, _ = generated_evaluate(tape, point)
        assert_same(out, reference.evaluate(tape, point), rtol=1e-9, what=f"outputs at {point}")


def _all_ops_tape():
    """One tape applying every op-table row (literal ops once per literal) to its own inputs; the
    output is their sum, so input i's derivative is exactly one op's partial."""
    cases = op_cases()
    arities = [op.arity for op, _ in cases]

    def f(*xs):
        total, start = 0.0, 0
        for (op, lit), n in zip(cases, arities):
            total = total + op_function(op, lit)(*xs[start:start + n])
            start += n
        return total

    return cases, arities, f


def test_every_op_gradient_matches_finite_differences_and_interpreter():
    cases, arities, f = _all_ops_tape()
    rng = np.random.default_rng(0)
    for trial in range(3):
        x = np.concatenate([sample_domain(op, rng, 2)[trial % 2] for op, _ in cases])
        tape = optimize(sg.trace(f, *x))
        value, grad, ok = generated_value_and_grad(tape, x)
        assert ok
        fd = central_diff(f, x)
        start = 0
        for (op, lit), n in zip(cases, arities):
            part = slice(start, start + n)
            np.testing.assert_allclose(grad[part], fd[part], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{op.name} (literal {lit}) at {x[part]}")
            start += n
        check_against_interpreter(tape, [x])


def test_every_op_at_special_values_equals_the_interpreter():
    """0, -0, ±inf and NaN in every operand position of every op, in one compiled tape."""
    cases, arities, f = _all_ops_tape()
    rng = np.random.default_rng(1)
    base = np.concatenate([sample_domain(op, rng, 1)[0] for op, _ in cases])
    tape = optimize(sg.trace(f, *base))
    points = [np.where(np.arange(len(base)) % max(arities) == j, s, base)
              for j in range(max(arities)) for s in SPECIAL]
    points += [np.full(len(base), s) for s in SPECIAL]
    check_against_interpreter(tape, points, evaluate=False)


def test_every_op_at_special_values_agrees_across_backends_except_in_nan_signs():
    """Every op at 0, -0, ±inf and NaN, through sg.value_and_grad, sg.jit and sg.vmap with each
    backend: the interpreter, generated code and their batch kernels give the same bits, signed
    zeros and infs included, and NaN in the same places, but not always the same NaN: its sign bit
    (and payload) can differ. LLVM leaves a NaN result's sign unspecified and uses that freedom
    where generated code shows it more than the interpreter does (whose values pass through memory
    between ops): it folds ``t + (-y) / b`` into ``t - y / b`` (a negation flips a NaN's sign, a
    subtraction keeps it), ``y * log(0.5)`` into ``-(y * 0.693...)``, and replaces ``pow`` with a
    constant operand by sqrt or exp2. With Numba 0.68 on x86-64 this gives, between the
    interpreter (single point and batch) and generated code (single point and batch): d/db of
    div where the quotient is NaN (``x / x`` at inf: 0x7ff8... vs 0xfff8...), d/da of cos at
    ±inf and NaN, d/db of arctan2 at a = NaN, the value of powc 0.5 (``x ** 0.5``) at -1, and
    the value and derivative of cpow 0.5 (``0.5 ** x``) at NaN. Rewriting each result as
    ``nan if v != v else v`` does not help: LLVM deletes that select too (after a vectorised
    sqrt, whose NaN it may assume to be any NaN). So results compare NaN by position only."""
    cases, arities, f = _all_ops_tape()

    def each(*xs):  # every op's own value as an output (f's sum would mix their NaNs)
        starts = np.cumsum([0, *arities])
        return tuple(op_function(op, lit)(*xs[a:b]) for (op, lit), a, b in zip(cases, starts, starts[1:]))

    rng = np.random.default_rng(2)
    base = np.concatenate([sample_domain(op, rng, 1)[0] for op, _ in cases])
    X = np.array([np.where(np.arange(len(base)) % max(arities) == j, s, base)
                  for j in range(max(arities)) for s in SPECIAL] + [np.full(len(base), s) for s in SPECIAL])
    argnums = tuple(range(len(base)))
    results = {}
    for backend in ("interp", "codegen"):
        vg = sg.value_and_grad(f, argnums=argnums, backend=backend)
        jitted = sg.jit(each, backend=backend)
        results[backend] = np.array([[vg(*x)[0], *vg(*x)[1], *jitted(*x)] for x in X])
        values, grads = sg.vmap(vg)(*X.T)
        results[backend + " batch"] = np.column_stack([values, *grads, *sg.vmap(jitted)(*X.T)])
    assert np.isnan(results["interp"]).any() and np.isinf(results["interp"]).any()
    for name, got in results.items():
        assert_identical(got, results["interp"], name)


def test_zero_adjoint_rule_keeps_where_derivatives_finite():
    for backend in ("codegen", "interp"):
        vg = sg.value_and_grad(lambda x: sg.where(x > 0.0, sg.sqrt(x), 0.0), backend=backend)
        assert vg(0.0) == (0.0, 0.0)
        vg = sg.value_and_grad(lambda x: sg.where(x > 0.0, sg.log(x), x * 2.0), backend=backend)
        assert vg(-1.0) == (-2.0, 2.0)


def test_signed_zero_gradients_equal_the_interpreter():
    """d(x*y)/dx at y = -0.0: the interpreter sums 0.0 + (-0.0) = +0.0; so must generated code."""
    for f in (lambda x, y: x * y, lambda x, y: x * y + x * y, lambda x, y: -(x * y)):
        grads = [sg.grad(f, argnums=(0, 1), backend=b)(1.0, -0.0) for b in ("codegen", "interp")]
        assert_identical(grads[0], grads[1])
        assert np.signbit(grads[0][0]) == np.signbit(grads[1][0])


def test_non_finite_literals_are_exact():
    nan_bits = np.array([0x7FF8000000000123], dtype=np.uint64).view(np.float64)[0]
    const = OPCODE["const"]
    tape = Tape([OPCODE["input"], const, const, OPCODE["mul"], OPCODE["add"], OPCODE["powc"]],
                [-1, -1, -1, 0, 3, 0], [-1, -1, -1, 1, 2, -1], [-1] * 6,
                [0.0, np.inf, nan_bits, 0.0, 0.0, -np.inf], [0], [4, 1, 2, 5])
    assert "struct.unpack" in codegen.source(tape)
    out, ok = generated_evaluate(tape, [2.0])
    assert ok and out[1] == np.inf and np.isnan(out[2]) and out[3] == 0.0
    assert out[2:3].view(np.uint64)[0] == 0x7FF8000000000123
    check_against_interpreter(tape, [[2.0], [0.0], [-0.0], [np.inf], [np.nan]])


# --- guards and control flow -------------------------------------------------------------------------

def branchy(x, y):
    if x > y:
        return x * y + sg.exp(x)
    return y * y - x


def test_generated_code_checks_guards_like_the_interpreter():
    tape = optimize(sg.trace(branchy, 2.0, 1.0))
    assert len(tape.guards) == 1
    check_against_interpreter(tape, [[2.0, 1.0], [1.0, 2.0], [np.nan, 1.0], [1.0, 1.0]])
    assert generated_value_and_grad(tape, [1.0, 2.0])[2] is False
    assert generated_evaluate(tape, [1.0, 2.0])[1] is False


def test_codegen_backend_retraces_other_branches():
    vg = sg.value_and_grad(branchy, argnums=(0, 1), backend="codegen")
    interp = sg.value_and_grad(branchy, argnums=(0, 1), backend="interp")
    for x, y in [(2.0, 1.0), (1.0, 2.0), (3.0, -1.0), (-3.0, 0.5)]:
        value, grads = vg(x, y)
        i_value, i_grads = interp(x, y)
        assert_identical([value, *grads], [i_value, *i_grads])
        assert_same(grads, central_diff(branchy, [x, y]), rtol=1e-6)
    sig = next(iter(vg.cache.values()))
    assert len(sig.paths) == 2 and all(p.tier.kernel is not None for p in sig.paths)
    f = sg.jit(branchy, backend="codegen")
    assert f(2.0, 1.0) == branchy(2.0, 1.0) and f(1.0, 2.0) == branchy(1.0, 2.0)


def test_backend_is_checked():
    for make in (sg.jit, sg.grad, sg.value_and_grad):
        with pytest.raises(ValueError, match="backend must be one of 'auto', 'interp', 'codegen'"):
            make(lambda x: x, backend="gpu")


# --- tiering -----------------------------------------------------------------------------------------

def test_auto_tiers_up_a_hot_small_path_in_the_background(monkeypatch):
    hot_after(monkeypatch, 5)
    f = lambda x: sg.tanh(x[0] * x[1]) + x[1] ** 3.0  # noqa: E731
    vg = sg.value_and_grad(f)
    x = np.array([0.3, -1.2])
    first = vg(x)
    path_tier = next(iter(vg.cache.values())).paths[0].tier
    assert path_tier.kernel is None  # the first calls run on the interpreter
    for _ in range(4):
        assert_identical([first[0], *first[1]], [vg(x)[0], *vg(x)[1]])
    wait_for_kernel(path_tier)
    value, grad = vg(x)  # now on the generated code: the same bits
    assert_identical([value, *grad], [first[0], *first[1]])
    assert_same(grad, central_diff(lambda a, b: f(np.array([a, b])), x), rtol=1e-6)
    jf = sg.jit(f)
    for _ in range(6):
        jf(x)
    wait_for_kernel(next(iter(jf.cache.values())).paths[0].tier)
    assert jf(x) == value


def test_auto_never_tiers_up_a_large_tape_or_the_interp_backend(monkeypatch):
    hot_after(monkeypatch, 2)
    monkeypatch.setenv("SCALARGRAD_CODEGEN_MAX_OPS", "3")
    f = lambda x, y: x * y + x / y  # noqa: E731
    for vg in (sg.value_and_grad(f), sg.value_and_grad(lambda x, y: x * y, backend="interp")):
        for _ in range(5):
            vg(1.0, 2.0)
        path_tier = next(iter(vg.cache.values())).paths[0].tier
        assert path_tier.started and path_tier.kernel is None


def test_codegen_backend_runs_tapes_over_its_size_cap_on_the_interpreter(monkeypatch):
    monkeypatch.setenv("SCALARGRAD_CODEGEN_MAX_OPS", "4")
    f = lambda x: sg.sin(x[0]) * x[1] + x[2] / x[0]  # noqa: E731  7 instructions after the passes
    x = np.array([0.5, 2.0, 3.0])
    with pytest.warns(RuntimeWarning, match="at most 4 instruction lines.*runs on the interpreter"):
        value, grad = sg.value_and_grad(f, backend="codegen")(x)
    assert_identical([value, *grad], [*sg.value_and_grad(f, backend="interp")(x)[:1], *sg.grad(f)(x)])
    vg = sg.value_and_grad(f, backend="codegen")
    with pytest.warns(RuntimeWarning):
        vg(x)
    assert next(iter(vg.cache.values())).paths[0].tier.generated() is None
    values, G = sg.vmap(vg)(np.stack([x, x]))  # the interpreter's batch kernels
    assert_identical(G, [grad, grad])
    monkeypatch.setenv("SCALARGRAD_CODEGEN_MAX_OPS", "many")
    with pytest.raises(ValueError, match="SCALARGRAD_CODEGEN_MAX_OPS must be an integer"):
        sg.value_and_grad(f, backend="codegen")(x)


# --- compile(): generated kernels inside the user's njit code ----------------------------------------

def rosen2(x):
    return 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2


def test_compile_uses_generated_code_with_the_same_results():
    k_gen = sg.value_and_grad(rosen2, backend="codegen").compile(np.zeros(2))
    k_int = sg.value_and_grad(rosen2, backend="interp").compile(np.zeros(2))
    assert k_gen.workspace_size == 0
    assert_identical(descend(k_gen, np.zeros(2), 5000, 1e-3), descend(k_int, np.zeros(2), 5000, 1e-3))
    np.testing.assert_allclose(descend(k_gen, np.zeros(2), 100_000, 1e-3), [1.0, 1.0], atol=1e-3)
    with pytest.raises(ValueError, match="traced number of inputs"):
        k_gen(np.zeros(3), np.zeros(3))
    f = sg.jit(branchy, backend="codegen").compile(2.0, 1.0)
    assert f(np.array([2.0, 1.0])) == branchy(2.0, 1.0)
    with pytest.raises(ValueError, match="another control-flow path"):
        f(np.array([1.0, 2.0]))


def test_compile_under_the_default_backend_hands_out_generated_code_from_the_first_call():
    """compile() gives the best kernel the path can have, however often it was called: generated
    code under "auto" too (compiled now), bit-identical to the interpreter's kernel."""
    k_auto = sg.value_and_grad(rosen2).compile(np.zeros(2))
    k_int = sg.value_and_grad(rosen2, backend="interp").compile(np.zeros(2))
    assert k_auto.workspace_size == 0 and k_int.workspace_size > 0  # generated code needs no scratch
    assert_identical(descend(k_auto, np.zeros(2), 5000, 1e-3), descend(k_int, np.zeros(2), 5000, 1e-3))
    f = sg.jit(branchy).compile(2.0, 1.0)
    assert f.workspace_size == 1 and f(np.array([2.0, 1.0])) == branchy(2.0, 1.0)  # scratch: its outputs


def test_compile_keeps_the_interpreter_where_generated_code_cannot_go(monkeypatch):
    monkeypatch.setenv("SCALARGRAD_CODEGEN_MAX_OPS", "4")  # rosen2's code is longer
    assert sg.value_and_grad(rosen2).compile(np.zeros(2)).workspace_size > 0
    monkeypatch.delenv("SCALARGRAD_CODEGEN_MAX_OPS")
    cube = sg.custom_op("test_codegen_cube", lambda a: a * a * a, [lambda a: 3.0 * a * a])
    k = sg.value_and_grad(lambda x: cube(x[0]) + x[1]).compile(np.ones(2))  # custom ops: interpreter
    g = np.empty(2)
    assert k.workspace_size > 0 and k(np.array([2.0, 1.0]), g) == 9.0 and list(g) == [12.0, 1.0]


# --- files: cache directory, atomic writes, a second process -----------------------------------------

def test_pruning_removes_the_oldest_modules_and_their_compiled_files(tmp_path):
    (tmp_path / "__pycache__").mkdir()
    for age, stem in enumerate(["sg_c", "sg_b", "sg_a", "sg_d"]):  # sg_c oldest
        source = tmp_path / f"{stem}.py"
        source.write_text("x" * 100)
        (tmp_path / "__pycache__" / f"{stem}.value_and_grad-1.py311.nbi").write_text("y" * 50)
        os.utime(source, (1000 + age, 1000 + age))
    (tmp_path / "notes.txt").write_text("z" * 1000)  # not ours: never counted or removed
    removed = codegen.prune_cache(tmp_path, 300, keep={"sg_b"})
    assert [p.stem for p in removed] == ["sg_c", "sg_a"]
    left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["notes.txt", "sg_b.py", "sg_b.value_and_grad-1.py311.nbi", "sg_d.py",
                    "sg_d.value_and_grad-1.py311.nbi"]
    assert codegen.prune_cache(tmp_path, 300) == []


def test_writing_a_module_prunes_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SCALARGRAD_CACHE_DIR", str(tmp_path))
    stale = tmp_path / "sg_0000.py"
    tmp_path.mkdir(exist_ok=True)
    stale.write_text("x" * 10_000)
    os.utime(stale, (1000, 1000))
    monkeypatch.setenv("SCALARGRAD_CACHE_MAX_MB", "0.005")  # 5 KiB: room for the new module only
    codegen.load_module(sg.trace(lambda x: x * 3.0 - 1.25, 1.0))
    assert not stale.exists() and len(list(tmp_path.glob("sg_*.py"))) == 1


def test_writing_a_batch_module_keeps_the_loaded_per_point_module(monkeypatch, tmp_path):
    monkeypatch.setenv("SCALARGRAD_CACHE_DIR", str(tmp_path))
    tape = sg.trace(lambda x: x * 5.0 - 0.75, 1.0)
    codegen.load_module(tape)
    monkeypatch.setenv("SCALARGRAD_CACHE_MAX_MB", "0")  # every file is over the limit
    codegen.load_module(tape, batch=True)  # the batch module imports the per-point one
    key = codegen.tape_key(tape)
    assert codegen.module_path(key).exists() and codegen.module_path(key, batch=True).exists()


def test_cache_dir_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("SCALARGRAD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if sys.platform != "win32":
        assert codegen.cache_dir() == tmp_path / "scalargrad" / "codegen"
    monkeypatch.setenv("SCALARGRAD_CACHE_DIR", str(tmp_path / "mine"))
    assert codegen.cache_dir() == tmp_path / "mine"


def test_generated_files_go_to_the_cache_dir(cache_dir):
    tape = sg.trace(lambda x: x * 3.0, 1.0)
    codegen.load_module(tape)
    assert codegen.module_path(codegen.tape_key(tape)).parent == cache_dir
    assert codegen.module_path(codegen.tape_key(tape)).read_text() == codegen.source(tape)


def test_the_batch_module_is_written_only_when_a_batch_asks_for_it(cache_dir):
    f = lambda x: x[0] * sg.exp(x[1]) - x[2] / x[1]  # noqa: E731
    x = np.array([0.5, 1.5, 2.0])
    fn = sg.value_and_grad(f, backend="codegen")
    fn(x)
    tape = next(iter(fn.cache.values())).paths[0].program.tape
    key = codegen.tape_key(tape)
    assert "_batch" not in codegen.source(tape) and "_lanes" not in codegen.source(tape)
    assert codegen.module_path(key).exists() and not codegen.module_path(key, batch=True).exists()
    values, G = sg.vmap(fn)(np.stack([x, x + 0.25]))
    assert codegen.module_path(key, batch=True).read_text() == codegen.batch_source(tape)
    for p, point in enumerate((x, x + 0.25)):
        assert_identical(np.append(values[p], G[p]), np.append(*fn(point)))


def test_concurrent_writers_leave_one_complete_file(tmp_path):
    path = tmp_path / "sg_test.py"
    text = "x = 1\n" * 50_000
    threads = [threading.Thread(target=codegen.write_atomic, args=(path, text)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sg_test.py"]  # no temp files left
    path.write_text("damaged")
    codegen.write_atomic(path, text)
    assert path.read_text() == text


def test_a_damaged_cache_file_is_rewritten(cache_dir):
    tape = sg.trace(lambda x: x * 7.0 - 1.0, 1.0)
    path = codegen.module_path(codegen.tape_key(tape))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("raise RuntimeError('half a file')\n")
    module = codegen.load_module(tape)
    assert module.KEY == codegen.tape_key(tape) and path.read_text() == codegen.source(tape)


def test_an_unwritable_cache_dir_is_named_in_the_error(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SCALARGRAD_CACHE_DIR", str(blocker / "codegen"))
    with pytest.raises(OSError, match="SCALARGRAD_CACHE_DIR"):
        sg.value_and_grad(lambda x: x * 11.0, backend="codegen")(1.0)


_CHILD = """
import sys, numpy as np
from scalargrad.core.tape import Tape
from scalargrad.jit import codegen, tier
tape = Tape.load(sys.argv[1])
k = codegen.compile_kernel(tape, "value_and_grad")
g = np.empty(len(tape.inputs))
value, ok = k(np.array([0.5, 2.0]), g)
print(sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values()), *(float(v).hex() for v in (value, *g)))
"""


def test_a_second_process_loads_the_compiled_code_from_disk(tmp_path, cache_dir):
    tape = optimize(sg.trace(lambda x, y: sg.sin(x) * y + sg.exp(y) / (x + 3.0), 0.5, 2.0))
    value, grad, _ = generated_value_and_grad(tape, [0.5, 2.0])
    tape.save(tmp_path / "t.sgt")
    env = dict(os.environ, SCALARGRAD_CACHE_DIR=str(cache_dir))
    result = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "t.sgt")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    hits, misses, *numbers = result.stdout.split()
    assert (hits, misses) == ("1", "0")
    assert [float.fromhex(v) for v in numbers] == [value, *grad]


def test_generated_code_is_compiled_for_a_bounded_number_of_tapes(monkeypatch, cache_dir):
    """Numba never frees compiled code: past SCALARGRAD_CODEGEN_MAX_TAPES distinct tapes in a
    process, backend="codegen" warns and runs the interpreter (same results), "auto" stays there."""
    def path(transformed):
        return next(iter(transformed.cache.values())).paths[0]

    loaded = len(load.loaded_tapes())
    monkeypatch.setenv("SCALARGRAD_CODEGEN_MAX_TAPES", str(loaded + 1))
    x = np.array([0.5, 2.0])
    first = sg.value_and_grad(lambda x: sg.sinh(x[0]) * x[1] + 0.25, backend="codegen")
    first(x)
    assert path(first).tier.kernel is not None
    second = sg.value_and_grad(lambda x: sg.cosh(x[0]) * x[1] + 0.75, backend="codegen")
    with pytest.warns(RuntimeWarning, match="at most .* distinct tapes per process"):
        value, grad = second(x)
    assert path(second).tier.kernel is None
    np.testing.assert_array_equal(grad, [np.sinh(0.5) * 2.0, np.cosh(0.5)])
    assert first(x)[0] == np.sinh(0.5) * 2.0 + 0.25  # the loaded tape keeps its code
    assert codegen.room_for(path(first).program.tape) and not codegen.room_for(path(second).program.tape)


@pytest.mark.parametrize("damage", [b"", b"\x80\x05garbage", None])
def test_a_damaged_numba_cache_entry_is_deleted_and_compiled_again(tmp_path, cache_dir, damage):
    """damage: what the .nbi index holds (empty: a truncated write; bytes: not a pickle); None: the
    index intact and the .nbc code file damaged instead."""
    tape = optimize(sg.trace(lambda x, y: sg.cos(x) * y - sg.exp(y) / (x + 5.0), 0.5, 2.0))
    value, grad, _ = generated_value_and_grad(tape, [0.5, 2.0])  # compiles, writes the cache entry
    tape.save(tmp_path / "t.sgt")
    stem = codegen.module_path(codegen.tape_key(tape)).stem
    entries = {p.suffix: p for p in (cache_dir / "__pycache__").glob(f"{stem}.value_and_grad*")}
    assert set(entries) == {".nbi", ".nbc"}
    if damage is None:
        entries[".nbc"].write_bytes(b"\x80\x05not the code")
    else:
        entries[".nbi"].write_bytes(damage)
    env = dict(os.environ, SCALARGRAD_CACHE_DIR=str(cache_dir))
    for run in range(2):  # the first repairs the entry (with a warning), the second loads it
        result = subprocess.run([sys.executable, "-W", "always", "-c", _CHILD, str(tmp_path / "t.sgt")], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        hits, misses, *numbers = result.stdout.split()
        assert [float.fromhex(v) for v in numbers] == [value, *grad]
        assert ("could not be read" in result.stderr) == (run == 0), result.stderr
        assert (hits, misses) == (("0", "1") if run == 0 else ("1", "0"))


def _wait_for_lanes(path_tier, timeout=120.0):
    deadline = time.monotonic() + timeout
    while path_tier.lane_code == "compiling" and time.monotonic() < deadline:
        time.sleep(0.05)
    path_tier.settle()
    assert path_tier.lane_code == "ready"


def _identical_results(got, want):
    for a, b in zip(got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want]):
        assert_identical(a, b)


# jit: 10 s (the forward batch code compiles on top of the per-point code), so with -m slow.
@pytest.mark.parametrize("transform", [sg.value_and_grad, pytest.param(sg.jit, marks=pytest.mark.slow)])
def test_vmap_switches_to_the_per_point_code_at_the_tier_up_then_to_lane_code(transform, monkeypatch):
    hot_after(monkeypatch, 3)
    f = lambda x: sg.sin(x[0]) * x[1] + x[2] / x[0]  # noqa: E731
    fn = transform(f)
    for _ in range(4):
        fn(np.array([0.5, 2.0, 3.0]))
    path_tier = next(iter(fn.cache.values())).paths[0].tier
    wait_for_kernel(path_tier)
    X = np.random.default_rng(2).uniform(0.5, 2.0, (50, 3))
    X[7, 0] = np.nan  # NaN in, NaN out, at the same points
    want = sg.vmap(transform(f, backend="interp"))(X)
    calls = []
    for name in ("value_and_grad_batch", "evaluate_batch"):
        real = getattr(codegen, name)
        monkeypatch.setattr(codegen, name, lambda module, *args, real=real: calls.append(module) or real(module, *args))
    first = sg.vmap(fn)(X)  # the per-point function at once; the lane code (predicted instant here) compiles
    assert isinstance(calls[-1], points.PointBatches)
    _wait_for_lanes(path_tier)
    got = sg.vmap(fn)(X)
    assert len(calls) == 2 and path_tier.running_batch() == "lanes" and calls[-1] is path_tier.module
    for result in (first, got):  # the same bits as the interpreter's
        _identical_results(result, want)


def test_a_large_batch_makes_a_path_hot_at_once(monkeypatch):
    hot_after(monkeypatch, 40)
    f = lambda x: sg.sin(x[0]) * x[1] + x[2] / x[0]  # noqa: E731
    X = np.random.default_rng(3).uniform(0.5, 2.0, (50, 3))
    want = sg.vmap(sg.value_and_grad(f, backend="interp"))(X)
    small = sg.value_and_grad(f)
    sg.vmap(small)(X[:30])  # 30 points and one traced point: under the threshold
    assert next(iter(small.cache.values())).paths[0].tier.threads == []
    order = []
    for name in ("compile_kernel", "compile_batch"):
        real = getattr(tier.codegen, name)
        monkeypatch.setattr(tier.codegen, name, lambda *args, real=real, name=name: order.append(name) or real(*args))
    monkeypatch.setattr(tier, "predicted_compile_seconds", lambda tape, batch=False: 1e6 if batch else 0.0)
    fn = sg.value_and_grad(f)
    batched = sg.vmap(fn)
    first = batched(X)  # 50 points: hot, so the generated code compiles in the background
    path_tier = next(iter(fn.cache.values())).paths[0].tier
    assert path_tier.settle() and path_tier.error is None
    # the tier-up compiles the per-point function, which runs vmap's batches from then on
    assert order == ["compile_kernel"] and path_tier.running_batch() == "points"
    assert not path_tier.batch_settled() and path_tier.lane_code_pending()
    path_tier.lane_code_predicted = 0.0
    second = batched(X)  # now paid for: the lane code's compile starts
    _wait_for_lanes(path_tier)
    assert order == ["compile_kernel", "compile_batch"] and path_tier.batch_settled()
    third = batched(X)
    for result in (first, second, third):
        _identical_results(result, want)


def test_lane_code_waits_until_the_per_point_batches_have_paid_for_its_compile(monkeypatch):
    hot_after(monkeypatch, 3)
    started = []
    monkeypatch.setattr(tier.Tier, "_start", lambda self, compile_: started.append(compile_.__name__)
                        or tier._COMPILING.release())
    f = lambda x: x[0] * x[1] + sg.exp(x[2])  # noqa: E731
    fn = sg.value_and_grad(f)
    fn(np.ones(3))
    path_tier = next(iter(fn.cache.values())).paths[0].tier
    path_tier.kernel = codegen.compile_kernel(path_tier.tape, "value_and_grad")  # as a tier-up leaves it
    path_tier.started = True
    path_tier.lane_code_predicted = 2.0  # the lane code's predicted compile seconds
    X = np.ones((8, 3))
    sg.vmap(fn)(X)
    batches = path_tier.module
    assert isinstance(batches, points.PointBatches) and started == [] and path_tier.lane_code_pending()
    batches.seconds = 1.99  # the batches have taken 1.99 s
    sg.vmap(fn)(X)
    assert started == []
    batches.seconds = 2.0
    sg.vmap(fn)(X)
    assert started == ["_compile_lanes"] and path_tier.lane_code == "compiling"


def test_vmap_with_codegen_runs_the_generated_batch_kernel_with_the_interpreters_results():
    def branchy(x):
        if x[0] > 0.0:  # points with x[0] <= 0 fail the traced path's guard and go through retracing
            return x[0] * sg.exp(x[1]) + sg.sqrt(x[2] * x[2] + 1.0)
        return sg.sin(x[1]) - x[0] * x[2]

    X = np.random.default_rng(5).uniform(-1.0, 1.0, (200, 3))
    X[0, 0] = 0.5  # the path is traced at point 0
    values, G = sg.vmap(sg.value_and_grad(branchy, backend="codegen"))(X)
    want_values, want_G = sg.vmap(sg.value_and_grad(branchy, backend="interp"))(X)
    assert_identical(values, want_values)
    assert_identical(G, want_G)
    out = sg.vmap(sg.jit(lambda x: (x[0] * x[1], sg.tanh(x[2])), backend="codegen"))(X)
    want = sg.vmap(sg.jit(lambda x: (x[0] * x[1], sg.tanh(x[2])), backend="interp"))(X)
    for a, b in zip(out, want):
        assert_identical(a, b)
    g = sg.grad(branchy)
    for p in (0, 1, 2):  # and against central differences on both branches
        for j in range(3):
            step = np.zeros(3)
            step[j] = 1e-6
            fd = (branchy(X[p] + step) - branchy(X[p] - step)) / 2e-6
            assert G[p, j] == pytest.approx(fd, rel=1e-6, abs=1e-8)
            assert G[p, j] == g(X[p])[j]


# --- tier-up by time ---------------------------------------------------------------------------------

def test_auto_tiers_up_a_cheap_compile_when_hot_and_a_long_one_once_paid_for(monkeypatch):
    """A compile predicted to take at most CHEAP_COMPILE_SECONDS starts at AUTO_HOT_CALLS calls; a
    longer one waits until the calls have cost as much (ski rental): with a measured call of 0.1 s,
    a 3 s compile starts at the 30th call and a 30 s one at the 300th."""
    from scalargrad.jit import tier
    started = []

    def start(self, compile_):  # instead of a compile thread (which releases the lock when done)
        started.append(self.calls)
        tier._COMPILING.release()

    monkeypatch.setattr(tier.Tier, "_start", start)
    monkeypatch.setattr(tier, "AUTO_HOT_CALLS", 5)
    tape = sg.trace(lambda x: sg.sin(x) * x + 1.0, 0.5)
    for predicted, hot in ((tier.CHEAP_COMPILE_SECONDS, 5), (3.0, 30), (30.0, 300)):
        monkeypatch.setattr(tier, "predicted_compile_seconds", lambda tape, batch=False: predicted)
        t = tier.Tier(tape, "value_and_grad", "auto")
        t.rent = 0.1  # what the second call's timing would have measured
        for _ in range(hot - 1):
            t.count()
        assert not t.started
        t.count()
        assert t.started and started[-1] == hot


def test_a_slow_path_is_hot_after_auto_hot_seconds_of_calls_before_auto_hot_calls(monkeypatch):
    """A path whose timed call took 2 ms is hot after 0.05 s of calls (25 calls), not 1000; one of
    0.1 ms after 500; a fast path after AUTO_HOT_CALLS; and never before AUTO_MIN_HOT_CALLS."""
    from scalargrad.jit import tier
    started = []

    def start(self, compile_):
        started.append(self.calls)
        tier._COMPILING.release()

    class Clock:  # time.perf_counter as _timed reads it: the timed call takes `rent` seconds
        def __init__(self, rent):
            self.ticks = iter((0.0, rent))

        def perf_counter(self):
            return next(self.ticks)

    monkeypatch.setattr(tier.Tier, "_start", start)
    monkeypatch.setattr(tier, "predicted_compile_seconds", lambda tape, batch=False: tier.CHEAP_COMPILE_SECONDS)
    tape = sg.trace(lambda x: sg.sin(x) * x + 1.0, 0.5)
    for rent, hot in ((2e-3, 25), (1e-4, 500), (1e-6, tier.AUTO_HOT_CALLS), (1.0, tier.AUTO_MIN_HOT_CALLS)):
        t = tier.Tier(tape, "value_and_grad", "auto")
        t.count()  # the first call
        monkeypatch.setattr(tier, "time", Clock(rent))
        t._timed(lambda: None)  # the second, timed
        monkeypatch.setattr(tier, "time", time)
        while not t.started and t.calls < 2 * tier.AUTO_HOT_CALLS:
            t.count()
        assert started[-1] == hot, (rent, started)


def test_compile_times_are_learned_per_kind_and_a_cached_tape_only_loads(monkeypatch, tmp_path):
    from scalargrad.jit import compile_timings
    monkeypatch.setenv("SCALARGRAD_CACHE_DIR", str(tmp_path))
    tape = sg.trace(lambda x: sg.exp(x) * x - 2.0, 0.5)
    lines = codegen.generated_size(tape)
    prior = compile_timings.predicted_seconds(tape)
    assert prior == compile_timings.FIXED_SECONDS + lines * compile_timings.PRIOR_SECONDS_PER_LINE["straight"]
    for seconds in (0.4, 0.5, 10.0):  # the median ignores the outlier
        compile_timings.record(tape, compile_timings.FIXED_SECONDS + seconds * lines)
    assert compile_timings.seconds_per_line("straight") == pytest.approx(0.5)
    assert compile_timings.seconds_per_line("rolled") == compile_timings.PRIOR_SECONDS_PER_LINE["rolled"]
    assert not compile_timings.compiled_on_disk(tape)
    codegen.compile_kernel(tape, "value_and_grad")
    assert compile_timings.compiled_on_disk(tape)
    assert compile_timings.predicted_seconds(tape) == compile_timings.LOAD_SECONDS
    (tmp_path / compile_timings.FILE).write_text("not json")  # damaged: start again from the prior
    assert compile_timings.seconds_per_line("straight") == compile_timings.PRIOR_SECONDS_PER_LINE["straight"]
