"""Review decisions: a reviewer agrees with the model's risk class or overrides it.

Decisions are append-only. A correction is a new decision that supersedes the one in force;
both stay visible. The first decision on a prediction wins: a second reviewer deciding at the
same moment is told who decided and when (checked while the store holds writes).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.clock import now_utc
from core.config import get_settings
from core.errors import AlreadyDecided, InvalidInput, NotFound, problem
from core.store import Event, Store, open_store
from core.store.records import ReviewDecisionRecord
from core.text import free_text

Decision = Literal["agree", "override_high", "override_low"]


class ReviewDecision(BaseModel):
    """What the reviewer submits (from the queue page)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    prediction_id: str = Field(min_length=1, max_length=64)
    decision: Decision
    reason_code: str = Field(min_length=1, max_length=100)
    comment: free_text(2000, multiline=True) = ""
    supersedes: str | None = None  # the decision this one corrects

    @model_validator(mode="after")
    def _comment_when_needed(self) -> ReviewDecision:
        if (self.decision != "agree" or self.reason_code == "other") and not self.comment:
            raise ValueError("a comment is required for an override and for reason 'other'")
        return self


def direction(model_class: str, reviewer_class: str) -> str:
    """'downgrade' (model high -> reviewer low), 'upgrade' (low -> high), or 'none'."""
    if model_class == reviewer_class:
        return "none"
    return "downgrade" if model_class == "high" else "upgrade"


def meaning(name: str, decision: str, model_class: str, reviewer_class: str) -> str:
    """The signature's meaning, recorded with it, as an electronic signature requires."""
    if decision == "agree":
        what = f"agree with the model's risk class '{model_class}'"
    else:
        what = f"override the model's risk class '{model_class}' to '{reviewer_class}'"
    return f"I, {name}, reviewed this prediction and {what}."


def decide(payload: dict, *, user: str, display_name: str, store: Store | None = None) -> dict:
    """Record one decision; InvalidInput for a bad form, AlreadyDecided when someone was first."""
    store = store or open_store(get_settings().db)
    d = checked(payload, get_settings().review_reason_codes)
    prediction = store.prediction(d.prediction_id)
    if prediction is None:
        raise NotFound(f"prediction {d.prediction_id} does not exist")
    at = now_utc()
    record = decision_record(d, prediction["risk_class"], user=user, display_name=display_name,
                             at=at)

    def first_wins() -> None:
        current = store.current_decision(d.prediction_id)
        if current is not None and current["decision_id"] != d.supersedes:
            raise AlreadyDecided(current)
        if current is None and d.supersedes is not None:
            raise NotFound(f"decision {d.supersedes} is not the one in force for this prediction")

    store.append([Event("review_decision", user, at, d.prediction_id, record)],
                 precondition=first_wins)
    return record.row()


def checked(payload: dict, codes: list[str]) -> ReviewDecision:
    """The decision a form states, validated (its reason one of the configured `codes`)."""
    try:
        d = ReviewDecision.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInput.from_pydantic(exc) from None
    if d.reason_code not in codes:
        raise InvalidInput([problem("reason_code", "must be one of: " + "; ".join(codes),
                                    d.reason_code)])
    return d


def decision_record(d: ReviewDecision, model_class: str, *, user: str, display_name: str,
                    at: datetime) -> ReviewDecisionRecord:
    """The record of a checked decision on a prediction of `model_class`, signed at `at` (now,
    except in the demo's seeded history, core.demo_history)."""
    reviewer_class = {"agree": model_class, "override_high": "high", "override_low": "low"}[d.decision]
    name = display_name.strip() or user
    return ReviewDecisionRecord(
        decision_id=str(uuid.uuid4()), created_at=at, user_name=user, reviewer_name=name,
        prediction_id=d.prediction_id, decision=d.decision, model_class=model_class,
        reviewer_class=reviewer_class, direction=direction(model_class, reviewer_class),
        reason_code=d.reason_code, comment=d.comment,
        meaning=meaning(name, d.decision, model_class, reviewer_class), supersedes=d.supersedes)


def label(decision: str | None, reviewer_class: str | None = None, direction: str | None = None,
          *, routing: str = "review") -> str:
    """A decision in a few words: 'agreed', 'overridden to high (upgrade)', 'pending', 'not needed'."""
    if decision is None:
        return "pending" if routing == "review" else "not needed"
    return "agreed" if decision == "agree" else f"overridden to {reviewer_class} ({direction})"
