"""The store's plumbing: the connection, migrations, the append-only guards, file operations.

One process owns the file (DuckDB allows a single read-write process). Inside it, one shared
connection; every call takes its own cursor. Writes are in core/store/writes.py, reads in the
query modules. Nothing another writer could change is kept in memory, except the few state reads
that say so (STATE_TTL_S).
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from core.errors import StoreLocked, StoreUnavailable
from core.store.schema import APPEND_ONLY, MIGRATIONS, TABLES


def private_files() -> None:
    """Files this process creates from now on are readable by its own user only (umask 077).

    The store, its WAL (which DuckDB deletes and recreates at every checkpoint, so a chmod would
    not last) and its backups hold patient data. Set when a store is opened, so every way in
    (the app, a command, a test) gets it; it only ever narrows the mask."""
    current = os.umask(0o077)
    os.umask(current | 0o077)


def opening_error(path: Path, exc: Exception) -> StoreUnavailable:
    """StoreLocked when another process holds the file, else StoreUnavailable with the reason."""
    if "lock" in str(exc).lower():
        return StoreLocked(f"the store at {path} is in use by another process (the running "
                           "service, or another command); stop it first")
    return StoreUnavailable(f"cannot open the store at {path}: {exc}")


class StoreBase:
    """An open store file: plumbing and writes (reads live in the query mixins)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        private_files()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A larger checkpoint threshold than the 16 MB default: a batch commit then appends
            # to the WAL instead of rewriting the file every few thousand rows.
            self._con = duckdb.connect(str(self.path), config={"checkpoint_threshold": "256MB"})
        except (duckdb.Error, OSError) as exc:
            raise opening_error(self.path, exc) from exc
        for own in (self.path, self.path.with_name(self.path.name + ".wal")):
            if own.exists():  # a store made before files were private: make it private now
                os.chmod(own, 0o600)
        # Serialises this object's own writes (fewer retries); correctness does not rest on it:
        # every append reads the head inside its transaction, and two appends on one head
        # conflict on the entry's seq (see core/store/writes.py).
        self._lock = threading.RLock()
        self._cached: dict[str, tuple[float, Any]] = {}  # state reads, for STATE_TTL_S
        self._migrate()
        self._guard()

    # ---- plumbing ---------------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()

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
        return self._cursor().execute(sql, params or []).df()

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
                cur.execute(sql)
                cur.execute("INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP)",
                            [version, name])
                cur.execute("COMMIT")
            except duckdb.Error:
                cur.execute("ROLLBACK")
                raise

    def _guard(self) -> None:
        """(Re)create the append-only triggers; a backup copy does not carry them, so every open does."""
        cur = self._cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS append_only_guard (never INTEGER)")
        for table in [*APPEND_ONLY, *TABLES]:
            for verb in ("UPDATE", "DELETE"):
                cur.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} AFTER {verb} ON {table} "
                    f"FOR EACH STATEMENT INSERT INTO append_only_guard "
                    f"SELECT error('{table} is append-only: {verb} is refused')")
        cur.execute("CREATE TRIGGER IF NOT EXISTS phi_inputs_no_update AFTER UPDATE ON phi_inputs "
                    "FOR EACH STATEMENT INSERT INTO append_only_guard "
                    "SELECT error('phi_inputs rows are never changed, only purged')")

    def close(self) -> None:
        self._con.close()

    def oldest_phi(self) -> datetime | None:
        return self._one("SELECT min(created_at) FROM phi_inputs")[0]

    def identity(self) -> str:
        """The deployment this store belongs to (written once, when it was created)."""
        return self._one("SELECT deployment_id FROM store_identity LIMIT 1")[0]

    def checkpoint(self) -> None:
        """Write the WAL into the file, so the file alone is the whole store."""
        with self._lock:
            self._cursor().execute("CHECKPOINT")

    def copy_to(self, target: Path) -> None:
        """Copy every table into a new DuckDB file while writes are held (a consistent snapshot)."""
        with self._lock:
            cur = self._cursor()
            source = cur.execute("SELECT current_database()").fetchone()[0]
            cur.execute("ATTACH ? AS backup_target", [str(target)])
            try:
                cur.execute(f'COPY FROM DATABASE "{source}" TO backup_target')
            finally:
                cur.execute("DETACH backup_target")
