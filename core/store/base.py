"""The store's core: the connection, migrations, the append-only guards, and the one write path.

One process owns the file (DuckDB allows a single read-write process). Inside it, one shared
connection; every call takes its own cursor, and every write goes through `append()`, which
holds a lock, chains audit entries, and commits the event rows and their audit entries in one
transaction (or nothing).
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from core import audit
from core.errors import StoreLocked, StoreUnavailable
from core.store.schema import APPEND_ONLY, AUDIT_COLUMNS, MIGRATIONS, PHI_COLUMNS, TABLES

SMALL_INSERT = 20  # below this many rows, parameterised INSERTs; above, one Arrow insert
# State read on every request, kept in memory: the latest row's columns of these tables.
LATEST = {"model_activations": ("version", "model_sha256"),
          "service_events": ("action", "user_name", "created_at", "reason"),
          "config_events": ("settings_json",)}


@dataclass(slots=True)
class Event:
    """One row for an event table plus what enters the audit chain for it (no raw PHI).

    `phi` (optional) is a row for phi_inputs: kept only for the retention period, outside the
    chain, so purging it leaves every hash intact."""

    kind: str
    actor: str
    at: datetime
    subject: str
    content: dict
    row: dict
    phi: dict | None = None


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
        self._lock = threading.RLock()
        self._migrate()
        self._guard()
        row = self._one("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        self._head = (row[0], row[1]) if row else (0, audit.GENESIS)
        self._latest = {table: self._one(f"SELECT {', '.join(cols)} FROM {table} "
                                         "ORDER BY audit_seq DESC LIMIT 1")
                        for table, cols in LATEST.items()}

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

    # ---- the one write path -----------------------------------------------------------

    def append(self, table: str, events: list[Event], *, also: tuple[tuple[str, list], ...] = (),
               precondition: Callable[[], None] | None = None) -> list[int]:
        """Commit event rows and their chained audit entries together; return their seq numbers.

        `also`: statements of this module run in the same transaction (the retention purge).
        `precondition`: called while writes are held; raising aborts (first decision wins)."""
        if table not in TABLES:
            raise ValueError(f"unknown event table {table}")
        if not events:
            return []
        with self._lock:
            if precondition is not None:
                precondition()
            seq, prev = self._head
            audit_rows, rows = [], []
            pick = operator.itemgetter(*TABLES[table])
            for ev in events:
                seq += 1
                content_json = audit.canonical_json(ev.content)
                digest = audit.sha256_text(content_json)
                entry = audit.entry_hash(prev_hash=prev, seq=seq, at=ev.at, kind=ev.kind,
                                         actor=ev.actor, subject=ev.subject, event_table=table,
                                         content_sha256=digest)
                audit_rows.append([seq, ev.at, ev.kind, ev.actor, ev.subject, table, content_json,
                                   digest, prev, entry])
                ev.row["audit_seq"] = seq
                rows.append(list(pick(ev.row)))
                prev = entry
            cur = self._cursor()
            try:
                cur.execute("BEGIN")
                self._insert(cur, "audit_log", AUDIT_COLUMNS, audit_rows)
                self._insert(cur, table, TABLES[table], rows)
                phi = [[ev.phi[c] for c in PHI_COLUMNS] for ev in events if ev.phi]
                if phi:
                    self._insert(cur, "phi_inputs", PHI_COLUMNS, phi)
                for sql, params in also:
                    cur.execute(sql, params)
                cur.execute("COMMIT")
            except duckdb.Error as exc:
                try:
                    cur.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                raise StoreUnavailable(f"the store did not record the {table} event: {exc}") from exc
            self._head = (seq, prev)
            if table in LATEST:
                self._latest[table] = tuple(events[-1].row[c] for c in LATEST[table])
            return [r[0] for r in audit_rows]

    @staticmethod
    def _insert(cur, table: str, columns: list[str], rows: list[list[Any]]) -> None:
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        if len(rows) == 1:  # the scoring path: plain execute is faster than executemany
            cur.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows[0])
            return
        if len(rows) <= SMALL_INSERT:
            cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
            return
        # Column-wise Arrow table: built in C from the transposed rows, read by DuckDB directly.
        frame = pa.table(dict(zip(columns, map(list, zip(*rows, strict=True)), strict=True)))  # noqa: F841
        cur.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM frame")

    # ---- retention and backup ------------------------------------------------------------

    def purge_phi(self, *, before: datetime, event: Event) -> int:
        """Delete raw inputs older than `before` and record the purge, in one transaction."""
        with self._lock:
            n = self._one("SELECT count(*) FROM phi_inputs WHERE created_at <= ?", [before])[0]
            event.content["rows_removed"] = event.row["rows_removed"] = n
            self.append("retention_purges", [event],
                        also=(("DELETE FROM phi_inputs WHERE created_at <= ?", [before]),))
            return n

    def last_configuration(self) -> str | None:
        """The settings last recorded (JSON). Kept in memory, like the serving version."""
        row = self._latest["config_events"]
        return row[0] if row else None

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
