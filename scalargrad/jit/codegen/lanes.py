"""Lane code: a tape's generated per-point functions rewritten to run POINTS_PER_LOOP points at once.

text.py writes ``evaluate(x, out)`` and ``value_and_grad(x, grad)`` for one point. For a batch,
``lane_function`` rewrites either (its syntax tree) so that every statement runs for POINTS_PER_LOOP
points (``LANES`` in generated code) in an innermost ``for lane in range(nlanes)`` loop, which LLVM
vectorises across points (4 doubles per AVX2 instruction): the per-point code's loops over copies
stay outside, each run of straight statements between them becomes one lane loop. Every per-point
array (``x``, ``grad``/``out`` and the rolled code's ``V``/``A`` buffers) becomes rows of one flat
buffer, element ``(row, lane)`` at ``buf[row * LANES + lane]``; a variable read outside the lane
loop that wrote it (a loop-carried sum, a value the reverse sweep reads) gets a row too, read into a
scalar at the start of each lane loop that uses it and written back at its end; the others stay
scalars. With one array and rows a compile-time multiple of LANES apart, LLVM sees that no lane's
store can reach another lane's operands and vectorises without run-time overlap checks (which, with
the gradient's rows in a separate array, it hoisted out of the copy loop and always failed).

Each lane computes exactly the per-point expressions in the per-point order, so results are
bit-identical to ``value_and_grad``'s. A guard that fails no longer returns early: the lane's ``ok``
is false and its results are discarded (vmap recomputes such points one by one).

``batch_functions`` writes the parallel drivers: each worker copies LANES rows of X into its buffer
(transposed, 4 × 4 blocks at a time with vector shuffles, ``intrinsics.transpose4``: copied one
element at a time, the transposes took about 110 ns a point of Rosenbrock-100, as much as the lane
code's 163), runs the lane function and copies the results out. Tapes whose buffer rows would not
fit in a core's cache (``MAX_ROWS``, e.g. the MLP's 21,000 rows of V and A) have no lane code: their
batches call the per-point function at each point (points.py).
"""
from __future__ import annotations

import ast

# Points per lane loop, LANES in generated code: Rosenbrock's forward loop took 38, 55 and 143 ns a
# point at 32, 16 and 8.
POINTS_PER_LOOP = 32
MAX_ROWS = 2048  # rows × POINTS_PER_LOOP × 8 bytes = 512 KiB: about a core's L2
_BUFFER, _COUNT, _LANE, _VALUES, _OKS = "buf", "nlanes", "lane", "values", "oks"


class Unsupported(ValueError):
    """The function uses a construct the rewrite does not handle (the caller keeps per-point code)."""


def _names_in(node) -> set:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _walk(stmts: list):
    """Every node of a list of statements."""
    for stmt in stmts:
        yield from ast.walk(stmt)


def _index_names(body, loop_targets: set) -> set:
    """Loop variables and names computed from them alone (``t = to * 16 + ti``): the copy indices,
    the same for every lane."""
    index = set(loop_targets)
    changed = True
    while changed:
        changed = False
        for node in _walk(body):
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id not in index and _is_index_expr(node.value, index)):
                index.add(node.targets[0].id)
                changed = True
    return index


def _is_index_expr(node, index: set) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and not isinstance(node.value, bool)
    if isinstance(node, ast.Name):
        return node.id in index
    if isinstance(node, ast.BinOp):
        return _is_index_expr(node.left, index) and _is_index_expr(node.right, index)
    return False


class _Layout:
    """Rows of the lane buffer: row 0 is padding, then the per-point arrays, then variables."""

    def __init__(self, arrays: dict):
        self.base, self.rows = {}, 1
        for name, size in arrays.items():
            self.base[name] = self.rows
            self.rows += size
        self.variable: dict[str, int] = {}

    def add_variable(self, name: str) -> None:
        self.variable[name] = self.rows
        self.rows += 1


def _element(row_expr, ctx) -> ast.Subscript:
    """``buf[row_expr * LANES + lane]``, read (ctx ast.Load()) or written (ast.Store())."""
    index = ast.BinOp(ast.BinOp(row_expr, ast.Mult(), ast.Name("LANES", ast.Load())), ast.Add(),
                      ast.Name(_LANE, ast.Load()))
    return ast.Subscript(ast.Name(_BUFFER, ast.Load()), index, ctx)


