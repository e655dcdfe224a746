"""Review decisions: rules, append-only corrections, and first-decision-wins under concurrency."""

import threading

import duckdb
import pytest

import core
from core.errors import AlreadyDecided, InvalidInput, NotFound
from core.review import decide, direction

OVERRIDE_REASON = "clinical context not captured by the model"


@pytest.fixture
def queued(fresh_store, valid_payload):
    """A prediction routed to review (an optional value missing) and its class."""
    result = core.score({**valid_payload, "lvef": None}, user="dr.clin")
    assert result.routing == "review"
    return result


@pytest.mark.parametrize("model_class,reviewer_class,expected", [
    ("high", "low", "downgrade"), ("low", "high", "upgrade"),
    ("high", "high", "none"), ("low", "low", "none")])
def test_direction(model_class, reviewer_class, expected):
    assert direction(model_class, reviewer_class) == expected


def test_decide_records_who_when_meaning_and_direction(fresh_store, queued):
    target = "high" if queued.risk_class == "low" else "low"
    d = decide({"prediction_id": queued.prediction_id, "decision": f"override_{target}",
                "reason_code": OVERRIDE_REASON, "comment": "recent AKI"},
               user="rev1", display_name="Dr R. One")
    row = fresh_store.current_decision(queued.prediction_id)
    assert row["user_name"] == "rev1" and row["reviewer_name"] == "Dr R. One"
    assert row["direction"] == ("upgrade" if target == "high" else "downgrade")
    assert row["model_class"] == queued.risk_class and row["reviewer_class"] == target
    assert "Dr R. One" in row["meaning"] and f"to '{target}'" in row["meaning"]
    assert row["decision_id"] == d["decision_id"]
    assert fresh_store.pending_reviews().empty


@pytest.mark.parametrize("payload,field", [
    ({"decision": "override_low", "reason_code": OVERRIDE_REASON}, "(form)"),
    ({"decision": "agree", "reason_code": "other"}, "(form)"),
    ({"decision": "agree", "reason_code": "because"}, "reason_code"),
    ({"decision": "maybe", "reason_code": OVERRIDE_REASON}, "decision"),
])
def test_decide_rejects_incomplete_forms(fresh_store, queued, payload, field):
    with pytest.raises(InvalidInput) as exc:
        decide({"prediction_id": queued.prediction_id, **payload}, user="rev1", display_name="R")
    assert exc.value.errors[0]["field"] == field
    assert fresh_store.current_decision(queued.prediction_id) is None


def test_decide_unknown_prediction(fresh_store):
    with pytest.raises(NotFound):
        decide({"prediction_id": "nope", "decision": "agree", "reason_code": OVERRIDE_REASON},
               user="rev1", display_name="R")


def test_decide_twice_keeps_first(fresh_store, queued):
    decide({"prediction_id": queued.prediction_id, "decision": "agree",
            "reason_code": OVERRIDE_REASON}, user="rev1", display_name="Dr One")
    with pytest.raises(AlreadyDecided, match="Dr One"):
        decide({"prediction_id": queued.prediction_id, "decision": "agree",
                "reason_code": OVERRIDE_REASON}, user="rev2", display_name="Dr Two")
    assert len(fresh_store.decisions(queued.prediction_id)) == 1


def test_correction_supersedes_and_keeps_both(fresh_store, queued):
    first = decide({"prediction_id": queued.prediction_id, "decision": "agree",
                    "reason_code": OVERRIDE_REASON}, user="rev1", display_name="Dr One")
    second = decide({"prediction_id": queued.prediction_id, "decision": "override_high"
                     if queued.risk_class == "low" else "override_low",
                     "reason_code": "suspected lab or entry error", "comment": "haemolysed",
                     "supersedes": first["decision_id"]}, user="rev1", display_name="Dr One")
    history = fresh_store.decisions(queued.prediction_id)
    assert list(history["decision_id"]) == [first["decision_id"], second["decision_id"]]
    assert fresh_store.current_decision(queued.prediction_id)["decision_id"] == second["decision_id"]
    with pytest.raises(AlreadyDecided):  # correcting a superseded decision is refused
        decide({"prediction_id": queued.prediction_id, "decision": "agree",
                "reason_code": OVERRIDE_REASON, "supersedes": first["decision_id"]},
               user="rev2", display_name="Dr Two")


def test_decisions_cannot_be_changed_in_the_database(fresh_store, queued):
    decide({"prediction_id": queued.prediction_id, "decision": "agree",
            "reason_code": OVERRIDE_REASON}, user="rev1", display_name="Dr One")
    for sql in ("UPDATE review_decisions SET decision = 'override_low'", "DELETE FROM review_decisions"):
        with pytest.raises(duckdb.Error, match="append-only"):
            fresh_store._cursor().execute(sql)


def test_concurrent_reviewers_leave_exactly_one_decision(fresh_store, queued):
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
    decisions = fresh_store.decisions(queued.prediction_id)
    assert len(decisions) == 1 and outcomes.count("recorded") == 1
    winner = decisions["user_name"][0]
    assert sorted(outcomes) == sorted(["recorded"] + [f"told: {winner}"] * 7)


def test_pending_reviews_filters_by_reason_and_version(fresh_store, queued, valid_payload):
    core.score({**valid_payload, "patient_ref": "TEST-2", "egfr": 140.0}, user="dr.clin")
    assert len(fresh_store.pending_reviews()) == 2
    assert list(fresh_store.pending_reviews(reason="missing_value")["prediction_id"]) == [queued.prediction_id]
    assert len(fresh_store.pending_reviews(reason="outside_validated_range")) == 1
    assert len(fresh_store.pending_reviews(model_version="v1")) == 2
    assert fresh_store.pending_reviews(model_version="v0").empty
