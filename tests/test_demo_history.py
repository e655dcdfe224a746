"""The demo's seeded history: in demo mode a fresh store gets about 12 weeks of synthetic activity
at start, marked as demo data, once; never outside demo mode; every monitoring chart has data."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest
import store_oracle as oracle
from app_support import REPO, TIMEOUT, store
from argon2 import PasswordHasher
from conftest import MODELS, TEST_PATIENT_KEY
from streamlit.testing.v1 import AppTest

from core import auth, demo_history, monitoring, preflight, scoring
from core import store as core_store
from core.clock import now_utc
from core.config import Settings, get_settings
from core.errors import ConfigError
from core.verification import verify_audit

MARKED = ("predictions", "rejected_inputs", "review_decisions", "outcomes", "demo_history")
CHARTS = {"override_rate", "reviewed", "reasons", "daily", "review_share", "review_reasons",
          "time_to_decision", "workload", "calibration", "calibration_by_month",
          "drift_psi", "drift_rates"}
NO_DATA = ("No review decisions", "No predictions", "No input was rejected",
           "No overridden prediction", "Too few outcomes")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A demo-mode store seeded by the start-up checks (APP_DEMO_HISTORY at its default)."""
    tmp_path = tmp_path_factory.mktemp("demo_history")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APP_DB", str(tmp_path / "demo.duckdb"))
        mp.setenv("APP_MODELS", str(MODELS))
        mp.setenv("APP_DEMO", "1")
        for name in ("APP_DEMO_HISTORY", "APP_PATIENT_KEY", "APP_MIN_OUTCOMES_FOR_METRICS",
                     "APP_REVIEW_REASON_CODES", "APP_OVERRIDE_ALERT_SHARE"):
            mp.delenv(name, raising=False)
        mp.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        try:
            assert preflight.start(get_settings(), by="test") == []
            yield store()
        finally:
            core_store.close_all()


def count(sql: str, params=()) -> int:
    return oracle.sql(store(), sql, list(params))[0][0]


def test_start_seeds_about_twelve_weeks_ending_now(seeded):
    [row] = oracle.rows(seeded, "demo_history").to_dict("records")
    now = now_utc()
    assert now - timedelta(weeks=12) <= row["first_at"] < now - timedelta(weeks=12) + timedelta(days=2)
    assert now - timedelta(days=1) < row["last_at"] <= now
    assert 1000 <= row["predictions"] <= 3000 and row["predictions"] == seeded.count("predictions")
    for table in ("rejected_inputs", "review_decisions", "outcomes"):
        assert row[table] == seeded.count(table) > 0
    weekdays = count("SELECT count(*) FROM predictions WHERE dayofweek(created_at) BETWEEN 1 AND 5")
    assert weekdays / row["predictions"] > 0.9
    assert count("SELECT count(*) FROM phi_inputs") == row["predictions"]  # inputs kept, like any


def test_every_seeded_row_is_marked_as_demo_data(seeded):
    rows = {table: oracle.rows(seeded, table) for table in MARKED}
    assert {table: set(r["user_name"]) for table, r in rows.items()} == {
        table: {demo_history.DEMO_USER} for table in MARKED}
    assert all(set(rows[t]["source"]) == {"demo_history"}
               for t in ("predictions", "rejected_inputs", "outcomes"))
    assert count("SELECT count(*) FROM audit_log WHERE event_table IN (?, ?, ?, ?, ?) AND actor <> ?",
                 [*MARKED, demo_history.DEMO_USER]) == 0
    assert {n for (n,) in oracle.sql(seeded, "SELECT DISTINCT reviewer_name FROM review_decisions")} \
        == {auth.DEMO_ACCOUNTS[demo_history.REVIEWER][1]}
    assert demo_history.DEMO_USER not in set(auth.list_users()["username"])  # no such account


