"""Generates ``_interp.py``, the Numba interpreter's per-op dispatch, from the op table.

Run ``python -m scalargrad.jit.generate`` after changing ``ops.py`` (or a module the sweeps inline:
kernels.py, custom_call.py, flags.py); tests compare the regenerated source and the cache stamps
with the committed files. Numba caches compiled code only for real source files,
which is why the interpreter is written to disk rather than exec'd.
"""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import NamedTuple

from ..core.ops import CUSTOM_ROWS, FROM_FLOAT_MATH, FROM_MATH, OPCODE, OPS, substitute

TARGET = Path(__file__).with_name("_interp.py")
_LOCALS = dict(a="va", b="vb", c="vc", y="y", lit="vl")


def _used(op, expressions=None) -> tuple[list[str], bool]:
    """The operands (of "abc") an op's ``expressions`` (by default all of them) use, and whether they
    use its literal."""
    used = " ".join((op.forward, *op.partials) if expressions is None else expressions)
    return [s for s in "abc"[: op.arity] if "{" + s + "}" in used], "{lit}" in used


def _loads(op, col: str, batched: bool) -> list[str]:
    """Statements loading the operands (and literal) an op's expressions use into locals; batched
    sweeps read the rows and the literal once per instruction, in its ``_preamble``."""
    operands, literal = _used(op)
    if batched:
        return [f"v{s} = vals[i{s}{col}]" for s in operands]
    return [f"v{s} = vals[{s}[k]{col}]" for s in operands] + (["vl = lit[k]"] if literal else [])


def _preamble(op) -> list[str]:
    """Batched sweeps: instruction k's operand rows, its own row and its literal, read before its
    point loop (read inside it, LLVM reloads them every point: the stores to ``vals`` might change
    them; hoisted, a micro-interpreter of add/sub/mul/neg ran 2x faster at 8 points a chunk)."""
    operands, literal = _used(op)
    return [f"i{s} = {s}[k]" for s in operands] + ["r = dst[k]"] + (["vl = lit[k]"] if literal else [])


def _code(expr: str) -> str:
    """An expression as interpreter code. ``custom`` also takes the literal pool, where the
    program keeps the custom ops' function addresses (custom_call.py)."""
    return substitute(expr, **_LOCALS).replace("custom(", "custom(lit, ")


def _branch(op, with_partials: bool, col: str = "", batched: bool = False) -> list[str]:
    """Body of one dispatch branch: compute vals[k] (batched: vals[r]) and the partials pa[k],
    pb[k]. ``col`` is the index suffix of sweeps whose buffers are (row, point) arrays."""
    body = _loads(op, col, batched)
    body.append("y = " + _code(op.forward))
    body.append(f"vals[{'r' if batched else 'k'}{col}] = y")
    if with_partials:
        for buf, partial in zip(("pa", "pb"), _live_partials(op)):
            body.append(f"{buf}[k{col}] = " + _code(partial))
    return body


def _live_partials(op) -> list[str]:
    live = [p for p in op.partials if p != "0.0"]
    if len(live) > 2:
        raise ValueError(f"op {op.name!r}: the reverse sweep carries at most 2 derivatives per op")
    return live


class _Flavour(NamedTuple):
    """How a sweep flavour is written: the parameters after the arrays, whether it is batched (each
    instruction loops over points, and writes row ``dst[k]``, of liveness.py, not k), the index
    suffix of its buffers, and its decorator."""
    extra: str
    batched: bool
    col: str
    decorator: str | None


# "batch": buffers are (rows, m) arrays; each instruction runs an inner loop over the m points, so
# the opcode is dispatched once per instruction and the point loop can vectorise; values are packed
# into rows by lifetime (liveness.py), partials stay one row per instruction. "column": one point p
# of (n, B) buffers, undecorated, so that it can be compiled for a GPU thread as well (without the
# custom-op rows: a GPU cannot call the CPU functions, and jit/cuda.py refuses such tapes).
_FLAVOURS = {
    "": _Flavour("n", False, "", "@njit"),
    "_batch": _Flavour("n, m", True, ", j", "@njit"),
    "_column": _Flavour("n, p", False, ", p", None),
}
_CUSTOM = set(CUSTOM_ROWS.values())


def _params(flavour: str, with_partials: bool) -> str:
    form = _FLAVOURS[flavour]
    return ("op, a, b, c" + (", dst" if form.batched else "") + ", lit, vals" + (", pa, pb" if with_partials else "")
            + ", " + form.extra)


def _sweep(name: str, with_partials: bool, doc: str, flavour: str, custom: bool) -> list[str]:
    _, batched, col, decorator = _FLAVOURS[flavour]
    params = _params(flavour, with_partials)
    lines = ["", ""] + ([decorator] if decorator else []) + [
        f"def {name}({params}):", f'    """{doc}"""', "    for k in range(n):", "        o = op[k]"]
    indent = "            " + ("    " if batched else "")
    first = True
    for op in OPS:
        if op.name == "input":
            continue  # input values are stored before the sweep starts
        if OPCODE[op.name] in _CUSTOM and not custom:
            continue
        keyword = "if" if first else "elif"
        first = False
        lines.append(f"        {keyword} o == {OPCODE[op.name]}:  # {op.name}")
        if batched:
            lines.extend("            " + stmt for stmt in _preamble(op))
        if batched:
            lines.append("            for j in range(m):")
        lines.extend(indent + stmt for stmt in _branch(op, with_partials, col, batched))
    return lines


