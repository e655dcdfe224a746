"""Monitoring aggregates equal independent counts over the raw records; the override alert;
real-world performance on outcomes drawn from the known data-generating model."""

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import store_oracle as oracle
from conftest import MODELS, TEST_PATIENT_KEY

from core import synthetic
from core.artifacts import read_manifest
from core.batch import score_batch
from core.clock import now_utc
from core.monitoring import dashboard
from core.outcomes import record_outcome
from core.review import decide
from core.store import Event, close_all, open_store
from core.store.records import RejectedInput

REASONS = ["clinical context not captured by the model", "suspected lab or entry error",
           "recent medication change"]


@pytest.fixture(scope="module")
def busy_store(tmp_path_factory):
    """1,500 scored synthetic patients, decisions on the review queue, outcomes for everyone."""
    tmp_path = tmp_path_factory.mktemp("busy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APP_DB", str(tmp_path / "store.duckdb"))
        mp.setenv("APP_MODELS", str(MODELS))
        mp.setenv("APP_PATIENT_KEY", TEST_PATIENT_KEY)
        mp.setenv("APP_DEMO", "0")
        yield _fill(open_store(tmp_path / "store.duckdb"), tmp_path)
        close_all()


def _fill(any_store, tmp_path):
    patients = synthetic.write_sample_patients(tmp_path / "p.csv", n=1500, seed=99)
    score_batch(patients, tmp_path / "out.csv", user="dr.clin", progress=False)
    rng = np.random.default_rng(5)
    queue = any_store.pending_reviews(limit=10_000)
    for i, row in enumerate(queue.itertuples()):
        if i % 4 == 3:
            continue  # leave some pending
        choice = rng.choice(["agree", "override_high", "override_low"], p=[0.5, 0.3, 0.2])
        decide({"prediction_id": row.prediction_id, "decision": str(choice),
                "reason_code": REASONS[i % 3], "comment": "" if choice == "agree" else "seen"},
               user=f"rev{i % 2}", display_name=f"Reviewer {i % 2}")
    scored = pd.read_csv(tmp_path / "out.csv")
    inputs = pd.read_csv(patients)
    for col in ("diabetes", "loop_diuretic", "potassium_supplement", "nsaid"):
        inputs[col] = inputs[col] == "yes"
    events = rng.random(len(inputs)) < synthetic.true_risk(inputs)
    later = now_utc() + timedelta(days=43)
    for pid, event in zip(scored["prediction_id"], events, strict=True):
        record_outcome({"prediction_id": pid, "event": bool(event),
                        "event_date": str(now_utc().date()) if event else None,
                        "source": "synthetic"}, user="recorder", now=later)
    return any_store


def window():
    return now_utc() - timedelta(days=30), now_utc() + timedelta(days=60)


def sql(store, query, params=()):
    return oracle.sql(store, query, list(params))[0]


def test_every_aggregate_equals_an_independent_count(busy_store):
    start, end = window()
    d = dashboard(start=start, end=end)
    f = d.frames
    assert f["predictions_per_day"]["predictions"].sum() == sql(busy_store, "SELECT count(*) FROM predictions")[0]
    review = sql(busy_store, "SELECT count(*) FROM predictions WHERE routing = 'review'")[0]
    assert f["review_share"]["routed_to_review"].sum() == review
    decided = sql(busy_store, "SELECT count(DISTINCT prediction_id) FROM review_decisions")[0]
    assert f["override_rate_by_week"]["reviewed"].sum() == decided
    for direction, column in (("upgrade", "upgrades"), ("downgrade", "downgrades")):
        n = sql(busy_store, "SELECT count(*) FROM review_decisions WHERE direction = ?", [direction])[0]
        assert f["override_rate_by_week"][column].sum() == n
    assert f["review_backlog"]["pending"][0] == review - decided
    assert f["decisions_per_reviewer"]["decisions"].sum() == decided
    assert f["override_reasons"]["decisions"].sum() == decided
    codes = sql(busy_store, "SELECT count(*) FROM (SELECT unnest(reason_codes) FROM predictions)")[0]
    assert f["review_reasons"]["predictions"].sum() == codes
    assert f["time_to_decision"]["decided"].sum() == decided
    assert d.expected_review_share == {"v1": read_manifest(MODELS / "v1")["routing"]["expected_review_share"]}


