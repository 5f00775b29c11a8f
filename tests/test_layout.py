"""The package's layout rules, checked on the source: no import circles, no private
names imported across modules, no engine name outside the engines' registry."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "lmsbayes"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, module: str, modules: dict[str, Path]):
    """(imported module, name, line) of every lmsbayes import, at any depth; TYPE_CHECKING blocks
    aside."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]))
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".")
                    base = base[: len(base) - child.level + (1 if is_package else 0)]
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module or ""
                if name.startswith("lmsbayes"):
                    for alias in child.names:
                        target = f"{name}.{alias.name}"
                        found.append(
                            (target if target in modules else name, alias.name, child.lineno)
                        )
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("lmsbayes"):
                        found.append((alias.name, "", child.lineno))
            visit(child)

    visit(tree)
    return found


def test_no_import_circles_not_even_inside_functions():
    modules = _modules()
    graph = {
        m: {t for t, _, _ in _imports(p, m, modules) if t in modules and t != m}
        for m, p in modules.items()
    }
    index, low, stack, on, circles = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for v in modules:
        if v not in index:
            strong(v)
    assert circles == []


def test_no_private_name_is_imported_across_modules():
    modules = _modules()
    private = [
        f"{p.relative_to(SRC)}:{line} imports {name} from {target}"
        for m, p in modules.items()
        for target, name, line in _imports(p, m, modules)
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_engine_names_live_in_the_registry_the_spec_and_the_command_line():
    from lmsbayes.engines import ENGINE_NAMES

    allowed = {PACKAGE / "engines", PACKAGE / "cli", PACKAGE / "spec.py"}
    # data.py: "exact" is also the Clopper-Pearson scale of a reported CI (CI_SCALES)
    other_meaning = {(PACKAGE / "data.py", "exact")}
    found = []
    for p in sorted(PACKAGE.rglob("*.py")):
        if any(p == a or a in p.parents for a in allowed):
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and node.value in ENGINE_NAMES
                and (p, node.value) not in other_meaning
            ):
                found.append(f"{p.relative_to(SRC)}:{node.lineno} {node.value!r}")
    assert found == []
