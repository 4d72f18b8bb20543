"""The house rules of imports: packages import only downward, the simulator stays in its room, no cycles.

Every ``import`` statement is read from the source (lazy ones inside functions included), so a rule
broken in a rarely run branch is caught as surely as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("features", "training", "experiments", "serving", "userops", "simulator")

ALLOWED: dict[str, set[str]] = {
    "features": set(),
    "experiments": set(),
    "training": {"features"},
    "serving": {"training", "features", "experiments"},
    "simulator": {"features", "training"},
    "userops": {"serving", "training", "features", "experiments", "simulator"},
}
"""What each package may import of ours (DESIGN.md: imports only run downward)."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module of ours that ``path`` imports, as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pkg import mod`` may name a submodule: keep both spellings, the graph resolves them
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in OURS)
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (only names that are real modules of the tree)."""
    modules = {_module_name(p): p for package in OURS for p in _sources(package)}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()
    }


def test_the_tree_has_every_package() -> None:
    for package in OURS:
        assert (ROOT / package / "__init__.py").exists(), package


@pytest.mark.parametrize("package", OURS)
def test_a_package_imports_only_what_the_design_allows(package: str) -> None:
    broken = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _sources(package)
        for name in sorted(imports_of(path))
        if name.split(".")[0] not in ALLOWED[package] | {package}
    ]
    assert not broken, "\n".join(broken)


def _production() -> list[Path]:
    return [p for package in ("features", "training", "experiments", "serving") for p in _sources(package)]


def test_only_tests_bench_and_the_front_door_import_the_simulator() -> None:
    readers = [p for p in _production() if any(n.split(".")[0] == "simulator" for n in imports_of(p))]
    assert not readers
    assert any(n.startswith("simulator") for p in _sources("userops") for n in imports_of(p))


def test_production_code_never_reads_the_simulators_truth() -> None:
    readers = [str(p.relative_to(ROOT)) for p in _production() if '"truth"' in p.read_text()]
    assert not readers


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or ``None``."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_module_imports_itself_through_others() -> None:
    edges = graph()
    # ``from training import churn`` also names the top-level package, whose __init__ imports nothing
    for name in list(edges):
        edges[name] = {m for m in edges[name] if not name.startswith(f"{m}.") or m not in OURS}
    assert find_cycle(edges) is None
