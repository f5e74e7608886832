"""The package's layers point one way (docs/design.md): each module imports
only modules of its own layer or of lower ones, no import cycles, and no ``_private`` name of another
module. Read from the source with ast, function-level imports included."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "scalargrad"
# Lowest first; a module's layer is its subpackage (or the top-level file's own entry). The public
# API (scalargrad/__init__.py) sits below the benchmark harness, which uses it as a user does.
LAYERS = ["config", "core", "jit", "record", "transforms", "viz", "__init__", "bench", "__main__"]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1] if len(parts) > 1 else "__init__")


def imports(module: str, path: Path, known) -> list[tuple[str, str]]:
    """(imported module, name) for every import of a scalargrad module in ``path``."""
    found = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub, "") if sub in known else (target, alias.name))
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return [(m, n) for m, n in found if m in known]


def test_imports_point_down_the_layers_with_no_cycles_or_private_names():
    known = modules()
    assert len(known) > 30 and all(layer(m) >= 0 for m in known)
    upward, private, edges = [], [], {m: set() for m in known}
    for module, path in known.items():
        for target, name in imports(module, path, known):
            if target.startswith(module + ".") and path.name == "__init__.py":
                continue  # a package importing its own submodules
            edges[module].add(target)
            if layer(target) > layer(module):
                upward.append(f"{module} imports {target}")
            if name.startswith("_") and not name.startswith("__") and target != module:
                private.append(f"{module} imports {name} from {target}")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)
    assert not private, "private names imported across modules:\n" + "\n".join(private)
    cycles = []
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check above can fail: the same reading flags jit importing record."""
    known = {"scalargrad.jit.x": tmp_path / "x.py", "scalargrad.record.y": tmp_path / "y.py"}
    known["scalargrad.jit.x"].write_text("from ..record.y import _hidden\n")
    found = imports("scalargrad.jit.x", known["scalargrad.jit.x"], known)
    assert found == [("scalargrad.record.y", "_hidden")]
    assert layer("scalargrad.record.y") > layer("scalargrad.jit.x")
