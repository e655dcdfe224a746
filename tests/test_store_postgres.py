"""The store in PostgreSQL (APP_DB=postgresql://...), on a real server these tests start: the
same activity gives the same reads as the embedded file; the database itself keeps the event
tables append-only and the service's role least-privileged; several processes write at once
with nothing lost or duplicated; every fault is a clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta

import pandas as pd
import pg_support
import psycopg
import pytest
import store_oracle as oracle
from conftest import REPO, point_settings
from monitoring_support import seed_activity

from core import scoring
from core import store as core_store
from core.config import get_settings
from core.errors import StoreUnavailable
from core.store import Store, open_store
from core.store.postgres import PostgresStore
from core.verification import verify_audit

NOW = datetime(2026, 6, 15, 12, 0, 0)


def _ids_dropped(frame: pd.DataFrame) -> pd.DataFrame:
    """A read without what differs between two stores by design (ids, hashes, seqs), sorted."""
    keep = [c for c in frame.columns if not c.endswith(("_id", "_seq", "sha256", "supersedes"))
            and c not in ("seq", "patient_key")]
    out = frame[keep].copy()
    for column in out.columns:
        out[column] = out[column].map(lambda v: tuple(v) if isinstance(v, list | tuple) or
                                      hasattr(v, "tolist") and not isinstance(v, str) else v)
    return out.sort_values(keep).reset_index(drop=True) if keep else out


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """A read's rows in one order whatever order the database gave (lists as tuples)."""
    out = frame.map(lambda v: tuple(v) if hasattr(v, "__len__") and not isinstance(v, str) else v)
    return out.sort_values(list(out.columns)).reset_index(drop=True) if len(out.columns) else out


def _reads(store: Store) -> dict:
    """Every read a page or an integration makes, on a seeded store."""
    f = (NOW - timedelta(weeks=20), NOW + timedelta(days=1), None)
    settings = get_settings()
    reads = {name: getattr(store, name)(f) for name in (
        "agg_override_weekly", "agg_override_window", "agg_reason_codes", "agg_predictions_daily",
        "agg_review_share", "agg_ood_reasons", "agg_time_to_decision", "agg_reviewer_workload",
        "outcome_pairs")}
    reads["agg_backlog"] = store.agg_backlog(f, NOW)
    reads["agg_rejected_fields"] = store.agg_rejected_fields(f, ["age", "egfr"], "(other)")
    reads["pending_reviews"] = store.pending_reviews()
    reads["pending_uncertain"] = store.pending_reviews(reason="uncertain")
    reads["recent_decisions"] = store.recent_decisions(limit=500)
    reads["due_outcomes"] = store.due_outcomes(now=NOW, horizons={"v1": 30})
    reads["users"] = store.users()
    for name in ("signoff_records", "assessment_records", "activations"):  # empty here, but read
        reads[name] = getattr(store, name)()
    counts = store.governance_counts()
    reads["governance_counts"] = pd.DataFrame([counts])
    reads["versions"] = pd.DataFrame({"v": store.prediction_versions()})
    assert settings.db == os.environ["APP_DB"] or str(settings.db) == os.environ["APP_DB"]
    return reads


def _seeded(tmp_path, monkeypatch, db: str) -> Store:
    point_settings(monkeypatch, db)
    monkeypatch.setattr(scoring, "now_utc", lambda: NOW)
    folder = tmp_path / db.rsplit("/", 1)[-1].replace(".", "_")
    folder.mkdir()
    return seed_activity(folder, patients=160, seed=5)


def test_the_same_activity_gives_the_same_reads_on_both_backends(pg_server, tmp_path, monkeypatch):
    name = pg_server.new_database()
    core_store.open_store(pg_server.url(name, role=pg_support.OWNER))
    core_store.close_all()
    embedded = _reads(_seeded(tmp_path, monkeypatch, str(tmp_path / "store.duckdb")))
    core_store.close_all()
    server = _seeded(tmp_path, monkeypatch, pg_server.url(name))
    on_server = _reads(server)
    assert isinstance(server, PostgresStore)
    for read, frame in embedded.items():
        assert len(frame) == len(on_server[read]), read
        assert list(frame.columns) == list(on_server[read].columns), read
        left, right = _ids_dropped(frame), _ids_dropped(on_server[read])
        pd.testing.assert_frame_equal(left, right, check_dtype=False, check_exact=False,
                                      rtol=1e-9, obj=read)
    assert len(embedded["pending_reviews"]) > 0 and len(embedded["recent_decisions"]) > 0
    assert len(embedded["due_outcomes"]) > 0 and embedded["agg_override_weekly"]["upgrades"].sum() > 0
    problems, head = verify_audit(server)
    assert problems == [] and head[0] == server.last_seq() > 200


