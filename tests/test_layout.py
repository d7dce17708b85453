"""The packages import one way: cli -> dashboard and tooling -> queries (docs/layout.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("queries", "dashboard", "tooling", "cli")
# What each package may import of the project's own packages.
MAY_IMPORT = {
    "queries": {"queries"},
    "dashboard": {"dashboard", "queries"},
    "tooling": {"tooling", "queries"},
    "cli": {"cli", "dashboard", "tooling", "queries"},
}


def _imported(path: Path) -> set[str]:
    """The project packages ``path`` imports, at module level or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_floors_below_it(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imported(path) - MAY_IMPORT[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {path: names for path, names in wrong.items() if names} == {}
