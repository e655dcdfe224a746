"""The store: the only module with SQL. An embedded DuckDB file, append-only tables, one audit chain.

One process owns the file (DuckDB allows a single read-write process). Inside it, one shared
connection; every call takes its own cursor, and every write goes through `append()`, which
holds a lock, chains audit entries, and commits the event rows and their audit entries in one
transaction (or nothing).
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable
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
            actor TEXT NOT NULL, subject TEXT, event_table TEXT NOT NULL, content_json TEXT NOT NULL,
            content_sha256 TEXT NOT NULL, prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL);
        CREATE TABLE predictions (
            prediction_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, source TEXT NOT NULL, patient_key TEXT NOT NULL,
            input_sha256 TEXT NOT NULL, risk DOUBLE NOT NULL,
            risk_low DOUBLE NOT NULL, risk_high DOUBLE NOT NULL, risk_class TEXT NOT NULL,
            confidence DOUBLE NOT NULL, routing TEXT NOT NULL, reasons_json TEXT NOT NULL,
            reason_codes VARCHAR[] NOT NULL,
            factors_json TEXT NOT NULL, model_version TEXT NOT NULL, model_sha256 TEXT NOT NULL);
        -- Raw inputs and patient references: the only PHI, the only rows a retention purge removes.
        CREATE TABLE phi_inputs (
            prediction_id TEXT PRIMARY KEY, created_at TIMESTAMP NOT NULL, patient_ref TEXT NOT NULL,
            input_json TEXT NOT NULL);
        CREATE TABLE rejected_inputs (
            rejection_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, source TEXT NOT NULL, fields_json TEXT NOT NULL,
            payload_sha256 TEXT NOT NULL, model_version TEXT);
        CREATE TABLE model_activations (
            activation_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, version TEXT NOT NULL, model_sha256 TEXT NOT NULL,
            reason TEXT NOT NULL);
    """),
    (2, "m002_users_and_access", """
        CREATE TABLE user_events (
            event_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, username TEXT NOT NULL, action TEXT NOT NULL,
            display_name TEXT NOT NULL, roles_json TEXT NOT NULL, active BOOLEAN NOT NULL,
            password_hash TEXT NOT NULL);
        CREATE TABLE access_events (
            event_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL);
    """),
    (3, "m003_retention_and_configuration", """
        CREATE TABLE retention_purges (
            purge_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, cutoff TIMESTAMP NOT NULL, retention_days INTEGER NOT NULL,
            rows_removed BIGINT NOT NULL);
        CREATE TABLE config_events (
            event_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, settings_json TEXT NOT NULL);
    """),
    (4, "m004_review_decisions", """
        CREATE TABLE review_decisions (
            decision_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, reviewer_name TEXT NOT NULL, prediction_id TEXT NOT NULL,
            decision TEXT NOT NULL, model_class TEXT NOT NULL, reviewer_class TEXT NOT NULL,
            direction TEXT NOT NULL, reason_code TEXT NOT NULL, comment TEXT NOT NULL,
            meaning TEXT NOT NULL, supersedes TEXT);
    """),
    (5, "m005_outcomes", """
        CREATE TABLE outcomes (
            outcome_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, prediction_id TEXT NOT NULL, event BOOLEAN NOT NULL,
            event_date DATE, max_potassium DOUBLE, source TEXT NOT NULL, supersedes TEXT);
    """),
    (6, "m006_governance", """
        CREATE TABLE service_events (
            event_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL);
        CREATE TABLE signoffs (
            signoff_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, signer_name TEXT NOT NULL, signer_role TEXT NOT NULL,
            signed_on DATE NOT NULL, scope TEXT NOT NULL, model_version TEXT NOT NULL);
    """),
]