def test_the_database_refuses_changes_to_recorded_events(any_store, valid_payload, pg_server):
    scoring.score(valid_payload, user="clinician", source="form")
    if not isinstance(any_store, PostgresStore):
        pytest.skip("the embedded store's triggers: tests/test_store.py")
    owner = psycopg.connect(any_store.url.replace(pg_support.SERVICE, pg_support.OWNER).replace(
        pg_support.SERVICE_PASSWORD, pg_support.OWNER_PASSWORD), autocommit=True)
    service = psycopg.connect(any_store.url, autocommit=True)
    changes = {  # table -> a change of each kind (the names are the tests' own)
        "audit_log": ["UPDATE audit_log SET seq = seq", "DELETE FROM audit_log", "TRUNCATE audit_log"],
        "predictions": ["UPDATE predictions SET risk = 0", "DELETE FROM predictions",
                        "TRUNCATE predictions"],
        "schema_migrations": ["UPDATE schema_migrations SET name = name",
                              "DELETE FROM schema_migrations", "TRUNCATE schema_migrations"]}
    for statements in changes.values():
        for statement in statements:
            for con in (owner, service):  # the owner is stopped by the triggers, the service's
                with pytest.raises(psycopg.errors.InsufficientPrivilege):  # role has no grant
                    con.execute(statement)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        owner.execute("UPDATE phi_inputs SET patient_ref = 'x'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        service.execute("CREATE TABLE intruder (x INT)")
    assert any_store.count("predictions") == 1 and verify_audit(any_store)[0] == []


def test_retention_purge_deletes_raw_inputs_only_as_the_service_role(any_store, valid_payload,
                                                                    monkeypatch):
    from core import maintenance

    result = scoring.score(valid_payload, user="clinician", source="form")
    assert oracle.sql(any_store, "SELECT count(*) FROM phi_inputs")[0][0] == 1
    later = scoring.now_utc() + timedelta(days=3)
    monkeypatch.setattr(maintenance, "now_utc", lambda: later)
    removed = maintenance.purge_expired(any_store, days=1, by="dpo")
    assert removed == 1
    assert oracle.sql(any_store, "SELECT count(*) FROM phi_inputs")[0][0] == 0
    assert any_store.prediction(result.prediction_id)["risk"] == result.risk
    assert verify_audit(any_store)[0] == []


def test_the_service_role_does_not_migrate_and_says_what_to_run(pg_server):
    name = pg_server.new_database()
    with pytest.raises(StoreUnavailable, match="store upgrade") as refused:
        open_store(pg_server.url(name))
    assert pg_support.SERVICE_PASSWORD not in str(refused.value)
    done = _core(["store", "upgrade"], pg_server.url(name, role=pg_support.OWNER))
    assert done.returncode == 0, done.stderr
    assert pg_support.OWNER_PASSWORD not in done.stdout + done.stderr
    assert open_store(pg_server.url(name)).last_seq() == 0
    core_store.close_all()


def test_a_newer_schema_is_refused(pg_server):
    name = pg_server.new_database()
    core_store.open_store(pg_server.url(name, role=pg_support.OWNER))
    core_store.close_all()
    pg_server.sql("INSERT INTO schema_migrations VALUES (999, 'm999_future', now())", database=name)
    with pytest.raises(StoreUnavailable, match="newer than this release"):
        open_store(pg_server.url(name, role=pg_support.OWNER))


@pytest.mark.parametrize("fault", ["wrong password", "no such database", "nothing listening"])
def test_an_unreachable_database_is_a_clear_error(pg_server, fault):
    from browser_support import free_port

    url = {"wrong password": pg_server.url("postgres", password="not-the-password"),
           "no such database": pg_server.url("no_such_database"),
           "nothing listening": f"postgresql://store_service:secret-pw@127.0.0.1:{free_port()}/x"}[fault]
    with pytest.raises(StoreUnavailable, match="cannot open the store at postgresql://") as refused:
        open_store(url)
    message = str(refused.value)
    assert "not-the-password" not in message and "secret-pw" not in message
    assert {"wrong password": "password authentication failed", "no such database": "does not exist",
            "nothing listening": "refused"}[fault] in message


WRITER = """
import sys
from core import review, scoring
from core.errors import AlreadyDecided
from core.store import open_store
from core.config import get_settings
n, me = int(sys.argv[1]), sys.argv[2]
payload = {"age": 70, "sex": "male", "weight_kg": 78.0, "egfr": 58.0, "potassium": 4.4,
           "diabetes": False, "raas_inhibitor": "acei", "spironolactone_dose_mg": 25.0,
           "nyha_class": "II", "lvef": 30.0, "sbp": 118.0, "loop_diuretic": True,
           "potassium_supplement": False, "nsaid": False}
for i in range(n):
    scoring.score({**payload, "potassium": 4.4 + (i % 20) / 10, "patient_ref": f"{me}-{i}"},
                  user=me, source="api")
won = 0
for row in open_store(get_settings().db).pending_reviews(limit=100000).itertuples():
    try:
        review.decide({"prediction_id": row.prediction_id, "decision": "agree",
                       "reason_code": get_settings().review_reason_codes[0], "comment": ""},
                      user=me, display_name=me)
        won += 1
    except AlreadyDecided:
        pass
print(won)
"""


def test_four_processes_write_at_once_and_nothing_is_lost_or_duplicated(any_store, valid_payload):
    """4 processes x 500 scores, then all four race to decide every prediction routed to review."""
    if not isinstance(any_store, PostgresStore):
        pytest.skip("one process holds an embedded file: tests/test_admin_channel.py")
    for i in range(5):  # some for the queue already, from this process
        scoring.score({**valid_payload, "potassium": 6.9, "patient_ref": f"main-{i}"},
                      user="clinician", source="form")
    n = 500
    env = {**os.environ, "APP_DB": any_store.url}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(n), f"w{k}"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    won = sum(int(o[0].split()[-1]) for o in outs)
    predictions = any_store.count("predictions")
    assert predictions == 4 * n + 5
    routed = oracle.sql(any_store, "SELECT count(*) FROM predictions WHERE routing = 'review'")[0][0]
    decided = oracle.sql(any_store, "SELECT count(*), count(DISTINCT prediction_id) "
                                    "FROM review_decisions")[0]
    assert routed > 0 and won == decided[0] == decided[1] == routed  # the first decision won, once
    assert oracle.sql(any_store, "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) "
                                 "FROM audit_log")[0] == (any_store.last_seq(),) * 2 + (1, any_store.last_seq())
    assert verify_audit(any_store)[0] == []


def _core(args: list[str], db: str) -> subprocess.CompletedProcess:
    core_store.close_all()
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "APP_DB": db})


