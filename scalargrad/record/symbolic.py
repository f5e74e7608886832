"""Reverse and forward mode as tape-to-tape transformations, written in the op table's own rules.

Each partial-derivative string of ``ops.OPS`` is compiled (via ``ast``) into a Python function over
Variables that returns ``g * partial``: ``X if C else Y`` becomes ``sg.where`` (or a direct pick when
``C`` is a plain bool, e.g. a test on the literal), ``and`` a product of 0/1 values, ``or``
``sg.maximum``, and math names map to scalargrad's ops. ``replay`` re-records a Tape onto given
Variables, ``reverse``/``tangent`` record the symbolic sweeps, ``grad_tape`` / ``jvp_tape`` return
the derived Tapes; the transforms' ``_symbolic`` methods and ``backward_create_graph`` use them to compose.
Derivative code never calls ``bool()`` on a Variable (that would record a guard).
"""
from __future__ import annotations

import ast
import math

import numpy as np

from ..core.ops import CONST, DIFF_MASK, FUNCTIONS, INPUT, OP_OF_FUNCTION, OPS, substitute
from ..core.registry import custom_op_by_id
from ..core.tape import Tape
from .operators import FUNCTIONS_BY_NAME, power
from .tracing import new_input, output_slot, to_tape
from .variable import Recorder, Variable, imported_values, recording


_where = FUNCTIONS_BY_NAME["where"]
_maximum = FUNCTIONS_BY_NAME["maximum"]


# --- adjoints that are exactly zero unless some conditions hold ---------------------------------

class _Masked:
    """``value`` where every ``(cond, when)`` has ``(cond != 0) == when``, else exactly 0.0.

    Kept unmaterialised while it flows backwards so that ``0 * inf`` on an unselected branch of
    ``where`` stays 0 (as the compiled sweep's zero-adjoint skip makes it), not NaN."""

    __slots__ = ("conds", "value")

    def __init__(self, conds, value):
        self.conds, self.value = conds, value


def _materialize(g):
    if type(g) is not _Masked:
        return g
    v = g.value
    for cond, when in reversed(g.conds):
        v = _where(cond, v, 0.0) if when else _where(cond, 0.0, v)
    return v


def _mask(cond, when, x):
    if x is None:
        return None
    if type(x) is _Masked:
        return _Masked(((cond, when),) + x.conds, x.value)
    return _Masked(((cond, when),), x)


def _mul(g, p):
    """g * p with g an adjoint/tangent (None = 0) and p a value; exact shortcuts for 0, 1, -1."""
    if g is None or p is None:
        return None
    if type(g) is _Masked:
        return _mask_value(g, _mul(g.value, p))
    if type(p) is _Masked:
        return _mask_value(p, _mul(g, p.value))
    if type(p) is not Variable:
        if p == 1.0:
            return g
        if p == 0.0:
            return None
        if p == -1.0:
            return -g
    if type(g) is not Variable and g == 1.0:
        return p
    return g * p


def _mask_value(m, value):
    return None if value is None else _Masked(m.conds, value)


def _neg(g):
    if g is None:
        return None
    if type(g) is _Masked:
        return _Masked(g.conds, -g.value)
    return -g


def _add(u, v):
    if u is None:
        return v
    if v is None:
        return u
    if type(u) is _Masked and type(v) is _Masked and len(u.conds) == len(v.conds) and all(
            cu is cv and wu == wv for (cu, wu), (cv, wv) in zip(u.conds, v.conds)):
        return _Masked(u.conds, u.value + v.value)
    return _materialize(u) + _materialize(v)


def _select(cond, x, y):
    """``x() if cond else y()``; a traced cond records ``where`` (both sides evaluated)."""
    if type(cond) is not Variable:
        return x() if cond else y()
    xv, yv = x(), y()
    if yv is None or (type(yv) is not Variable and type(yv) is not _Masked and yv == 0.0):
        return _mask(cond, True, xv) if not _is_zero(xv) else None
    if _is_zero(xv):
        return _mask(cond, False, yv)
    if type(xv) is float and type(yv) is float and xv == yv:
        return xv
    return _where(cond, _materialize(xv), _materialize(yv))


def _select_value(cond, x, y):
    out = _materialize(_select(cond, x, y))
    return 0.0 if out is None else out


def _is_zero(x):
    return x is None or (type(x) is float and x == 0.0)


def _and(x, y):
    """Conjunction of conditions: Python bools short-circuit, traced 0/1 values multiply."""
    if type(x) is not Variable:
        return y if x else False
    if type(y) is not Variable:
        return x if y else False
    return x * y


def _or(x, y):
    if type(x) is not Variable:
        return True if x else y
    if type(y) is not Variable:
        return True if y else x
    return _maximum(x, y)


def _isnan(x):
    return x != x if type(x) is Variable else math.isnan(x)