def test_filters_narrow_every_aggregate(busy_store):
    d = dashboard(start=now_utc() + timedelta(days=1), end=now_utc() + timedelta(days=2))
    assert all(frame.empty or frame.iloc[:, 0].isna().all() or frame.get("pending", pd.Series([0])).sum() == 0
               for frame in d.frames.values())
    assert dashboard(start=window()[0], end=window()[1], model_version="v0").frames["review_share"].empty


def test_same_direction_alert_fires_and_names_reasons(busy_store, monkeypatch):
    start, end = window()
    reviewed = sql(busy_store, "SELECT count(*) FROM review_decisions")[0]
    up = sql(busy_store, "SELECT count(*) FROM review_decisions WHERE direction = 'upgrade'")[0]
    down = sql(busy_store, "SELECT count(*) FROM review_decisions WHERE direction = 'downgrade'")[0]
    assert up > down
    monkeypatch.setenv("APP_OVERRIDE_ALERT_SHARE", str(round((up / reviewed + down / reviewed) / 2, 3)))
    alerts = dashboard(start=start, end=end).alerts
    assert [(a.direction, a.overridden, a.reviewed) for a in alerts] == [("upgrade", up, reviewed)]
    assert alerts[0].top_reasons and "upgraded" in alerts[0].message()
    monkeypatch.setenv("APP_OVERRIDE_ALERT_SHARE", str(up / reviewed + 0.01))
    assert dashboard(start=start, end=end).alerts == []
    monkeypatch.setenv("APP_OVERRIDE_ALERT_SHARE", "0.01")
    monkeypatch.setenv("APP_OVERRIDE_ALERT_MIN_REVIEWED", str(reviewed + 1))
    assert dashboard(start=start, end=end).alerts == []


def test_real_world_performance_matches_the_generating_model(busy_store):
    start, end = window()
    perf = dashboard(start=start, end=end).performance
    everyone = perf["groups"]["all"]
    assert everyone["n"] == 1500 and everyone["auroc"] > 0.7
    lo, hi = everyone["auroc_ci95"]
    assert lo < everyone["auroc"] < hi
    deciles = pd.DataFrame(everyone["calibration"])
    assert abs(deciles["observed"].mean() - deciles["mean_predicted"].mean()) < 0.03
    assert deciles["observed"].iloc[-1] > deciles["observed"].iloc[0]
    overrides = perf["overrides"].set_index("direction")
    n_up = sql(busy_store, "SELECT count(*) FROM review_decisions WHERE direction = 'upgrade'")[0]
    assert overrides.loc["upgrade", "overrides_with_outcome"] == n_up


def test_too_few_outcomes_is_said_plainly(any_store, valid_payload):
    import core

    core.score(valid_payload, user="x", source="form")
    perf = dashboard(start=window()[0], end=window()[1]).performance
    assert "Too few outcomes" in perf["groups"]["all"]["too_few"]


def test_rejected_inputs_are_counted_per_field_within_the_filters(any_store, valid_payload):
    import core

    bad = [{**valid_payload, "egfr": "abc"}, {**valid_payload, "egfr": 900, "sex": "other"},
           {**valid_payload, "nickname": "x"}]
    for payload in bad:
        with pytest.raises(core.InvalidInput):
            core.score(payload, user="dr.clin", source="form")
    core.score(valid_payload, user="dr.clin", source="form")
    start, end = window()
    fields = dashboard(start=start, end=end).frames["rejected_fields"]
    assert dict(zip(fields["field"], fields["rejections"], strict=True)) == {
        "egfr": 2, "sex": 1, "(unknown field)": 1}
    assert set(fields["rejected_inputs"]) == {len(bad)}
    assert fields["field"].iloc[0] == "egfr"  # most often named first
    later = dashboard(start=now_utc() + timedelta(days=1), end=now_utc() + timedelta(days=2))
    assert later.frames["rejected_fields"].empty

    # A rejection recorded before unknown names were withheld at write time still holds the
    # typed name: the page shows it as unknown all the same.
    at = now_utc()
    fields = [{"field": "Jane Roe 1950", "message": "is not an input of this model (unknown field)"}]
    any_store.append([Event("rejected_input", "dr.clin", at, "old-1", RejectedInput(
        rejection_id="old-1", created_at=at, user_name="dr.clin", source="form",
        fields_json=json.dumps(fields), payload_sha256="0" * 64, model_version="v1"))])
    fields = dashboard(start=start, end=end).frames["rejected_fields"]
    assert dict(zip(fields["field"], fields["rejections"], strict=True))["(unknown field)"] == 2
    assert not fields["field"].str.contains("Jane").any()
    assert dashboard(start=start, end=end, model_version="v0").frames["rejected_fields"].empty