def test_the_seeded_source_is_never_one_a_caller_can_state():
    assert demo_history.SEEDED_SOURCE not in scoring.SOURCES
    with pytest.raises(ValueError):
        scoring.check_source(demo_history.SEEDED_SOURCE)
    with pytest.raises(ValueError):  # without seeded times, as every page, command and API call
        scoring.event_times(1, demo_history.SEEDED_SOURCE, None)
    with pytest.raises(ValueError):  # past times only for the seeded source
        scoring.event_times(1, "api", [now_utc()])


def test_reviews_agree_mostly_override_both_ways_and_leave_a_recent_backlog(seeded):
    decided = dict(oracle.sql(seeded, "SELECT direction, count(*) FROM review_decisions GROUP BY 1"))
    assert decided["none"] > 2 * (decided["upgrade"] + decided["downgrade"])
    assert decided["upgrade"] >= 5 and decided["downgrade"] >= 5
    assert count("SELECT count(*) FROM review_decisions WHERE direction <> 'none' AND comment = ''") == 0
    routed = count("SELECT count(*) FROM predictions WHERE routing = 'review'")
    pending = oracle.sql(seeded, "SELECT created_at FROM predictions p WHERE routing = 'review' AND "
                         "NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.prediction_id = p.prediction_id)")
    assert 0 < len(pending) < 0.1 * routed
    now = now_utc()
    assert all(now - at < timedelta(days=5) for (at,) in pending)
    assert any(now - at > timedelta(days=1) for (at,) in pending)


def test_outcomes_follow_the_horizon_and_suffice_for_every_group(seeded):
    assert count("SELECT count(*) FROM outcomes o JOIN predictions p USING (prediction_id) "
                 "WHERE o.created_at < CAST(p.created_at AS DATE) + INTERVAL 42 DAY") == 0  # by date
    assert count("SELECT count(*) FROM outcomes WHERE event AND event_date IS NULL") == 0
    rows = oracle.frame(seeded, "SELECT i.input_json, CAST(o.event AS INT) AS event FROM outcomes o "
                                "JOIN phi_inputs i USING (prediction_id)")
    inputs = pd.DataFrame([json.loads(x) for x in rows["input_json"]]).assign(event=rows["event"])
    bands = pd.cut(inputs["age"], [0, 65, 75, 85, 200], right=False,
                   labels=["<65", "65-74", "75-84", "85+"])
    groups = {**{str(k): (len(g), g["event"].sum()) for k, g in inputs.groupby("sex")},
              **{str(k): (len(g), g["event"].sum()) for k, g in inputs.groupby(bands, observed=True)}}
    assert set(groups) >= {"female", "male", "<65", "65-74", "75-84", "85+"}
    assert all(n >= 30 and events >= 3 for n, events in groups.values()), groups


def test_the_drifting_input_moves_in_the_last_four_weeks(seeded):
    now = now_utc()
    first, last = now - timedelta(weeks=12), now - timedelta(weeks=4)

    def egfr(start, end) -> tuple[float, float]:
        return oracle.sql(seeded, "SELECT avg(v), avg(CAST(v < 8 AS INT)) FROM (SELECT CAST("
                          "json_extract(input_json, '$.egfr') AS DOUBLE) AS v FROM phi_inputs "
                          "WHERE created_at >= ? AND created_at < ?)", [start, end])[0]

    (early_mean, early_below), (late_mean, late_below) = egfr(first, first + timedelta(weeks=4)), egfr(last, now)
    assert early_mean - late_mean > 8 and early_below == 0 < late_below
    rejected = oracle.sql(seeded, "SELECT created_at, fields_json FROM rejected_inputs")
    missing = [at for at, fields in rejected if any(f["field"] == "egfr" for f in json.loads(fields))]
    assert missing and all(at >= last for at in missing)


def test_the_audit_chain_holds_every_seeded_row(seeded):
    problems, (seq, _) = verify_audit(seeded)
    assert problems == [] and seq == seeded.count("audit_log")


def test_dashboard_over_twelve_weeks_has_every_figure(seeded):
    now = now_utc()
    d = monitoring.dashboard(start=now - timedelta(weeks=12), end=now + timedelta(days=1))
    assert [name for name, frame in d.frames.items() if frame.empty] == []
    assert all("auroc" in g and "calibration" in g for g in d.performance["groups"].values())
    assert d.performance["overrides"]["overrides_with_outcome"].sum() > 0