def _sweeps(name: str, with_partials: bool, doc: str, flavour: str) -> list[str]:
    """``name + flavour``. On the CPU there are two loops: the table's ops only, and with the
    custom-op rows too, for programs whose literal pool holds custom ops' addresses: that pool is
    read-only (custom_ops.kernel_literals), so Numba compiles a kernel's specialisation for it apart,
    with the second loop (the overload picks by type). The call out to a custom op costs the
    other branches of its loop registers: on Rosenbrock 10^4 (no custom op), the loop with the
    custom rows ran forward_partials 1.15x and value_and_grad 1.45x slower than the table-only
    loop (Numba 0.68), so tapes without custom ops never run it."""
    public = name + flavour
    if flavour == "_column":
        return _sweep(public, with_partials, doc, flavour, custom=False)
    params = _params(flavour, with_partials)
    table, custom = f"_{public}_table", f"_{public}_custom"
    return (_sweep(table, with_partials, doc + " Table ops only.", flavour, custom=False)
            + _sweep(custom, with_partials, doc + " Custom ops too.", flavour, custom=True)
            + ["", "", f"def {public}({params}):", f'    """{doc} (Called from Python: picks the loop at run time.)"""',
               f"    ({table} if lit.flags.writeable else {custom})({params})",
               "", "", f"@overload({public}, jit_options=FLAGS)", f"def _{public}_typed({params}):",
               f"    sweep = {table} if lit.mutable else {custom}",
               f"    return lambda {params}: sweep({params})"])


# "vector" (jit/vector.py): instruction v is one op over a grid of no x ni copies; copy
# (to, ti) is slot d + to * ni + ti and reads operand s at vals[s0 + ti * s1 + to * s2]; the
# literal is lit[slot]. Rows of ``vx``: d, ni, no, then (s0, s1, s2) for a, b and c. The forward
# sweep stores values only and the reverse sweep recomputes the partials from them (stores bound
# these loops: an add over 10^4 copies took 19.7 us storing value and two partials, 12.0 storing
# the value). Indices are uint64, so that Numba needs no negative-index wraparound and LLVM can
# vectorise unit strides (the same add: 3.8 us).
VECTOR_ROWS = {"d": 0, "ni": 1, "no": 2, "a": 3, "b": 6, "c": 9}
# Rows of ``rev``: per carried derivative n (first, second), row 4n whether it is added (1) or not
# (0), rows 4n + 1..3 the base and steps of the adjoint it adds to, as an operand's.
# The ops with vector instructions: those loop bodies use most. Each costs about a second of the
# vector sweeps' compile (once per installation: 38.7 s with all 40 table ops, 13.8 s with 16, on
# a busy 2-core machine); a run using another op stays scalar.
VECTOR_OPS = ("const add mul sub div square neg powc exp log tanh sigmoid sqrt sin cos abs relu maximum minimum "
              "where stop_gradient lt le gt ge").split()


def _vector_operands(used: list, indent: str) -> list:
    return [f"{indent}{name}{s} = vx[{VECTOR_ROWS[s] + j}, v]" for s in used for j, name in enumerate("isS")]


def _vector_loop(head: list, body: list, reverse: bool, used: list) -> list:
    """The double loop over a vector instruction's copies (backwards for the reverse sweep)."""
    lines = ["for tu in range(no):", "    to = no - one - tu"] if reverse else ["for to in range(no):"]
    lines += [f"    j{s} = i{s} + to * S{s}" for s in used] + ["    r = d + to * ni"]
    lines += ["    for tv in range(ni):", "        ti = ni - one - tv"] if reverse else ["    for ti in range(ni):"]
    lines += ["        " + stmt for stmt in head + body]
    return lines


