"""The store's reads, grouped by journey; mixed into DuckDBStore (core/store/__init__.py)."""

from __future__ import annotations

import time
from datetime import datetime

import pandas as pd

from core.audit import GENESIS
from core.store.records import ServiceEvent
from core.store.schema import TABLES

# The decision (outcome) in force: the one no later record supersedes.
CURRENT_DECISIONS = (
    "SELECT * FROM review_decisions d WHERE NOT EXISTS "
    "(SELECT 1 FROM review_decisions n WHERE n.supersedes = d.decision_id)")
CURRENT_OUTCOMES = (
    "SELECT * FROM outcomes o WHERE NOT EXISTS "
    "(SELECT 1 FROM outcomes n WHERE n.supersedes = o.outcome_id)")

STATE_TTL_S = 1.0  # the serving version and the stop switch, as another process changed them
WINDOW = 20_000  # audit seqs read at a time when the whole chain is walked
# The small state tables whose latest row the service reads often: name -> (table, columns).
# An append reads the ones in STATE_WITH_HEAD again with the chain's head, in one statement
# (core/store/writes.py), for its precondition (the stop switch).
STATE = {"activation": ("model_activations", "version, model_sha256"),
         "service": ("service_events", "event_id, created_at, user_name, action, reason")}
STATE_WITH_HEAD = ("service",)


def state_sql(name: str) -> str:
    """The latest row of a state table: one pass, no sort (an expression, as a row or NULL)."""
    table, columns = STATE[name]
    return f"SELECT arg_max(row({columns}), audit_seq) FROM {table}"


