"""`audit verify` covers every column of every event table: with the append-only triggers
dropped (someone holding the file), an edit of any single column, of any table, is named with
its entry. An account takeover by a replaced password hash is one of them."""

from __future__ import annotations

import gzip
from datetime import date, datetime, timedelta

import duckdb
import pytest
from chain_support import every_table_store
from conftest import REPO
from store_oracle import drop_guards, sql

import core
from core import auth
from core import store as core_store
from core.serving import activate
from core.store import TABLES
from core.verification import record_verification, verify_audit


@pytest.fixture(scope="module")
def every_table(tmp_path_factory, request):
    """A store with at least one row in every event table, made by the product's own calls."""
    path = tmp_path_factory.mktemp("columns") / "store.duckdb"
    with every_table_store(path, "COL") as store:
        problems, head = verify_audit(store)
        record_verification(store, problems, head, by="alice")
        assert verify_audit(store)[0] == []
        assert all(store.count(table) >= 1 for table in TABLES), {t: store.count(t) for t in TABLES}
        yield store


def changed(value):
    """Another value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.125
    if isinstance(value, datetime):
        return value + timedelta(seconds=1)
    if isinstance(value, date):
        return value + timedelta(days=1)
    if isinstance(value, list):
        return [*value, "tampered"]
    if value is None:
        return "tampered"
    return str(value) + "-tampered"


COLUMNS = [(table, column) for table, columns in TABLES.items() for column in columns
           if column != "audit_seq"]


@pytest.mark.parametrize("table, column", COLUMNS, ids=[f"{t}.{c}" for t, c in COLUMNS])
def test_an_edit_of_any_column_is_named_with_its_entry(every_table, table, column):
    store = every_table
    drop_guards(store)
    seq, original = sql(store, f"SELECT audit_seq, {column} FROM {table} ORDER BY audit_seq DESC LIMIT 1")[0]
    try:
        try:
            sql(store, f"UPDATE {table} SET {column} = ? WHERE audit_seq = ?", [changed(original), seq])
        except duckdb.ConversionException:  # a NULL in a typed column: another value of its type
            sql(store, f"UPDATE {table} SET {column} = ? WHERE audit_seq = ?", [0, seq])
        problems, _ = verify_audit(store)
        assert problems and problems[0].startswith(f"entry {seq} ("), problems
        assert f"{table}.{column} differs from what was recorded" in problems[0]
    finally:
        sql(store, f"UPDATE {table} SET {column} = ? WHERE audit_seq = ?", [original, seq])
    assert verify_audit(store)[0] == []


def test_a_replaced_password_hash_is_caught(every_table):
    store = every_table
    drop_guards(store)
    seq, real = sql(store, "SELECT audit_seq, password_hash FROM user_events WHERE username = 'alice'")[0]
    known = auth.PasswordHasher().hash("attacker-password")
    try:
        sql(store, "UPDATE user_events SET password_hash = ? WHERE audit_seq = ?", [known, seq])
        problems, _ = verify_audit(store)
        assert f"entry {seq} (user_created): user_events.password_hash differs" in problems[0]
    finally:
        sql(store, "UPDATE user_events SET password_hash = ? WHERE audit_seq = ?", [real, seq])
    # the chain holds the hash's fingerprint, never the hash itself
    assert real not in " ".join(r[0] for r in sql(store, "SELECT content_json FROM audit_log"))


LEGACY = REPO / "tests" / "fixtures" / "store-before-records.duckdb.gz"  # made by the release before


@pytest.fixture
def legacy_store(tmp_path, monkeypatch):
    """A store written by the release before whole-row entries (13 entries of every kind)."""
    from conftest import MODELS, TEST_PATIENT_KEY

    path = tmp_path / "store.duckdb"
    path.write_bytes(gzip.decompress(LEGACY.read_bytes()))
    for name, value in {"APP_DB": str(path), "APP_MODELS": str(MODELS), "APP_DEMO": "0",
                        "APP_PATIENT_KEY": TEST_PATIENT_KEY}.items():
        monkeypatch.setenv(name, value)
    yield core_store.open_store(path)  # migrated to this version on opening
    core_store.close_all()


def test_a_store_of_the_release_before_keeps_verifying_and_grows(legacy_store):
    from conftest import TYPICAL_PATIENT

    assert verify_audit(legacy_store) == ([], legacy_store.head())
    assert legacy_store.head()[0] == 13
    # the outcome's value, recorded before the column had its generic name, is still there
    outcome = sql(legacy_store, "SELECT prediction_id FROM outcomes")[0][0]
    assert legacy_store.current_outcome(outcome)["measured_value"] == 6.0
    # v1 comes in a new file format (its hash changed), so it is activated again, as documented
    activate("v1", by="ops", reason="v1 in the new artefact format")
    core.score({**TYPICAL_PATIENT, "patient_ref": "NEW-1"}, user="dr", source="form")
    auth.record_access("alice", "sign_out")
    problems, head = verify_audit(legacy_store)
    assert problems == [] and head[0] == 16


def test_an_old_entry_is_checked_by_the_rules_it_was_written_with(legacy_store):
    drop_guards(legacy_store)
    sql(legacy_store, "UPDATE predictions SET risk = 0.99 WHERE audit_seq = 5")
    problems, _ = verify_audit(legacy_store)
    assert problems[0] == "entry 5 (prediction): predictions.risk differs from what was recorded"


def test_a_store_an_earlier_m009_renamed_without_keeping_the_rename_opens_and_verifies(
        tmp_path, monkeypatch):
    """A release numbered its outcome-column rename m009 but kept no record of it (no
    renamed_columns table): such a store opens, m012 recovers the old name from its chain, and
    its older entries still verify."""
    import duckdb
    from conftest import MODELS, TEST_PATIENT_KEY

    path = tmp_path / "store.duckdb"
    path.write_bytes(gzip.decompress(LEGACY.read_bytes()))
    with duckdb.connect(str(path)) as db:  # what that release's m009 did, and nothing more
        done = max(r[0] for r in db.execute("SELECT version FROM schema_migrations").fetchall())
        for version, name, text in core_store.MIGRATIONS:  # that release's migrations before m009
            if done < version < 9:
                db.execute(text)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
        old = next(c for (c,) in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'outcomes'"
        ).fetchall() if c not in core_store.TABLES["outcomes"])
        db.execute(f'ALTER TABLE outcomes RENAME COLUMN "{old}" TO measured_value')
        db.execute("INSERT INTO schema_migrations VALUES (9, 'm009_generic_outcome_value', now())")
    for name, value in {"APP_DB": str(path), "APP_MODELS": str(MODELS), "APP_DEMO": "0",
                        "APP_PATIENT_KEY": TEST_PATIENT_KEY}.items():
        monkeypatch.setenv(name, value)
    try:
        store = core_store.open_store(path)
        assert sql(store, "SELECT table_name, old_name, new_name FROM renamed_columns") == [
            ("outcomes", old, "measured_value")]
        assert verify_audit(store) == ([], store.head())
        outcome = sql(store, "SELECT prediction_id FROM outcomes")[0][0]
        assert store.current_outcome(outcome)["measured_value"] == 6.0
    finally:
        core_store.close_all()
