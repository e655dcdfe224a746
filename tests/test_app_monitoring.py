"""The PI's monitoring page: charts whose data equal independent counts over the raw records, the
same-direction override alert, the date filter, CSV downloads, and the too-few-outcomes sentence."""

import json
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pytest
import store_oracle as oracle
from app_support import REPO, TIMEOUT, store
from conftest import MODELS
from monitoring_support import seed_activity
from streamlit.testing.v1 import AppTest

from core import auth
from core import store as core_store
from core.artifacts import read_manifest
from core.clock import now_utc

PAGE = str(REPO / "views" / "monitoring.py")
EXPECTED_SHARE = read_manifest(MODELS / "v1")["routing"]["expected_review_share"]
CHARTS = {"override_rate", "reviewed", "reasons", "daily", "review_share", "review_reasons",
          "drift_psi", "drift_rates", "time_to_decision", "workload", "calibration"}


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """A demo-mode store with ten weeks of scoring, reviews that mostly upgrade, and outcomes."""
    tmp_path = tmp_path_factory.mktemp("monitoring")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APP_DB", str(tmp_path / "app.duckdb"))
        mp.setenv("APP_MODELS", str(MODELS))
        mp.setenv("APP_DEMO", "1")
        mp.delenv("APP_PATIENT_KEY", raising=False)
        for name in ("SHARE", "MIN_REVIEWED", "WINDOW_DAYS"):
            mp.delenv(f"APP_OVERRIDE_ALERT_{name}", raising=False)
        mp.delenv("APP_MIN_OUTCOMES_FOR_METRICS", raising=False)
        try:
            seed_activity(tmp_path)
            yield
        finally:
            core_store.close_all()


def pi_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["user"] = auth.User("demo-pi", "Demo PI", ("pi",))
    return at.run()


def charts(at: AppTest) -> dict[str, list[pd.DataFrame]]:
    """Each chart by the name in its spec: the frames of the data it sends to the browser."""
    return {json.loads(chart.proto.spec)["name"]:
            [pa.ipc.open_stream(ds.data.data).read_pandas() for ds in chart.proto.datasets]
            for chart in at.get("vega_lite_chart")}


def with_column(frames: list[pd.DataFrame], column: str) -> pd.DataFrame:
    [frame] = [f for f in frames if column in f.columns]
    return frame


# Independent SQL over the raw records; `decided` is every decision in force (not corrected).
DECIDED = ("WITH decided AS (SELECT * FROM review_decisions d WHERE NOT EXISTS "
           "(SELECT 1 FROM review_decisions n WHERE n.supersedes = d.decision_id)) ")


def count(sql: str, params=()) -> int:
    return oracle.sql(store(), DECIDED + sql, list(params))[0][0]


def pairs(sql: str, params=()) -> dict:
    return dict(oracle.sql(store(), DECIDED + sql, list(params)))




@pytest.mark.usefixtures("busy")
def test_monitoring_charts_equal_independent_counts():
    at = pi_page()
    assert not at.exception
    data = charts(at)
    assert set(data) == CHARTS
    metrics = {m.label: m.value for m in at.metric}

    predictions = count("SELECT count(*) FROM predictions")
    review = count("SELECT count(*) FROM predictions WHERE routing = 'review'")
    assert metrics["Predictions"] == str(predictions)
    assert metrics["Routed to review"] == f"{review} ({review / predictions:.0%})"
    daily = data["daily"][0]
    assert daily["predictions"].sum() == predictions
    assert daily.loc[daily["routing"] == "review", "predictions"].sum() == review

    n_decided = count("SELECT count(*) FROM decided")
    weekly = data["override_rate"][0]
    assert weekly["reviewed"].sum() == n_decided == int(metrics["Reviewed"])
    for direction, column in (("upgrade", "upgrades"), ("downgrade", "downgrades")):
        assert weekly[column].sum() == count("SELECT count(*) FROM decided WHERE direction = ?",
                                             [direction])
    assert (weekly["upgrade_rate"] == (weekly["upgrades"] / weekly["reviewed"]).round(4)).all()
    assert with_column(data["override_rate"], "alert_share")["alert_share"].tolist() == [0.30]

    reasons = data["reasons"][0]
    expected = pairs("SELECT reason_code || '/' || direction, count(*) FROM decided GROUP BY ALL")
    assert dict(zip(reasons["reason_code"] + "/" + reasons["direction"], reasons["decisions"],
                    strict=True)) == expected
    workload = data["workload"][0]
    assert dict(zip(workload["reviewer_name"], workload["decisions"], strict=True)) == pairs(
        "SELECT reviewer_name, count(*) FROM decided GROUP BY ALL")
    ood = data["review_reasons"][0]
    assert dict(zip(ood["reason_code"], ood["predictions"], strict=True)) == pairs(
        "SELECT code, count(*) FROM (SELECT unnest(reason_codes) AS code FROM predictions) GROUP BY ALL")

    pending = count("SELECT count(*) FROM predictions p WHERE routing = 'review' AND NOT EXISTS "
                          "(SELECT 1 FROM review_decisions d WHERE d.prediction_id = p.prediction_id)")
    assert metrics["Waiting for a decision"] == str(pending) and pending > 0
    assert data["time_to_decision"][0]["decided"].sum() == count(
        "SELECT count(*) FROM decided WHERE supersedes IS NULL")

    frames = [d.value for d in at.dataframe]  # the page's tables, then each chart's data table
    share = next(f for f in frames if "expected_review_share" in f.columns).iloc[0]
    assert share["model_version"] == "v1" and share["expected_review_share"] == pytest.approx(EXPECTED_SHARE)
    assert share["routed_to_review"] == review

    outcomes = count("SELECT count(*) FROM outcomes")
    performance = next(f for f in frames if "auroc_ci95" in f.columns).set_index("group")
    assert performance.loc["All predictions", "outcomes"] == outcomes >= 100
    assert 0.5 < performance.loc["All predictions", "auroc"] <= 1
    calibration = with_column(data["calibration"], "decile")
    assert calibration.groupby("group")["n"].sum()["All predictions"] == outcomes

    # Month by month: the chart's data table, or the counts alone when every month has too few.
    months = next(f for f in frames if list(f.columns[:3]) == ["Month", "Outcomes", "Events"])
    months = months.rename(columns=str.lower)
    by_month = pairs("SELECT CAST(date_trunc('month', p.created_at) AS DATE), count(*) FROM "
                     "outcomes o JOIN predictions p USING (prediction_id) GROUP BY ALL")
    assert dict(zip(pd.to_datetime(months["month"]), months["outcomes"], strict=True)) == {
        pd.Timestamp(m): n for m, n in by_month.items()}
    sex = next(f for f in frames if "group" in f.columns and set(f["group"]) <= {"female", "male"})
    assert dict(zip(sex["group"], sex["outcomes"], strict=True)) == pairs(
        "SELECT phi.input_json ->> 'sex', count(*) FROM outcomes o JOIN phi_inputs phi USING (prediction_id) "
        "GROUP BY ALL")

    labels = [b.proto.label for b in at.get("download_button")]
    assert len(labels) == 17 and all(label.endswith("(CSV)") for label in labels)