def test_the_one_server_process_on_postgresql_with_a_command_beside_it(pg_server, tmp_path):
    """uvicorn serve:app over a PostgreSQL store; `clients add` connects to the database itself
    while the service runs; the API scores and records; no password in any log or record."""
    import httpx
    from browser_support import streamlit_server

    name = pg_server.new_database()
    core_store.open_store(pg_server.url(name, role=pg_support.OWNER))
    core_store.close_all()
    pg_server.grant_purge(name)
    url = pg_server.url(name)
    with streamlit_server(tmp_path / "unused.duckdb", APP_DB=url) as base:
        added = _core(["clients", "add", "ehr", "--role", "clinician", "--by", "it"], url)
        assert added.returncode == 0, added.stderr
        token = added.stdout.strip().splitlines()[-1]
        with httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {token}"},
                          timeout=30) as http:
            assert http.get("/health/ready").status_code == 200
            scored = http.post("/predictions", json={
                "patient_ref": "PG-1", "age": 70, "sex": "male", "weight_kg": 78.0, "egfr": 58.0,
                "potassium": 4.4, "diabetes": False, "raas_inhibitor": "acei",
                "spironolactone_dose_mg": 25.0, "nyha_class": "II", "lvef": 30.0, "sbp": 118.0,
                "loop_diuretic": True, "potassium_supplement": False, "nsaid": False})
            assert scored.status_code == 201, scored.text
            state = http.get(f"/predictions/{scored.json()['prediction_id']}")
            assert state.status_code == 200 and state.json()["risk"] == scored.json()["risk"]
    store = open_store(url)
    assert store.prediction(scored.json()["prediction_id"])["risk"] == scored.json()["risk"]
    assert verify_audit(store)[0] == []
    recorded = oracle.sql(store, "SELECT settings_json FROM config_events")
    assert recorded and all(pg_support.SERVICE_PASSWORD not in r[0] for r in recorded)
    assert any(f"{pg_support.SERVICE}:***@" in r[0] for r in recorded)
    log = (tmp_path / "streamlit.log").read_text()
    assert pg_support.SERVICE_PASSWORD not in log and token not in log
    assert not list(tmp_path.glob("*.sock")) and not (tmp_path / "unused.duckdb").exists()


