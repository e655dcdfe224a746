"""The store's plumbing: the connection, migrations, the append-only guards, file operations.

One process owns the file (DuckDB allows a single read-write process). Inside it, one shared
connection; every call takes its own cursor. What is DuckDB's own is in
core/store/duckdb_dialect.py. Writes are in core/store/writes.py, reads in the
query modules. Nothing another writer could change is kept in memory, except the few state reads
that say so (STATE_TTL_S).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from core.store import duckdb_dialect
from core.store.schema import (
    APPEND_ONLY,
    GENERIC_OUTCOME,
    MEASURED,
    MIGRATIONS,
    RENAMES_KEPT,
    TABLES,
    legacy_measured_column,
)


def private_files() -> None:
    """Files this process creates from now on are readable by its own user only (umask 077).

    The store, its WAL (which DuckDB deletes and recreates at every checkpoint, so a chmod would
    not last) and its backups hold patient data. Set when a store is opened, so every way in
    (the app, a command, a test) gets it; it only ever narrows the mask."""
    current = os.umask(0o077)
    os.umask(current | 0o077)


class StoreBase:
    """An open store: plumbing and writes (reads live in the query mixins). `_dialect`: the
    module of what is the database's own (duckdb_dialect for a file)."""

    _dialect = duckdb_dialect

    def __init__(self, path: Path):
        self.path = Path(path)
        private_files()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._dialect.opening_error(self.path, exc) from exc
        self._con = self._dialect.connect(self.path)
        for own in self._dialect.own_files(self.path):
            if own.exists():  # a store made before files were private: make it private now
                os.chmod(own, 0o600)
        self._setup()

    def _setup(self) -> None:
        """The state every store object keeps, then its schema brought up to date."""
        # Serialises this object's own writes (fewer retries); correctness does not rest on it:
        # every append reads the head inside its transaction, and two appends on one head
        # conflict on the entry's seq (see core/store/writes.py).
        self._lock = threading.RLock()
        self._cached: dict[str, tuple[float, Any]] = {}  # state reads, for STATE_TTL_S
        self._read_with_head = threading.local()  # an append's fresh state reads, for its precondition
        self._head_hint = 0  # a seq the chain has reached (it only grows): where the head read starts
        # ((seq, entry hash), state) after this object's last write, or None: core/store/writes.py
        self._known_head: tuple | None = None
        self._write_cursor: duckdb_dialect.Connection | None = None  # the appends' own, under _lock
        self._parsed: dict = {}  # the appends' statements, parsed once (duckdb_dialect.insert)
        self._migrate()
        self._guard()
        self._renamed = self._renames()

    # ---- plumbing ---------------------------------------------------------------------

    def _cursor(self) -> duckdb_dialect.Connection:
        return self._con.cursor()

    def _writer(self) -> duckdb_dialect.Connection:
        """The cursor of the appends (taken under _lock, so one at a time)."""
        if self._write_cursor is None:
            self._write_cursor = self._con.cursor()
        return self._write_cursor

    def _one(self, sql: str, params: list | None = None) -> tuple | None:
        return self._cursor().execute(sql, params or []).fetchone()

    def _all(self, sql: str, params: list | None = None) -> list[tuple]:
        return self._cursor().execute(sql, params or []).fetchall()

    def _record(self, sql: str, params: list | None = None) -> dict | None:
        """The first row of a query as a dict of column name to value, or None."""
        cur = self._cursor().execute(sql, params or [])
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def _frame(self, sql: str, params: list | None = None) -> pd.DataFrame:
        return self._dialect.frame(self._cursor(), sql, params or [])

    def _migrate(self) -> None:
        cur = self._cursor()
        cur.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)""")
        done = {r[0] for r in cur.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, name, sql in MIGRATIONS:
            if version in done:
                continue
            cur.execute("BEGIN")
            try:
                cur.execute(self._dialect.migration_sql(sql))
                if version == GENERIC_OUTCOME:
                    self._rename_legacy_measured(cur)
                if version == RENAMES_KEPT:
                    self._recover_unkept_rename(cur)
                cur.execute("INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP)",
                            [version, name])
                cur.execute("COMMIT")
            except self._dialect.Error:
                cur.execute("ROLLBACK")
                raise

    @staticmethod
    def _rename_legacy_measured(cur) -> None:
        """An earlier release's outcomes table: its measured column becomes MEASURED, and the
        rename is kept (verification reads older entries under the old name)."""
        columns = [r[0] for r in cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'outcomes' "
            "ORDER BY ordinal_position").fetchall()]
        legacy = legacy_measured_column(columns)
        if legacy is not None:  # the name comes from the store's own schema, never from input
            cur.execute(f'ALTER TABLE outcomes RENAME COLUMN "{legacy}" TO {MEASURED}')
            cur.execute("INSERT INTO renamed_columns VALUES ('outcomes', ?, ?)", [legacy, MEASURED])

    @staticmethod
    def _recover_unkept_rename(cur) -> None:
        """A store whose measured column an earlier m009 renamed without keeping the rename: the
        old name is the one key of its first outcome entry that the outcomes table lacks."""
        if cur.execute("SELECT count(*) FROM renamed_columns WHERE table_name = 'outcomes'"
                       ).fetchone()[0]:
            return
        row = cur.execute("SELECT content_json FROM audit_log WHERE event_table = 'outcomes' "
                          "ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return
        keys = set(json.loads(row[0]))
        legacy = [k for k in keys if k not in TABLES["outcomes"]]
        if MEASURED not in keys and len(legacy) == 1:
            cur.execute("INSERT INTO renamed_columns VALUES ('outcomes', ?, ?)", [legacy[0], MEASURED])

    def _renames(self) -> dict[str, dict[str, str]]:
        """Columns a migration renamed, per table (old name -> new name): audit entries recorded
        before the rename still name the old column."""
        out: dict[str, dict[str, str]] = {}
        for table, old, new in self._all("SELECT table_name, old_name, new_name FROM renamed_columns"):
            out.setdefault(table, {})[old] = new
        return out

    def _guard(self) -> None:
        """(Re)create the append-only triggers; a backup copy does not carry them, so every open does."""
        cur = self._cursor()
        for statement in self._dialect.guard_statements([*APPEND_ONLY, *TABLES], ["phi_inputs"]):
            cur.execute(statement)

    def close(self) -> None:
        if self._write_cursor is not None:
            self._write_cursor.close()
        self._con.close()

    def privilege_problems(self) -> list[str]:
        """None for a file: who may change it is the file's permissions (private_files)."""
        return []

    def checkpoint(self) -> None:
        """Write the WAL into the file, so the file alone is the whole store."""
        with self._lock:
            self._dialect.checkpoint(self._cursor())

    def copy_to(self, target: Path) -> None:
        """Copy every table into a new store file while writes are held (a consistent snapshot)."""
        with self._lock:
            self._dialect.copy_database(self._cursor(), target)