# Event tables and their columns, in insert order. Table names never come from input.
TABLES = {
    "predictions": ["prediction_id", "audit_seq", "created_at", "user_name", "source",
                    "patient_key", "input_sha256", "risk", "risk_low",
                    "risk_high", "risk_class", "confidence", "routing", "reasons_json",
                    "reason_codes",
                    "factors_json", "model_version", "model_sha256"],
    "rejected_inputs": ["rejection_id", "audit_seq", "created_at", "user_name", "source",
                        "fields_json", "payload_sha256", "model_version"],
    "model_activations": ["activation_id", "audit_seq", "created_at", "user_name", "version",
                          "model_sha256", "reason"],
    # A user change is a new row carrying the whole new state; the latest row per user is current.
    "user_events": ["event_id", "audit_seq", "created_at", "user_name", "username", "action",
                    "display_name", "roles_json", "active", "password_hash"],
    "access_events": ["event_id", "audit_seq", "created_at", "user_name", "action", "detail"],
    "retention_purges": ["purge_id", "audit_seq", "created_at", "user_name", "cutoff",
                         "retention_days", "rows_removed"],
    "config_events": ["event_id", "audit_seq", "created_at", "user_name", "settings_json"],
    # direction: 'upgrade' (model low -> reviewer high), 'downgrade' (high -> low), 'none' (agree)
    "review_decisions": ["decision_id", "audit_seq", "created_at", "user_name", "reviewer_name",
                         "prediction_id", "decision", "model_class", "reviewer_class", "direction",
                         "reason_code", "comment", "meaning", "supersedes"],
    "service_events": ["event_id", "audit_seq", "created_at", "user_name", "action", "reason"],
    "signoffs": ["signoff_id", "audit_seq", "created_at", "user_name", "signer_name", "signer_role",
                 "signed_on", "scope", "model_version"],
    "outcomes": ["outcome_id", "audit_seq", "created_at", "user_name", "prediction_id", "event",
                 "event_date", "max_potassium", "source", "supersedes"],
}
PHI_COLUMNS = ["prediction_id", "created_at", "patient_ref", "input_json"]
AUDIT_COLUMNS = ["seq", "recorded_at", "kind", "actor", "subject", "event_table", "content_json",
                 "content_sha256", "prev_hash", "entry_hash"]
# Tables that refuse UPDATE and DELETE (and so TRUNCATE) in the database itself; phi_inputs
# refuses UPDATE only, because the retention purge deletes from it.
APPEND_ONLY = ["audit_log", "schema_migrations"]
SMALL_INSERT = 20  # below this many rows, parameterised INSERTs; above, one frame insert


@dataclass(frozen=True)
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


