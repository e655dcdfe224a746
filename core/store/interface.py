"""The store's declared interface: every call production code makes on a store, and nothing
else. Callers annotate with `Store`; `open_store` returns one. The DuckDB implementation
(core/store/__init__.py, its dialect in duckdb_dialect.py) and the PostgreSQL one
(core/store/postgres.py, postgres_dialect.py) stand behind it. A test checks both ways: each
implementation has every member, and production calls nothing on a store that is not a member.

Rows are dicts (column -> value), lists of rows are DataFrames; the monitoring aggregates take
a filter `f` = (start, end, model version or None) over [start, end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from core.store.records import Event, ServiceEvent


@runtime_checkable
class Store(Protocol):
    """An open store: append-only event tables and one audit chain."""

    path: Path | str  # where it is: a file, or a database URL without its password (names its
    # backups; keys what this process has verified of it)

    # ---- the one write path, and the store as a whole ----------------------------------

    def append(self, events: list[Event], *, also: tuple[tuple[str, list], ...] = (),
               precondition: Callable[[], None] | None = None) -> list[int]:
        """Commit the events' records and chained audit entries in one transaction; their seqs.
        `precondition` runs inside it before anything is written (and again on a retry)."""

    def purge_phi(self, *, before: datetime, event: Callable[[int], Event]) -> int:
        """Delete raw inputs older than `before` and record `event(rows_removed)`, together."""

    def privilege_problems(self) -> list[str]:
        """Why the role this process writes as may do more than read and append (empty: it
        may not): the database's own least-privilege setup, where it has one."""

    def checkpoint(self) -> None:
        """Make the store's file alone the whole store (nothing pending in a log beside it)."""

    def copy_to(self, target: Path) -> None:
        """A consistent copy of every table in the new file `target` (a backup)."""

    def close(self) -> None: ...

    # ---- state, records and counts -------------------------------------------------------

    def active_activation(self, *, fresh: bool = False) -> tuple[str, str] | None:
        """(version, model_sha256) of the latest activation; None when never activated."""

    def service_state(self, *, fresh: bool = False) -> ServiceEvent | None:
        """(action, by, when, reason) of the latest suspend or resume; None when never."""

    def last_configuration(self) -> str | None:
        """The settings last recorded (canonical JSON)."""

    def activations(self) -> pd.DataFrame: ...

    def signoff_records(self) -> pd.DataFrame: ...

    def stop_rule_records(self) -> pd.DataFrame:
        """The stop rules' recommendation events, oldest first (every column but the audit seq)."""

    def assessment_records(self) -> pd.DataFrame:
        """The deployment assessments, oldest first (every column but the audit seq)."""

    def governance_counts(self) -> dict:
        """The counts the governance page answers from."""

    def count(self, table: str) -> int:
        """Rows of an event table (or of the audit log)."""

    def prediction(self, prediction_id: str) -> dict | None:
        """A prediction's row with its raw input and patient reference (while kept)."""

    def recent_predictions_with_review(self, *, user: str, limit: int = 20) -> pd.DataFrame: ...

    # ---- the audit chain -----------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """(seq, entry hash) of the chain's last entry, as the database has it now."""

    def last_seq(self) -> int: ...

    def entry_hash_at(self, seq: int) -> str | None: ...

    def iter_audit(self, *, after: int = 0, upto: int | None = None) -> Iterator[dict]:
        """Audit entries with after < seq <= upto, in seq order (in windows, not all at once)."""

    def iter_rows(self, table: str, *, after: int = 0, upto: int | None = None) -> Iterator[dict]:
        """An event table's rows with after < audit_seq <= upto, in audit-seq order."""

    def rows_without_entry(self, table: str, *, above: int) -> list[int]:
        """Audit seqs above `above` of the table's rows that no audit entry of it has."""

    def entry_batches(self, *, after: int, upto: int) -> Iterator:
        """Entries with after < seq <= upto as Arrow batches in stored order, each with the
        text its entry hash is computed from (entry_text)."""

    def row_batches(self, table: str, *, after: int, upto: int) -> Iterator | None:
        """A table's rows with after < audit_seq <= upto as Arrow batches in stored order:
        audit_seq and row_json (its whole-row content); None when the table has no bulk form."""

    def bounded_memory(self, *, entries: int) -> AbstractContextManager:
        """A context in which a chain of `entries` entries is read with the database's cache
        bounded (when it is long), its settings put back after."""

    def last_verification(self) -> dict | None:
        """The latest recorded verification of the whole chain."""

    # ---- review and outcomes -------------------------------------------------------------

    def current_decision(self, prediction_id: str) -> dict | None:
        """The review decision in force for a prediction (none later supersedes it)."""

    def pending_reviews(self, *, reason: str | None = None, model_version: str | None = None,
                        limit: int = 500) -> pd.DataFrame: ...

    def recent_decisions(self, *, limit: int = 50) -> pd.DataFrame: ...

    def current_outcome(self, prediction_id: str) -> dict | None: ...

    def outcome_history(self, prediction_id: str) -> pd.DataFrame: ...

    def due_outcomes(self, *, now: datetime, horizons: dict[str, int], limit: int = 500
                     ) -> pd.DataFrame:
        """Predictions past their version's horizon (version -> days) with no outcome."""

    def prediction_versions(self) -> list[str]: ...

    def predictions_for_patient(self, patient_key: str) -> pd.DataFrame: ...

    # ---- accounts and access -------------------------------------------------------------

    def user(self, username: str) -> dict | None:
        """One account's current state, with its password hash."""

    def users(self) -> pd.DataFrame:
        """Every account's current state, never a password hash."""

    def count_access(self, *, username: str, action: str, since: datetime,
                     source: str | None = None) -> int: ...

    def last_access(self, *, username: str, action: str,
                    source: str | None = None) -> datetime | None: ...

    def client(self, name: str) -> dict | None:
        """One API client's current state, with its token's sha256."""

    def client_for_token(self, token_sha256: str) -> dict | None:
        """The current state of the client a token was issued to, or None."""

    def clients(self) -> list[dict]:
        """Every API client's current state, never a token's hash."""

    # ---- monitoring aggregates (chart-sized, computed by the database) ---------------------

    def agg_override_weekly(self, f: tuple) -> pd.DataFrame: ...

    def agg_override_window(self, f: tuple) -> pd.DataFrame: ...

    def agg_reason_codes(self, f: tuple) -> pd.DataFrame: ...

    def agg_predictions_daily(self, f: tuple) -> pd.DataFrame: ...

    def agg_review_share(self, f: tuple) -> pd.DataFrame: ...

    def agg_ood_reasons(self, f: tuple) -> pd.DataFrame: ...

    def agg_backlog(self, f: tuple, now: datetime) -> pd.DataFrame: ...

    def agg_time_to_decision(self, f: tuple) -> pd.DataFrame: ...

    def agg_reviewer_workload(self, f: tuple) -> pd.DataFrame: ...

    def agg_rejected_fields(self, f: tuple, known: list[str], unknown: str) -> pd.DataFrame: ...

    def outcome_pairs(self, f: tuple, features: tuple[str, ...] = ()) -> pd.DataFrame: ...

    # ---- alerts sent, failed and cleared (core.alerts) -------------------------------------

    def alert_states(self) -> pd.DataFrame:
        """The latest notification of each (condition key, channel), a clear's channel ''."""

    def recent_alert_notifications(self, *, limit: int = 50) -> pd.DataFrame:
        """The latest `limit` alert notifications, newest first."""

    # ---- input drift aggregates (core.drift; chart-sized, computed by the database) -----------

    def agg_drift_inputs(self, f: tuple) -> pd.DataFrame:
        """(model_version, n): predictions in the window whose raw inputs are still kept."""

    def agg_drift_window(self, f: tuple, bins: list[tuple]) -> pd.DataFrame:
        """(model_version, feature, bin, value, n) per bin of a number, per value of the others."""

    def agg_drift_weekly(self, f: tuple, features: list[tuple]) -> pd.DataFrame:
        """(week, model_version, feature, predictions, missing, out_of_range) per week."""
