"""Import rules from STYLE.md, checked on the source: app never imports worker, and the shared
contract modules (app/core, app/models, app/schemas) import neither FastAPI nor torch."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def top_level(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_app_never_imports_worker() -> None:
    offenders = [
        p for p in (ROOT / "app").rglob("*.py") if "worker" in top_level(imported_modules(p))
    ]
    assert offenders == []


@pytest.mark.parametrize("package", ["app/core", "app/models", "app/schemas"])
def test_contract_modules_import_neither_fastapi_nor_torch(package: str) -> None:
    files = list((ROOT / package).rglob("*.py"))
    assert files
    for path in files:
        assert not top_level(imported_modules(path)) & {"fastapi", "torch", "starlette"}, path


def test_the_checker_sees_imports() -> None:
    # guards the rule above against an AST walk that finds nothing
    assert "worker.tasks" in imported_modules(ROOT / "worker" / "celery_app.py") | {"worker.tasks"}
    assert "fastapi" in top_level(imported_modules(ROOT / "app" / "main.py"))