class Store:
    """An open store file; create with `open_store` so each file has one Store per process."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(self.path))
        except (duckdb.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open the store at {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._migrate()
        self._guard()
        row = self._one("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        self._head = (row[0], row[1]) if row else (0, audit.GENESIS)
        self._active = self._one("SELECT version, model_sha256 FROM model_activations "
                                 "ORDER BY audit_seq DESC LIMIT 1")
        self._service = self._one("SELECT action, user_name, created_at, reason FROM service_events "
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
            last = events[-1].row
            if table == "model_activations":
                self._active = (last["version"], last["model_sha256"])
            elif table == "service_events":
                self._service = (last["action"], last["user_name"], last["created_at"], last["reason"])
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
        row = self._one("SELECT settings_json FROM config_events ORDER BY audit_seq DESC LIMIT 1")
        return row[0] if row else None

    def oldest_phi(self) -> datetime | None:
        return self._one("SELECT min(created_at) FROM phi_inputs")[0]

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

    # ---- review decisions -----------------------------------------------------------------

    _CURRENT_DECISIONS = (
        "SELECT * FROM review_decisions d WHERE NOT EXISTS "
        "(SELECT 1 FROM review_decisions n WHERE n.supersedes = d.decision_id)")

    def current_decision(self, prediction_id: str) -> dict | None:
        """The decision in force for a prediction (the one no later decision supersedes)."""
        cur = self._cursor().execute(
            f"SELECT * FROM ({self._CURRENT_DECISIONS}) WHERE prediction_id = ? "
            "ORDER BY audit_seq DESC LIMIT 1", [prediction_id])
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def decisions(self, prediction_id: str) -> pd.DataFrame:
        """Every decision on a prediction, corrections included, oldest first."""
        return self._frame("SELECT * FROM review_decisions WHERE prediction_id = ? "
                           "ORDER BY audit_seq", [prediction_id])

    def pending_reviews(self, *, reason: str | None = None, model_version: str | None = None,
                        limit: int = 500) -> pd.DataFrame:
        """Predictions routed to review with no decision yet, oldest first."""
        return self._frame(
            "SELECT p.prediction_id, p.created_at, phi.patient_ref, phi.input_json, p.risk, "
            "p.risk_low, p.risk_high, p.risk_class, p.confidence, p.reasons_json, "
            "p.reason_codes, p.model_version, p.user_name FROM predictions p "
            "LEFT JOIN phi_inputs phi USING (prediction_id) "
            "WHERE p.routing = 'review' AND NOT EXISTS "
            "(SELECT 1 FROM review_decisions d WHERE d.prediction_id = p.prediction_id) "
            "AND (? IS NULL OR p.model_version = ?) "
            "AND (? IS NULL OR list_contains(p.reason_codes, ?)) "
            "ORDER BY p.audit_seq LIMIT ?",
            [model_version, model_version, reason, reason, limit])

    def recent_decisions(self, *, limit: int = 50) -> pd.DataFrame:
        """Every decision (corrections included) on the `limit` most recently decided predictions:
        latest activity first, each prediction's history oldest first, `in_force` marking the current one."""
        return self._frame(
            "WITH recent AS (SELECT prediction_id, max(audit_seq) AS last_seq FROM review_decisions "
            "GROUP BY prediction_id ORDER BY last_seq DESC LIMIT ?) "
            "SELECT d.*, phi.patient_ref, p.risk, p.model_version, p.created_at AS predicted_at, "
            "NOT EXISTS (SELECT 1 FROM review_decisions n WHERE n.supersedes = d.decision_id) "
            "AS in_force FROM review_decisions d JOIN recent r USING (prediction_id) "
            "JOIN predictions p USING (prediction_id) LEFT JOIN phi_inputs phi USING (prediction_id) "
            "ORDER BY r.last_seq DESC, d.audit_seq", [limit])

    def recent_predictions_with_review(self, *, user: str, limit: int = 20) -> pd.DataFrame:
        """A user's recent predictions, newest first, with the review decision in force (if any)."""
        return self._frame(
            "SELECT p.prediction_id, p.created_at, phi.patient_ref, p.risk, p.risk_class, "
            "p.confidence, p.routing, p.model_version, d.decision, d.reviewer_class, d.direction, "
            "d.reviewer_name, d.created_at AS decided_at FROM predictions p "
            "LEFT JOIN phi_inputs phi USING (prediction_id) "
            f"LEFT JOIN ({self._CURRENT_DECISIONS}) d USING (prediction_id) "
            "WHERE p.user_name = ? ORDER BY p.audit_seq DESC LIMIT ?", [user, limit])

    # ---- outcomes ---------------------------------------------------------------------------

    _CURRENT_OUTCOMES = (
        "SELECT * FROM outcomes o WHERE NOT EXISTS "
        "(SELECT 1 FROM outcomes n WHERE n.supersedes = o.outcome_id)")

    def current_outcome(self, prediction_id: str) -> dict | None:
        cur = self._cursor().execute(
            f"SELECT * FROM ({self._CURRENT_OUTCOMES}) WHERE prediction_id = ? "
            "ORDER BY audit_seq DESC LIMIT 1", [prediction_id])
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def outcome_history(self, prediction_id: str) -> pd.DataFrame:
        return self._frame("SELECT * FROM outcomes WHERE prediction_id = ? ORDER BY audit_seq",
                           [prediction_id])

    def due_outcomes(self, *, now: datetime, horizon_days: int, limit: int = 500) -> pd.DataFrame:
        """Predictions past their horizon with no outcome recorded, most overdue first."""
        return self._frame(
            "SELECT p.prediction_id, p.created_at, phi.patient_ref, p.risk, p.risk_class, "
            "p.routing, p.model_version, p.user_name, "
            "date_diff('day', p.created_at + to_days(CAST(? AS INTEGER)), CAST(? AS TIMESTAMP)) "
            "AS days_overdue FROM predictions p LEFT JOIN phi_inputs phi USING (prediction_id) "
            "WHERE p.created_at + to_days(CAST(? AS INTEGER)) <= CAST(? AS TIMESTAMP) "
            "AND NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.prediction_id = p.prediction_id) "
            "ORDER BY p.audit_seq LIMIT ?", [horizon_days, now, horizon_days, now, limit])

    def predictions_for_patient(self, patient_key: str) -> pd.DataFrame:
        return self._frame("SELECT prediction_id, created_at, model_version FROM predictions "
                           "WHERE patient_key = ? ORDER BY audit_seq", [patient_key])

    # ---- monitoring aggregates (chart-sized results; filters: [start, end) and model version) --

    _P = ("SELECT * FROM predictions WHERE created_at >= ? AND created_at < ? "
          "AND (CAST(? AS TEXT) IS NULL OR model_version = ?)")
    _D = (f"SELECT d.*, p.model_version FROM ({_CURRENT_DECISIONS}) d "
          "JOIN predictions p USING (prediction_id) WHERE d.created_at >= ? AND d.created_at < ? "
          "AND (CAST(? AS TEXT) IS NULL OR p.model_version = ?)")

    def _agg(self, sql: str, base: str, f: tuple, extra: list | None = None) -> pd.DataFrame:
        start, end, version = f
        return self._frame(f"WITH base AS ({base}) {sql}", [start, end, version, version, *(extra or [])])

    def agg_override_weekly(self, f: tuple) -> pd.DataFrame:
        return self._agg(
            "SELECT CAST(date_trunc('week', created_at) AS DATE) AS week, model_version, "
            "count(*) AS reviewed, count(*) FILTER (WHERE direction = 'upgrade') AS upgrades, "
            "count(*) FILTER (WHERE direction = 'downgrade') AS downgrades "
            "FROM base GROUP BY ALL ORDER BY week, model_version", self._D, f)

    def agg_override_window(self, f: tuple) -> pd.DataFrame:
        """Reviewed count and overrides by direction with their most common reason codes."""
        return self._agg(
            "SELECT direction, count(*) AS n, (SELECT count(*) FROM base) AS reviewed, "
            "list(reason_code ORDER BY reason_code) AS reasons FROM base GROUP BY direction",
            self._D, f)

    def agg_reason_codes(self, f: tuple) -> pd.DataFrame:
        return self._agg("SELECT reason_code, direction, count(*) AS decisions FROM base "
                         "GROUP BY ALL ORDER BY decisions DESC", self._D, f)

    def agg_predictions_daily(self, f: tuple) -> pd.DataFrame:
        return self._agg("SELECT CAST(created_at AS DATE) AS day, routing, count(*) AS predictions "
                         "FROM base GROUP BY ALL ORDER BY day, routing", self._P, f)

    def agg_review_share(self, f: tuple) -> pd.DataFrame:
        return self._agg("SELECT model_version, count(*) AS predictions, "
                         "count(*) FILTER (WHERE routing = 'review') AS routed_to_review "
                         "FROM base GROUP BY ALL ORDER BY model_version", self._P, f)

    def agg_ood_reasons(self, f: tuple) -> pd.DataFrame:
        return self._agg("SELECT code AS reason_code, count(*) AS predictions FROM "
                         "(SELECT unnest(reason_codes) AS code FROM base) GROUP BY ALL "
                         "ORDER BY predictions DESC", self._P, f)

    def agg_backlog(self, f: tuple, now: datetime) -> pd.DataFrame:
        return self._agg(
            "SELECT count(*) AS pending, min(created_at) AS oldest, "
            "date_diff('hour', min(created_at), CAST(? AS TIMESTAMP)) AS oldest_age_hours "
            "FROM base b WHERE routing = 'review' AND NOT EXISTS "
            "(SELECT 1 FROM review_decisions d WHERE d.prediction_id = b.prediction_id)",
            self._P, f, [now])

    def agg_time_to_decision(self, f: tuple) -> pd.DataFrame:
        return self._agg(
            "SELECT CAST(date_trunc('week', d.created_at) AS DATE) AS week, count(*) AS decided, "
            "median(date_diff('minute', p.created_at, d.created_at)) / 60.0 AS median_hours, "
            "quantile_cont(date_diff('minute', p.created_at, d.created_at), 0.9) / 60.0 AS p90_hours "
            "FROM base d JOIN predictions p USING (prediction_id) WHERE d.supersedes IS NULL "
            "GROUP BY ALL ORDER BY week", self._D, f)

    def agg_reviewer_workload(self, f: tuple) -> pd.DataFrame:
        return self._agg("SELECT reviewer_name, count(*) AS decisions FROM base "
                         "GROUP BY ALL ORDER BY reviewer_name", self._D, f)

    def outcome_pairs(self, f: tuple) -> pd.DataFrame:
        """Predictions with an outcome in force: risk, class, routing, review, and the event."""
        return self._agg(
            f"SELECT b.prediction_id, b.risk, b.risk_class, b.routing, o.event, "
            f"d.direction, d.reviewer_class FROM base b "
            f"JOIN ({self._CURRENT_OUTCOMES}) o USING (prediction_id) "
            f"LEFT JOIN ({self._CURRENT_DECISIONS}) d USING (prediction_id)", self._P, f)

    # ---- reads --------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        return self._head

    def active_activation(self) -> tuple[str, str] | None:
        """(version, model_sha256) of the latest activation, or None when never activated.

        Kept in memory: this process owns the file, so only its own appends change it."""
        return self._active

    def service_state(self) -> tuple[str, str, datetime, str] | None:
        """(action, by, when, reason) of the latest suspend/resume, or None. Kept in memory."""
        return self._service

    def service_history(self) -> pd.DataFrame:
        return self._frame("SELECT created_at, user_name, action, reason FROM service_events "
                           "ORDER BY audit_seq")

    def governance_counts(self) -> dict:
        """Counts the governance page answers from, in one round trip."""
        cur = self._cursor().execute(
            "SELECT (SELECT count(*) FROM predictions) AS predictions, "
            "(SELECT count(*) FROM predictions WHERE routing = 'review') AS routed_to_review, "
            "(SELECT count(*) FROM predictions WHERE len(list_filter(reason_codes, lambda c: "
            "  c <> 'uncertain')) > 0) AS flagged_out_of_distribution, "
            "(SELECT count(*) FROM rejected_inputs) AS rejected_inputs, "
            "(SELECT count(DISTINCT prediction_id) FROM review_decisions) AS reviewed, "
            "(SELECT count(*) FROM review_decisions d WHERE direction = 'upgrade' AND NOT EXISTS "
            "  (SELECT 1 FROM review_decisions n WHERE n.supersedes = d.decision_id)) AS upgrades, "
            "(SELECT count(*) FROM review_decisions d WHERE direction = 'downgrade' AND NOT EXISTS "
            "  (SELECT 1 FROM review_decisions n WHERE n.supersedes = d.decision_id)) AS downgrades, "
            "(SELECT count(*) FROM predictions p WHERE routing = 'review' AND NOT EXISTS "
            "  (SELECT 1 FROM review_decisions d WHERE d.prediction_id = p.prediction_id)) AS pending, "
            "(SELECT count(*) FROM outcomes) AS outcomes, "
            "(SELECT count(*) FROM predictions WHERE coalesce(model_version, '') = '' "
            "  OR coalesce(model_sha256, '') = '' OR coalesce(input_sha256, '') = '' "
            "  OR risk IS NULL OR confidence IS NULL OR created_at IS NULL) AS incompletely_logged, "
            "(SELECT min(created_at) FROM phi_inputs) AS oldest_raw_input, "
            "(SELECT max(created_at) FROM retention_purges) AS last_purge")
        return dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))

    def signoff_records(self) -> pd.DataFrame:
        return self._frame("SELECT created_at, user_name, signer_name, signer_role, signed_on, "
                           "scope, model_version FROM signoffs ORDER BY audit_seq")

    def activations(self) -> pd.DataFrame:
        return self._frame("SELECT created_at, version, model_sha256, user_name, reason "
                           "FROM model_activations ORDER BY audit_seq")

    def count(self, table: str) -> int:
        if table not in TABLES and table != "audit_log":
            raise ValueError(f"unknown table {table}")
        return self._one(f"SELECT count(*) FROM {table}")[0]

    def prediction(self, prediction_id: str) -> dict | None:
        cur = self._cursor().execute(
            "SELECT p.*, phi.patient_ref, phi.input_json FROM predictions p "
            "LEFT JOIN phi_inputs phi USING (prediction_id) WHERE prediction_id = ?", [prediction_id])
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def recent_predictions(self, *, user: str, limit: int = 20) -> pd.DataFrame:
        return self._frame(
            "SELECT prediction_id, p.created_at, patient_ref, risk, risk_class, confidence, "
            "routing, model_version FROM predictions p LEFT JOIN phi_inputs USING (prediction_id) "
            "WHERE user_name = ? ORDER BY audit_seq DESC LIMIT ?", [user, limit])

    def rejections(self) -> pd.DataFrame:
        return self._frame("SELECT * FROM rejected_inputs ORDER BY audit_seq")

    def audit_entries(self) -> pd.DataFrame:
        return self._frame("SELECT * FROM audit_log ORDER BY seq")

    def iter_audit(self, batch: int = 10_000):
        """Every audit entry in seq order, as dicts, without holding them all in memory."""
        cur = self._cursor().execute(
            "SELECT seq, recorded_at, kind, actor, subject, event_table, content_json, "
            "content_sha256, prev_hash, entry_hash FROM audit_log ORDER BY seq")
        names = [d[0] for d in cur.description]
        while rows := cur.fetchmany(batch):
            yield from (dict(zip(names, r, strict=True)) for r in rows)

    def event_rows(self, table: str) -> dict[int, dict]:
        """An event table's rows keyed by their audit seq."""
        if table not in TABLES:
            raise ValueError(f"unknown event table {table}")
        cur = self._cursor().execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cur.description]
        return {r["audit_seq"]: r for r in (dict(zip(names, row, strict=True)) for row in cur.fetchall())}

    # ---- users and access ---------------------------------------------------------------

    _LATEST_USERS = ("SELECT * FROM user_events QUALIFY row_number() OVER "
                     "(PARTITION BY username ORDER BY audit_seq DESC) = 1")

    def user(self, username: str) -> dict | None:
        """The current state of one account (latest row), with its password hash."""
        cur = self._cursor().execute(
            "SELECT username, display_name, roles_json, active, password_hash FROM user_events "
            "WHERE username = ? ORDER BY audit_seq DESC LIMIT 1", [username])
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def users(self) -> pd.DataFrame:
        """Every account's current state, never the password hash."""
        return self._frame(
            f"SELECT username, display_name, roles_json, active, action AS last_change, "
            f"created_at AS changed_at, user_name AS changed_by FROM ({self._LATEST_USERS}) "
            f"ORDER BY username")

    def count_access(self, *, username: str, action: str, since: datetime) -> int:
        return self._one("SELECT count(*) FROM access_events WHERE user_name = ? AND action = ? "
                         "AND created_at >= ?", [username, action, since])[0]

    def last_access(self, *, username: str, action: str) -> datetime | None:
        row = self._one("SELECT max(created_at) FROM access_events WHERE user_name = ? "
                        "AND action = ?", [username, action])
        return row[0] if row else None

    def access_events(self, *, limit: int = 200) -> pd.DataFrame:
        return self._frame("SELECT created_at, user_name, action, detail FROM access_events "
                           "ORDER BY audit_seq DESC LIMIT ?", [limit])

    # ---- review queue and monitoring ----------------------------------------------------

    def review_queue(self, *, limit: int = 500) -> pd.DataFrame:
        """Predictions routed to clinical review, oldest first."""
        return self._frame(
            "SELECT prediction_id, p.created_at, patient_ref, risk, risk_class, confidence, "
            "reasons_json, model_version, user_name FROM predictions p "
            "LEFT JOIN phi_inputs USING (prediction_id) WHERE routing = 'review' "
            "ORDER BY audit_seq LIMIT ?", [limit])

    def prediction_counts(self) -> pd.DataFrame:
        """Per model version: predictions, how many went to review, and rejected inputs."""
        return self._frame(
            "WITH p AS (SELECT model_version, count(*) AS predictions, "
            "count(*) FILTER (WHERE routing = 'review') AS routed_to_review "
            "FROM predictions GROUP BY model_version), "
            "r AS (SELECT model_version, count(*) AS rejected_inputs FROM rejected_inputs "
            "GROUP BY model_version) "
            "SELECT coalesce(p.model_version, r.model_version) AS model_version, "
            "coalesce(p.predictions, 0) AS predictions, "
            "coalesce(p.routed_to_review, 0) AS routed_to_review, "
            "coalesce(r.rejected_inputs, 0) AS rejected_inputs "
            "FROM p FULL OUTER JOIN r ON p.model_version = r.model_version ORDER BY 1")


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