class RecordReads:
    """Single records, counts, the audit trail, governance."""

    def _read_state(self, name: str, cur=None) -> tuple | None:
        """The latest row of a state table (STATE), or None."""
        return (cur or self._cursor()).execute(state_sql(name)).fetchone()[0]

    def head(self) -> tuple[int, str]:
        """(seq, entry hash) of the chain's last entry, as the database has it now."""
        row = self._one("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        return (row[0], row[1]) if row else (0, GENESIS)

    def _state(self, name: str, *, fresh: bool) -> tuple | None:
        """The latest row of a small state table, read again after STATE_TTL_S (or when
        `fresh`); this object's own writes to its table clear it at once. Inside an append's
        precondition, `fresh` is what the append read with the chain's head, in its own
        transaction."""
        now = time.monotonic()
        cached = self._cached.get(name)
        if fresh or cached is None or cached[0] <= now:
            with_head = getattr(self._read_with_head, "states", None)
            row = with_head[name] if fresh and with_head and name in with_head else \
                self._read_state(name)
            cached = (now + STATE_TTL_S, row)
            self._cached[name] = cached
        return cached[1]

    def active_activation(self, *, fresh: bool = False) -> tuple[str, str] | None:
        """(version, model_sha256) of the latest activation, or None when never activated.
        Another process's activation is seen within STATE_TTL_S."""
        return self._state("activation", fresh=fresh)

    def service_state(self, *, fresh: bool = False) -> ServiceEvent | None:
        """The latest suspend/resume (its record), or None. Within STATE_TTL_S of another
        process's change; the prediction write itself reads it `fresh`."""
        row = self._state("service", fresh=fresh)
        return ServiceEvent(*row) if row else None

    def last_configuration(self) -> str | None:
        """The settings last recorded (JSON)."""
        row = self._one("SELECT settings_json FROM config_events ORDER BY audit_seq DESC LIMIT 1")
        return row[0] if row else None

    def governance_counts(self) -> dict:
        """Counts the governance page answers from, in one round trip."""
        return self._record(
            "SELECT (SELECT count(*) FROM predictions) AS predictions, "
            "(SELECT count(*) FROM predictions WHERE routing = 'review') AS routed_to_review, "
            "(SELECT count(*) FROM predictions WHERE "
            f"{self._dialect.has_other_than('reason_codes', 'uncertain')}) "
            "AS flagged_out_of_distribution, "
            "(SELECT count(*) FROM rejected_inputs) AS rejected_inputs, "
            "(SELECT count(DISTINCT prediction_id) FROM review_decisions) AS reviewed, "
            f"(SELECT count(*) FROM ({CURRENT_DECISIONS}) cd WHERE direction = 'upgrade') AS upgrades, "
            f"(SELECT count(*) FROM ({CURRENT_DECISIONS}) cd WHERE direction = 'downgrade') AS downgrades, "
            "(SELECT count(*) FROM predictions p WHERE routing = 'review' AND NOT EXISTS "
            "  (SELECT 1 FROM review_decisions d WHERE d.prediction_id = p.prediction_id)) AS pending, "
            # Every column is NOT NULL in the schema: an empty text is what could be missing.
            "(SELECT count(*) FROM predictions WHERE model_version = '' OR model_sha256 = '' "
            "  OR input_sha256 = '') AS incompletely_logged, "
            "(SELECT min(created_at) FROM phi_inputs) AS oldest_raw_input")

    def signoff_records(self) -> pd.DataFrame:
        return self._frame("SELECT created_at, user_name, signer_name, signer_role, signed_on, "
                           "scope, model_version FROM signoffs ORDER BY audit_seq")

    def stop_rule_records(self) -> pd.DataFrame:
        columns = ", ".join(c for c in TABLES["stop_rule_events"] if c != "audit_seq")
        return self._frame(f"SELECT {columns} FROM stop_rule_events ORDER BY audit_seq")

    def assessment_records(self) -> pd.DataFrame:
        columns = ", ".join(c for c in TABLES["deployment_assessments"] if c != "audit_seq")
        return self._frame(f"SELECT {columns} FROM deployment_assessments ORDER BY audit_seq")

    def activations(self) -> pd.DataFrame:
        return self._frame("SELECT created_at, version, model_sha256, user_name, reason "
                           "FROM model_activations ORDER BY audit_seq")

    def count(self, table: str) -> int:
        if table not in TABLES and table != "audit_log":
            raise ValueError(f"unknown table {table}")
        return self._one(f"SELECT count(*) FROM {table}")[0]

    def prediction(self, prediction_id: str) -> dict | None:
        return self._record(
            "SELECT p.*, phi.patient_ref, phi.input_json FROM predictions p "
            "LEFT JOIN phi_inputs phi USING (prediction_id) WHERE prediction_id = ?", [prediction_id])

    def iter_audit(self, *, after: int = 0, upto: int | None = None):
        """Audit entries with after < seq <= upto, in seq order, as dicts (see _windows)."""
        yield from self._windows(
            "SELECT seq, recorded_at, kind, actor, subject, event_table, content_json, "
            "content_sha256, prev_hash, entry_hash FROM audit_log WHERE seq > ? AND seq <= ? "
            "ORDER BY seq", after, upto)

    def iter_rows(self, table: str, *, after: int = 0, upto: int | None = None):
        """An event table's rows with after < audit_seq <= upto, in audit-seq order, as dicts.

        A row's audit seq is never above the chain's head, and appends only add higher ones,
        so bounding both sides by one head reads a consistent picture while others write."""
        if table not in TABLES:
            raise ValueError(f"unknown event table {table}")
        renamed = self._renamed.get(table, {})
        for row in self._windows(f"SELECT * FROM {table} WHERE audit_seq > ? AND audit_seq <= ? "
                                 "ORDER BY audit_seq", after, upto):
            for old, new in renamed.items():  # also as entries made before a rename name it
                row[old] = row[new]
            yield row

    def _windows(self, sql: str, after: int, upto: int | None):
        """A query over (after, upto] run window by window of WINDOW seqs, so that memory holds
        one window's rows, never a whole table's (the rows are stored in seq order, so each
        window reads only its own row groups)."""
        upto = self.last_seq() if upto is None else upto
        for low in range(after, upto, WINDOW):
            cur = self._cursor().execute(sql, [low, min(low + WINDOW, upto)])
            names = [d[0] for d in cur.description]
            yield from (dict(zip(names, r, strict=True)) for r in cur.fetchall())

    def rows_without_entry(self, table: str, *, above: int) -> list[int]:
        """Audit seqs above `above` of `table`'s rows that no audit entry of that table has."""
        if table not in TABLES:
            raise ValueError(f"unknown event table {table}")
        return [r[0] for r in self._all(
            f"SELECT t.audit_seq FROM {table} t WHERE t.audit_seq > ? AND NOT EXISTS (SELECT 1 "
            "FROM audit_log a WHERE a.seq = t.audit_seq AND a.event_table = ?) ORDER BY 1",
            [above, table])]

    def last_seq(self) -> int:
        """The chain's last seq as the database has it now (0 when empty)."""
        return self._one("SELECT coalesce(max(seq), 0) FROM audit_log")[0]

    def entry_hash_at(self, seq: int) -> str | None:
        row = self._one("SELECT entry_hash FROM audit_log WHERE seq = ?", [seq])
        return row[0] if row else None

    def last_verification(self) -> dict | None:
        """The latest recorded verification of the whole chain, or None."""
        return self._record("SELECT * FROM audit_verifications ORDER BY audit_seq DESC LIMIT 1")


class ReviewReads:
    """Review decisions and the queue."""

    def current_decision(self, prediction_id: str) -> dict | None:
        """The decision in force for a prediction (the one no later decision supersedes)."""
        return self._record(
            f"SELECT * FROM ({CURRENT_DECISIONS}) cd WHERE prediction_id = ? "
            "ORDER BY audit_seq DESC LIMIT 1", [prediction_id])

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
            "AND (CAST(? AS TEXT) IS NULL OR p.model_version = ?) "
            f"AND (CAST(? AS TEXT) IS NULL OR {self._dialect.list_contains('p.reason_codes', '?')}) "
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
            f"LEFT JOIN ({CURRENT_DECISIONS}) d USING (prediction_id) "
            "WHERE p.user_name = ? ORDER BY p.audit_seq DESC LIMIT ?", [user, limit])

