"""The store: fail closed when it cannot be written, one transaction per event (no audit entry
without its prediction), an append leaves the caller's events as they were, migrations applied
once, and a contiguous audit chain under 40 concurrent scoring threads."""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import store_oracle as oracle

import core
from core import store as core_store
from core.clock import now_utc
from core.store import Event, Store
from core.store.records import Prediction

GENESIS = "0" * 64
HOLD_FILE = """
import sys, time
import duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
print("holding", flush=True)
time.sleep(120)
"""


def assert_chain_contiguous(store: Store, n: int) -> None:
    """seq runs 1..n and every entry points at the hash of the one before it."""
    entries = oracle.rows(store, "audit_log")
    assert list(entries["seq"]) == list(range(1, n + 1))
    assert entries.iloc[0]["prev_hash"] == GENESIS
    assert list(entries["prev_hash"].iloc[1:]) == list(entries["entry_hash"].iloc[:-1])
    assert entries["entry_hash"].is_unique
    assert store.head() == (n, entries.iloc[-1]["entry_hash"] if n else GENESIS)


def _counts(store: Store) -> tuple[int, int, int]:
    return store.count("audit_log"), store.count("predictions"), store.count("rejected_inputs")


# ---- fail closed ------------------------------------------------------------------------------


def test_store_held_by_another_process_fails_closed(fresh_store: Store, tmp_path: Path,
                                                    monkeypatch, valid_payload):
    held = tmp_path / "held.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_FILE, str(held)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("APP_DB", str(held))
        results = []
        with pytest.raises(core.StoreUnavailable, match="in use by another process"):
            results.append(core.score(valid_payload, user="dr.test", source="form"))
        assert results == []
        # An invalid payload cannot be recorded either: the store error wins, nothing is lost silently.
        with pytest.raises(core.StoreUnavailable):
            core.score({**valid_payload, "egfr": "bad"}, user="dr.test", source="form")
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    # Once released, the file opens and holds nothing from the refused calls.
    reopened = core_store.open_store(held)
    assert _counts(reopened) == (0, 0, 0)


class InsertRefusal:
    """Makes the database refuse inserts into an event table (a trigger that raises an error),
    through the store's own connection."""

    def __init__(self, store: Store):
        self._store = store
        oracle.sql(store, "CREATE TABLE IF NOT EXISTS refusal_sink (x TEXT)")
        self.tables: list[str] = []

    def refuse(self, table: str) -> None:
        oracle.sql(self._store, f"CREATE TRIGGER refuse_{table} AFTER INSERT ON {table} "
                   "FOR EACH STATEMENT INSERT INTO refusal_sink SELECT error('disk refused')")
        self.tables.append(table)

    def allow(self, table: str) -> None:
        oracle.sql(self._store, f"DROP TRIGGER refuse_{table} ON {table}")
        self.tables.remove(table)


@pytest.fixture
def refusal(fresh_store: Store):
    """Switch insert refusals on and off; all are switched off after the test."""
    refusal = InsertRefusal(fresh_store)
    yield refusal
    for table in list(refusal.tables):
        refusal.allow(table)


def test_refused_prediction_insert_rolls_back_everything(fresh_store: Store, refusal,
                                                         valid_payload):
    first = core.score({**valid_payload, "patient_ref": "P-1"}, user="dr.test", source="form")
    before, head = _counts(fresh_store), fresh_store.head()

    refusal.refuse("predictions")
    results = []
    for ref in ("P-2", "P-3"):
        with pytest.raises(core.StoreUnavailable, match="disk refused"):
            results.append(core.score({**valid_payload, "patient_ref": ref}, user="dr.test", source="form"))
    assert results == []
    assert _counts(fresh_store) == before  # no audit entry without its prediction
    assert fresh_store.head() == head

    refusal.allow("predictions")
    second = core.score({**valid_payload, "patient_ref": "P-4"}, user="dr.test", source="form")
    assert fresh_store.prediction(second.prediction_id) is not None
    assert fresh_store.prediction(first.prediction_id) is not None
    assert _counts(fresh_store) == (2, 2, 0)
    assert_chain_contiguous(fresh_store, 2)


