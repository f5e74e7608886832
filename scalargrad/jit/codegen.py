"""The compiled-code tier: a tape as straight-line Numba code, generated from the op table.

``source(tape)`` writes one line per instruction (the tape listing in a comment) for two functions,
``evaluate(x, out) -> ok`` and ``value_and_grad(x, grad) -> (value, ok)``, with the interpreter's
exact semantics: the same expressions, the guards checked before the reverse sweep, adjoints summed
in the same order and a zero adjoint propagating nothing. ``load_module(tape)`` writes the source to
a real file in ``cache_dir()`` named by a hash of the tape and the op table (Numba caches compiled
code only for real files), atomically, so a second process imports it and ``compile_kernel`` loads
the machine code from disk. The batch functions vmap runs (lane code, lanes.py) are a second
module, ``batch_source`` / ``load_module(tape, batch=True)``, written only when a batch first asks
for them. Which backend runs a path is decided in ``tier.py``.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
from numba import types
from numba.extending import intrinsic

from ..config import env_number, user_cache_dir
from .custom_ops import ops_in, uses_custom_ops
from ..core.ops import CONST, FROM_MATH, FUNCTIONS, INPUT, OPS, PLACEHOLDERS, substitute
from ..core.tape import Tape
from .flags import FLAGS
from . import lanes, rolled
from .rewrite import live_mask

_ARGS = (types.float64[::1], types.float64[::1])  # the one signature compiled: C-contiguous x, out/grad
# Tapes of at least ROLL_MIN_OPS instructions are written with loops (rolled.py) when that makes the
# code at least ROLL_MIN_SHRINK times shorter.
ROLL_MIN_OPS = 400
ROLL_MIN_SHRINK = 4


# --- where generated files live ---------------------------------------------------------------------

def cache_dir() -> Path:
    """``$SCALARGRAD_CACHE_DIR``, else ``codegen`` in ``config.user_cache_dir()``. Read on every call."""
    explicit = os.environ.get("SCALARGRAD_CACHE_DIR")
    return Path(explicit) if explicit else user_cache_dir() / "codegen"


def _generator_text() -> str:
    """Everything the generated text depends on besides the tape: the op table, the Numba flags and
    the generators' own sources, this module's, rolled.py's and lanes.py's (so editing either can never reuse a
    stale cache file)."""
    sources = "".join(Path(module.__file__).read_text("utf-8") for module in (sys.modules[__name__], rolled, lanes))
    return repr(OPS) + repr(sorted(FLAGS.items())) + repr(sorted(FUNCTIONS)) + sources


_GENERATOR_HASH = hashlib.sha256(_generator_text().encode()).hexdigest()


def tape_key(tape: Tape) -> str:
    """Hex digest naming a tape's generated code: its arrays, the op table, the Numba flags and the
    generator's source (any change to these gives another file, never a stale one)."""
    h = hashlib.sha256(f"scalargrad-codegen {_GENERATOR_HASH}".encode())
    for name, arr in tape.arrays().items():
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:40]


# --- source -----------------------------------------------------------------------------------------
# The generated code is in SSA form without branches (each variable assigned once, one basic block
# up to the guard test): Numba's SSA reconstruction is quadratic in reassigned variables times
# blocks, and dominated compile time when adjoints were accumulated with `+=` under `if`; calls to
# helper functions were not inlined. So conditionals become ``select`` (an LLVM select: both sides
# evaluated, which is harmless for these pure expressions) and ``and``/``or`` become ``&``/``|``.

@intrinsic
def select(typingctx, cond, x, y):
    """``x if cond else y`` for float64 x and y, without a branch (both are already evaluated)."""
    if not (isinstance(cond, types.Boolean) and x == types.float64 and y == types.float64):
        return None

    def lower(context, builder, signature, args):
        return builder.select(args[0], args[1], args[2])

    return types.float64(cond, x, y), lower


def _float_signature(*args):
    return types.float64(*args) if all(a == types.float64 for a in args) else None