def test_store_migrate_moves_every_event_and_its_chain_then_verifies(pg_server, tmp_path, monkeypatch):
    from core.store.transfer import differences, identity

    duck = str(tmp_path / "store.duckdb")
    embedded = _seeded(tmp_path, monkeypatch, duck)
    before, head, deployment = _reads(embedded), embedded.head(), identity(embedded)
    core_store.close_all()
    name = pg_server.new_database()
    moved = _core(["store", "migrate", "--to", pg_server.url(name, role=pg_support.OWNER)], duck)
    assert moved.returncode == 0, moved.stderr
    assert f"verified: head {head[0]}:{head[1]} equal" in moved.stdout
    assert pg_support.OWNER_PASSWORD not in moved.stdout + moved.stderr
    pg_server.grant_purge(name)
    monkeypatch.setenv("APP_DB", pg_server.url(name))
    server = open_store(pg_server.url(name))
    assert server.head() == head and identity(server) == deployment
    after = _reads(server)
    for read, frame in before.items():  # the same rows, ids included (moved, not made again)
        pd.testing.assert_frame_equal(_sorted(frame), _sorted(after[read]), check_dtype=False, obj=read)
    assert verify_audit(server, head=head)[0] == []
    again = _core(["store", "migrate", "--to", pg_server.url(name, role=pg_support.OWNER)], duck)
    assert again.returncode == 2 and "empty database" in again.stderr
    # A row the source lacks is found (the comparison the command ends with)
    server = open_store(pg_server.url(name))
    oracle.sql(server, "INSERT INTO access_events VALUES ('extra', 0, now(), 'x', 'sign_in', '', '')")
    found = differences(core_store.open_store(duck), server)
    assert len(found) == 1 and found[0].startswith("access_events: ") and "destination" in found[0]


def test_a_connection_dropped_mid_transaction_records_nothing_and_the_store_recovers(
        any_store, valid_payload, pg_server):
    """The server ends the append's connection between its inserts: the score fails closed
    (nothing recorded, nothing returned) and the next score works on a new connection."""
    if not isinstance(any_store, PostgresStore):
        pytest.skip("a server's connection")
    from core import errors
    from core.store import postgres_dialect

    real = postgres_dialect.insert
    calls = []

    def dropping(cur, table, columns, rows, **kw):
        real(cur, table, columns, rows, **kw)
        calls.append(table)
        if len(calls) == 1:  # after the audit entry, before the prediction row
            pg_server.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                          "state = 'idle in transaction' AND usename = 'store_service'")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(postgres_dialect, "insert", dropping)
        with pytest.raises(errors.StoreUnavailable):
            scoring.score(valid_payload, user="clinician", source="form")
    assert any_store.count("predictions") == 0 and any_store.last_seq() == 0
    done = scoring.score(valid_payload, user="clinician", source="form")
    assert any_store.prediction(done.prediction_id)["risk"] == done.risk
    assert verify_audit(any_store)[0] == []


def test_while_the_database_is_down_nothing_is_scored_and_the_service_is_not_ready(
        tmp_path, monkeypatch, valid_payload):
    """A server of this test's own goes down and comes back: scores fail closed with a clear
    error, readiness names the store, and both work again once it is back."""
    from browser_support import free_port

    from core.preflight import readiness

    server = pg_support.start(free_port())
    try:
        name = server.new_database()
        core_store.open_store(server.url(name, role=pg_support.OWNER))
        core_store.close_all()
        point_settings(monkeypatch, server.url(name))
        first = scoring.score(valid_payload, user="clinician", source="form")
        assert readiness()["store"] == ""
        server.halt()
        with pytest.raises(StoreUnavailable, match="did not answer") as down:
            scoring.score(valid_payload, user="clinician", source="form")
        assert pg_support.SERVICE_PASSWORD not in str(down.value)
        assert "did not answer" in readiness()["store"]
        server.run()
        second = scoring.score(valid_payload, user="clinician", source="form")
        store = open_store(server.url(name))
        assert readiness()["store"] == "" and store.count("predictions") == 2
        assert {first.prediction_id, second.prediction_id} == {
            r[0] for r in oracle.sql(store, "SELECT prediction_id FROM predictions")}
    finally:
        core_store.close_all()
        server.stop()


def test_the_start_checks_refuse_a_role_that_may_change_recorded_rows(pg_server, monkeypatch):
    from core.preflight import problems

    name = pg_server.new_database()
    point_settings(monkeypatch, pg_server.url(name, role=pg_support.OWNER))
    found, _ = problems()
    assert any("owns the store's schema" in p for p in found), found
    core_store.close_all()
    pg_server.grant_purge(name)
    monkeypatch.setenv("APP_DB", pg_server.url(name))
    found, summary = problems()
    assert found == [] and pg_support.SERVICE_PASSWORD not in summary and ":***@" in summary
    core_store.close_all()
    pg_server.sql(f"GRANT UPDATE ON predictions TO {pg_support.SERVICE}", database=name)
    found, _ = problems()
    assert any("UPDATE on predictions" in p for p in found), found
    core_store.close_all()