def _lane_loop(body: list) -> ast.For:
    return ast.For(ast.Name(_LANE, ast.Store()),
                   ast.Call(ast.Name("range", ast.Load()), [ast.Name(_COUNT, ast.Load())], []),
                   body, [])


class _Rewrite(ast.NodeTransformer):
    """Array elements of one lane statement as buffer elements."""

    def __init__(self, layout: _Layout, arrays: dict):
        self.layout, self.arrays = layout, arrays  # arrays: name -> its length (rows)

    def element(self, name: str, ctx) -> ast.Subscript:
        """Where variable ``name`` (a row variable, or ``ok``) lives for this lane."""
        if name == "ok":
            return ast.Subscript(ast.Name(_OKS, ast.Load()), ast.Name(_LANE, ast.Load()), ctx)
        return _element(ast.Constant(self.layout.variable[name]), ctx)

    def visit_Subscript(self, node):
        name = node.value.id if isinstance(node.value, ast.Name) else None
        if name not in self.layout.base:
            return self.generic_visit(node)
        index = self.visit(node.slice)
        return _element(ast.BinOp(ast.Constant(self.layout.base[name]), ast.Add(), index), node.ctx)

    def visit_Attribute(self, node):  # grad.shape[0] in ``for i in range(grad.shape[0])``
        if isinstance(node.value, ast.Name) and node.value.id in self.arrays and node.attr == "shape":
            return ast.Tuple([ast.Constant(self.arrays[node.value.id])], ast.Load())
        return self.generic_visit(node)


def _strip_returns(body: list, kind: str) -> list:
    """The body with its returns turned into stores to ``values``/``oks`` (no early exit: a lane
    whose guards fail computes on and is discarded)."""
    sets_ok = any(isinstance(n, ast.Name) and n.id == "ok" and isinstance(n.ctx, ast.Store)
                  for n in _walk(body))

    def ok_store(value):
        return ast.Assign([ast.Name("ok", ast.Store())], value)

    out = []
    for stmt in body:
        if isinstance(stmt, ast.If) and len(stmt.body) == 1 and isinstance(stmt.body[0], ast.Return) and not stmt.orelse:
            test = stmt.test  # ``if not (guards): return value, False``
            if not (isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)):
                raise Unsupported("an early return that is not a guard test")
            if not (isinstance(test.operand, ast.Name) and test.operand.id == "ok"):
                out.append(ok_store(test.operand))
                sets_ok = True
            continue
        if isinstance(stmt, ast.Return):
            value = stmt.value
            if kind == "evaluate":
                if not (isinstance(value, ast.Name) and value.id == "ok"):
                    out.append(ok_store(value))
                    sets_ok = True
            else:
                result, good = value.elts
                out.append(ast.Assign([ast.Subscript(ast.Name(_VALUES, ast.Load()), ast.Name(_LANE, ast.Load()),
                                                     ast.Store())], result))
                if not sets_ok or not (isinstance(good, ast.Constant) and good.value is True):
                    out.append(ok_store(good))
            continue
        out.append(stmt)
    return out


def _occurrences(stmts: list) -> list:
    """(name, is_store, nested) for every variable in ``stmts`` in evaluation order (an
    assignment's value before its target); ``nested``: inside an if."""
    found = []

    def expr(node, nested):
        for n in ast.walk(node):
            if isinstance(n, ast.Name):
                found.append((n.id, isinstance(n.ctx, ast.Store), nested))

    def stmt(s, nested):
        if isinstance(s, ast.Assign):
            expr(s.value, nested)
            for target in s.targets:
                expr(target, nested)
        elif isinstance(s, ast.If):
            expr(s.test, nested)
            for inner in s.body + s.orelse:
                stmt(inner, True)
        elif isinstance(s, ast.Expr):
            expr(s.value, nested)
        else:
            raise Unsupported(f"statement {type(s).__name__} in a lane loop")
    for s in stmts:
        stmt(s, False)
    return found