def _add_product(builder, total, partial, g):  # total + partial * g, two roundings as in Python
    return builder.fadd(total, builder.fmul(partial, g))


def _skip_zero(builder, g, step, otherwise):  # `g != 0.0` is true for NaN, as in Python (une)
    return builder.select(builder.fcmp_unordered("!=", g, g.type(0.0)), step, otherwise)


# The reverse sweep's steps as single calls (one call types and lowers much faster in Numba than the
# equivalent expression): the adjoint so far plus partial * g, skipped when the adjoint g is zero;
# acc0 for a first contribution (see the note above _constant_partial); muladd without the test.

@intrinsic
def acc(typingctx, total, partial, g):
    """``total + partial * g if g != 0.0 else total``."""
    def lower(context, builder, signature, args):
        total, partial, g = args
        return _skip_zero(builder, g, _add_product(builder, total, partial, g), total)
    return _float_signature(total, partial, g), lower


@intrinsic
def acc0(typingctx, partial, g):
    """``partial * g if g != 0.0 else 0.0``."""
    def lower(context, builder, signature, args):
        partial, g = args
        return _skip_zero(builder, g, builder.fmul(partial, g), partial.type(0.0))
    return _float_signature(partial, g), lower


@intrinsic
def muladd(typingctx, total, partial, g):
    """``total + partial * g`` (two roundings, not a fused multiply-add)."""
    def lower(context, builder, signature, args):
        return _add_product(builder, *args)
    return _float_signature(total, partial, g), lower


class _Branchless(ast.NodeTransformer):
    def visit_IfExp(self, node):
        self.generic_visit(node)
        return ast.Call(ast.Name("select", ast.Load()), [node.test, node.body, node.orelse], [])

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        op = ast.BitAnd() if isinstance(node.op, ast.And) else ast.BitOr()
        expr = node.values[0]
        for value in node.values[1:]:
            expr = ast.BinOp(expr, op, value)
        return expr


@functools.lru_cache(maxsize=None)
def branchless(expr: str) -> str:
    """An op-table expression with conditionals as ``select`` calls, placeholders kept: e.g.
    ``1.0 if {a} > 0.0 else 0.0`` -> ``select({a} > 0.0, 1.0, 0.0)``."""
    if " if " not in expr and " and " not in expr and " or " not in expr:
        return expr
    marked = substitute(expr, **{p: f"__{p}__" for p in PLACEHOLDERS})
    tree = _Branchless().visit(ast.parse(marked, mode="eval"))
    text = ast.unparse(ast.fix_missing_locations(tree))
    for p in PLACEHOLDERS:
        text = text.replace(f"__{p}__", "{" + p + "}")
    return text


def _expr(op, j: int | None, names: dict) -> str:
    """Source of op's forward (j None) or j-th partial expression over ``names``."""
    return substitute(branchless(op.forward if j is None else op.partials[j]), **names)


def _literal(value: float, k: int, constants: dict) -> str:
    """Source text of a literal: its repr (exact for finite floats), parenthesised when negative;
    a non-finite literal becomes a module constant built from its bits (NaN payload included)."""
    value = float(value)
    if math.isfinite(value):
        text = repr(value)
        return f"({text})" if text.startswith("-") else text
    name = f"L{k}"
    constants[name] = int(np.float64(value).view(np.uint64))
    return name


def _constant_line(name: str, value) -> str:
    """A module constant: a non-finite literal from its bits, a table of literals (rolled.py's
    per-copy literals; Numba freezes a global array into the compiled code) or source text."""
    if isinstance(value, str):
        return f"{name} = {value}"
    if not isinstance(value, np.ndarray):
        return f"{name} = struct.unpack('<d', struct.pack('<Q', {value:#x}))[0]"
    if np.isfinite(value).all():
        return f"{name} = np.array([{', '.join(repr(float(v)) for v in value)}])"
    bits = ", ".join(f"{int(b):#x}" for b in value.view(np.uint64))
    return f"{name} = np.array([{bits}], dtype=np.uint64).view(np.float64)"