def _custom(op_id, which, a, b):
    """``custom(id, j, a, b)`` of a derivative rule: records the op's partial j - 1 (custom.py), as one
    instruction or, for a plain partial that traces, as its own table ops."""
    op = custom_op_by_id(op_id)
    fn = op if which == 0 else op.partial(which - 1)
    args = (a,) if op.arity == 1 else (a, b)
    inlined = fn.inline(*args)  # a plain partial that traces records its own ops: differentiable again
    return fn(*args) if inlined is None else inlined


def _function_ops():
    """FUNCTIONS name -> scalargrad function (``asin`` -> ``sg.arcsin``, ops.OP_OF_FUNCTION)."""
    table = {name: FUNCTIONS_BY_NAME[op] for name, op in OP_OF_FUNCTION.items()}
    table["pow"] = power  # pow(x, 2.0) with a constant exponent records powc/square
    table["isnan"] = _isnan
    table["custom"] = _custom
    missing = set(FUNCTIONS) - set(table)
    if missing:
        raise RuntimeError(f"transforms: no scalargrad op for the table's functions {sorted(missing)}")
    return table


_FUNCTIONS = _function_ops()


class _Rewrite(ast.NodeTransformer):
    """Value-mode rewriting of one expression: conditionals, boolean ops and calls to helpers."""

    def visit_IfExp(self, node):
        node = self.generic_visit(node)
        return _call("_select_value", node.test, _thunk(node.body), _thunk(node.orelse))

    def visit_BoolOp(self, node):
        node = self.generic_visit(node)
        helper = "_and" if isinstance(node.op, ast.And) else "_or"
        out = node.values[0]
        for v in node.values[1:]:
            out = _call(helper, out, v)
        return out

    def visit_Call(self, node):
        node = self.generic_visit(node)
        node.func = ast.Name(id="_f_" + node.func.id, ctx=ast.Load())
        return node

    def visit_Compare(self, node):
        if len(node.ops) != 1:
            raise ValueError(f"chained comparison {ast.unparse(node)!r} is not supported in derivative rules")
        return self.generic_visit(node)


def _call(name, *args):
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


def _thunk(body):
    return ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
                      body=body)


def _scaled(node):
    """Source of ``g * node`` pushed into conditionals, so that ``g * 1.0`` is ``g`` and
    ``g * 0.0`` is no term at all."""
    if isinstance(node, ast.IfExp):
        return (f"_select({_value(node.test)}, lambda: {_scaled(node.body)}, "
                f"lambda: {_scaled(node.orelse)})")
    if isinstance(node, ast.Constant):
        return "None" if node.value == 0.0 else ("g" if node.value == 1.0 else f"_mul(g, {node.value!r})")
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and node.operand.value == 1.0):
        return "_neg(g)"
    return f"_mul(g, {_value(node)})"


def _value(node):
    return ast.unparse(ast.fix_missing_locations(_Rewrite().visit(node)))


_NAMESPACE = {"_select": _select, "_select_value": _select_value, "_and": _and, "_or": _or, "_mul": _mul, "_neg": _neg,
              **{"_f_" + name: fn for name, fn in _FUNCTIONS.items()}}


def scaled_rule(expr: str):
    """``rule(g, a, b, c, y, lit) -> g * partial`` (None for zero) for one partial string."""
    tree = ast.parse(substitute(expr, a="a", b="b", c="c", y="y", lit="lit").strip(), mode="eval")
    src = f"lambda g, a, b, c, y, lit: {_scaled(tree.body)}"
    return eval(compile(src, f"<partial {expr}>", "eval"), dict(_NAMESPACE))


# Per opcode: (operand index, rule) for every operand that carries a derivative.
RULES = [tuple((j, scaled_rule(op.partials[j])) for j in range(op.arity) if DIFF_MASK[k, j])
         for k, op in enumerate(OPS)]
_RECORD = [FUNCTIONS_BY_NAME.get(op.name) for op in OPS]


# --- replay and symbolic sweeps ------------------------------------------------------------------