def test_refused_rejection_insert_fails_closed(fresh_store: Store, refusal, valid_payload):
    core.score(valid_payload, user="dr.test", source="form")
    before = _counts(fresh_store)
    refusal.refuse("rejected_inputs")
    with pytest.raises(core.StoreUnavailable):
        core.score({**valid_payload, "egfr": "bad"}, user="dr.test", source="form")
    assert _counts(fresh_store) == before
    refusal.allow("rejected_inputs")
    with pytest.raises(core.InvalidInput):
        core.score({**valid_payload, "egfr": "bad"}, user="dr.test", source="form")
    assert _counts(fresh_store) == (2, 1, 1)
    assert_chain_contiguous(fresh_store, 2)


# ---- the append path --------------------------------------------------------------------------


def prediction_event(i: int) -> Event:
    at = now_utc()
    record = Prediction(
        prediction_id=f"pred-{i}", created_at=at, user_name="dr.test", source="form",
        patient_key=f"key-{i}", input_sha256="0" * 64, risk=0.1, risk_low=0.05, risk_high=0.2,
        risk_class="low", confidence=0.9, routing="auto_finalised", reasons_json="[]",
        reason_codes=[], factors_json="[]", model_version="v1", model_sha256="1" * 64)
    return Event("prediction", "dr.test", at, record.prediction_id, record,
                 phi={"prediction_id": record.prediction_id, "created_at": at,
                      "patient_ref": f"P-{i}", "input_json": "{}"})


@pytest.mark.parametrize("n", [1, 5, 30])  # one insert, executemany, one Arrow insert
def test_append_leaves_the_callers_events_unchanged(fresh_store: Store, n: int):
    events = [prediction_event(i) for i in range(n)]
    before = copy.deepcopy(events)
    seqs = fresh_store.append(events)
    assert events == before  # no audit seq (or anything else) written into the caller's objects
    assert all("audit_seq" not in ev.phi and "audit_seq" not in ev.record.row() for ev in events)
    stored = oracle.rows(fresh_store, "predictions")
    assert stored["audit_seq"].tolist() == seqs == list(range(1, n + 1))  # the rows carry them
    assert stored["prediction_id"].tolist() == [ev.record.prediction_id for ev in events]


# ---- migrations -------------------------------------------------------------------------------


def test_migrations_are_recorded_and_applied_once(fresh_store: Store, valid_payload):
    core.score(valid_payload, user="dr.test", source="form")
    query = "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
    applied = oracle.sql(fresh_store, query)
    versions = [v for v, _, _ in applied]
    assert versions == [m[0] for m in core_store.MIGRATIONS]
    assert [n for _, n, _ in applied] == [m[1] for m in core_store.MIGRATIONS]

    path = fresh_store.path
    core_store.close_all()
    reopened = core_store.open_store(path)
    assert reopened is not fresh_store
    assert oracle.sql(reopened, query) == applied
    assert _counts(reopened) == (1, 1, 0)
    assert_chain_contiguous(reopened, 1)  # the head is read back from the file
    core.score({**valid_payload, "patient_ref": "P-2"}, user="dr.test", source="form")
    assert_chain_contiguous(reopened, 2)


# ---- concurrency ------------------------------------------------------------------------------


def test_forty_threads_scoring_at_once(fresh_store: Store, valid_payload):
    threads_n, per_thread = 40, 10
    start = threading.Barrier(threads_n)
    results: list = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                payload = {**valid_payload, "patient_ref": f"T{t:02d}-{i:02d}",
                           "potassium": 3.6 + 0.1 * (i % 10)}
                r = core.score(payload, user=f"user{t:02d}", source="form")
                with lock:
                    results.append((t, i, r))
        except BaseException as exc:  # noqa: BLE001 (every failure is reported below)
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads)
    assert errors == []

    total = threads_n * per_thread
    assert len(results) == total
    ids = {r.prediction_id for _, _, r in results}
    assert len(ids) == total
    assert _counts(fresh_store) == (total, total, 0)
    assert_chain_contiguous(fresh_store, total)

    rows = oracle.sql(fresh_store, "SELECT p.prediction_id, p.audit_seq, p.user_name, a.kind, "
                      "a.subject FROM predictions p JOIN audit_log a ON a.seq = p.audit_seq")
    assert {r[0] for r in rows} == ids
    assert len({r[1] for r in rows}) == total
    assert all(kind == "prediction" and subject == pid for pid, _, _, kind, subject in rows)
    by_id = {r.prediction_id: (t, r) for t, _, r in results}
    for pid, _, user, _, _ in rows:
        t, r = by_id[pid]
        assert user == f"user{t:02d}"
        assert r.patient_ref.startswith(f"T{t:02d}-")
