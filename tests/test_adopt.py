"""A second, differently shaped model adopted end to end: another outcome (marked progression,
with a measured score and no event date), another horizon (a year), other inputs and another
estimator (a random forest), from the diabetes cohort that scikit-learn ships. Trained, verified,
activated, then used through the real app: the form, a score, outcome entry and import, the
model card and governance all describe it, and no page shows the demonstration's words."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pandas as pd
import pytest
from app_support import signed_in, store, submit_score, texts
from conftest import MODELS
from import_support import DEMO_WORDS, DIABETES_SPEC, diabetes_files

import core
from core import artifacts, clock, scoring
from core.errors import InvalidInput
from core.outcomes import import_outcomes, record_outcome
from core.serving import activate, serving_title
from core.train import train

VERSION = "progression-rf-1"


@pytest.fixture(scope="module")
def adopted(tmp_path_factory) -> dict:
    """A models folder with the demonstration and the adopted model; its held-out rows."""
    root = tmp_path_factory.mktemp("adopt")
    models = root / "models"
    shutil.copytree(MODELS, models)
    for path in [models, *models.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    files = diabetes_files(root)
    train(data=files["extract"], spec_path=DIABETES_SPEC, version=VERSION, models_dir=models,
          trained_by="Dr Adopter")
    rows = pd.read_csv(files["heldout"], dtype=str, keep_default_na=False)
    return {"models": models, "rows": rows}


@pytest.fixture
def serving(adopted, demo_app, monkeypatch):
    """The app in demo mode over a fresh store, the adopted model activated."""
    monkeypatch.setenv("APP_MODELS", str(adopted["models"]))
    assert artifacts.verify(adopted["models"], VERSION) == []
    activate(VERSION, by="demo-admin", reason="the team's progression model")
    return adopted


def page(role: str, path: str):
    at = signed_in(role)
    return at if path is None else at.switch_page(path).run()


def form_values(row: dict) -> dict:
    """What the clinician types for one patient of the held-out rows."""
    values = {"patient_ref": row["patient_id"], "sex": row["sex"], "age": int(row["age"])}
    for name in ("bmi", "bp", "tc", "ldl", "hdl", "tch", "ltg", "glu"):
        values[name] = float(row[name])
    return values


def fill(at, values: dict):
    for name, value in values.items():
        key = f"score_{name}"
        for kind in ("number_input", "selectbox", "text_input"):
            found = [w for w in getattr(at, kind) if w.key == key]
            if found:
                found[0].input(value) if kind == "text_input" else found[0].set_value(value)
                break
        else:
            raise KeyError(key)
    return at


def test_the_app_serves_the_adopted_model(serving):
    assert serving_title() == "Diabetes progression risk"
    at = page("clinician", None)
    keys = {w.key for kind in ("number_input", "selectbox", "radio") for w in getattr(at, kind)}
    assert {"score_bmi", "score_ltg", "score_glu", "score_sex"} <= keys
    assert not any("potassium" in k for k in keys)
    assert at.selectbox(key="score_sex").options == ["1", "2"]
    assert at.number_input(key="score_bmi").label == "Body mass index (kg/m2, required)"

    at = submit_score(fill(at, form_values(serving["rows"].iloc[0].to_dict())))
    assert not at.exception and not at.error
    row = store().recent_predictions_with_review(user="demo-clinician").iloc[0]
    assert row["model_version"] == VERSION
    risk = next(m for m in at.metric if m.label.startswith("Risk"))
    assert risk.label == "Risk: Marked progression at one year"
    assert risk.value == f"{row['risk'] * 100:.1f}%"
    assert "within 365 days of the baseline visit" in risk.help
    shown = texts(at)
    assert f"Model {VERSION}" in shown and not DEMO_WORDS.search(shown)


@pytest.fixture
def scored(serving, monkeypatch):
    """Two patients scored by the adopted model 400 days ago (past the one-year horizon)."""
    past = clock.now_utc() - timedelta(days=400)
    rows = serving["rows"].head(2).to_dict("records")
    with monkeypatch.context() as mp:
        mp.setattr(scoring, "now_utc", lambda: past)
        return [core.score({**{k: v for k, v in form_values(r).items()}, "patient_ref": r["patient_id"]},
                           user="demo-clinician", source="form") for r in rows]


def test_outcome_entry_follows_the_adopted_outcome(scored):
    at = page("clinician", "views/outcomes.py")
    due = at.dataframe[0].value
    assert set(due["prediction_id"]) == {p.prediction_id for p in scored}
    assert set(due["horizon_days"]) == {365}
    at.selectbox(key="outcomes_prediction").set_value(scored[0].prediction_id)
    at = at.run()
    assert at.radio(key="outcomes_event").label == \
        "Marked progression at one year within the 365-day horizon? (required)"
    assert not at.date_input  # this outcome records no event date
    value = at.number_input(key="outcomes_measured_value")
    assert value.label == "Disease progression score at one year (points, optional)"
    assert "a value at or above 200 points is the event" in value.help
    assert not DEMO_WORDS.search(texts(at))

    at.radio(key="outcomes_event").set_value("no")
    at.number_input(key="outcomes_measured_value").set_value(250.0)
    at.text_input(key="outcomes_source").input("study database")
    at = at.button(key="FormSubmitter:outcomes_form-Record outcome").click().run()
    assert any("contradicts event=no (the event is a value at or above 200 points)" in e.value
               for e in at.error)
    at.radio(key="outcomes_event").set_value("yes")
    at = at.button(key="FormSubmitter:outcomes_form-Record outcome").click().run()
    recorded = store().current_outcome(scored[0].prediction_id)
    assert (recorded["event"], recorded["measured_value"], recorded["event_date"]) == (True, 250.0, None)


def test_outcome_import_follows_the_adopted_outcome(scored, tmp_path):
    first, second = scored
    csv = tmp_path / "study.csv"
    csv.write_text("prediction_id,progression_score,max_potassium,source\n"
                   f"{first.prediction_id},180,,study database\n"     # below 200: no event
                   f"{second.prediction_id},,5.9,study database\n")   # another model's column
    report = import_outcomes(csv, user="importer")
    assert report["recorded"] == 1
    assert store().current_outcome(first.prediction_id)["event"] is False
    [rejected] = report["rejected"]
    assert rejected["row"] == 2 and rejected["errors"][0]["field"] == "max_potassium"
    assert "it records progression_score" in rejected["errors"][0]["message"]
    with pytest.raises(InvalidInput, match="records no event date"):
        record_outcome({"prediction_id": second.prediction_id, "event": True,
                        "event_date": str(clock.now_utc().date()), "source": "x"}, user="u")


def test_card_governance_and_every_page_describe_the_adopted_model(serving):
    at = page("admin", "views/model_card.py")
    assert at.selectbox(key="card_version").value == VERSION  # opens on the serving version
    card = "\n".join(m.value for m in at.markdown)
    assert "Marked progression at one year" in card and "365 days from the baseline visit" in card
    assert "| under_20 |" in card and "random forest" in card and not DEMO_WORDS.search(card)

    at = page("admin", "views/governance.py")
    assert f"Scoring is active. Serving model {VERSION}." in [s.value for s in at.success]
    shown = texts(at)
    assert "Marked disease progression one year after baseline" in shown
    checklist = at.dataframe[0].value
    assert checklist.iloc[0]["Status"].endswith("done")
    assert f"card of serving version {VERSION} generated" in checklist.iloc[0]["Evidence"]
    assert not DEMO_WORDS.search(shown + " ".join(checklist["Evidence"]))

    for role, path in (("reviewer", "views/review_queue.py"), ("pi", "views/monitoring.py"),
                       ("admin", "views/admin.py"), ("clinician", "views/outcomes.py")):
        at = page(role, path)
        assert not at.exception, path
        assert not DEMO_WORDS.search(texts(at)), path
