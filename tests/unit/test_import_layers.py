"""Arrows point down: the import graph of the packages, read from the source with ``ast``.

Every import counts, including the ones inside functions and ``if TYPE_CHECKING:`` blocks: a
"lazy" import that goes back up is still a circle (it only hides it from the interpreter).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("actors", "transport", "replication", "cli", "deploy")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


MODULES = all_modules()


def _resolve(base: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return base
    anchor = current.split(".")
    anchor = anchor if is_package else anchor[:-1]
    anchor = anchor[: len(anchor) - (level - 1)]
    return ".".join([*anchor, base] if base else anchor)


def imports_of(name: str) -> set[str]:
    """The modules of this repository that module ``name`` imports (anywhere in its source)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, name, path.name == "__init__.py")
            # ``from deploy.lab import checks`` imports the module deploy.lab.checks
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            while target and target not in MODULES:  # ``import a.b.c`` -> the deepest module we have
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def top(name: str) -> str:
    return name.split(".")[0]


def edges() -> Iterator[tuple[str, str]]:
    for source, targets in GRAPH.items():
        for target in targets:
            yield source, target


def cycle_among(names: set[str]) -> list[str] | None:
    """A cycle of imports among ``names`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node] & names):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(names):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_graph_sees_the_imports() -> None:
    # the reader itself must work: a few edges that exist for sure
    assert "deploy.lab.topology" in GRAPH["deploy.lab.procs"]
    assert "deploy.lab.topology" in GRAPH["deploy.lab.faults"]
    assert "deploy.lab.checks" in GRAPH["deploy.lab.runner"]  # ``from deploy.lab import checks``
    assert "transport.messages" in GRAPH["transport.codec"]


def test_no_module_of_deploy_lab_imports_one_that_imports_it_back() -> None:
    lab = {n for n in MODULES if n.startswith("deploy.lab.")}  # the package __init__ only re-exports
    assert len(lab) >= 7, sorted(lab)
    back = sorted((a, b) for a in lab for b in GRAPH[a] & lab if a in GRAPH[b])
    assert back == [], f"pairs of deploy/lab modules importing each other: {back}"
    assert cycle_among(lab) is None, f"import circle in deploy/lab: {' -> '.join(cycle_among(lab) or [])}"


def test_deploy_lab_topology_is_the_bottom_of_the_lab() -> None:
    lab = {n for n in MODULES if n.startswith("deploy.lab")}
    assert GRAPH["deploy.lab.topology"] & lab == set()


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("transport", "actors"),
        ("transport", "cli"),
        ("transport", "deploy"),
        ("transport", "replication"),
        ("replication", "actors"),
        ("replication", "cli"),
        ("replication", "deploy"),
        ("actors", "cli"),
        ("actors", "deploy"),
        ("deploy", "cli"),
    ],
)
def test_layers_import_downwards_only(lower: str, upper: str) -> None:
    wrong = sorted(f"{a} -> {b}" for a, b in edges() if top(a) == lower and top(b) == upper)
    assert wrong == [], f"{lower}/ must not import {upper}/: {wrong}"


def test_no_import_circle_within_a_package() -> None:
    for pkg in PACKAGES:
        names = {n for n in MODULES if top(n) == pkg and n != pkg}
        found = cycle_among(names)
        assert found is None, f"import circle in {pkg}/: {' -> '.join(found or [])}"