def _vector_flavour(reverse: bool) -> list:
    """``forward_vector`` or ``reverse_vector``, one branch per table op."""
    if reverse:
        head = ["def reverse_vector(vop, vx, rev, lit, vals, adj, v0, v1):",
                '    """Adjoints of vector instructions v1 - 1 down to v0, the copies of each backwards, partials',
                '    recomputed from the values (jit/vector.py)."""', "    one = np.uint64(1)",
                "    for w in range(v1 - v0):", "        v = v1 - 1 - w"]
    else:
        head = ["def forward_vector(vop, vx, lit, vals, nv):",
                '    """Values of vector instructions 0..nv-1 (jit/vector.py)."""', "    for v in range(nv):"]
    lines = ["", "", "@njit"] + head + ["        o = vop[v]", "        d = vx[0, v]", "        ni = vx[1, v]",
                                        "        no = vx[2, v]"]
    if reverse:
        lines += ["        m0 = rev[0, v]", "        m1 = rev[4, v]"]
    first = True
    for op in OPS:
        if op.name not in VECTOR_OPS:
            continue
        partials = _live_partials(op)
        if reverse and not partials:
            continue
        used, literal = _used(op, partials if reverse else [op.forward])
        lines.append(f"        {'if' if first else 'elif'} o == {OPCODE[op.name]}:  # {op.name}")
        first = False
        indent = "            "
        lines += _vector_operands(used, indent)
        loads = ["k = r + ti"] + [f"v{s} = vals[j{s} + ti * s{s}]" for s in used] + (["vl = lit[k]"] if literal else [])
        if not reverse:
            lines += [indent + x for x in _vector_loop(loads, ["y = " + _code(op.forward), "vals[k] = y"], False, used)]
            continue
        lines += [f"{indent}q{n}{j} = rev[{4 * n + j}, v]" for n in range(len(partials)) for j in (1, 2, 3)]
        loads += ["y = vals[k]"] if "{y}" in " ".join(partials) else []

        body = ["g = adj[k]"]
        for n, partial in enumerate(partials):
            sign = {"1.0": "c = g", "-1.0": "c = -g"}  # adding 0.0 or -0.0 leaves an adjoint as it is
            body += [sign.get(partial, f"c = ({_code(partial)}) * g if g != 0.0 else 0.0"),
                     f"if m{n} != 0:", f"    adj[q{n}1 + ti * q{n}2 + to * q{n}3] += c"]
        lines += [indent + x for x in _vector_loop(loads[:1] + body[:1] + loads[1:], body[1:], True, used)]
    return lines


def source() -> str:
    """The complete text of ``_interp.py``."""
    lines = [
        '"""Numba interpreter sweeps, GENERATED by scalargrad/jit/generate.py from the op table: do not edit.',
        "",
        "Instruction k writes vals[k] (batched sweeps: row dst[k], see liveness.py); operands are earlier",
        "slots (rows). 'input' slots are filled by the caller.",
        "forward_partials also stores d(vals[k])/d(operand) for the (at most two) operands that carry a",
        'derivative, in pa[k] and pb[k], so that the reverse sweep is a branch-free multiply-accumulate.',
        '"""',
        f"from math import {', '.join(FROM_MATH)}",
        "",
        "import numpy as np",
        "from numba.extending import overload",
        "",
        "from .custom_call import custom",
        f"from .float_functions import {', '.join(FROM_FLOAT_MATH)}",
        "from .flags import FLAGS, njit",
        "",
        f"# Inlined sources ({', '.join(INLINED)}) as of: "
        + _hash("".join((TARGET.parent / name).read_text() for name in INLINED)),
    ]
    for flavour in _FLAVOURS:
        lines += _sweeps("forward", False, "Values of instructions 0..n-1.", flavour)
        lines += _sweeps("forward_partials", True, "Values and local partial derivatives of instructions 0..n-1.",
                         flavour)
    lines += _vector_flavour(reverse=False) + _vector_flavour(reverse=True)
    return "\n".join(lines) + "\n"


# Numba's disk cache is keyed on the content of the defining file only (Numba 0.68 hashes it), so a
# module whose cached kernels inline code from other files must change when they change, or it would
# keep stale sweeps (that skip new opcodes), also across a package upgrade. Each module below holds
# a STAMP_PREFIX line with a hash of the sources it inlines, rewritten by ``main``; a test checks
# them. _interp.py itself carries a hash of the modules it inlines from (INLINED).
DEPENDENTS = {"kernels.py": ("_interp.py",), "batch.py": ("_interp.py", "kernels.py"),
              "tangent.py": ("_interp.py", "kernels.py"), "vector.py": ("_interp.py", "kernels.py")}
INLINED = ("custom_call.py", "flags.py", "../core/float_math.py")
STAMP_PREFIX = "# inlined-sources stamp (jit/generate.py writes it; Numba's cache depends on it): "


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_stamp(text: str) -> str:
    return re.sub(re.escape(STAMP_PREFIX) + r".*", "", text)


def stamp_line(name: str) -> str:
    """The stamp line ``name`` (one of DEPENDENTS) should hold, for the files as they are now."""
    sources = "".join(_without_stamp(TARGET.with_name(dep).read_text()) for dep in DEPENDENTS[name])
    return STAMP_PREFIX + _hash(sources)


def main(argv=None) -> int:
    TARGET.write_text(source())
    for name in DEPENDENTS:  # in order: kernels.py's new text feeds the later stamps
        path = TARGET.with_name(name)
        old = path.read_text()
        if STAMP_PREFIX not in old:
            raise SystemExit(f"{path} has no line starting {STAMP_PREFIX!r}")
        path.write_text(re.sub(re.escape(STAMP_PREFIX) + r".*", stamp_line(name), old, count=1))
    print(f"wrote {TARGET} and the stamps of {', '.join(DEPENDENTS)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
