"""Tamper-evident audit trail: verify, tamper, truncation, retention purge, backup and restore."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest
import store_oracle as oracle
from conftest import MODELS

import core
from core import store as store_mod
from core.config import PROJ_ROOT
from core.maintenance import backup, purge_expired
from core.restore import restore
from core.store import Store, open_file, open_store
from core.verification import verify_audit

PATIENT = {"age": 70, "sex": "female", "weight_kg": 80, "egfr": 55, "potassium": 4.5,
           "diabetes": True, "raas_inhibitor": "acei", "spironolactone_dose_mg": 25,
           "nyha_class": "II", "lvef": 30, "sbp": 120, "loop_diuretic": True,
           "potassium_supplement": False, "nsaid": False}


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "audit.duckdb"
    monkeypatch.setenv("APP_DB", str(path))
    monkeypatch.setenv("APP_MODELS", str(MODELS))
    monkeypatch.setenv("APP_PATIENT_KEY", "k" * 40)
    monkeypatch.delenv("APP_DEMO", raising=False)
    yield path
    store_mod.close_all()


@pytest.fixture
def filled(db) -> Store:
    for i in range(6):
        core.score({**PATIENT, "patient_ref": f"SYN-{i}"}, user="dr.a", source="form")
    with pytest.raises(core.InvalidInput):
        core.score({**PATIENT, "patient_ref": "SYN-x", "age": "old"}, user="dr.a", source="form")
    return open_store(db)


def cli(*args, db: Path):
    env = {**os.environ, "APP_DB": str(db), "APP_PATIENT_KEY": "k" * 40,
           "APP_MODELS": str(MODELS)}
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True,
                          env=env, cwd=PROJ_ROOT, timeout=120)


def tamper(db: Path, *statements: str) -> None:
    """What someone with the file could do: drop the guards, then change rows."""
    store_mod.close_all()
    con = duckdb.connect(str(db))
    for name, table in con.execute("SELECT trigger_name, table_name FROM duckdb_triggers()").fetchall():
        con.execute(f"DROP TRIGGER {name} ON {table}")
    for sql in statements:
        con.execute(sql)
    con.close()


def test_intact_chain_verifies(filled, db):
    problems, (seq, _) = verify_audit(filled)
    assert problems == [] and seq == 7
    store_mod.close_all()
    proc = cli("audit", "verify", db=db)
    assert proc.returncode == 0 and "intact: 7 entries" in proc.stdout


@pytest.mark.parametrize("sql", ["UPDATE predictions SET risk = 0.01",
                                 "DELETE FROM predictions", "TRUNCATE predictions",
                                 "UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log",
                                 "DELETE FROM rejected_inputs", "UPDATE phi_inputs SET patient_ref = 'x'"])
def test_database_refuses_changes_to_records(filled, sql):
    with pytest.raises(duckdb.Error, match="append-only|never changed"):
        oracle.sql(filled, sql)


@pytest.mark.parametrize("statements,first_bad", [
    (["UPDATE predictions SET risk = 0.01 WHERE audit_seq = 3"], "entry 3 (prediction): predictions.risk"),
    (["UPDATE predictions SET risk_class = 'high', reasons_json = '[\"edited\"]' WHERE audit_seq = 2"],
     "entry 2 (prediction): predictions.reasons_json"),
    (["UPDATE audit_log SET content_json = replace(content_json, 'dr.a', 'dr.b') WHERE seq = 4"],
     "entry 4 (prediction): content does not match"),
    (["DELETE FROM predictions WHERE audit_seq = 5"], "entry 5 (prediction): its predictions row is missing"),
    (["DELETE FROM audit_log WHERE seq = 2"], "entry 2: missing or out of order"),
    (["UPDATE audit_log SET seq = 100 WHERE seq = 3", "UPDATE audit_log SET seq = 3 WHERE seq = 4",
      "UPDATE audit_log SET seq = 4 WHERE seq = 100"], "entry 3 (prediction): previous-entry hash"),
    (["INSERT INTO predictions SELECT * REPLACE ('forged' AS prediction_id, 99 AS audit_seq) "
      "FROM predictions WHERE audit_seq = 1"], "predictions row with audit seq 99 has no audit entry"),
])
def test_verify_names_first_bad_entry(filled, db, statements, first_bad):
    tamper(db, *statements)
    proc = cli("audit", "verify", db=db)
    assert proc.returncode == 1
    assert f"first bad entry: {first_bad}" in proc.stdout


def test_published_head_detects_truncated_tail(filled, db):
    seq, digest = filled.head()
    store_mod.close_all()
    assert cli("audit", "verify", "--head", f"{seq}:{digest}", db=db).returncode == 0
    # the tail cut off: the rejected input (entry 7) and the verification just recorded (entry 8)
    tamper(db, "DELETE FROM audit_log WHERE seq >= 7", "DELETE FROM rejected_inputs",
           "DELETE FROM audit_verifications")
    assert cli("audit", "verify", db=db).returncode == 0  # without the head the cut is invisible
    proc = cli("audit", "verify", "--head", f"{seq}:{digest}", db=db)
    # (the verification just recorded took seq 7 again: its hash is not the published one)
    assert proc.returncode == 1 and ("entries were removed from the end" in proc.stdout
                                     or "hash differs from the published head" in proc.stdout)


def test_retention_purge_keeps_chain_and_hashes(filled, db):
    before = filled.prediction(oracle.rows(filled, "audit_log")["subject"][0])
    assert before["patient_ref"] == "SYN-0"
    assert purge_expired(filled, days=0, by="dpo") == 6
    after = filled.prediction(before["prediction_id"])
    assert after["patient_ref"] is None and after["input_json"] is None
    assert after["patient_key"] == before["patient_key"] and after["risk"] == before["risk"]
    problems, (seq, _) = verify_audit(filled)
    assert problems == [] and seq == 8
    assert oracle.rows(filled, "audit_log")["kind"].iloc[-1] == "retention_purge"


def test_retention_purge_keeps_recent_inputs(filled):
    assert purge_expired(filled, days=180, by="dpo") == 0
    assert filled.governance_counts()["oldest_raw_input"] is not None


def test_backup_while_scoring_restores_to_a_verified_store(db, tmp_path):
    core.score({**PATIENT, "patient_ref": "SYN-first"}, user="dr.a", source="form")
    errors: list[Exception] = []

    def keep_scoring():
        try:
            for i in range(30):
                core.score({**PATIENT, "patient_ref": f"SYN-t{i}"}, user="dr.b", source="form")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    worker = threading.Thread(target=keep_scoring)
    worker.start()
    copy = backup(open_store(db), tmp_path / "backups")
    worker.join()
    assert errors == []
    store_mod.close_all()
    restored = tmp_path / "restored.duckdb"
    restore(copy, restored)
    store = open_file(restored)
    try:
        problems, (seq, _) = verify_audit(store)
        assert problems == [] and 1 <= seq <= 31
        assert store.count("predictions") == seq
        with pytest.raises(duckdb.Error, match="append-only"):
            oracle.sql(store, "DELETE FROM predictions")
    finally:
        store.close()


def test_backup_and_restore_commands(filled, db, tmp_path):
    store_mod.close_all()
    proc = cli("backup", str(tmp_path / "bk"), db=db)
    assert proc.returncode == 0
    copy = next((tmp_path / "bk").glob("*.duckdb"))
    proc = cli("restore", str(copy), db=tmp_path / "new.duckdb")
    # 7 events, and the configuration the backup command recorded before copying
    assert proc.returncode == 0 and "audit chain intact (8 entries" in proc.stdout


def test_configuration_change_is_recorded_once(db, monkeypatch):
    from core.config import get_settings
    from core.maintenance import record_configuration

    store = open_store(db)
    assert record_configuration(store, get_settings()) is True
    assert record_configuration(store, get_settings()) is False
    monkeypatch.setenv("APP_RETENTION_DAYS", "90")
    assert record_configuration(store, get_settings()) is True
    entries = oracle.rows(store, "audit_log")
    assert list(entries["kind"]) == ["configuration_change"] * 2
    assert "k" * 40 not in "".join(entries["content_json"])
    assert verify_audit(store)[0] == []
