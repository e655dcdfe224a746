"""`audit verify` in bulk: the texts the store builds in SQL are core.audit's canonical JSON, an
intact chain is checked to its head without asking Python row by row, values SQL writes in
another notation are settled by core.audit's own rules, and a tampered chain gets exactly the
problems the row-by-row walk (the definition) names, wherever in the chain they are."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from chain_support import every_table_store
from store_oracle import drop_guards, sql

from core import audit, audit_windows, verification
from core import store as core_store
from core.clock import now_utc
from core.store import TABLES, Event, Store, chain_windows
from core.store.records import RECORDS, AccessEvent, OutcomeRecord, chain_content
from core.verification import _expected, verify_audit


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A store with rows in every event table and some thirty entries, made by the product."""
    path = tmp_path_factory.mktemp("bulk") / "store.duckdb"
    with every_table_store(path, "BULK", comment='a "quoted" comment\\with a backslash',
                           more_scores=20) as store:
        assert all(store.count(table) >= 1 for table in TABLES if table != "audit_verifications")
        yield store


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of 4 entries, checked in bulk from 4: the fixture's chain spans several batches,
    so a problem can be in any."""
    monkeypatch.setattr(chain_windows, "BATCH_ROWS", 4)
    monkeypatch.setattr(verification, "WALK_UP_TO", 4)


def walked(store: Store, head: tuple[int, str] | None = None) -> tuple[list[str], tuple[int, str]]:
    """The definition: verify_audit as it was before the bulk check, every entry and row read
    as dicts and walked by core.audit.verify_chain."""
    upto = store.last_seq()
    rows = {table: store.iter_rows(table, upto=upto) for table in TABLES}
    problems, last = audit.verify_chain(store.iter_audit(upto=upto), rows, head=head,
                                        content_of=_expected)
    for table in TABLES:
        problems += [f"{table} row with audit seq {seq} has no audit entry (inserted)"
                     for seq in store.rows_without_entry(table, above=upto)]
    return problems, last


def bulk(store: Store) -> tuple[tuple[int, str], list]:
    """How far the bulk check alone finds the chain intact, and what it asked Python to settle."""
    upto, asked = store.last_seq(), []

    def entries_ok(seqs):
        asked.append(("entries", seqs))
        return True

    def rows_ok(table, rows):
        asked.append((table, [seq for seq, _ in rows]))
        return True

    (reached, _), _ = audit_windows.intact_through(
        (0, audit.GENESIS), store.entry_batches(after=0, upto=upto),
        {table: store.row_batches(table, after=0, upto=upto) for table in TABLES},
        entries_ok=entries_ok, rows_ok=rows_ok)
    return (reached, upto), asked


def test_sql_texts_are_the_canonical_json_of_core_audit(chain):
    upto = chain.last_seq()
    for table in TABLES:
        texts = {}
        for batch in chain.row_batches(table, after=0, upto=upto):
            texts.update(zip(batch.column("audit_seq").to_pylist(),
                             batch.column("row_json").to_pylist(), strict=True))
        rows = list(chain.iter_rows(table, upto=upto))
        assert len(texts) == len(rows)
        for row in rows:
            assert texts[row["audit_seq"]] == audit.canonical_json(chain_content(RECORDS[table], row))
    texts = {}
    for batch in chain.entry_batches(after=0, upto=upto):
        texts.update(zip(batch.column("seq").to_pylist(), batch.column("entry_text").to_pylist(),
                         strict=True))
    for e in chain.iter_audit(upto=upto):
        assert texts[e["seq"]] == audit.canonical_json(
            [e["prev_hash"], e["seq"], e["recorded_at"].isoformat(), e["kind"], e["actor"],
             e["subject"], e["event_table"], e["content_sha256"]])


def test_an_intact_chain_is_checked_in_bulk_to_its_head(chain, small_batches):
    (reached, upto), asked = bulk(chain)
    assert reached == upto > 20 and asked == []
    assert verify_audit(chain) == walked(chain) == ([], chain.head())


def test_values_sql_writes_otherwise_are_settled_by_python(tmp_path):
    store = core_store.open_file(tmp_path / "odd.duckdb")
    try:
        odd = "x\x1fy"  # a control character: to_json escapes it in upper case, canonical_json not
        at = now_utc().replace(microsecond=0)  # isoformat without microseconds
        store.append([Event("access_sign_in", odd, at, odd, AccessEvent(
            event_id=str(uuid.uuid4()), created_at=at, user_name=odd, action="sign_in",
            detail=f"from {odd}", source=""))])
        store.append([Event("outcome", "dr", datetime(2026, 1, 2, 3, 4, 5, 6), "p-1", OutcomeRecord(
            outcome_id=str(uuid.uuid4()), created_at=datetime(2026, 1, 2, 3, 4, 5, 6),
            user_name="dr", prediction_id="p-1", event=False, event_date=None,
            measured_value=1e-06, source="lab", supersedes=None))])  # to_json writes 1e-06
        (reached, upto), asked = bulk(store)
        assert reached == upto == 2
        assert ("entries", [1]) in asked and ("access_events", [1]) in asked
        assert ("outcomes", [2]) in asked
        assert verify_audit(store) == ([], store.head())
        drop_guards(store)
        sql(store, "UPDATE outcomes SET measured_value = 2e-06")
        problems, _ = verify_audit(store)
        assert problems == ["entry 2 (outcome): outcomes.measured_value differs from what was "
                            "recorded"] == walked(store)[0]
    finally:
        store.close()


TAMPERING = {
    "an edited column": ["UPDATE predictions SET risk = 0.5 WHERE audit_seq = {late}"],
    "an edited column in the first batch": ["UPDATE config_events SET settings_json = '{{}}'"],
    "a deleted row": ["DELETE FROM predictions WHERE audit_seq = {mid}"],
    "a row with another's seq": [
        "INSERT INTO predictions SELECT * REPLACE ('forged' AS prediction_id, {mid} AS audit_seq) "
        "FROM predictions WHERE audit_seq = {late}"],
    "a row under another table's entry": [
        "INSERT INTO access_events SELECT * REPLACE ('forged' AS event_id, {mid} AS audit_seq) "
        "FROM access_events LIMIT 1"],
    "a row moved past the head": ["UPDATE predictions SET audit_seq = 1000 WHERE audit_seq = {mid}"],
    "an altered content": [
        "UPDATE audit_log SET content_json = replace(content_json, 'dr', 'xx') WHERE seq = {late}"],
    "an altered entry": ["UPDATE audit_log SET actor = 'someone' WHERE seq = {mid}"],
    # the entry text holds prev_hash and content_sha256: each altered, also around a quote
    "an altered prev_hash": [
        "UPDATE audit_log SET prev_hash = (SELECT entry_hash FROM audit_log WHERE seq = {late}) "
        "WHERE seq = {mid}"],
    "a prev_hash with more after it": ["UPDATE audit_log SET prev_hash = prev_hash || '\",x' "
                                       "WHERE seq = {mid}"],
    "an altered content hash": ["UPDATE audit_log SET content_sha256 = sha256('forged') "
                                "WHERE seq = {late}"],
    "a content hash after a quote": ["UPDATE audit_log SET content_sha256 = '\"' || "
                                     "content_sha256 WHERE seq = {mid}"],
    "a deleted entry": ["DELETE FROM audit_log WHERE seq = {mid}"],
    "reordered entries": ["UPDATE audit_log SET seq = 1000 WHERE seq = {mid}",
                          "UPDATE audit_log SET seq = {mid} WHERE seq = {late}",
                          "UPDATE audit_log SET seq = {late} WHERE seq = 1000"],
    "a truncated tail": ["DELETE FROM audit_log WHERE seq >= {late}",
                         "DELETE FROM predictions WHERE audit_seq >= {late}"],
    # the same rows, stored in another order: intact, the walk (in seq order) says so
    "a row stored out of order": [
        "CREATE TABLE moved AS SELECT * FROM predictions WHERE audit_seq = {mid}",
        "DELETE FROM predictions WHERE audit_seq = {mid}",
        "INSERT INTO predictions SELECT * FROM moved", "DROP TABLE moved"],
    "an entry stored out of order": [
        "CREATE TABLE moved AS SELECT * FROM audit_log WHERE seq = {mid}",
        "DELETE FROM audit_log WHERE seq = {mid}",
        "INSERT INTO audit_log SELECT * FROM moved", "DROP TABLE moved"],
}
STORED_OUT_OF_ORDER = [TAMPERING["a row stored out of order"], TAMPERING["an entry stored out of order"]]


@pytest.mark.parametrize("statements", TAMPERING.values(), ids=TAMPERING.keys())
def test_bulk_verify_names_what_the_walk_names(chain, small_batches, tmp_path, statements):
    head = chain.head()
    chain.copy_to(tmp_path / "copy.duckdb")
    copy = core_store.open_file(tmp_path / "copy.duckdb")
    try:
        drop_guards(copy)
        mid, late = head[0] // 2, head[0] - 2
        for statement in statements:
            sql(copy, statement.format(mid=mid, late=late))
        assert verify_audit(copy) == walked(copy)
        assert verify_audit(copy, head=head) == walked(copy, head=head)
        assert (verify_audit(copy, head=head)[0] == []) is (statements in STORED_OUT_OF_ORDER)
    finally:
        copy.close()


def test_duckdb_settings_are_put_back_after_a_long_verification(chain, monkeypatch):
    def settings():
        return [sql(chain, "SELECT current_setting(?)", [name])[0][0]
                for name in chain_windows.VERIFY_SETTINGS]

    before = settings()
    with chain.bounded_memory(entries=10):  # a few entries: nothing changes
        assert settings() == before
    with chain.bounded_memory(entries=10**6):
        during = settings()
        with chain.bounded_memory(entries=10**6):  # a second one at once: the first puts back
            pass
        assert settings() == during != before
    assert settings() == before
    monkeypatch.setattr(chain_windows, "BOUND_ABOVE", 4)  # the fixture's chain counts as long
    monkeypatch.setattr(verification, "WALK_UP_TO", 4)
    assert verify_audit(chain)[0] == [] and settings() == before