def _names(tape: Tape, k: int, constants: dict) -> dict:
    """Placeholder values for instruction k: operand and own value variables, and the literal. A
    'const' operand is written as its literal, so that a partial such as mul's is seen to be a
    finite constant (no zero-adjoint test needed)."""
    names = dict(y=f"v{k}", lit=_literal(tape.lit[k], k, constants))
    for s, slots in zip("abc", (tape.a, tape.b, tape.c)):
        slot = int(slots[k])
        if slot >= 0:
            names[s] = _literal(tape.lit[slot], slot, constants) if tape.op[slot] == CONST else f"v{slot}"
    return names


# How the reverse sweep below can drop work and stay bit-identical to the interpreter's. There,
# adjoints are sums starting from +0.0 (or the seed 1.0), so never -0.0, and a step with a zero
# adjoint g is skipped. Here, a first contribution 0.0 + p * g is written p * g, which differs only
# when it is a zero (-0.0 instead of +0.0). Invariant: every adjoint here equals the interpreter's
# or both are zeros. It holds through every step: the partials p are the same; a zero g of either
# sign is skipped by the select (g != 0.0 is false for both), and a step without the test has a
# finite constant partial c, so it adds a zero (c * ±0), which changes a sum only in the sign of a
# zero. Finally each gradient entry is written 0.0 + g, which maps -0.0 to +0.0 and keeps every other
# value: the interpreter's bits.

def _constant_partial(expr: str) -> bool:  # expr: a partial's source text, constants substituted
    """A finite constant partial (``1.0``, ``-1.0``, a 'const' operand of mul): with a zero adjoint
    it adds a zero, so the step needs no zero-adjoint test (see above)."""
    try:
        return math.isfinite(float(expr.strip("()")))
    except ValueError:
        return False


def _needed(tape: Tape, roots) -> np.ndarray:
    return live_mask(tape.a, tape.b, tape.c, np.asarray(list(roots), dtype=np.int64))


def _guard_test(tape: Tape) -> str:
    """An expression true when every guard has its traced value (as ``kernels._guards_hold``),
    with ``&`` rather than ``and`` so that it does not branch."""
    tests = [f"(v{int(s)} != 0.0)" if v != 0.0 else f"(not (v{int(s)} != 0.0))"
             for s, v in zip(tape.guards, tape.guard_values)]
    return " & ".join(tests) if tests else "True"


def _forward_lines(tape: Tape, keep, listing, constants) -> list[str]:
    lines = []
    input_index = {int(s): i for i, s in enumerate(tape.inputs)}
    for k in range(len(tape)):
        if keep[k]:
            op = OPS[tape.op[k]]
            rhs = (f"x[{input_index[k]}]" if tape.op[k] == INPUT
                   else _expr(op, None, _names(tape, k, constants)))
            lines.append(f"    v{k} = {rhs}  # {listing[k]}")
    return lines


def _leads_to_input(tape: Tape) -> np.ndarray:
    """Slots with a differentiable path to an input: the only adjoints a gradient can read, so
    steps into other slots (constants, conditions) are left out; they change no result."""
    useful = tape.op == INPUT
    for k in range(len(tape)):
        if not useful[k]:
            op = OPS[tape.op[k]]
            useful[k] = any(op.differentiable[j] and useful[s]
                            for j, s in enumerate((tape.a[k], tape.b[k], tape.c[k])[: op.arity]))
    return useful


