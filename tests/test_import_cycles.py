"""No import cycle in harness/: a newcomer can read the package bottom-up.

The graph is built with ast from every import statement, including those inside functions
(a lazy import hides a cycle from Python, not from a reader). `from pkg import submodule`
depends on the submodule only; importing a name defined in a package's __init__ depends on it.
"""
from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "harness"


def module_name(path: Path) -> str:
    parts = path.relative_to(HARNESS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in HARNESS.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                submodules = {f"{base}.{alias.name}" for alias in node.names} & files.keys()
                deps.update(submodules)
                if len(submodules) < len(node.names):
                    deps.add(base)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_in_harness():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_checker_sees_lazy_imports_and_package_names():
    graph = {"harness.a": {"harness.b"}, "harness.b": {"harness.a"}}
    assert find_cycle(graph) == ["harness.a", "harness.b", "harness.a"]
    real = import_graph()
    assert "harness.results" in real["harness.lifecycle"]  # module level
    assert "harness.runner" in real["harness.session"]  # inside a function
    assert "harness.report.cells" in real["harness.report.html"] and "harness.report" not in real["harness.report.html"]