def replay(tape: Tape, inputs, record_guards: bool = True) -> list:
    """Values of every slot of ``tape`` computed by scalargrad ops from ``inputs`` (Variables or
    floats, one per tape input), recording into the current recorder. Constants stay floats. With
    ``record_guards`` each guard is re-recorded (``bool()``) in the caller's recorder, and a guard
    whose value differs from the traced one raises ValueError."""
    if len(inputs) != len(tape.inputs):
        raise ValueError(f"replay: the tape has {len(tape.inputs)} inputs, got {len(inputs)} values")
    n = len(tape)
    vals = [None] * n
    for slot, v in zip(tape.inputs.tolist(), inputs):
        vals[slot] = v
    ops, a, b, c, lit = tape.op.tolist(), tape.a.tolist(), tape.b.tolist(), tape.c.tolist(), tape.lit.tolist()
    for k in range(n):
        o = ops[k]
        op = OPS[o]
        if o == INPUT:
            continue
        if o == CONST:
            vals[k] = lit[k]
            continue
        arity = op.arity
        if arity == 1:
            args = (vals[a[k]],)
        elif arity == 2:
            args = (vals[a[k]], vals[b[k]])
        else:
            args = (vals[a[k]], vals[b[k]], vals[c[k]])
        if op.literal:
            args += (lit[k],)
        y = _RECORD[o](*args)
        vals[k] = float(y) if type(y) is not Variable else y
    if record_guards:
        for slot, expected in zip(tape.guards.tolist(), tape.guard_values.tolist()):
            v = vals[slot]
            if bool(v) != (expected != 0.0):  # bool() of a traced Variable records the guard
                raise ValueError(f"replay: guard %{slot} ({OPS[ops[slot]].name}) does not hold at these "
                                 "values; the tape was traced on another control-flow path")
    return vals


def _active(tape: Tape, wrt) -> list:
    """Which slots depend (through differentiable operands) on the input positions ``wrt``."""
    n = len(tape)
    act = [False] * n
    for i in wrt:
        act[int(tape.inputs[i])] = True
    ops, slots = tape.op.tolist(), (tape.a.tolist(), tape.b.tolist(), tape.c.tolist())
    for k in range(n):
        for j, _ in RULES[ops[k]]:
            if act[slots[j][k]]:
                act[k] = True
                break
    return act


def reverse(tape: Tape, vals, output: int = 0, wrt=None, seed=1.0) -> list:
    """Symbolic reverse sweep: d(output)/d(input i) for each input position in ``wrt`` (default
    all), as Variables (0.0 where there is no dependence). ``vals`` comes from ``replay``."""
    return reverse_seeded(tape, vals, {int(tape.outputs[output]): seed}, wrt)


def reverse_seeded(tape: Tape, vals, seeds: dict, wrt=None) -> list:
    """``reverse`` with the adjoints of several slots given (``{slot: seed}``)."""
    wrt = range(len(tape.inputs)) if wrt is None else wrt
    act = _active(tape, wrt)
    n = len(tape)
    adj = [None] * n
    for slot, seed in seeds.items():
        adj[slot] = seed
    ops, lit = tape.op.tolist(), tape.lit.tolist()
    a, b, c = tape.a.tolist(), tape.b.tolist(), tape.c.tolist()
    for k in range(n - 1, -1, -1):
        g = adj[k]
        if g is None:
            continue
        adj[k] = None
        rules = RULES[ops[k]]
        if not rules:
            adj[k] = g
            continue
        slots = (a[k], b[k], c[k])
        va = vals[a[k]] if a[k] >= 0 else None
        vb = vals[b[k]] if b[k] >= 0 else None
        vc = vals[c[k]] if c[k] >= 0 else None
        for j, rule in rules:
            s = slots[j]
            if act[s]:
                adj[s] = _add(adj[s], rule(g, va, vb, vc, vals[k], lit[k]))
    out = []
    for i in wrt:
        g = _materialize(adj[int(tape.inputs[i])])
        out.append(0.0 if g is None else g)
    return out


def tangent(tape: Tape, vals, tangents, outputs=None) -> list:
    """Symbolic forward (tangent) sweep: the tangent of each output (default all) given one tangent
    per tape input (Variables, floats or None for zero)."""
    n = len(tape)
    tan = [None] * n
    for slot, t in zip(tape.inputs.tolist(), tangents):
        tan[slot] = None if (type(t) is float and t == 0.0) else t
    ops, lit = tape.op.tolist(), tape.lit.tolist()
    a, b, c = tape.a.tolist(), tape.b.tolist(), tape.c.tolist()
    for k in range(n):
        rules = RULES[ops[k]]
        if not rules:
            continue
        slots = (a[k], b[k], c[k])
        va = vals[a[k]] if a[k] >= 0 else None
        vb = vals[b[k]] if b[k] >= 0 else None
        vc = vals[c[k]] if c[k] >= 0 else None
        t = None
        for j, rule in rules:
            ts = tan[slots[j]]
            if ts is not None:
                t = _add(t, rule(ts, va, vb, vc, vals[k], lit[k]))
        tan[k] = t
    outputs = tape.outputs.tolist() if outputs is None else outputs
    return [0.0 if tan[s] is None else _materialize(tan[s]) for s in outputs]


# --- derived tapes --------------------------------------------------------------------------------

def _new_tape(n_inputs, build) -> Tape:
    """Record ``build(inputs) -> outputs`` into a fresh trace recorder (input values are
    placeholders: the structure of what is recorded never depends on them)."""
    rec = Recorder(trace=True)
    with recording(rec):
        xs = [new_input(rec, 0.0) for _ in range(n_inputs)]
        outs = build(xs)
        slots = [output_slot(rec, o, f"output {i}") for i, o in enumerate(outs)]
    return to_tape(rec, list(range(n_inputs)), slots)