def _regions(body: list, index: set, out: list) -> list:
    """The body with each run of lane statements replaced by a ``_Region`` (collected in ``out``);
    loops and index assignments stay."""
    result, run = [], []

    def close():
        if run:
            region = _Region(list(run))
            out.append(region)
            result.append(region)
            run.clear()

    for stmt in body:
        if isinstance(stmt, ast.For):
            if not (isinstance(stmt.target, ast.Name) and _names_in(stmt.iter) <= index | {"range", "grad", "out", "x"}):
                raise Unsupported("a loop over something other than copy indices")
            close()
            stmt.body = _regions(stmt.body, index, out)
            result.append(stmt)
        elif isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id in index:
            close()
            result.append(stmt)
        else:
            if any(isinstance(n, (ast.For, ast.While, ast.Return)) for n in ast.walk(stmt)):
                raise Unsupported(f"a {type(stmt).__name__} holding a loop or return (the rewrite handles loops "
                                  "over copies and straight statements)")
            run.append(stmt)
    close()
    return result


class _Region:
    """A run of lane statements, written as one lane loop; ``occurrences``: ``_occurrences`` of
    them (read by the row assignment and by ``_promoted``)."""

    def __init__(self, stmts):
        self.stmts = stmts
        self.occurrences = _occurrences(stmts)


def _emit(body: list, rewrite: _Rewrite) -> list:
    result = []
    for item in body:
        if isinstance(item, _Region):
            result.append(_lane_loop(_promoted(item, rewrite)))
        else:
            if isinstance(item, ast.For):
                item.iter = rewrite.visit(item.iter)
                item.body = _emit(item.body, rewrite)
            result.append(item)
    return result


def _promoted(region: _Region, rewrite: _Rewrite) -> list:
    """A region's statements, its row variables (and ``ok``) read into scalars before them where
    they are read before written, and written back after them where they are written. Loads and
    stores of a fixed row between the moving rows of the copy loops make LLVM give up on the loop
    ("unsafe indirect dependence"); at the ends of the loop body they do not."""
    first: dict[str, bool] = {}  # name -> whether its first occurrence writes it, not under an if
    stored = set()
    for name, store, nested in region.occurrences:
        if name == "ok" or name in rewrite.layout.variable:
            first.setdefault(name, store and not nested)
            if store:
                stored.add(name)
    loads = [ast.Assign([ast.Name(name, ast.Store())], rewrite.element(name, ast.Load()))
             for name, written in first.items() if not written]
    stores = [ast.Assign([rewrite.element(name, ast.Store())], ast.Name(name, ast.Load()))
              for name in first if name in stored]
    return loads + [rewrite.visit(s) for s in region.stmts] + stores


def lane_function(kind: str, body_lines: list, n_inputs: int, n_outputs: int) -> tuple[str, int]:
    """(source of ``{kind}_lanes(buf, nlanes, values, oks)``, rows of its buffer) for the per-point
    function ``kind`` ("value_and_grad" or "evaluate") whose body is ``body_lines`` (straight.py's
    or rolled.py's lines, indented by 4). Inputs are rows 1 .. n_inputs, then the gradient
    (value_and_grad) or the outputs (evaluate). Raises Unsupported for a construct it does not rewrite."""
    second = "grad" if kind == "value_and_grad" else "out"
    tree = ast.parse(f"def f(x, {second}):\n" + "\n".join(body_lines))
    body = tree.body[0].body
    used = _names_in(tree) & {_BUFFER, _COUNT, _LANE, _VALUES, _OKS, "LANES"}
    if used:
        raise Unsupported(f"the generated code already uses the name(s) {sorted(used)}")
    arrays = {"x": n_inputs, second: n_inputs if kind == "value_and_grad" else n_outputs}
    kept = []
    for stmt in body:  # the rolled code's buffers: V = np.empty(n), A = np.zeros(n)
        if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call)
                and isinstance(stmt.value.func, ast.Attribute) and stmt.value.func.attr in ("empty", "zeros")):
            name, size = stmt.targets[0].id, stmt.value.args[0].value
            arrays[name] = size
            if stmt.value.func.attr == "zeros":
                kept.append(ast.parse(f"for i_ in range({size}):\n    {name}[i_] = 0.0").body[0])
            continue
        kept.append(stmt)
    layout = _Layout(arrays)
    if layout.rows > MAX_ROWS:
        raise Unsupported(f"{layout.rows} buffer rows, more than MAX_ROWS = {MAX_ROWS}")
    body = _strip_returns(kept, kind)
    loop_targets = {n.target.id for n in _walk(body)
                    if isinstance(n, ast.For) and isinstance(n.target, ast.Name)}
    index = _index_names(body, loop_targets)
    regions: list[_Region] = []
    body = _regions(body, index, regions)

    # A variable stays a scalar when one region holds all of it and writes it (not under an if)
    # before any read; any other gets a row.
    regions_of: dict[str, set] = {}
    scalar: dict[str, bool] = {}
    for number, region in enumerate(regions):
        for name, store, nested in region.occurrences:
            if name in index or name in arrays or name == "ok":
                continue
            if number not in regions_of.setdefault(name, set()):  # its first occurrence in this region
                regions_of[name].add(number)
                scalar[name] = len(regions_of[name]) == 1 and store and not nested
    assigned = {name for region in regions for name, store, _ in region.occurrences if store}  # not constants, builtins
    for name in sorted(regions_of):
        if not scalar[name] and name in assigned:
            layout.add_variable(name)
    if layout.rows > MAX_ROWS:
        raise Unsupported(f"{layout.rows} buffer rows, more than MAX_ROWS = {MAX_ROWS}")
    new_body = _emit(body, _Rewrite(layout, arrays))
    params = (_BUFFER, _COUNT, _VALUES, _OKS) if kind == "value_and_grad" else (_BUFFER, _COUNT, _OKS)
    fn = ast.FunctionDef(f"{kind}_lanes", ast.arguments([], [ast.arg(a) for a in params], None, [], [], None, []),
                         new_body or [ast.Pass()], [ast.Name("njit", ast.Load())], None)
    text = ast.unparse(ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[])))
    return text, layout.rows


