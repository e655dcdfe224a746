"""Review queue page: reviewers clear routed predictions with signed, append-only decisions."""

from __future__ import annotations

import app_support
import pytest
import store_oracle as oracle
from app_support import signed_in, store, texts
from streamlit.testing.v1 import AppTest

import core
from core.review import decide

pytestmark = pytest.mark.usefixtures("demo_app")

PATIENT = {**app_support.PATIENT, "patient_ref": "R-1"}
REASON = "clinical context not captured by the model"


def queued(ref: str = "R-1", **overrides) -> core.scoring.ScoreResult:
    """A prediction routed to review because an optional value (LVEF) is missing."""
    result = core.score({**PATIENT, "patient_ref": ref, "lvef": None, **overrides}, user="demo-clinician", source="form")
    assert result.routing == "review"
    return result


def other(risk_class: str) -> str:
    return "low" if risk_class == "high" else "high"


def table(at: AppTest, column: str):
    """The first table on the page with this column (read-only tables carry no key in AppTest)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def submit(at: AppTest, prediction_id: str, decision: str | None, reason: str | None,
           comment: str = "", form: str | None = None) -> AppTest:
    form = form or f"review_form_{prediction_id}"
    if decision:
        at.radio(key=f"{form}_decision").set_value(decision)
    if reason:
        at.selectbox(key=f"{form}_reason").set_value(reason)
    at.text_area(key=f"{form}_comment").input(comment)
    label = "Correct this decision" if form.startswith("review_fix_") else "Sign and submit"
    return at.button(key=f"FormSubmitter:{form}-{label}").click().run()


def test_queue_shows_items_oldest_first_with_inputs_next_to_ranges():
    first, second = queued("R-1"), queued("R-2", age=110)
    at = signed_in("reviewer")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Waiting for review"] == "2" and metrics["Oldest waiting"].endswith("min")
    queue = table(at, "scored_by")
    assert queue["patient_ref"].tolist() == ["R-1", "R-2"]
    assert "LVEF was not given" in queue["reasons"].iloc[0] and queue["model_version"].iloc[0] == "v1"
    assert at.selectbox(key="review_pick").value == first.prediction_id  # the oldest is open
    inputs = table(at, "validated").set_index("feature")
    assert inputs.loc["LVEF (%)"].tolist() == ["missing", "15-40 %", "missing"]
    assert inputs.loc["Age (years)", "value"] == "70" and inputs.loc["Age (years)", "check"] == ""
    shown = texts(at)
    assert "By submitting you sign" in shown
    assert f"I, Demo reviewer, reviewed this prediction and agree with the model's risk class " \
           f"'{first.risk_class}'." in shown
    at.selectbox(key="review_pick").set_value(second.prediction_id).run()
    inputs = table(at, "validated").set_index("feature")
    assert inputs.loc["Age (years)"].tolist() == ["110", "41-95 years", "outside validated range"]


@pytest.mark.parametrize("reason,version,expected", [
    ("outside_validated_range", "", ["R-2"]), ("missing_value", "", ["R-1", "R-2"]),
    ("", "v1", ["R-1", "R-2"]), ("rare_category", "", [])])
def test_queue_filters_by_reason_and_version(reason, version, expected):
    queued("R-1")
    queued("R-2", age=110)
    at = signed_in("reviewer")
    at.selectbox(key="review_filter_reason").set_value(reason)
    at = at.selectbox(key="review_filter_version").set_value(version).run()
    assert {m.label: m.value for m in at.metric}["Waiting for review"] == str(len(expected))
    if expected:
        assert table(at, "scored_by")["patient_ref"].tolist() == expected
    else:
        assert [i.value for i in at.info] == ["No predictions are waiting for review. (with these filters)"]


def test_agree_is_recorded_and_leaves_the_queue():
    result = queued()
    at = submit(signed_in("reviewer"), result.prediction_id, "agree", REASON)
    assert not at.exception and not at.error
    assert [s.value for s in at.success][0].startswith("Recorded for R-1: agreed")
    row = store().current_decision(result.prediction_id)
    assert (row["user_name"], row["reviewer_name"], row["decision"], row["direction"]) == (
        "demo-reviewer", "Demo reviewer", "agree", "none")
    assert row["meaning"] == (f"I, Demo reviewer, reviewed this prediction and agree with the model's "
                              f"risk class '{result.risk_class}'.")
    assert [i.value for i in at.info] == ["No predictions are waiting for review."]
    assert table(at, "meaning")["status"].tolist() == ["in force"]


@pytest.mark.parametrize("decision,reason", [("override", REASON), ("agree", "other"), (None, REASON)])
def test_incomplete_decision_shows_error_and_records_nothing(decision, reason):
    result = queued()
    if decision == "override":
        decision = f"override_{other(result.risk_class)}"
    at = submit(signed_in("reviewer"), result.prediction_id, decision, reason, comment="")
    errors = [e.value for e in at.error]
    expected = ("Decision is required." if decision is None
                else "A comment is required for an override and for reason 'other'.")
    assert errors == [expected]
    assert not at.success
    assert oracle.rows(store(), "review_decisions", prediction_id=result.prediction_id).empty
    assert table(at, "scored_by")["patient_ref"].tolist() == ["R-1"]


def test_override_with_comment_is_recorded_with_direction():
    result = queued()
    target = other(result.risk_class)
    at = submit(signed_in("reviewer"), result.prediction_id, f"override_{target}", REASON,
                comment="recent AKI, potassium trending up")
    direction = "upgrade" if target == "high" else "downgrade"
    assert f"Recorded for R-1: overridden to {target} ({direction})" in at.success[0].value
    row = store().current_decision(result.prediction_id)
    assert (row["reviewer_class"], row["direction"], row["reason_code"], row["comment"]) == (
        target, direction, REASON, "recent AKI, potassium trending up")
    assert f"override the model's risk class '{result.risk_class}' to '{target}'" in row["meaning"]


def test_already_decided_tells_who_and_when():
    result = queued()
    at = signed_in("reviewer")  # the item is on screen ...
    first = decide({"prediction_id": result.prediction_id, "decision": "agree", "reason_code": REASON},
                   user="dr.first", display_name="Dr First")  # ... when another reviewer decides it
    at = submit(at, result.prediction_id, f"override_{other(result.risk_class)}", REASON, comment="no")
    message = at.error[0].value
    assert "Dr First (dr.first) already decided R-1" in message
    assert f"{first['created_at']:%Y-%m-%d %H:%M} UTC" in message and "Nothing else was recorded" in message
    assert oracle.rows(store(), "review_decisions", prediction_id=result.prediction_id)["user_name"].tolist() == ["dr.first"]
    assert [i.value for i in at.info] == ["No predictions are waiting for review."]


def test_correction_supersedes_and_both_stay_visible():
    result = queued()
    first = decide({"prediction_id": result.prediction_id, "decision": "agree", "reason_code": REASON},
                   user="dr.first", display_name="Dr First")
    at = signed_in("reviewer")
    at = at.selectbox(key="review_correct_pick").set_value(result.prediction_id).run()
    target = other(result.risk_class)
    at = submit(at, result.prediction_id, f"override_{target}", "suspected lab or entry error",
                comment="haemolysed sample", form=f"review_fix_{first['decision_id']}")
    assert at.success[0].value.startswith("Correction recorded for R-1: overridden to")
    history = oracle.rows(store(), "review_decisions", prediction_id=result.prediction_id)
    assert history["supersedes"].tolist()[1] == first["decision_id"] and history["supersedes"].isna()[0]
    recent = table(at, "meaning")
    assert recent[["reviewer_name", "status"]].values.tolist() == [["Dr First", "superseded"],
                                                                   ["Demo reviewer", "in force"]]
    assert at.selectbox(key="review_correct_pick").value is None  # the form closed


def test_clinician_list_shows_the_review_outcome():
    decided = queued("R-1")
    queued("R-2")
    target = other(decided.risk_class)
    decide({"prediction_id": decided.prediction_id, "decision": f"override_{target}",
            "reason_code": REASON, "comment": "context"}, user="dr.first", display_name="Dr First")
    recent = table(signed_in("clinician"), "Review").set_index("Patient")
    direction = "upgrade" if target == "high" else "downgrade"
    assert recent.loc["R-1", "Review"] == f"overridden to {target} ({direction})"
    assert recent.loc["R-1", "Reviewed by"] == "Dr First" and recent.loc["R-1", "Reviewed (UTC)"] != ""
    assert recent.loc["R-1", "Status"] == "clinically reviewed"
    assert recent.loc["R-2", "Review"] == "pending" and recent.loc["R-2", "Reviewed by"] == ""
    assert recent.loc["R-2", "Status"] == "awaiting clinical review"