def _reverse_lines(tape: Tape, out: int, listing, constants) -> tuple[list[str], dict]:
    """The reverse sweep in the interpreter's order (k descending, operands in table order), over
    the slots whose adjoint can be nonzero and reach an input. ``adjoint[s]`` names slot s's adjoint
    so far: ``g<s>_<i>`` after its i-th contribution (SSA: nothing is reassigned)."""
    useful = _leads_to_input(tape)
    adjoint = {out: "1.0"} if useful[out] else {}
    count: dict[int, int] = {}
    lines = []
    for k in range(len(tape) - 1, -1, -1):
        if k not in adjoint:
            continue
        op = OPS[tape.op[k]]
        names = _names(tape, k, constants)
        for j, slot in enumerate((tape.a[k], tape.b[k], tape.c[k])[: op.arity]):
            slot = int(slot)
            if not (op.differentiable[j] and useful[slot]):
                continue
            partial = _expr(op, j, names)
            total = adjoint.get(slot, "0.0")
            count[slot] = count.get(slot, 0) + 1
            adjoint[slot] = name = f"g{slot}_{count[slot]}"
            g = adjoint[k]
            first = total == "0.0"  # the interpreter's 0.0 + p * g: written p * g (see above)
            constant = _constant_partial(partial) and float(partial.strip("()"))
            if constant == 1.0:
                rhs = g if first else f"{total} + {g}"
            elif constant == -1.0:
                rhs = f"-{g}" if first else f"{total} - {g}"
            elif constant:
                rhs = f"{partial} * {g}" if first else f"muladd({total}, {partial}, {g})"
            else:
                rhs = f"acc0({partial}, {g})" if first else f"acc({total}, {partial}, {g})"
            lines.append(f"    {name} = {rhs}  # {listing[k]}")
    return lines, adjoint


def rolled_plan(tape: Tape):
    """The loop plan (rolled.py) when it shortens the generated code enough to be worth it, else None:
    straight-line code is faster per instruction, rolled code compiles in time that does not grow
    with the number of copies. Remembered for the last few tapes (finding loops is linear in n)."""
    if len(tape) < ROLL_MIN_OPS:
        return None
    key = tape_key(tape)
    with LOCK:
        if key in _PLANS:
            return _PLANS[key]
    the_plan = rolled.plan(tape)
    if not the_plan.loops or the_plan.statements * ROLL_MIN_SHRINK > len(tape):
        the_plan = None
    with LOCK:
        _PLANS[key] = the_plan
        while len(_PLANS) > 16:
            _PLANS.pop(next(iter(_PLANS)))
    return the_plan


def generated_size(tape: Tape) -> int:
    """Instruction lines the generated code for ``tape`` would have (what its compile time grows with)."""
    the_plan = rolled_plan(tape)
    return len(tape) if the_plan is None else the_plan.statements


def _straight_bodies(tape: Tape, constants: dict):
    listing = str(tape).splitlines()
    outputs = [int(s) for s in tape.outputs]
    guards = [int(s) for s in tape.guards]
    guard_test = _guard_test(tape)

    ev = _forward_lines(tape, _needed(tape, outputs + guards), listing, constants)
    ev += [f"    out[{i}] = v{s}" for i, s in enumerate(outputs)]
    ev.append(f"    return {guard_test}")

    if outputs:
        out = outputs[0]
        vg = _forward_lines(tape, _needed(tape, [out] + guards), listing, constants)
        if guards:
            vg += [f"    if not ({guard_test}):", f"        return v{out}, False"]
        reverse, adjoint = _reverse_lines(tape, out, listing, constants)
        vg += reverse
        for i, s in enumerate(tape.inputs):
            g = adjoint.get(int(s), "0.0")
            vg.append(f"    grad[{i}] = {g if g in ('0.0', '1.0') else '0.0 + ' + g}")
        vg.append(f"    return v{out}, True")
    else:
        vg = ["    return 0.0, False"]
    return ev, vg


def _bodies(tape: Tape, constants: dict) -> tuple[list, list]:
    """The body lines of ``evaluate`` and ``value_and_grad`` (straight, or rolled into loops),
    the module constants they use added to ``constants``."""
    the_plan = rolled_plan(tape)
    if the_plan is None:
        return _straight_bodies(tape, constants)
    return rolled.function_bodies(tape, the_plan, _literal, _expr, _constant_partial, constants)