def test_performance_by_subgroup_and_month_equal_independent_counts(busy_store):
    from core.evaluate import auroc_ci

    start, end = window()
    perf = dashboard(start=start, end=end).performance
    rows = oracle.sql(open_store(busy_store.path), "SELECT CAST(phi.input_json ->> 'age' AS DOUBLE), phi.input_json ->> 'sex', "
                      "p.risk, o.event FROM outcomes o JOIN predictions p USING (prediction_id) "
                      "JOIN phi_inputs phi USING (prediction_id)")
    frame = pd.DataFrame(rows, columns=["age", "sex", "risk", "event"])
    sex = perf["subgroups"]["sex"].set_index("group")
    assert sex.attrs["label"] and dict(sex["outcomes"]) == frame["sex"].value_counts().to_dict()
    women = frame[frame["sex"] == "female"]
    auc, lo, hi = auroc_ci(women["event"].to_numpy(), women["risk"].to_numpy())
    assert (sex.loc["female", "auroc"], sex.loc["female", "auroc_low"]) == (round(auc, 3), round(lo, 3))
    age = perf["subgroups"]["age"].set_index("group")
    oldest = int((frame["age"] >= 85).sum())
    assert age.loc["85+", "outcomes"] == oldest and age["outcomes"].sum() == len(frame)
    for row in age.itertuples():  # a small group shows its counts, never figures
        assert (row.too_few is None) == (row.outcomes >= 100 and 10 <= row.events <= row.outcomes - 10)
        assert (row.auroc is None or np.isnan(row.auroc)) == (row.too_few is not None)
    months = perf["by_month"]
    assert months["outcomes"].sum() == len(frame) and months["events"].sum() == int(frame["event"].sum())


def test_a_subgroup_value_the_inputs_no_longer_hold_is_counted_as_not_recorded():
    from core.performance import NOT_RECORDED, subgroups
    from core.spec import load_spec

    spec = load_spec(MODELS / "v1" / "spec.json")
    rng = np.random.default_rng(1)
    n = 400
    pairs = pd.DataFrame({"event": rng.random(n) < 0.3, "risk": rng.random(n),
                          "input.sex": ["female", "male", None, "male"] * (n // 4),
                          "input.age": [str(a) for a in rng.integers(18, 99, n)]})
    sex = subgroups(pairs, 50, spec)["sex"].set_index("group")
    assert dict(sex["outcomes"]) == {"female": 100, "male": 200, NOT_RECORDED: 100}
    assert sex["too_few"].isna().all()
    assert subgroups(pairs.iloc[:0], 50, spec) == {}


def test_a_long_range_is_charted_per_week_with_the_same_totals():
    from core.monitoring import DAILY_UP_TO, per_period

    days = pd.date_range("2026-01-01", periods=DAILY_UP_TO + 30, freq="D").date
    daily = pd.DataFrame([{"day": d, "routing": r, "predictions": i % 7 + (r == "review")}
                          for i, d in enumerate(days) for r in ("auto_finalised", "review")])
    short, unit = per_period(daily[daily["day"] < days[DAILY_UP_TO]])
    assert unit == "day" and len(short) == 2 * DAILY_UP_TO
    weekly, unit = per_period(daily)
    assert unit == "week" and all(pd.Timestamp(d).weekday() == 0 for d in weekly["day"][1:])
    assert weekly.groupby("routing")["predictions"].sum().to_dict() == \
        daily.groupby("routing")["predictions"].sum().to_dict()
    assert weekly["day"].nunique() == len({pd.Timestamp(d).to_period("W-SUN") for d in days})
