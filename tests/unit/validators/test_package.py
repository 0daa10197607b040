"""The package is runyard's own, and pure: no service code, no CLI, no network."""

from __future__ import annotations

import ast
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

import validators

PACKAGE_DIR = Path(validators.__file__).parent
REPO = Path(__file__).parents[3]
ALLOWED_IMPORTS = {
    "__future__", "collections", "dataclasses", "difflib", "enum", "json", "os", "pathlib",
    "re", "string", "types", "typing", "unicodedata", "validators",
}  # fmt: skip


def test_validators_is_runyards_package_not_the_pypi_one() -> None:
    assert PACKAGE_DIR == REPO / "validators"
    with pytest.raises(PackageNotFoundError):
        distribution("validators")  # the unrelated PyPI package would shadow this one


@pytest.mark.parametrize("module", sorted(PACKAGE_DIR.rglob("*.py")), ids=lambda p: p.name)
def test_modules_import_only_the_standard_library(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS


def test_the_public_interface() -> None:
    assert sorted(validators.__all__) == [
        "CommandError",
        "CommandPolicy",
        "KindPolicy",
        "ParsedCommand",
        "ValidationResult",
        "load_policy",
        "validate_command",
    ]