def _header(tape: Tape, key: str, what: str, imports: list, constants: dict) -> list:
    """A generated module's docstring, imports, KEY and constants."""
    return [
        f'"""scalargrad compiled-code tier, key {key}: GENERATED by scalargrad/jit/codegen.py',
        f"from the op table for a tape of {len(tape)} instructions, {len(tape.inputs)} inputs, "
        f"{len(tape.outputs)} outputs, {len(tape.guards)} guards: {what}. Do not edit.",
        "",
        "v<k> is the value of slot k; g<k>_<i> the adjoint of slot k after its i-th contribution:",
        "acc(total, p, g) = total + p * g, or total when g == 0 (as in the interpreter); acc0(p, g) the",
        "first contribution; muladd(total, c, g) = total + c * g. Comments: the tape's listing.",
        '"""',
        f"from math import {', '.join(FROM_MATH)}",
        "import struct",
        "",
        "import numpy as np",
        "from numba import prange",
        "",
        "from scalargrad.jit.flags import njit",
        "from scalargrad.jit.codegen import acc, acc0, muladd, select",
        *imports,
        "",
        f"KEY = {key!r}",
        *(_constant_line(name, value) for name, value in constants.items()),
    ]


def source(tape: Tape, key: str | None = None) -> str:
    """The generated module's text for ``tape`` (``key`` defaults to ``tape_key(tape)``): the
    per-point ``evaluate`` and ``value_and_grad``."""
    key = key or tape_key(tape)
    constants: dict = {}
    ev, vg = _bodies(tape, constants)
    lines = _header(tape, key, "the per-point functions", [], constants)
    lines += ["", "", "@njit", "def evaluate(x, out):",
              '    """Writes every output into out; returns whether the guards hold."""', *ev,
              "", "", "@njit", "def value_and_grad(x, grad):",
              '    """(value of output 0, guards hold); the gradient goes into grad."""', *vg]
    return "\n".join(lines) + "\n"


def batch_source(tape: Tape, key: str | None = None) -> str:
    """The text of ``tape``'s batch module: ``evaluate_batch(X, out, ok)`` and
    ``value_and_grad_batch(X, values, G, ok)``, as lane code (lanes.py) when the rewrite applies (its
    buffer fits a core's cache), else the per-point functions of ``source``'s module (imported from
    it, so never compiled twice) at one point per iteration of a parallel loop."""
    key = key or tape_key(tape)
    constants: dict = {}
    ev, vg = _bodies(tape, constants)
    n_inputs, n_outputs = len(tape.inputs), len(tape.outputs)
    try:
        ev_lanes, ev_rows = lanes.lane_function("evaluate", ev, n_inputs, n_outputs)
        vg_lanes, vg_rows = lanes.lane_function("value_and_grad", vg, n_inputs, n_outputs)
    except lanes.Unsupported:
        header = _header(tape, key, "the batch functions, a point at a time",
                         [f"from {_module_name(key)} import evaluate, value_and_grad"], {})
        return "\n".join(header + [
            "", "", "@njit(parallel=True)", "def evaluate_batch(X, out, ok):",
            '    """evaluate at every row of X, in parallel."""',
            "    for p in prange(X.shape[0]):", "        ok[p] = evaluate(X[p], out[p])",
            "", "", "@njit(parallel=True)", "def value_and_grad_batch(X, values, G, ok):",
            '    """value_and_grad at every row of X, in parallel."""',
            "    for p in prange(X.shape[0]):", "        value, good = value_and_grad(X[p], G[p])",
            "        values[p] = value", "        ok[p] = good"]) + "\n"
    header = _header(tape, key, "the batch functions as lane code",
                     ["from scalargrad.jit.lanes import transpose4"], constants)
    return "\n".join(header + ["", "", *ev_lanes.splitlines(), "", "", *vg_lanes.splitlines(),
                                *lanes.batch_functions(n_inputs, n_outputs, ev_rows, vg_rows)]) + "\n"


# --- files and modules ------------------------------------------------------------------------------