def test_seeding_happens_once(seeded):
    counts = {t: seeded.count(t) for t in MARKED}
    assert demo_history.seed() == {"seeded": False,
                                   "reason": "the store already holds predictions or a seeded history"}
    preflight.start(get_settings().model_copy(update={"idle_timeout_minutes": 14}), by="test")
    assert {t: seeded.count(t) for t in MARKED} == counts


def test_a_store_with_predictions_is_never_seeded(demo_app, valid_payload):
    scoring.score(valid_payload, user="demo-clinician", source="form")
    assert demo_history.seed()["seeded"] is False
    assert store().count("predictions") == 1 and store().count("demo_history") == 0


def test_start_seeds_only_in_demo_mode_with_the_setting_on(demo_app, monkeypatch):
    assert preflight.start(get_settings(), by="test") == []  # the fixture sets APP_DEMO_HISTORY=0
    assert store().count("predictions") == 0
    monkeypatch.setenv("APP_DEMO", "0")
    monkeypatch.setenv("APP_PATIENT_KEY", TEST_PATIENT_KEY)
    monkeypatch.setenv("APP_DB", str(demo_app / "production.duckdb"))
    monkeypatch.delenv("APP_DEMO_HISTORY")
    with pytest.raises(ConfigError, match="demo mode only"):
        demo_history.seed()
    assert preflight.start(get_settings(), by="test") == []
    assert store().count("predictions") == 0 and store().count("demo_history") == 0
    assert Settings(demo=False).demo_history is True  # on by default, and still nothing seeded


def test_production_refuses_a_store_holding_the_demo_history(seeded, monkeypatch):
    monkeypatch.setenv("APP_DEMO", "0")
    monkeypatch.setenv("APP_PATIENT_KEY", TEST_PATIENT_KEY)
    found, _ = preflight.problems(get_settings())
    assert any("synthetic demo history" in p for p in found)


def page(path: str, user: auth.User) -> AppTest:
    at = AppTest.from_file(str(REPO / "views" / path), default_timeout=TIMEOUT)
    at.session_state["user"] = user
    return at.run()


@pytest.mark.usefixtures("seeded")
def test_monitoring_page_shows_every_chart_and_the_banner():
    at = page("monitoring.py", auth.User("demo-pi", "Demo PI", ("pi",)))
    assert not at.exception
    assert {json.loads(c.proto.spec)["name"] for c in at.get("vega_lite_chart")} == CHARTS
    shown = [c.value for c in at.caption] + [i.value for i in at.info]
    # Every routing group and month has figures; only a small subgroup band may say too few.
    few = [s for s in shown if s.startswith(NO_DATA) or "Too few outcomes" in s]
    assert all(s.startswith("Too few outcomes for figures:") for s in few), few
    assert any("synthetic demo history" in i.value for i in at.info)
    queue = page("review_queue.py", auth.User("demo-reviewer", "Demo reviewer", ("reviewer",)))
    assert any("synthetic demo history" in i.value for i in queue.info)


def test_seeds_a_postgresql_store_too(pg_server, monkeypatch):
    import pg_support

    name = pg_server.new_database()
    core_store.open_store(pg_server.url(name, role=pg_support.OWNER))  # migrates, as its owner
    core_store.close_all()
    monkeypatch.setenv("APP_DB", pg_server.url(name))
    monkeypatch.setenv("APP_MODELS", str(MODELS))
    monkeypatch.setenv("APP_DEMO", "1")
    monkeypatch.delenv("APP_PATIENT_KEY", raising=False)
    try:
        summary = demo_history.seed()
        pg = store()
        assert summary["seeded"] and summary["predictions"] == pg.count("predictions") > 1000
        assert summary["outcomes"] == pg.count("outcomes") and pg.count("demo_history") == 1
        assert verify_audit(pg)[0] == []
        assert demo_history.seed()["seeded"] is False
    finally:
        core_store.close_all()