@pytest.mark.usefixtures("busy")
def test_monitoring_alert_names_direction_share_and_reasons():
    at = pi_page()
    since = [now_utc() - timedelta(days=28)]
    reviewed = count("SELECT count(*) FROM decided WHERE created_at >= ?", since)
    upgraded = count("SELECT count(*) FROM decided WHERE created_at >= ? AND direction = 'upgrade'", since)
    assert reviewed >= 20 and upgraded / reviewed >= 0.30  # the seeded store meets the defaults
    reasons = pairs("SELECT reason_code, count(*) FROM decided WHERE created_at >= ? AND direction = 'upgrade' "
                    "GROUP BY ALL", since)
    [alert] = [e.value for e in at.error]
    assert alert.startswith(
        f"{upgraded / reviewed:.0%} of the {reviewed} cases reviewed in the last 28 days were upgraded "
        f"from low to high risk by reviewers ({upgraded} cases).")
    top = max(reasons.values())
    assert any(f"Most common reasons: {code} ({n})" in alert for code, n in reasons.items() if n == top)


@pytest.mark.usefixtures("busy")
def test_monitoring_date_filter_narrows_the_figures():
    at = pi_page()
    today = at.date_input(key="monitoring_dates").value[1]
    at = at.date_input(key="monitoring_dates").set_value((today - timedelta(days=13), today)).run()
    since = now_utc().replace(hour=0, minute=0, second=0) - timedelta(days=13)
    assert {m.label: m.value for m in at.metric}["Predictions"] == str(
        count("SELECT count(*) FROM predictions WHERE created_at >= ?", [since]))
    assert "calibration" not in charts(at)  # no outcome is due yet for the last two weeks
    assert any("Too few outcomes" in i.value for i in at.info)

    at = at.date_input(key="monitoring_dates").set_value(
        (today - timedelta(days=400), today - timedelta(days=300))).run()
    assert "No predictions recorded in this date range." in [i.value for i in at.info]
    assert set(charts(at)) == set()


@pytest.mark.usefixtures("demo_app")
def test_monitoring_empty_store_says_too_few_outcomes():
    at = pi_page()
    assert not at.exception and not at.error
    assert {m.label: m.value for m in at.metric}["Predictions"] == "0"
    info = [i.value for i in at.info]
    assert "All predictions: Too few outcomes for stable estimates: 0 with 0 events (need 100 with " \
           "at least 10 events and 10 without)." in info
    assert any(c.value.startswith("No override alert") for c in at.caption)


def _contrast(colour: str, background: str = "#ffffff") -> float:
    """WCAG 2.1 contrast ratio of two #rrggbb colours."""
    def luminance(c: str) -> float:
        channels = [int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    high, low = sorted([luminance(colour), luminance(background)], reverse=True)
    return (high + 0.05) / (low + 0.05)


def _colours(node) -> list[str]:
    """Every #rrggbb colour a chart's marks or scales name (its spec, outside `config`)."""
    if isinstance(node, dict):
        return [c for key, value in node.items() if key != "config" for c in _colours(value)]
    if isinstance(node, list):
        return [c for value in node for c in _colours(value)]
    return [node] if isinstance(node, str) and len(node) == 7 and node.startswith("#") else []


@pytest.mark.usefixtures("busy")
def test_monitoring_charts_meet_contrast_and_have_a_text_alternative():
    """Charts are drawn on a canvas, which axe cannot read: their colours are checked in their
    specs. Text 4.5:1, marks and their keys 3:1 against the page (WCAG 2.1 AA)."""
    at = pi_page()
    specs = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    assert len(specs) == len(CHARTS)
    for spec in specs:
        config = spec["config"]
        text = [config["axis"]["labelColor"], config["axis"]["titleColor"],
                config["legend"]["labelColor"], config["legend"]["titleColor"]]
        assert all(_contrast(c) >= 4.5 for c in text), (spec["name"], text)
        marks = config["range"]["category"] + _colours({k: v for k, v in spec.items() if k != "datasets"})
        assert marks and all(_contrast(c) >= 3 for c in marks), (spec["name"], marks)
    expanders = [e.label for e in at.expander]
    assert len([e for e in expanders if e.startswith("Data table: ")]) == len(specs)
    assert any(c.value.startswith("Over these weeks reviewers upgraded") for c in at.caption)