def write_atomic(path: Path, text: str) -> None:
    """Create ``path`` holding ``text`` such that no reader ever sees a partial file: write a temp
    file in the same directory, then link it into place (losing a race to another process that
    wrote the same key is fine: the text is the same)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; it is source code, like any module
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if the file exists: an existing file's mtime (Numba's
        except FileExistsError:  # cache stamp) is never touched, so its compiled code stays valid
            if not _holds_key(path, text):
                os.replace(tmp, path)  # a damaged or foreign file under our name
                tmp = None
        except OSError:  # no hard links on this file system
            os.replace(tmp, path)
            tmp = None
    finally:
        if tmp is not None:
            os.unlink(tmp)


def _holds_key(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def module_path(key: str, batch: bool = False) -> Path:
    """The file of a tape's per-point module (``batch``: its batch module)."""
    return cache_dir() / f"sg_{key}{'_batch' if batch else ''}.py"


def _module_name(key: str, batch: bool = False) -> str:
    return f"_scalargrad_codegen_{key}{'_batch' if batch else ''}"


_MODULES: dict[str, object] = {}  # module name -> the imported generated module
# Numba never frees compiled code (about 1 MiB per tape), so a process compiles generated code for
# at most this many distinct tapes (SCALARGRAD_CODEGEN_MAX_TAPES); later ones stay on the interpreter.
MAX_TAPES = 100


def max_tapes() -> int:
    return env_number("SCALARGRAD_CODEGEN_MAX_TAPES", MAX_TAPES)


def room_for(tape: Tape) -> bool:
    """Whether generated code for ``tape`` is loaded already or fits under the per-process cap."""
    loaded = {name.removesuffix("_batch") for name in _MODULES}
    return _module_name(tape_key(tape)) in loaded or len(loaded) < max_tapes()
_PLANS: dict[str, object] = {}  # tape key -> rolled plan or None (rolled_plan)
LOCK = threading.RLock()  # guards the two dicts above; tier.py holds it across os.fork()


# The cache holds at most this much (generated sources and Numba's compiled files); writing a new
# module removes the oldest ones beyond it. $SCALARGRAD_CACHE_MAX_MB overrides.
CACHE_MAX_BYTES = 256 << 20


def cache_max_bytes() -> int:
    return env_number("SCALARGRAD_CACHE_MAX_MB", CACHE_MAX_BYTES, lambda mb: int(float(mb) * (1 << 20)), "a number")


def prune_cache(directory: Path, max_bytes: int, keep=frozenset()) -> list[Path]:
    """Remove the oldest generated modules, with their compiled files, until ``directory`` holds at
    most ``max_bytes``; never a module whose stem is in ``keep``. Age is the file time, which is
    the creation time: files are never rewritten (that would invalidate Numba's cache). Returns the
    removed sources. Files another process removes meanwhile are skipped."""
    def size(path):
        try:
            return path.stat().st_size
        except OSError:
            return 0

    compiled: dict[str, list[Path]] = {}
    for path in (directory / "__pycache__").glob("sg_*"):
        compiled.setdefault(path.name.split(".")[0], []).append(path)
    modules = []
    for path in directory.glob("sg_*.py"):
        try:
            modules.append((path.stat().st_mtime, path))
        except OSError:
            pass
    group = {path.stem: [path] + compiled.get(path.stem, []) for _, path in modules}
    total = sum(size(f) for files in group.values() for f in files)
    removed = []
    for _, path in sorted(modules):
        if total <= max_bytes:
            break
        if path.stem in keep:
            continue
        for f in group[path.stem]:
            total -= size(f)
            try:
                f.unlink()
            except OSError:
                pass
        removed.append(path)
    return removed


def _import(name: str, path: Path, text: str, key: str):
    """Import ``text`` as module ``name`` from ``path`` (written first unless it holds ``text``)."""
    if not _holds_key(path, text):
        try:
            write_atomic(path, text)
        except OSError as exc:
            raise OSError(f"cannot write generated code to {path} ({exc}); set SCALARGRAD_CACHE_DIR "
                          "to a writable directory, or use backend='interp'") from exc
        loaded = {Path(module.__file__).stem for module in _MODULES.values()}
        prune_cache(path.parent, cache_max_bytes(), loaded | {path.stem})
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    if getattr(module, "KEY", None) != key:
        raise RuntimeError(f"generated module {path} does not hold key {key}")
    return module


