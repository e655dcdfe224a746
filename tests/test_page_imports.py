"""Pages call core, never the store: import-linter checks views/ and ui/ (pyproject.toml); it
cannot take app.py, a module and not a package, as a root, so app.py is checked here."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, `from a import b` counted as both a and a.b."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_app_does_not_import_the_store():
    found = imported_modules(REPO / "app.py")
    assert "core" in found or any(n.startswith("core.") for n in found)  # the check sees app's imports
    assert not [n for n in found if n == "core.store" or n.startswith("core.store.")]


def test_the_check_sees_a_store_import(tmp_path):
    page = tmp_path / "page.py"
    page.write_text("from core import store\nimport core.store.records\n")
    assert {"core.store", "core.store.records"} <= imported_modules(page)
