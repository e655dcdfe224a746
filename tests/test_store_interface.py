"""The store's declared interface (core/store/interface.py) is exactly what production code calls
on a store: the DuckDB store satisfies it, production calls nothing else on a store object and
uses every member, the implementation has no public member beyond it, and production names the
interface, never the DuckDB class.

Production is core/ (but the store package itself), ui/, views/, app.py, deploy/ and bench/. A
store object there is the result of a call that returns one (open_store, open_file, any function
annotated to return a Store), a name bound to such a result, a parameter annotated with Store,
or an unannotated parameter named `store`."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import get_type_hints

import pytest

from core.store import DuckDBStore, Store, open_file, open_store

REPO = Path(__file__).resolve().parent.parent
PRODUCTION = ["core", "ui", "views", "app.py", "deploy", "bench"]
IMPLEMENTATION = REPO / "core" / "store"
OPENERS = {"open_store", "open_file"}


def production_files() -> list[Path]:
    files = []
    for name in PRODUCTION:
        path = REPO / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [f for f in files if IMPLEMENTATION not in f.parents]


def members(protocol: type) -> set[str]:
    return {n for n in vars(protocol) if not n.startswith("_")} | set(protocol.__annotations__)


def _names_store(annotation: ast.expr | None) -> bool:
    return annotation is not None and any(
        isinstance(n, ast.Name | ast.Attribute) and (getattr(n, "id", None) or getattr(n, "attr", None)) == "Store"
        for n in ast.walk(annotation))


class StoreCalls:
    """The attributes one module reads on store objects, each with the line it is read on."""

    def __init__(self, tree: ast.Module):
        self.openers = OPENERS | {f.name for f in ast.walk(tree)
                                  if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and _names_store(f.returns)}
        self.found: dict[str, int] = {}
        self._scope(tree, tree.body, set())

    def _is_store(self, node: ast.expr, names: set[str]) -> bool:
        if isinstance(node, ast.Call):
            func = node.func
            return (func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)) in self.openers
        if isinstance(node, ast.Name):
            return node.id in names
        if isinstance(node, ast.BoolOp):  # store or open_store(...)
            return any(self._is_store(v, names) for v in node.values)
        if isinstance(node, ast.IfExp):
            return self._is_store(node.body, names) or self._is_store(node.orelse, names)
        return False

    def _scope(self, node: ast.AST, body: list[ast.stmt], outer: set[str]) -> None:
        names = set(outer)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is None:
                    continue
                if _names_store(arg.annotation) or (arg.arg == "store" and arg.annotation is None):
                    names.add(arg.arg)
                else:
                    names.discard(arg.arg)  # a parameter shadows an outer store
        own = list(_own_nodes(body))
        for _ in range(3):  # a name bound from a name bound from a store, ...
            for n in own:
                if isinstance(n, ast.Assign) and self._is_store(n.value, names):
                    names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
                elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and (
                        _names_store(n.annotation) or (n.value is not None and self._is_store(n.value, names))):
                    names.add(n.target.id)
                elif isinstance(n, ast.Import | ast.ImportFrom):
                    names -= {a.asname or a.name.split(".")[0] for a in n.names}
        for n in own:
            if isinstance(n, ast.Attribute) and self._is_store(n.value, names) and not n.attr.startswith("__"):
                self.found.setdefault(n.attr, n.lineno)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                self._scope(n, n.body, names)
            elif isinstance(n, ast.Lambda):
                self._scope(n, [ast.Expr(n.body)], names)


def _own_nodes(body: list[ast.stmt]):
    """Every node of a scope's body, nested functions and lambdas yielded but not entered."""
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            if isinstance(node, ast.ClassDef):
                stack.extend(reversed(node.body))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def production_calls() -> dict[str, list[str]]:
    """Store attribute -> the places (file:line) production reads it."""
    calls: dict[str, list[str]] = {}
    for path in production_files():
        for attr, line in StoreCalls(ast.parse(path.read_text(), str(path))).found.items():
            calls.setdefault(attr, []).append(f"{path.relative_to(REPO)}:{line}")
    return calls


def test_duckdb_store_satisfies_the_interface(fresh_store):
    assert isinstance(fresh_store, Store)  # every member, `path` included, on the object
    assert get_type_hints(open_store)["return"] is Store
    assert get_type_hints(open_file)["return"] is Store
    other = open_file(fresh_store.path.with_name("other.duckdb"))
    try:
        assert isinstance(other, Store)
    finally:
        other.close()


def test_implementation_has_every_member_with_the_same_parameters():
    missing = {m for m in members(Store) if not hasattr(DuckDBStore, m)} - set(Store.__annotations__)
    assert missing == set(), f"declared in Store, not implemented by DuckDBStore: {sorted(missing)}"
    for name in members(Store) - set(Store.__annotations__):
        declared = inspect.signature(getattr(Store, name)).parameters
        implemented = inspect.signature(getattr(DuckDBStore, name)).parameters
        assert [(p.name, p.kind, p.default) for p in declared.values()] == \
            [(p.name, p.kind, p.default) for p in implemented.values()], name


def test_production_calls_only_members_and_every_member_is_called():
    calls = production_calls()
    assert {"append", "head", "prediction", "path", "count"} <= set(calls)  # the walk sees calls
    undeclared = {attr: places for attr, places in calls.items() if attr not in members(Store)}
    assert undeclared == {}, "production reads these on a store, but Store does not declare them"
    uncalled = members(Store) - set(calls)
    assert uncalled == set(), f"declared in Store, called by no production code: {sorted(uncalled)}"


@pytest.mark.parametrize("implementation", ["DuckDBStore", "PostgresStore"])
def test_implementation_has_no_public_member_beyond_the_interface(implementation):
    from core.store.postgres import PostgresStore

    cls = {"DuckDBStore": DuckDBStore, "PostgresStore": PostgresStore}[implementation]
    public = {n for n in dir(cls) if not n.startswith("_")} - {"url"}  # url: its own, to connect
    assert public - members(Store) == set(), "a public store method that production does not call " \
        "(tests read through tests/store_oracle.py)"
    assert members(Store) - {"path"} <= set(dir(cls)), "a member of the interface it lacks"


def test_production_names_the_interface_not_the_duckdb_class():
    named = [f"{path.relative_to(REPO)}:{n.lineno}" for path in production_files()
             for n in ast.walk(ast.parse(path.read_text()))
             if "DuckDBStore" in (getattr(n, "id", None), getattr(n, "attr", None), getattr(n, "name", None))]
    assert named == []
