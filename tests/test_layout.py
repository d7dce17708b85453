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


def _private_imports(path: Path) -> list[str]:
    """``module._name`` for each underscore name ``path`` imports from another project module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and not node.level
            and node.module.split(".")[0] in PACKAGES
        ):
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_imports_another_modules_private_names(package: str) -> None:
    """A name another module needs is public where it lives (credit movements: queries.ledger)."""
    private = {
        str(path.relative_to(ROOT)): _private_imports(path)
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {path: names for path, names in private.items() if names} == {}
