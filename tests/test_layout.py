"""The package layout's one rule: dependencies between top-level packages point one way
(analysis -> bench -> memory_policies), so there is no import cycle between them."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("memory_policies", "bench", "analysis")


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages a module imports (at any depth in the file, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(PACKAGES)
    return found


def package_graph() -> dict[str, set[str]]:
    graph = {package: set() for package in PACKAGES}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            graph[package] |= imported_packages(path) - {package}
    return graph


def test_imports_find_cross_package_edges(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom bench.runs import outputs\ndef f():\n    import analysis.load\nfrom . import x\n")
    assert imported_packages(module) == {"bench", "analysis"}


def test_no_import_cycle_between_top_level_packages():
    graph = package_graph()
    assert graph["memory_policies"] == set(), graph
    assert graph["bench"] <= {"memory_policies"}, f"bench must not import {graph['bench'] - {'memory_policies'}}"
    assert "analysis" not in graph["bench"] | graph["memory_policies"]
