"""Outcomes: manual entry rules, append-only corrections, due list, and lab import."""

from datetime import timedelta

import pytest

import core
from core.clock import now_utc
from core.errors import AlreadyRecorded, InvalidInput
from core.outcomes import import_outcomes, record_outcome


@pytest.fixture
def scored(any_store, valid_payload):
    return core.score(valid_payload, user="dr.clin", source="form")


def later(days: int):
    return now_utc() + timedelta(days=days)


def test_event_recorded_before_horizon(any_store, scored):
    today = now_utc().date()
    record_outcome({"prediction_id": scored.prediction_id, "event": True, "event_date": str(today),
                    "measured_value": 5.9, "source": "ward lab"}, user="dr.clin")
    row = any_store.current_outcome(scored.prediction_id)
    assert row["event"] is True and row["measured_value"] == 5.9 and row["user_name"] == "dr.clin"


def test_no_event_needs_the_horizon_to_pass(any_store, scored):
    with pytest.raises(InvalidInput) as exc:
        record_outcome({"prediction_id": scored.prediction_id, "event": False,
                        "source": "chart"}, user="dr.clin")
    assert exc.value.errors[0]["field"] == "event" and "42-day" in exc.value.errors[0]["message"]
    record_outcome({"prediction_id": scored.prediction_id, "event": False, "measured_value": 4.9,
                    "source": "chart"}, user="dr.clin", now=later(43))
    assert any_store.current_outcome(scored.prediction_id)["event"] is False


@pytest.mark.parametrize("payload,field", [
    ({"event": True, "source": "lab"}, "event_date"),  # no date
    ({"event": False, "measured_value": 6.1, "source": "lab"}, "(form)"),  # contradiction
    ({"event": True, "event_date": "2001-01-01", "source": "lab"}, "event_date"),
    ({"event": "perhaps", "source": "lab"}, "event"),
    ({"event": False, "measured_value": 40, "source": "lab"}, "measured_value"),
    ({"event": False}, "source"),
])
def test_outcome_validation_names_the_field(any_store, scored, payload, field):
    with pytest.raises(InvalidInput) as exc:
        record_outcome({"prediction_id": scored.prediction_id, **payload}, user="u", now=later(43))
    assert field in [e["field"] for e in exc.value.errors]
    assert any_store.current_outcome(scored.prediction_id) is None


def test_correction_is_a_new_record(any_store, scored):
    first = record_outcome({"prediction_id": scored.prediction_id, "event": False,
                            "source": "chart"}, user="a", now=later(43))
    with pytest.raises(AlreadyRecorded):
        record_outcome({"prediction_id": scored.prediction_id, "event": True,
                        "event_date": str(now_utc().date()), "source": "chart"}, user="b",
                       now=later(43))
    second = record_outcome({"prediction_id": scored.prediction_id, "event": True,
                             "event_date": str(now_utc().date()), "source": "lab recheck",
                             "supersedes": first["outcome_id"]}, user="b", now=later(43))
    history = any_store.outcome_history(scored.prediction_id)
    assert list(history["outcome_id"]) == [first["outcome_id"], second["outcome_id"]]
    assert any_store.current_outcome(scored.prediction_id)["event"] is True


def test_due_list_shows_only_past_horizon_without_outcome(any_store, scored, valid_payload):
    other = core.score({**valid_payload, "patient_ref": "TEST-2"}, user="dr.clin", source="form")
    assert any_store.due_outcomes(now=later(10), horizons={"v1": 42}).empty
    due = any_store.due_outcomes(now=later(45), horizons={"v1": 42})
    assert set(due["prediction_id"]) == {scored.prediction_id, other.prediction_id}
    assert due["days_overdue"].min() >= 2
    record_outcome({"prediction_id": scored.prediction_id, "event": False, "source": "chart"},
                   user="a", now=later(45))
    assert list(any_store.due_outcomes(now=later(45), horizons={"v1": 42})["prediction_id"]) == [other.prediction_id]


def test_import_matches_by_id_or_patient_and_reports_rejects(any_store, scored, valid_payload, tmp_path):
    other = core.score({**valid_payload, "patient_ref": "TEST-2"}, user="dr.clin", source="form")
    third = core.score({**valid_payload, "patient_ref": "TEST-3"}, user="dr.clin", source="form")
    today = now_utc().date()
    csv = tmp_path / "lab.csv"
    csv.write_text(
        "prediction_id,patient_ref,sample_date,event,max_potassium,source\n"
        f"{scored.prediction_id},,,,4.8,lab export\n"            # by id, derived no event
        f",TEST-2,{today},,6.0,lab export\n"                     # by patient, event on date
        f",TEST-3,2001-01-01,,5.0,lab export\n"                  # no prediction in that window
        f"{third.prediction_id},,,maybe,,lab export\n"           # bad flag
        ",NOBODY,2026-01-01,,5.0,lab export\n")                  # unknown patient
    report = import_outcomes(csv, user="importer", now=later(43))
    assert report["rows"] == 5 and report["recorded"] == 2
    assert [r["row"] for r in report["rejected"]] == [3, 4, 5]
    assert any_store.current_outcome(other.prediction_id)["event"] is True
    assert str(any_store.current_outcome(other.prediction_id)["event_date"]) == str(today)
    assert any_store.current_outcome(third.prediction_id) is None
