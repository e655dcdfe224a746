"""The stop rules: each rule met on outcomes that contradict the model, a recommendation raised
once, acknowledged (and a suspension through the stop switch), cleared when its rule no longer
holds; every step recorded in the audit trail, on both stores."""

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from core import stop_rules, synthetic
from core.batch import score_batch
from core.clock import now_utc
from core.config import ConfigError, get_settings
from core.outcomes import import_outcomes, record_outcome
from core.stop_switch import is_suspended
from core.verification import verify_audit

PATIENTS = 100


def _scored(store, tmp_path):
    patients = synthetic.write_sample_patients(tmp_path / "p.csv", n=PATIENTS, seed=21)
    score_batch(patients, tmp_path / "out.csv", user="dr.clin", progress=False)
    return pd.read_csv(tmp_path / "out.csv")


def _record(scored: pd.DataFrame, events, tmp_path) -> None:
    pd.DataFrame({"prediction_id": scored["prediction_id"], "event": ["yes" if e else "no" for e in events],
                  "event_date": [str(now_utc().date()) if e else "" for e in events],
                  "source": "lab"}).to_csv(tmp_path / "outcomes.csv", index=False)
    report = import_outcomes(tmp_path / "outcomes.csv", user="lab", now=now_utc() + timedelta(days=60))
    assert report["recorded"] == len(scored), report["rejected"][:2]


@pytest.fixture
def small_rules(monkeypatch):
    monkeypatch.setenv("APP_STOP_RULE_MIN_OUTCOMES", "50")
    monkeypatch.setenv("APP_STOP_RULE_MIN_LOW_RISK_OUTCOMES", "20")


def test_rules_raise_acknowledge_and_clear(any_store, tmp_path, small_rules, monkeypatch):
    scored = _scored(any_store, tmp_path)
    checks = stop_rules.check(any_store, get_settings(), now_utc())
    assert {c.rule: c.state for c in checks} == dict.fromkeys(
        ("calibration_slope", "low_risk_event_rate", "discrimination"), "too_few")
    assert stop_rules.refresh() == [] and stop_rules.history().empty

    # Outcomes that contradict the model: the patients it calls low risk have the events.
    _record(scored, scored["risk"] < scored["risk"].median(), tmp_path)
    raised = stop_rules.refresh()
    assert {r.rule for r in raised} == {"calibration_slope", "low_risk_event_rate", "discrimination"}
    assert all(r.model_version == "v1" and r.acknowledged is None for r in raised)
    slope = next(r for r in raised if r.rule == "calibration_slope")
    assert "Calibration slope -" in slope.evidence and f"{PATIENTS} outcomes" in slope.evidence
    stop_rules.refresh()  # still met: nothing new is recorded
    history = stop_rules.history()
    assert list(history["action"]) == ["raised"] * 3 and set(history["user_name"]) == {"monitoring"}

    keys = {c.key for c in stop_rules.conditions(any_store, get_settings(), now_utc())}
    assert keys == {f"stop_rule:{r}:v1" for r in ("calibration_slope", "low_risk_event_rate", "discrimination")}
    for c in stop_rules.conditions(any_store, get_settings(), now_utc()):
        assert not any(pid in c.message for pid in scored["prediction_id"])

    with pytest.raises(ValueError, match="needs a reason"):
        stop_rules.acknowledge("calibration_slope", "v1", decision="investigate", note=" ", by="dr.pi")
    with pytest.raises(ValueError, match="decision must be one of"):
        stop_rules.acknowledge("calibration_slope", "v1", decision="ignore", note="x", by="dr.pi")
    with pytest.raises(ValueError, match="no recommendation"):
        stop_rules.acknowledge("calibration_slope", "v9", decision="investigate", note="x", by="dr.pi")
    stop_rules.acknowledge("calibration_slope", "v1", decision="investigate",
                           note="checking the lab feed", by="dr.pi")
    assert not is_suspended(any_store.service_state(fresh=True))
    stop_rules.acknowledge("low_risk_event_rate", "v1", decision="suspend",
                           note="low-risk patients have events", by="dr.pi")
    state = any_store.service_state(fresh=True)
    assert is_suspended(state) and "stop rule low_risk_event_rate" in state.reason
    acked = {r.rule: r.acknowledged for r in stop_rules.refresh()}
    assert acked["calibration_slope"].note == "investigate: checking the lab feed"
    assert acked["calibration_slope"].user_name == "dr.pi" and acked["discrimination"] is None

    # Corrected outcomes drawn from the model's own risks: the slope and discrimination rules no
    # longer hold, so their recommendations clear (recorded); an acknowledged one clears as well.
    rng = np.random.default_rng(3)
    later = now_utc() + timedelta(days=60)
    for pid, risk in zip(scored["prediction_id"], scored["risk"], strict=True):
        event = bool(rng.random() < risk)
        record_outcome({"prediction_id": pid, "event": event, "source": "lab recheck",
                        "event_date": str(now_utc().date()) if event else None,
                        "supersedes": any_store.current_outcome(pid)["outcome_id"]},
                       user="lab", now=later)
    monkeypatch.setenv("APP_STOP_RULE_SLOPE_MIN", "0.05")
    monkeypatch.setenv("APP_STOP_RULE_SLOPE_MAX", "10")
    checks = {c.rule: c.state for c in stop_rules.check(any_store, get_settings(), now_utc())}
    assert checks["calibration_slope"] == "not_met" and checks["discrimination"] == "not_met"
    left = {r.rule for r in stop_rules.refresh()}
    assert left == ({"low_risk_event_rate"} if checks["low_risk_event_rate"] == "met" else set())
    cleared = stop_rules.history().query("action == 'cleared'")
    assert {"calibration_slope", "discrimination"} <= set(cleared["rule"])
    assert verify_audit(any_store)[0] == []


