"""Computational-graph pictures in the textbook style: Graphviz DOT text for an eager Variable or a Tape.

One node per op and per input, edges labelled with the forward value and, once adjoints exist, the
derivative flowing back along the edge ("100\\n← 2.2"). Only instructions the output depends on are
drawn; graphs larger than ``max_nodes`` keep their first and last nodes around a "… K nodes omitted" note.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np

from ..core.ops import CONST, INPUT, OPS, display_name
from ..core.reference import FORWARD, PARTIALS
from ..core.tape import Tape
from ..record.variable import Variable, imported_values

SYMBOLS = {"add": "+", "mul": "×", "sub": "−", "div": "÷", "neg": "−x", "square": "x²"}
INSTALL_HINT = ("Graphviz's `dot` program was not found on PATH; install Graphviz "
                "(apt-get install graphviz, conda install graphviz, or brew install graphviz), "
                "or write the text of sg.to_dot(...) to a .dot file and render it elsewhere")


def _number(x: float) -> str:
    return f"{x:.6g}"


def _operands(op, a, b, c, k):
    return [int(s) for s in (a[k], b[k], c[k])[: OPS[op[k]].arity]]


def _needed(op, a, b, c, out: int) -> list[int]:
    """Slots the output depends on, ascending (operands precede their users, so one backward pass)."""
    mark = np.zeros(out + 1, dtype=bool)
    mark[out] = True
    for k in range(out, -1, -1):
        if mark[k]:
            for s in _operands(op, a, b, c, k):
                mark[s] = True
    return np.flatnonzero(mark).tolist()


def _forward(op, a, b, c, lit, needed, inputs: dict[int, float]) -> dict[int, float]:
    vals = {}
    with np.errstate(all="ignore"):
        for k in needed:
            code = op[k]
            if code == INPUT:
                vals[k] = float(inputs[k])
            elif code == CONST:
                vals[k] = float(lit[k])
            else:
                args = [vals[s] for s in _operands(op, a, b, c, k)]
                if OPS[code].literal:
                    args.append(lit[k])
                vals[k] = float(FORWARD[code](*map(np.float64, args)))
    return vals


def _partial(op, a, b, c, lit, vals, k: int, j: int) -> float:
    if not OPS[op[k]].differentiable[j]:
        return 0.0
    named = [vals[s] for s in _operands(op, a, b, c, k)] + [None] * 3
    with np.errstate(all="ignore"):
        return float(PARTIALS[op[k]][j](named[0], named[1], named[2], vals[k], lit[k]))


def _reverse(op, a, b, c, lit, vals, needed, out: int) -> dict[int, float]:
    adj = dict.fromkeys(needed, 0.0)
    adj[out] = 1.0
    for k in reversed(needed):
        g = adj[k]
        if g != 0.0:
            for j, s in enumerate(_operands(op, a, b, c, k)):
                adj[s] += g * _partial(op, a, b, c, lit, vals, k, j)
    return adj


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _op_label(op, lit, k: int) -> str:
    o = OPS[op[k]]
    if o.name == "powc":
        return f"x^{_number(lit[k])}"
    if o.name == "cpow":
        return f"{_number(lit[k])}^x"
    return SYMBOLS.get(o.name, display_name(int(op[k]), float(lit[k])))


def to_dot(output, values: bool = True, grads: bool = True, max_nodes: int = 200, names=None,
           x=None) -> str:
    """Graphviz DOT text of the graph that computes ``output``.

    ``output``: an eager ``sg.Variable`` (its recorder's instructions; values are those recorded,
    derivatives those left by ``backward()`` and shown only after it), or a ``Tape`` (its first
    output; values and derivatives, from a fresh sweep, only when the input values ``x`` are given).
    ``names`` labels the inputs: for a Variable, a dict keyed by the input Variables (or their
    ``id()``), e.g. ``{apple: "apple"}``; for a Tape, keyed by input position. Unnamed inputs are
    ``x0, x1, ...`` in recording order. ``values`` / ``grads`` switch the two kinds of edge label off.
    Graphs with more than ``max_nodes`` nodes keep the first and last ``max_nodes // 2``.
    Values imported from an earlier (sealed) recorder appear as inputs.
    """
    names = dict(names or {})
    if isinstance(output, Tape):
        tape = output
        if not len(tape.outputs):
            raise ValueError("to_dot: the tape has no outputs")
        op, a, b, c, lit = tape.op, tape.a, tape.b, tape.c, tape.lit
        out = int(tape.outputs[0])
        label_of = {int(s): str(names.get(i, f"x{i}")) for i, s in enumerate(tape.inputs)}
        have_values = x is not None
        needed = _needed(op, a, b, c, out)
        if have_values:
            x = np.asarray(x, dtype=np.float64).reshape(-1)
            if len(x) != len(tape.inputs):
                raise ValueError(f"to_dot: the tape has {len(tape.inputs)} inputs, x has {len(x)} values")
            vals = _forward(op, a, b, c, lit, needed, dict(zip(tape.inputs.tolist(), x.tolist())))
            adj = _reverse(op, a, b, c, lit, vals, needed, out) if grads else None
    elif isinstance(output, Variable):
        by_id = {(id(key) if type(key) is Variable else key): str(v) for key, v in names.items()}
        rec = output._rec
        if rec is None:  # a leaf that no op has used yet: a graph of one input
            name = by_id.get(id(output), "x0")
            return (f"digraph scalargrad {{\n  rankdir=LR;\n  n0 [shape=plaintext, label={_quote(name)}];\n"
                    f"  out [shape=plaintext, label=\"output\"];\n"
                    f"  n0 -> out [label={_quote(_number(output._data) if values else '')}];\n}}\n")
        if rec.trace:
            raise TypeError("to_dot: a traced value; draw the Tape from sg.trace(f, *args) instead")
        op, a, b, c, lit = rec.arrays()
        op, a, b, c, lit = op.copy(), a.copy(), b.copy(), c, lit  # do not pin the recorder's buffers
        out = output._slot
        label_of = {}
        imports = sorted({**dict(rec.imports), **imported_values(output._up)}.items())
        for i, (slot, var) in enumerate(imports):
            default = f"x{i}" if var._leaf else f"%{var._slot} (earlier graph)"
            label_of[slot] = by_id.get(id(var), default)
        have_values = True
        needed = _needed(op, a, b, c, out)
        vals = _forward(op, a, b, c, lit, needed, {k: lit[k] for k in needed if op[k] == INPUT})
        adj = rec.adj if rec.adj is not None and out < len(rec.adj) else None
    else:
        raise TypeError(f"to_dot: expected a scalargrad Variable or Tape, got {type(output).__name__}")
    show_values = values and have_values
    show_grads = grads and have_values and adj is not None

    if max_nodes < 2:
        raise ValueError("to_dot: max_nodes must be at least 2")
    omitted = 0
    kept = needed
    if len(needed) > max_nodes:
        head = max_nodes // 2
        kept = needed[:head] + needed[len(needed) - (max_nodes - head):]
        omitted = len(needed) - len(kept)
    kept_set = set(kept)

    def edge_label(source: int, k: int, j: int) -> str:
        parts = []
        if show_values:
            parts.append(_number(vals[source]))
        if show_grads:
            parts.append("← " + _number(float(adj[k]) * _partial(op, a, b, c, lit, vals, k, j)))
        return "\n".join(parts)

    lines = ["digraph scalargrad {", "  rankdir=LR;", '  node [fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for k in kept:
        code = op[k]
        if code == INPUT:
            lines.append(f"  n{k} [shape=plaintext, label={_quote(label_of.get(k, f'%{k}'))}];")
        elif code == CONST:
            lines.append(f"  n{k} [shape=plaintext, fontcolor=gray30, label={_quote(_number(lit[k]))}];")
        else:
            lines.append(f"  n{k} [shape=circle, label={_quote(_op_label(op, lit, k))}];")
    if omitted:
        lines.append(f'  omitted [shape=note, label="… {omitted} nodes omitted"];')
    linked_to_note = set()
    for k in kept:
        for j, s in enumerate(_operands(op, a, b, c, k)):
            if s in kept_set:
                lines.append(f"  n{s} -> n{k} [label={_quote(edge_label(s, k, j))}];")
            elif k not in linked_to_note:
                linked_to_note.add(k)
                lines.append(f"  omitted -> n{k} [style=dashed];")
    if omitted:
        into_note = sorted({s for k in needed if k not in kept_set for s in _operands(op, a, b, c, k)
                            if s in kept_set})
        lines += [f"  n{s} -> omitted [style=dashed];" for s in into_note]
    final = []
    if show_values:
        final.append(_number(vals[out]))
    if show_grads:
        final.append("← " + _number(float(adj[out])))
    lines.append('  out [shape=plaintext, label="output"];')
    lines.append(f"  n{out} -> out [label={_quote(chr(10).join(final))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(output, path, format: str | None = None, **kwargs) -> str:
    """Render ``to_dot(output, **kwargs)`` with Graphviz into ``path``; the format (png, svg, pdf, ...)
    comes from ``format`` or the path's suffix (png when it has none). Returns ``path``.
    Raises RuntimeError when Graphviz's ``dot`` program is not installed or fails."""
    path = os.fspath(path)
    fmt = format or os.path.splitext(path)[1].lstrip(".").lower() or "png"
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(INSTALL_HINT)
    text = to_dot(output, **kwargs)
    result = subprocess.run([dot, f"-T{fmt}", "-o", path], input=text.encode("utf-8"), capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"Graphviz dot -T{fmt} failed (exit {result.returncode}): "
                           f"{result.stderr.decode(errors='replace').strip()}")
    return path
