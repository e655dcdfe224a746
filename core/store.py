"""The store: the only module with SQL. An embedded DuckDB file, append-only tables, one audit chain.

One process owns the file (DuckDB allows a single read-write process). Inside it, one shared
connection; every call takes its own cursor, and every write goes through `append()`, which
holds a lock, chains audit entries, and commits the event rows and their audit entries in one
transaction (or nothing).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from core import audit
from core.errors import StoreUnavailable

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "m001_events", """
        CREATE TABLE audit_log (
            seq BIGINT PRIMARY KEY, recorded_at TIMESTAMP NOT NULL, kind TEXT NOT NULL,
            actor TEXT NOT NULL, subject TEXT, content_sha256 TEXT NOT NULL,
            prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL);
        CREATE TABLE predictions (
            prediction_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, source TEXT NOT NULL, patient_ref TEXT, patient_key TEXT NOT NULL,
            input_sha256 TEXT NOT NULL, input_json TEXT, risk DOUBLE NOT NULL,
            risk_low DOUBLE NOT NULL, risk_high DOUBLE NOT NULL, risk_class TEXT NOT NULL,
            confidence DOUBLE NOT NULL, routing TEXT NOT NULL, reasons_json TEXT NOT NULL,
            factors_json TEXT NOT NULL, model_version TEXT NOT NULL, model_sha256 TEXT NOT NULL);
        CREATE TABLE rejected_inputs (
            rejection_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, source TEXT NOT NULL, fields_json TEXT NOT NULL,
            payload_sha256 TEXT NOT NULL, model_version TEXT);
        CREATE TABLE model_activations (
            activation_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, version TEXT NOT NULL, model_sha256 TEXT NOT NULL,
            reason TEXT NOT NULL);
    """),
]

# Event tables and their columns, in insert order. Table names never come from input.
TABLES = {
    "predictions": ["prediction_id", "audit_seq", "created_at", "user_name", "source",
                    "patient_ref", "patient_key", "input_sha256", "input_json", "risk", "risk_low",
                    "risk_high", "risk_class", "confidence", "routing", "reasons_json",
                    "factors_json", "model_version", "model_sha256"],
    "rejected_inputs": ["rejection_id", "audit_seq", "created_at", "user_name", "source",
                        "fields_json", "payload_sha256", "model_version"],
    "model_activations": ["activation_id", "audit_seq", "created_at", "user_name", "version",
                          "model_sha256", "reason"],
}
AUDIT_COLUMNS = ["seq", "recorded_at", "kind", "actor", "subject", "content_sha256", "prev_hash",
                 "entry_hash"]
SMALL_INSERT = 20  # below this many rows, parameterised INSERTs; above, one frame insert


@dataclass(frozen=True)
class Event:
    """One row for an event table plus what enters the audit chain for it (no raw PHI)."""

    kind: str
    actor: str
    at: datetime
    subject: str
    content: dict
    row: dict


class Store:
    """An open store file; create with `open_store` so each file has one Store per process."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(self.path))
        except (duckdb.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open the store at {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._migrate()
        row = self._one("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        self._head = (row[0], row[1]) if row else (0, audit.GENESIS)
        self._active = self._one("SELECT version, model_sha256 FROM model_activations "
                                 "ORDER BY audit_seq DESC LIMIT 1")

    # ---- plumbing ---------------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()

    def _one(self, sql: str, params: list | None = None) -> tuple | None:
        return self._cursor().execute(sql, params or []).fetchone()

    def _all(self, sql: str, params: list | None = None) -> list[tuple]:
        return self._cursor().execute(sql, params or []).fetchall()

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

    def close(self) -> None:
        self._con.close()

    # ---- the one write path -----------------------------------------------------------

    def append(self, table: str, events: list[Event]) -> list[int]:
        """Commit event rows and their chained audit entries together; return their seq numbers."""
        if table not in TABLES:
            raise ValueError(f"unknown event table {table}")
        if not events:
            return []
        with self._lock:
            seq, prev = self._head
            audit_rows, rows = [], []
            for ev in events:
                seq += 1
                digest = audit.content_hash(ev.content)
                entry = audit.entry_hash(prev_hash=prev, seq=seq, at=ev.at, kind=ev.kind,
                                         actor=ev.actor, content_sha256=digest)
                audit_rows.append([seq, ev.at, ev.kind, ev.actor, ev.subject, digest, prev, entry])
                rows.append([ev.row.get(c, seq) if c != "audit_seq" else seq for c in TABLES[table]])
                prev = entry
            cur = self._cursor()
            try:
                cur.execute("BEGIN")
                self._insert(cur, "audit_log", AUDIT_COLUMNS, audit_rows)
                self._insert(cur, table, TABLES[table], rows)
                cur.execute("COMMIT")
            except duckdb.Error as exc:
                try:
                    cur.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                raise StoreUnavailable(f"the store did not record the {table} event: {exc}") from exc
            self._head = (seq, prev)
            if table == "model_activations":
                last = events[-1].row
                self._active = (last["version"], last["model_sha256"])
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
        frame = pd.DataFrame(rows, columns=columns)  # noqa: F841 (read by DuckDB by name)
        cur.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM frame")

    # ---- reads --------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        return self._head

    def active_activation(self) -> tuple[str, str] | None:
        """(version, model_sha256) of the latest activation, or None when never activated.

        Kept in memory: this process owns the file, so only its own appends change it."""
        return self._active

    def activations(self) -> pd.DataFrame:
        return self._frame("SELECT created_at, version, model_sha256, user_name, reason "
                           "FROM model_activations ORDER BY audit_seq")

    def count(self, table: str) -> int:
        if table not in TABLES and table != "audit_log":
            raise ValueError(f"unknown table {table}")
        return self._one(f"SELECT count(*) FROM {table}")[0]

    def prediction(self, prediction_id: str) -> dict | None:
        cur = self._cursor().execute("SELECT * FROM predictions WHERE prediction_id = ?",
                                     [prediction_id])
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def recent_predictions(self, *, user: str, limit: int = 20) -> pd.DataFrame:
        return self._frame(
            "SELECT prediction_id, created_at, patient_ref, risk, risk_class, confidence, "
            "routing, model_version FROM predictions WHERE user_name = ? "
            "ORDER BY audit_seq DESC LIMIT ?", [user, limit])

    def rejections(self) -> pd.DataFrame:
        return self._frame("SELECT * FROM rejected_inputs ORDER BY audit_seq")

    def audit_entries(self) -> pd.DataFrame:
        return self._frame("SELECT * FROM audit_log ORDER BY seq")


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(path: Path) -> Store:
    """The process-wide Store for a file (opened and migrated on first use)."""
    key = str(Path(path).resolve())
    with _stores_lock:
        if key not in _stores:
            _stores[key] = Store(Path(path))
        return _stores[key]


def close_all() -> None:
    with _stores_lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