def _rest(columns: int, copy: str) -> list:
    """Driver lines copying what the 4 × 4 blocks leave: the last count % 4 lanes of the block
    columns, then every lane of the last columns % 4 columns."""
    blocked = columns - columns % 4
    return [f"        for i in range({blocked}):", "            for lane in range(whole, count):", f"                {copy}",
            f"        for i in range({blocked}, {columns}):", "            for lane in range(count):", f"                {copy}"]


def batch_functions(n_inputs: int, n_outputs: int, evaluate_rows: int, value_and_grad_rows: int) -> list:
    """Lines of ``evaluate_batch(X, out, ok)`` and ``value_and_grad_batch(X, values, G, ok)``: LANES
    rows of X at a time through the lane functions, the groups in parallel (prange); the copies in
    and out transposed 4 × 4 blocks at a time (``transpose4``)."""
    def driver(kind, params, rows, results, copy_out):
        m, array = copy_out
        first = 1 + n_inputs
        return ["", "", "@njit(parallel=True)", f"def {kind}_batch(X, {params}):",
                f'    """{kind}_lanes on LANES rows of X at a time, in parallel."""',
                "    points = X.shape[0]",
                "    for group in prange((points + LANES - 1) // LANES):",
                "        start = group * LANES",
                "        count = min(LANES, points - start)",
                "        whole = count - count % 4",
                f"        buf = np.empty({rows} * LANES)",
                "        for lane in range(0, whole, 4):",
                f"            for i in range(0, {n_inputs - n_inputs % 4}, 4):",
                f"                transpose4(X, (start + lane) * {n_inputs} + i, {n_inputs}, buf, (1 + i) * LANES + lane, LANES)",
                *_rest(n_inputs, "buf[(1 + i) * LANES + lane] = X[start + lane, i]"),
                f"        {kind}_lanes(buf, count, {results})",
                "        for lane in range(0, whole, 4):",
                f"            for i in range(0, {m - m % 4}, 4):",
                f"                transpose4(buf, ({first} + i) * LANES + lane, LANES, {array}, (start + lane) * {m} + i, {m})",
                *_rest(m, f"{array}[start + lane, i] = buf[({first} + i) * LANES + lane]")]
    return ([f"LANES = {POINTS_PER_LOOP}"]
            + driver("evaluate", "out, ok", evaluate_rows, "ok[start:start + count]", (n_outputs, "out"))
            + driver("value_and_grad", "values, G, ok", value_and_grad_rows,
                     "values[start:start + count], ok[start:start + count]", (n_inputs, "G")))