def load_module(tape: Tape, batch: bool = False):
    """The generated module for ``tape`` (``batch``: its batch module, ``batch_source``; the
    per-point module is loaded first, since a batch module may import from it), imported from the
    cache directory (written first if missing). Its functions are Numba dispatchers, compiled lazily
    (``compile_kernel`` and ``compile_batch`` compile)."""
    if uses_custom_ops(tape.op):
        raise ValueError(f"generated code (backend='codegen') cannot run custom op "
                         f"{ops_in(tape.op, tape.lit)[0].name!r}; use backend='auto' or 'interp'")
    key = tape_key(tape)
    with LOCK:
        for is_batch in ((False, True) if batch else (False,)):
            name = _module_name(key, is_batch)
            module = _MODULES.get(name)
            if module is None:
                text = (batch_source if is_batch else source)(tape, key)
                module = _MODULES[name] = _import(name, module_path(key, is_batch), text, key)
        return module


def value_and_grad_batch(module, X, n_inputs: int):
    """(values, G, ok) at every row of the C-contiguous matrix X, by a tape's generated batch
    ``module`` (``load_module(tape, batch=True)``) run in parallel over the rows (compiled on first
    use, then from Numba's disk cache)."""
    B = len(X)
    values, G, ok = np.empty(B), np.empty((B, n_inputs)), np.empty(B, dtype=np.bool_)
    module.value_and_grad_batch(X, values, G, ok)
    return values, G, ok


def evaluate_batch(module, X, n_outputs: int):
    """(out, ok): every output at every row of X, by a tape's generated ``module`` (as above)."""
    out, ok = np.empty((len(X), n_outputs)), np.empty(len(X), dtype=np.bool_)
    module.evaluate_batch(X, out, ok)
    return out, ok


_BATCH_ARGS = {  # the one signature of each batch function, as value_and_grad_batch and evaluate_batch call them
    "value_and_grad": (types.float64[:, ::1], types.float64[::1], types.float64[:, ::1], types.boolean[::1]),
    "evaluate": (types.float64[:, ::1], types.float64[:, ::1], types.boolean[::1]),
}


def _compile(dispatcher, signature) -> None:
    """``dispatcher.compile(signature)``, loading from Numba's disk cache when it can. A damaged cache
    entry (a disk error, a file changed by hand) makes Numba's load raise in every later process:
    the generated file's cache entries are then deleted, with a warning, and the function compiled
    anew (an error that remains comes from the compile itself, and propagates)."""
    try:
        dispatcher.compile(signature)
        return
    except Exception as exc:
        stem = Path(dispatcher.py_func.__code__.co_filename).stem
        damaged = [p for p in (cache_dir() / "__pycache__").glob(f"{stem}.*") if p.suffix in (".nbi", ".nbc")]
        if not damaged:
            raise
        for path in damaged:
            path.unlink(missing_ok=True)
        warnings.warn(f"scalargrad: Numba's cache of generated code {stem}.py could not be read "
                      f"({type(exc).__name__}: {exc}); deleted {len(damaged)} cache files and compiling "
                      "again", RuntimeWarning, stacklevel=3)
    dispatcher.compile(signature)


def compile_batch(module, kind: str) -> None:
    """Compile (or load from Numba's disk cache) the batch function of ``kind`` in ``module``."""
    _compile(getattr(module, f"{kind}_batch"), _BATCH_ARGS[kind])


def compile_kernel(tape: Tape, kind: str):
    """The compiled generated function ``kind`` ("value_and_grad" or "evaluate") for ``tape``:
    loaded from Numba's disk cache when a process compiled it before, else compiled now."""
    if kind not in ("value_and_grad", "evaluate"):
        raise ValueError(f"kind must be 'value_and_grad' or 'evaluate', got {kind!r}")
    dispatcher = getattr(load_module(tape), kind)
    _compile(dispatcher, _ARGS)
    return dispatcher