def _copy_guards(tape, vals):
    """Record ``tape``'s guards on the replayed slots directly (values are placeholders here)."""
    for slot, value in zip(tape.guards.tolist(), tape.guard_values.tolist()):
        v = vals[slot]
        if type(v) is Variable:
            v._rec.guards[v._slot] = value


def grad_tape(tape: Tape, output: int = 0, wrt=None, value: bool = True) -> Tape:
    """The Tape of ``(value, gradient)`` of ``tape``'s output ``output`` with respect to the input
    positions ``wrt`` (default all): same inputs, outputs value (if ``value``) then one gradient
    entry per position. ``tape``'s guards are kept."""
    if not len(tape.outputs):
        raise ValueError("grad_tape: the tape has no outputs")

    def build(xs):
        vals = replay(tape, xs, record_guards=False)
        _copy_guards(tape, vals)
        grads = reverse(tape, vals, output, wrt)
        return ([vals[int(tape.outputs[output])]] if value else []) + grads

    return _new_tape(len(tape.inputs), build)


def jvp_tape(tape: Tape, wrt=None) -> Tape:
    """The Tape of forward mode: inputs are ``tape``'s inputs then one tangent per position in
    ``wrt`` (default all); outputs are ``tape``'s outputs then their tangents."""
    wrt = list(range(len(tape.inputs))) if wrt is None else list(wrt)
    n_in = len(tape.inputs)

    def build(xs):
        vals = replay(tape, xs[:n_in], record_guards=False)
        _copy_guards(tape, vals)
        tangents = [None] * n_in
        for i, t in zip(wrt, xs[n_in:]):
            tangents[i] = t
        return [vals[s] for s in tape.outputs.tolist()] + tangent(tape, vals, tangents)

    return _new_tape(n_in + len(wrt), build)


def with_outputs(tape: Tape, outputs) -> Tape:
    """``tape`` returning the given slots instead of its outputs."""
    return Tape(tape.op, tape.a, tape.b, tape.c, tape.lit, tape.inputs, outputs, tape.guards, tape.guard_values)




# --- eager backward(create_graph=True) -----------------------------------------------------------

def backward_create_graph(v: Variable, seed: float) -> None:
    """Accumulate d(v)/d(leaf) * seed into each leaf's ``.grad`` as Variables that record: the
    recorders ``v`` came from are replayed (oldest first) and swept symbolically (newest first),
    recording into the current eager recorder, so the gradients can be differentiated again."""
    chain, stack = {}, [(v._rec, v._up)]  # serial -> (recorder, its imports that v depends on)
    while stack:
        rec, up = stack.pop()
        needed = chain.setdefault(rec.serial, (rec, {}))[1]
        for k, var in imported_values(up).items():
            if k not in needed:
                needed[k] = var
                stack.append((var._rec, var._up))
    order = [chain[s] for s in sorted(chain)]
    tapes, sources = {}, {}
    for rec, needed in order:
        rec.seal()  # new ops go to a fresh recorder, never into the buffers read here
        arrays = [np.array(x) for x in rec.arrays()]
        inputs = np.flatnonzero(arrays[0] == INPUT)
        tapes[rec.serial] = Tape(*arrays, inputs, [])
        # what each input stands for: a leaf, an import v depends on, or else its recorded value
        leaves = dict(rec.imports)
        sources[rec.serial] = [leaves.get(k, needed.get(k)) for k in inputs.tolist()]
    replayed = {}
    for rec, _ in order:
        tape = tapes[rec.serial]
        inputs = [float(tape.lit[k]) if var is None else var if var._leaf else replayed[var._rec.serial][var._slot]
                  for k, var in zip(tape.inputs.tolist(), sources[rec.serial])]
        replayed[rec.serial] = replay(tape, inputs, record_guards=False)
    pending = {v._rec.serial: {v._slot: seed}}
    for rec, _ in reversed(order):
        seeds = pending.pop(rec.serial, None)
        if not seeds:
            continue
        grads = reverse_seeded(tapes[rec.serial], replayed[rec.serial], seeds)
        for var, g in zip(sources[rec.serial], grads):
            if var is None or (type(g) is float and g == 0.0):
                continue
            if var._leaf:
                if var._requires_grad:
                    var._grad = g if var._grad is None else var._grad + g
            else:
                into = pending.setdefault(var._rec.serial, {})
                into[var._slot] = _add(into.get(var._slot), g)


__all__ = ["replay", "reverse", "reverse_seeded", "tangent", "grad_tape", "jvp_tape", "scaled_rule",
           "with_outputs", "backward_create_graph"]