class OutcomeReads:
    """Outcomes at the horizon."""

    def current_outcome(self, prediction_id: str) -> dict | None:
        return self._record(
            f"SELECT * FROM ({CURRENT_OUTCOMES}) co WHERE prediction_id = ? "
            "ORDER BY audit_seq DESC LIMIT 1", [prediction_id])

    def outcome_history(self, prediction_id: str) -> pd.DataFrame:
        return self._frame("SELECT * FROM outcomes WHERE prediction_id = ? ORDER BY audit_seq",
                           [prediction_id])

    def due_outcomes(self, *, now: datetime, horizons: dict[str, int], limit: int = 500
                     ) -> pd.DataFrame:
        """Predictions past their own version's horizon (`horizons`: version -> days) with no
        outcome recorded, most overdue first."""
        due = self._dialect.plus_days("p.created_at", "h.horizon_days")
        return self._frame(
            "WITH h AS (SELECT unnest(CAST(? AS VARCHAR[])) AS model_version, "
            "unnest(CAST(? AS INTEGER[])) AS horizon_days) "
            "SELECT p.prediction_id, p.created_at, phi.patient_ref, p.risk, p.risk_class, "
            "p.routing, p.model_version, p.user_name, h.horizon_days, "
            f"{self._dialect.days_between(due, 'CAST(? AS TIMESTAMP)')} "
            "AS days_overdue FROM predictions p JOIN h USING (model_version) "
            "LEFT JOIN phi_inputs phi USING (prediction_id) "
            f"WHERE {due} <= CAST(? AS TIMESTAMP) "
            "AND NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.prediction_id = p.prediction_id) "
            "ORDER BY days_overdue DESC, p.audit_seq LIMIT ?",
            [list(horizons), list(horizons.values()), now, now, limit])

    def prediction_versions(self) -> list[str]:
        """Every model version that has made a recorded prediction."""
        return [r[0] for r in self._all("SELECT DISTINCT model_version FROM predictions "
                                        "ORDER BY model_version")]

    def predictions_for_patient(self, patient_key: str) -> pd.DataFrame:
        return self._frame("SELECT prediction_id, created_at, model_version FROM predictions "
                           "WHERE patient_key = ? ORDER BY audit_seq", [patient_key])

class AccessReads:
    """Accounts and access events."""


    def user(self, username: str) -> dict | None:
        """The current state of one account (latest row), with its password hash."""
        return self._record(
            "SELECT username, display_name, roles_json, active, password_hash FROM user_events "
            "WHERE username = ? ORDER BY audit_seq DESC LIMIT 1", [username])

    def users(self) -> pd.DataFrame:
        """Every account's current state, never the password hash."""
        return self._frame(
            f"SELECT username, display_name, roles_json, active, action AS last_change, "
            f"created_at AS changed_at, user_name AS changed_by FROM "
            f"({self._dialect.latest_per('user_events', 'username')}) u ORDER BY username")

    def count_access(self, *, username: str, action: str, since: datetime,
                     source: str | None = None) -> int:
        """Access events of one user and action since a time (from one source, if given)."""
        return self._one("SELECT count(*) FROM access_events WHERE user_name = ? AND action = ? "
                         "AND created_at >= ? AND (CAST(? AS TEXT) IS NULL OR source = ?)",
                         [username, action, since, source, source])[0]

    def last_access(self, *, username: str, action: str, source: str | None = None) -> datetime | None:
        """When a user's latest event of this action was (from one source, if given)."""
        row = self._one("SELECT max(created_at) FROM access_events WHERE user_name = ? "
                        "AND action = ? AND (CAST(? AS TEXT) IS NULL OR source = ?)",
                        [username, action, source, source])
        return row[0] if row else None

    def client(self, name: str) -> dict | None:
        """The current state of one API client (latest row), with its token's sha256."""
        return self._record(
            "SELECT client_name, roles_json, active, token_sha256, action, created_at, user_name "
            "FROM client_events WHERE client_name = ? ORDER BY audit_seq DESC LIMIT 1", [name])

    def client_for_token(self, token_sha256: str) -> dict | None:
        """The current state of the client a token was issued to (whatever that state is now:
        revoked, or holding a newer token), or None for a token never issued."""
        return self._record(
            "SELECT client_name, roles_json, active, token_sha256 FROM client_events WHERE "
            "client_name = (SELECT client_name FROM client_events WHERE token_sha256 = ? AND "
            "action = 'created' LIMIT 1) ORDER BY audit_seq DESC LIMIT 1", [token_sha256])

    def clients(self) -> list[dict]:
        """Every API client's current state, never the token's hash."""
        return [dict(zip(("client_name", "roles_json", "active", "last_change", "changed_at",
                          "changed_by"), row, strict=True)) for row in self._all(
            "SELECT client_name, roles_json, active, action, created_at, user_name FROM "
            f"({self._dialect.latest_per('client_events', 'client_name')}) c ORDER BY client_name")]
