"""Review decisions: rules, append-only corrections, and first-decision-wins under concurrency."""

import threading
from datetime import timedelta

import pytest
import store_oracle as oracle

import core
from core.errors import AlreadyDecided, InvalidInput, NotFound
from core.maintenance import purge_expired
from core.recent import recent_predictions
from core.review import decide, direction
from core.review_queue import format_age, queue, recent_decisions

OVERRIDE_REASON = "clinical context not captured by the model"


@pytest.fixture
def queued(any_store, valid_payload):
    """A prediction routed to review (an optional value missing) and its class."""
    result = core.score({**valid_payload, "lvef": None}, user="dr.clin", source="form")
    assert result.routing == "review"
    return result


@pytest.mark.parametrize("model_class,reviewer_class,expected", [
    ("high", "low", "downgrade"), ("low", "high", "upgrade"),
    ("high", "high", "none"), ("low", "low", "none")])
def test_direction(model_class, reviewer_class, expected):
    assert direction(model_class, reviewer_class) == expected


def test_decide_records_who_when_meaning_and_direction(any_store, queued):
    target = "high" if queued.risk_class == "low" else "low"
    d = decide({"prediction_id": queued.prediction_id, "decision": f"override_{target}",
                "reason_code": OVERRIDE_REASON, "comment": "recent AKI"},
               user="rev1", display_name="Dr R. One")
    row = any_store.current_decision(queued.prediction_id)
    assert row["user_name"] == "rev1" and row["reviewer_name"] == "Dr R. One"
    assert row["direction"] == ("upgrade" if target == "high" else "downgrade")
    assert row["model_class"] == queued.risk_class and row["reviewer_class"] == target
    assert "Dr R. One" in row["meaning"] and f"to '{target}'" in row["meaning"]
    assert row["decision_id"] == d["decision_id"]
    assert any_store.pending_reviews().empty


@pytest.mark.parametrize("payload,field", [
    ({"decision": "override_low", "reason_code": OVERRIDE_REASON}, "(form)"),
    ({"decision": "agree", "reason_code": "other"}, "(form)"),
    ({"decision": "agree", "reason_code": "because"}, "reason_code"),
    ({"decision": "maybe", "reason_code": OVERRIDE_REASON}, "decision"),
])
def test_decide_rejects_incomplete_forms(any_store, queued, payload, field):
    with pytest.raises(InvalidInput) as exc:
        decide({"prediction_id": queued.prediction_id, **payload}, user="rev1", display_name="R")
    assert exc.value.errors[0]["field"] == field
    assert any_store.current_decision(queued.prediction_id) is None


def test_decide_unknown_prediction(any_store):
    with pytest.raises(NotFound):
        decide({"prediction_id": "nope", "decision": "agree", "reason_code": OVERRIDE_REASON},
               user="rev1", display_name="R")


def test_decide_twice_keeps_first(any_store, queued):
    decide({"prediction_id": queued.prediction_id, "decision": "agree",
            "reason_code": OVERRIDE_REASON}, user="rev1", display_name="Dr One")
    with pytest.raises(AlreadyDecided, match="Dr One"):
        decide({"prediction_id": queued.prediction_id, "decision": "agree",
                "reason_code": OVERRIDE_REASON}, user="rev2", display_name="Dr Two")
    assert len(oracle.rows(any_store, "review_decisions", prediction_id=queued.prediction_id)) == 1


def test_correction_supersedes_and_keeps_both(any_store, queued):
    first = decide({"prediction_id": queued.prediction_id, "decision": "agree",
                    "reason_code": OVERRIDE_REASON}, user="rev1", display_name="Dr One")
    second = decide({"prediction_id": queued.prediction_id, "decision": "override_high"
                     if queued.risk_class == "low" else "override_low",
                     "reason_code": "suspected lab or entry error", "comment": "haemolysed",
                     "supersedes": first["decision_id"]}, user="rev1", display_name="Dr One")
    history = oracle.rows(any_store, "review_decisions", prediction_id=queued.prediction_id)
    assert list(history["decision_id"]) == [first["decision_id"], second["decision_id"]]
    assert any_store.current_decision(queued.prediction_id)["decision_id"] == second["decision_id"]
    with pytest.raises(AlreadyDecided):  # correcting a superseded decision is refused
        decide({"prediction_id": queued.prediction_id, "decision": "agree",
                "reason_code": OVERRIDE_REASON, "supersedes": first["decision_id"]},
               user="rev2", display_name="Dr Two")


def test_decisions_cannot_be_changed_in_the_database(any_store, queued):
    decide({"prediction_id": queued.prediction_id, "decision": "agree",
            "reason_code": OVERRIDE_REASON}, user="rev1", display_name="Dr One")
    for sql in ("UPDATE review_decisions SET decision = 'override_low'", "DELETE FROM review_decisions"):
        # the embedded file's triggers; on PostgreSQL the service's role has no such grant
        with pytest.raises(any_store._dialect.Error, match="append-only|permission denied"):
            oracle.sql(any_store, sql)


