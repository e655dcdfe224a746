"""A prediction's current state, as an integration asks for it: was it finalised without review,
is it waiting for a reviewer, what did the reviewer decide, and what outcome is recorded."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.config import get_settings
from core.errors import NotFound
from core.frames import PredictionSummary, UtcDatetime
from core.review import label
from core.store import Store, open_store


class ReviewState(BaseModel):
    model_config = ConfigDict(frozen=True)

    decision: Literal["agree", "override_high", "override_low"]
    reviewer_class: Literal["high", "low"]
    direction: Literal["none", "upgrade", "downgrade"]
    reason_code: str
    reviewer_name: str
    decided_at: UtcDatetime
    decision_id: str
    summary: str  # the decision in words: "agreed", "overridden to high (upgrade)"


class OutcomeState(BaseModel):
    model_config = ConfigDict(frozen=True)

    outcome_id: str
    event: bool
    event_date: date | None
    measured_value: float | None
    source: str
    recorded_at: UtcDatetime


class PredictionState(PredictionSummary):
    """Where a prediction stands now; `status` says it in one word."""

    status: Literal["auto_finalised", "waiting_for_review", "reviewed"]
    confidence: float
    final_class: Literal["high", "low"] | None  # the reviewer's class, else the model's once final
    review: ReviewState | None
    outcome: OutcomeState | None


def prediction_state(prediction_id: str, *, store: Store | None = None) -> PredictionState:
    """The current state of one recorded prediction; NotFound when there is none."""
    store = store or open_store(get_settings().db)
    p = store.prediction(prediction_id)
    if p is None:
        raise NotFound(f"prediction {prediction_id} does not exist")
    d = store.current_decision(prediction_id)
    o = store.current_outcome(prediction_id)
    review = None if d is None else ReviewState(
        decision=d["decision"], reviewer_class=d["reviewer_class"], direction=d["direction"],
        reason_code=d["reason_code"], reviewer_name=d["reviewer_name"], decided_at=d["created_at"],
        decision_id=d["decision_id"],
        summary=label(d["decision"], d["reviewer_class"], d["direction"], routing=p["routing"]))
    outcome = None if o is None else OutcomeState(
        outcome_id=o["outcome_id"], event=o["event"], event_date=o["event_date"],
        measured_value=o["measured_value"], source=o["source"], recorded_at=o["created_at"])
    if review is not None:
        status, final = "reviewed", review.reviewer_class
    elif p["routing"] == "review":
        status, final = "waiting_for_review", None
    else:
        status, final = "auto_finalised", p["risk_class"]
    return PredictionState(
        prediction_id=p["prediction_id"], created_at=p["created_at"], patient_ref=p["patient_ref"],
        risk=p["risk"], risk_class=p["risk_class"], routing=p["routing"],
        model_version=p["model_version"], confidence=p["confidence"], status=status,
        final_class=final, review=review, outcome=outcome)
