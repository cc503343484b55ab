"""The direction of imports: cli -> server -> surfaces -> pipeline -> engines.api; protocol below all."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "aimi"

# package -> the aimi packages it must never import
FORBIDDEN = {
    "protocol": {"engines", "pipeline", "surfaces", "server", "cli", "deployments", "auth", "settings"},
    "engines": {"pipeline", "surfaces", "server", "cli", "deployments", "auth", "protocol"},
    "pipeline": {"surfaces", "server", "cli"},
    "surfaces": {"server", "cli"},
    "server": {"cli"},
    "control": {"server", "cli", "surfaces", "pipeline"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aimi."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("aimi.")}
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_downwards(package: str) -> None:
    offending = {
        str(path.relative_to(SRC)): sorted(_imports(path) & FORBIDDEN[package])
        for path in (SRC / package).rglob("*.py")
        if _imports(path) & FORBIDDEN[package]
    }
    assert offending == {}