def test_concurrent_reviewers_leave_exactly_one_decision(any_store, queued):
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def reviewer(n: int) -> None:
        barrier.wait()
        try:
            decide({"prediction_id": queued.prediction_id, "decision": "agree",
                    "reason_code": OVERRIDE_REASON}, user=f"rev{n}", display_name=f"Dr {n}")
            outcomes.append("recorded")
        except AlreadyDecided as exc:
            outcomes.append(f"told: {exc.decision['user_name']}")

    threads = [threading.Thread(target=reviewer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    decisions = oracle.rows(any_store, "review_decisions", prediction_id=queued.prediction_id)
    assert len(decisions) == 1 and outcomes.count("recorded") == 1
    winner = decisions["user_name"][0]
    assert sorted(outcomes) == sorted(["recorded"] + [f"told: {winner}"] * 7)


def test_pending_reviews_filters_by_reason_and_version(any_store, queued, valid_payload):
    core.score({**valid_payload, "patient_ref": "TEST-2", "egfr": 140.0}, user="dr.clin", source="form")
    assert len(any_store.pending_reviews()) == 2
    assert list(any_store.pending_reviews(reason="missing_value")["prediction_id"]) == [queued.prediction_id]
    assert len(any_store.pending_reviews(reason="outside_validated_range")) == 1
    assert len(any_store.pending_reviews(model_version="v1")) == 2
    assert any_store.pending_reviews(model_version="v0").empty


def test_queue_puts_inputs_next_to_the_validated_ranges(any_store, queued, valid_payload):
    later = core.score({**valid_payload, "patient_ref": "TEST-2", "age": 110}, user="dr.clin", source="form")
    items = queue(now=queued.created_at.replace(tzinfo=None) + timedelta(hours=5, minutes=12))
    assert [i.prediction_id for i in items] == [queued.prediction_id, later.prediction_id]
    first = items[0]
    assert first.age_text == "5 h 12 min" and first.age_hours == 5.2
    assert first.reason_codes == ["missing_value"] and "LVEF" in first.reasons[0]
    assert (first.risk_low <= first.risk <= first.risk_high) and first.model_version == "v1"
    rows = {r.feature: r.model_dump() for r in first.inputs}
    assert rows["LVEF (%)"] == {"feature": "LVEF (%)", "value": "missing", "validated": "15-40 %",
                                "check": "missing"}
    assert rows["Loop diuretic"]["value"] == "yes" and rows["Sex"]["validated"] == "female, male"
    age = {r.feature: r for r in items[1].inputs}["Age (years)"]
    assert (age.value, age.check) == ("110", "outside validated range")
    assert [i.patient_ref for i in queue(reason="outside_validated_range")] == ["TEST-2"]
    assert queue(model_version="v0") == []


def test_queue_after_retention_purge_says_inputs_are_gone(any_store, queued):
    purge_expired(any_store, days=0, by="dpo")
    [item] = queue()
    assert item.inputs is None and item.patient_ref is None
    assert item.inputs_note == "input values removed by the retention purge"


@pytest.mark.parametrize("minutes,text", [(0, "0 min"), (59, "59 min"), (60, "1 h 00 min"),
                                          (25 * 60 + 5, "1 d 1 h"), (-3, "0 min")])
def test_format_age(minutes, text):
    assert format_age(timedelta(minutes=minutes)) == text


def test_recent_decisions_keep_full_history_and_the_one_in_force(any_store, queued, valid_payload):
    other = core.score({**valid_payload, "patient_ref": "TEST-2", "lvef": None}, user="dr.clin", source="form")
    first = decide({"prediction_id": queued.prediction_id, "decision": "agree",
                    "reason_code": OVERRIDE_REASON}, user="rev1", display_name="Dr One")
    decide({"prediction_id": other.prediction_id, "decision": "agree", "reason_code": OVERRIDE_REASON},
           user="rev1", display_name="Dr One")
    target = "high" if queued.risk_class == "low" else "low"
    fix = decide({"prediction_id": queued.prediction_id, "decision": f"override_{target}",
                  "reason_code": "other", "comment": "typo", "supersedes": first["decision_id"]},
                 user="rev2", display_name="Dr Two")
    latest, older = recent_decisions()
    assert latest.prediction_id == queued.prediction_id and older.prediction_id == other.prediction_id
    assert [h.decision_id for h in latest.history] == [first["decision_id"], fix["decision_id"]]
    assert [h.in_force for h in latest.history] == [False, True]
    assert latest.current.decision_id == fix["decision_id"] and latest.patient_ref == "TEST-0001"
    assert latest.current.summary == f"overridden to {target} ({latest.current.direction})"
    assert [d.prediction_id for d in recent_decisions(limit=1)] == [queued.prediction_id]


def test_recent_predictions_with_review_show_the_decision_in_force(any_store, queued, valid_payload):
    core.score({**valid_payload, "patient_ref": "TEST-2"}, user="dr.clin", source="form")
    target = "high" if queued.risk_class == "low" else "low"
    decide({"prediction_id": queued.prediction_id, "decision": f"override_{target}",
            "reason_code": OVERRIDE_REASON, "comment": "context"}, user="rev1", display_name="Dr One")
    recent = recent_predictions("dr.clin")
    assert [r.patient_ref for r in recent] == ["TEST-2", "TEST-0001"]
    assert [r.review for r in recent] == [
        "not needed", f"overridden to {target} ({'upgrade' if target == 'high' else 'downgrade'})"]
    assert [r.status for r in recent] == ["auto-finalised", "clinically reviewed"]
    assert recent[1].reviewer_name == "Dr One" and recent[0].reviewer_name is None
    assert recent[0].decided_at is None and recent[1].decided_at is not None
    assert recent_predictions("someone.else") == []
