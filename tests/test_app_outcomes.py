"""The clinician's outcomes page: the due list, recording an outcome, validation errors next to
the fields, and a correction that supersedes the earlier record with the history shown."""

from datetime import timedelta

import pytest
from app_support import signed_in, store

import core
from core import scoring

pytestmark = pytest.mark.usefixtures("demo_app")
SUBMIT = "FormSubmitter:outcomes_form-Record outcome"
CORRECT = "FormSubmitter:outcomes_form-Correct outcome"


@pytest.fixture
def scored(valid_payload, monkeypatch):
    """Two patients scored 50 days ago (outcome due), one scored today (not due yet); the demo
    store is set up first (pytestmark)."""
    past = scoring.now_utc() - timedelta(days=50)
    with monkeypatch.context() as mp:
        mp.setattr(scoring, "now_utc", lambda: past)
        due = [core.score({**valid_payload, "patient_ref": ref}, user="demo-clinician", source="form")
               for ref in ("OLD-1", "OLD-2")]
    return {"due": due,
            "recent": core.score({**valid_payload, "patient_ref": "NEW-1"}, user="demo-clinician", source="form")}


def outcomes_page():
    at = signed_in("clinician")
    return at.switch_page("views/outcomes.py").run()


def fill(at, **values):
    for name, value in values.items():
        key = f"outcomes_{name}"
        for kind in ("radio", "date_input", "number_input", "selectbox"):
            found = [w for w in getattr(at, kind) if w.key == key]
            if found:
                found[0].set_value(value)
                break
        else:
            at.text_input(key=key).input(value)
    return at


def test_outcomes_lists_due_predictions_most_overdue_first(scored):
    at = outcomes_page()
    assert not at.exception and [t.value for t in at.title] == ["Outcomes"]
    due = at.dataframe[0].value
    assert due["patient_ref"].tolist() == ["OLD-1", "OLD-2"]
    assert (due["days_overdue"] == 8).all()
    assert scored["recent"].prediction_id not in due["prediction_id"].tolist()
    assert "Due or overdue (2)" in [s.value for s in at.header]


def test_outcomes_records_no_event_and_leaves_the_due_list(scored):
    first = scored["due"][0]
    at = fill(outcomes_page(), prediction=first.prediction_id).run()
    at = fill(at, event="no", measured_value=4.9, source="lab system")
    at = at.button(key=SUBMIT).click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success] == ["Outcome recorded for OLD-1: event no."]
    row = store().current_outcome(first.prediction_id)
    assert (row["event"], row["measured_value"], row["source"], row["user_name"]) == (
        False, 4.9, "lab system", "demo-clinician")
    assert at.dataframe[0].value["patient_ref"].tolist() == ["OLD-2"]
    assert at.selectbox(key="outcomes_prediction").value is None  # the form starts again


@pytest.mark.parametrize("values,field,message", [
    ({"event": "yes", "source": "lab"}, "event_date", "Date of the event is required when the event happened."),
    ({"event": "no", "measured_value": 6.1, "source": "lab"}, None, "contradicts event=no"),
    ({"event": "no"}, "source", "Source is required."),
    ({"source": "lab"}, "event", "Event is required."),
    ({"event": "no", "measured_value": 12.0, "source": "lab"}, "measured_value",
     "Highest serum potassium within the horizon must be between 1.5 and 10 mmol/L."),
])
def test_outcomes_validation_error_is_shown_and_nothing_recorded(scored, values, field, message):
    pid = scored["due"][0].prediction_id
    at = fill(outcomes_page(), prediction=pid).run()
    at = fill(at, **values).button(key=SUBMIT).click().run()
    errors = [e.value for e in at.error]
    assert any(message in e for e in errors), errors
    if field is not None:  # shown under its field; the summary below the fields points to it
        assert any(message in e and not e.startswith("Not recorded") for e in errors)
        assert "Not recorded - please correct 1 problem(s) above." in errors
    else:
        assert any(e.startswith("Not recorded: ") and message in e for e in errors)
    assert store().current_outcome(pid) is None


def test_outcomes_correction_supersedes_and_shows_history(scored):
    recent = scored["recent"]  # an event can be recorded before the horizon, by prediction ID
    today = scoring.now_utc().date()
    at = fill(outcomes_page(), prediction_id=recent.prediction_id).run()
    at = fill(at, event="yes", event_date=today, source="ward lab").button(key=SUBMIT).click().run()
    first = store().current_outcome(recent.prediction_id)
    assert first["event"] is True and str(first["event_date"]) == str(today)

    at = fill(at, prediction_id=recent.prediction_id).run()
    assert any("Submitting records a correction" in i.value for i in at.info)
    at = fill(at, event="yes", event_date=today, measured_value=6.2, source="lab recheck")
    at = at.button(key=CORRECT).click().run()
    assert [s.value for s in at.success] == ["Correction recorded for NEW-1: event yes."]
    history = store().outcome_history(recent.prediction_id)
    assert history["measured_value"].tolist()[1] == 6.2 and history["user_name"].nunique() == 1
    assert history["supersedes"].tolist()[1] == first["outcome_id"]

    at = fill(at, prediction_id=recent.prediction_id).run()
    shown = at.dataframe[-1].value
    assert shown["in_force"].tolist() == [False, True]
    assert shown["source"].tolist() == ["ward lab", "lab recheck"]