@pytest.mark.parametrize(("name", "value"), [("SLOPE_MIN", "1.5"), ("SLOPE_MAX", "0.9"),
                                             ("MIN_OUTCOMES", "5"), ("WINDOW_DAYS", "often")])
def test_malformed_stop_rule_settings_are_refused_by_name(monkeypatch, name, value):
    monkeypatch.setenv(f"APP_STOP_RULE_{name}", value)
    with pytest.raises(ConfigError, match=f"APP_STOP_RULE_{name}"):
        get_settings()


def test_the_pages_show_a_recommendation_and_record_its_acknowledgement(demo_app, tmp_path, small_rules):
    from app_support import signed_in, store, texts

    scored = _scored(store(), tmp_path)
    _record(scored, scored["risk"] < scored["risk"].median(), tmp_path)
    for page in ("views/monitoring.py", "views/governance.py"):
        at = signed_in("pi").switch_page(page).run()
        assert not at.exception
        shown = [e.value for e in at.error if "Stop rule" in e.value or "Calibration slope" in e.value]
        assert any("Not acknowledged yet" in e for e in shown), page
        checks = next(d.value for d in at.dataframe if "Rule in words" in d.value.columns)
        assert set(checks["State"]) == {"met: recommendation raised"}
    assert list(stop_rules.history()["action"]) == ["raised"] * 3  # shown twice, raised once

    at.radio(key="gov_stop_rule_decision").set_value("investigate")
    at.text_input(key="gov_stop_rule_note").input("lab feed under review")
    at.button(key="FormSubmitter:gov_stop_rule_ack-Record the acknowledgement").click().run()
    assert not at.exception and "recorded" in texts(at)
    ack = stop_rules.history().query("action == 'acknowledged'")
    assert list(ack["user_name"]) == ["demo-pi"] and list(ack["note"]) == ["investigate: lab feed under review"]
    assert any("Acknowledged by demo-pi" in w.value for w in at.warning)

    # The evaluator report lists the rules as checked at printing and every recorded step.
    from core import governance, report

    text = report.markdown(governance.snapshot(by="demo-pi"), by="demo-pi")
    section = text[text.index("## Stop rules"):text.index("## Data flow")]
    assert section.count("| met |") == 3 and section.count("| raised |") == 3
    assert "| acknowledged | demo-pi | investigate: lab feed under review |" in section


@pytest.mark.parametrize("name", ["TRUSTED_PROXIES", "REVIEW_REASON_CODES", "SSO_EMAIL_ROLES"])
def test_a_list_or_object_setting_that_is_not_json_is_refused_by_name(monkeypatch, name):
    monkeypatch.setenv(f"APP_{name}", "not [json")
    with pytest.raises(ConfigError, match=f"APP_{name}: is not valid JSON"):
        get_settings()
