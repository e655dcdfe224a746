"""The clinician's scoring page: form from the spec, recorded result card, errors by field."""

import pytest
from app_support import fill_form, signed_in, store, submit_score, texts

import core.scoring
from core.display import confidence_meaning
from core.errors import StoreUnavailable

pytestmark = pytest.mark.usefixtures("demo_app")

def test_form_is_built_from_the_spec():
    at = signed_in("clinician")
    age = at.number_input(key="score_age")
    assert (age.min, age.max, age.value) == (18, 120, None)
    assert age.label == "Age (years, required)" and "Validated on: 41-95 years" in age.help
    assert at.number_input(key="score_lvef").label == "LVEF (%, optional)"
    assert at.radio(key="score_nsaid").label == "NSAID use (required)"
    assert at.number_input(key="score_lvef").value is None
    assert at.selectbox(key="score_nyha_class").options == ["I", "II", "III", "IV"]
    assert at.radio(key="score_nsaid").options == ["no", "yes"]
    assert at.text_input(key="score_patient_ref").label.startswith("Patient reference")


def test_score_shows_the_recorded_result(v1):
    at = submit_score(fill_form(signed_in("clinician")))
    assert not at.exception and not at.error
    row = store().recent_predictions_with_review(user="demo-clinician").iloc[0]
    shown = texts(at)
    assert f"{row['risk'] * 100:.1f}%" in shown
    assert ("High risk" if row["risk_class"] == "high" else "Low risk") in shown
    confidence = next(m for m in at.metric if m.label == "Confidence")
    expected = "> 99.9%" if row["confidence"] > 0.999 else f"{row['confidence'] * 100:.1f}%"
    assert confidence.value == expected and confidence.help == confidence_meaning(v1)
    assert any(m.label == "95% interval" for m in at.metric)
    routing = "Auto-finalised" if row["routing"] == "auto_finalised" else "Sent to clinical review"
    assert routing in shown
    assert "Top contributing factors" in shown and "Model v1" in shown
    assert row["prediction_id"] in shown
    assert store().prediction(row["prediction_id"])["source"] == "form"
    assert at.expander[0].label == "Model facts for version v1"
    recent = at.dataframe[0].value
    assert recent["Patient"].tolist() == ["TEST-0001"]


def test_score_out_of_range_is_sent_to_review_with_reasons():
    at = submit_score(fill_form(signed_in("clinician"), age=110))
    row = store().recent_predictions_with_review(user="demo-clinician").iloc[0]
    assert row["routing"] == "review"
    review = [w.value for w in at.warning if "Sent to clinical review" in w.value]
    assert review and "Age" in review[0]
    assert at.dataframe[0].value["Status"].tolist() == ["awaiting clinical review"]


def test_score_empty_form_shows_errors_by_field_and_records_rejection():
    at = submit_score(signed_in("clinician"))
    errors = [e.value for e in at.error]
    assert "Age is required." in errors and "Sex is required." in errors  # each names its field
    assert sum(e.endswith(" is required.") for e in errors) >= 10  # one next to each required field
    assert any(e.startswith("Not scored - please correct") for e in errors)
    assert not [m for m in at.metric]
    assert store().count("predictions") == 0 and store().count("rejected_inputs") == 1


@pytest.mark.parametrize("exc", [StoreUnavailable("disk full"), core.ArtefactMismatch("hash differs")])
def test_score_failure_shows_error_and_no_result(monkeypatch, exc):
    at = fill_form(signed_in("clinician"))

    def fail(payload, *, user, source="form"):
        raise exc

    monkeypatch.setattr(core.scoring, "score", fail)
    at = submit_score(at)
    assert any(str(exc) in e.value and "Nothing was recorded" in e.value for e in at.error)
    assert not at.metric and store().count("predictions") == 0


def test_score_page_stops_when_model_cannot_load(monkeypatch, tmp_path):
    at = signed_in("clinician")
    monkeypatch.setenv("APP_MODELS", str(tmp_path / "no-models"))
    at.run()  # a changed configuration is checked again before anything is served
    assert [e.value.split(":")[0] for e in at.error] == ["The service cannot start"]
    assert "no model version to serve" in at.error[0].value
    assert not at.number_input


RECENT_COLUMNS = ["Recorded (UTC)", "Patient", "Risk", "Class", "Confidence", "Status", "Review",
                  "Reviewed by", "Reviewed (UTC)", "Model"]


def test_recent_predictions_are_labelled_for_people_and_blank_when_empty(valid_payload):
    core.score({**valid_payload, "patient_ref": "R-1", "lvef": None}, user="demo-clinician",
               source="form")  # waiting for review: no reviewer, no review time yet
    at = signed_in("clinician")
    recent = at.dataframe[0].value
    assert list(recent.columns) == RECENT_COLUMNS
    assert recent["Patient"].tolist() == ["R-1"] and recent["Review"].tolist() == ["pending"]
    row = recent.iloc[0]
    assert (row["Reviewed by"], row["Reviewed (UTC)"]) == ("", "")
    assert not recent.isna().any().any()
    assert not [c for c in recent.astype(str).to_numpy().ravel() if c in ("None", "NaT", "nan")]
