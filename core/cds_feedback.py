"""What clinicians did with a risk card a hospital system showed them (CDS Hooks feedback):
accepted the estimate, or overrode it, with a reason and a comment when they gave one.

Each item is an append-only event in the audit chain, tied to the prediction the card showed
(the card's uuid is its prediction id). Only the client that was given the card can report on
it: a card of another client's prediction, or of no prediction, is NotFound, so one client
can neither attach feedback to another's predictions nor learn which prediction ids exist.
Items of one report are recorded together or not at all.
"""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.clock import now_utc
from core.config import get_settings
from core.errors import InvalidInput, NotFound, problem
from core.store import Event, Store, open_store
from core.store.records import CdsFeedback
from core.text import actor, free_text

# The override reasons a card offers (CDS Hooks `overrideReasons`, Codings of this system). A
# hospital system may add its own reasons, of its own code system: those are recorded as sent.
OVERRIDE_SYSTEM = "urn:clinical-risk-service:cds-hooks:override-reason"
OVERRIDE_REASONS: dict[str, str] = {
    "estimate-does-not-fit": "The estimate does not fit this patient",
    "inputs-wrong-or-outdated": "The inputs were wrong or out of date",
    "outside-intended-use": "The model is not meant for this patient or decision",
    "already-addressed": "Already addressed in the care plan",
}
CODE_MAX, SYSTEM_MAX, DISPLAY_MAX, COMMENT_MAX = 200, 500, 200, 2000
MAX_ITEMS = 100  # feedback items in one report


class CardFeedback(BaseModel):
    """One feedback item, as recorded: the card's prediction, the outcome, an optional override
    reason (a coding: system and code, with the display the client showed) and comment."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    prediction_id: str = Field(min_length=1, max_length=64)
    outcome: Literal["accepted", "overridden"]
    override_reason_system: free_text(SYSTEM_MAX) = ""
    override_reason_code: free_text(CODE_MAX) = ""
    override_reason_display: free_text(DISPLAY_MAX) = ""
    user_comment: free_text(COMMENT_MAX, multiline=True) = ""
    outcome_timestamp: AwareDatetime  # when the user acted, as the client says (any offset)

    @field_validator("override_reason_code")
    @classmethod
    def _ours_is_known(cls, code: str, info: ValidationInfo) -> str:
        if info.data.get("override_reason_system") == OVERRIDE_SYSTEM and code not in OVERRIDE_REASONS:
            raise ValueError("is not one of this service's override reasons: "
                             + ", ".join(OVERRIDE_REASONS))
        return code

    @model_validator(mode="after")
    def _reason_fits(self) -> CardFeedback:
        coded = self.override_reason_system or self.override_reason_code
        if self.outcome == "accepted" and (coded or self.override_reason_display or self.user_comment):
            raise ValueError("an accepted card has no override reason or comment")
        if coded and not (self.override_reason_system and self.override_reason_code):
            raise ValueError("an override reason needs both its system and its code")
        return self


def record_feedback(items: list[CardFeedback | dict], *, user: str,
                    store: Store | None = None) -> list[dict]:
    """Record each item (InvalidInput names every problem; NotFound for a card that is not one
    of `user`'s predictions); the recorded rows, in order, once all are committed."""
    actor(user)
    store = store or open_store(get_settings().db)
    if not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidInput([problem("(feedback)", f"send 1 to {MAX_ITEMS} items", len(items))])
    checked, problems = [], []
    for i, item in enumerate(items):
        try:
            checked.append(item if isinstance(item, CardFeedback) else CardFeedback.model_validate(item))
        except ValidationError as exc:
            problems += [{**p, "field": f"{i}.{p['field']}"}
                         for p in InvalidInput.from_pydantic(exc).errors]
    if problems:
        raise InvalidInput(problems)
    for f in checked:
        prediction = store.prediction(f.prediction_id)
        if prediction is None or prediction["user_name"] != user:
            raise NotFound(f"card {f.prediction_id} is not one this service gave {user}")
    at = now_utc()
    events = []
    for f in checked:
        record = CdsFeedback(
            feedback_id=str(uuid.uuid4()), created_at=at, user_name=user,
            prediction_id=f.prediction_id, outcome=f.outcome,
            override_reason_system=f.override_reason_system,
            override_reason_code=f.override_reason_code,
            override_reason_display=f.override_reason_display, user_comment=f.user_comment,
            outcome_timestamp=f.outcome_timestamp.astimezone(UTC).replace(tzinfo=None, microsecond=0))
        events.append(Event("cds_feedback", user, at, f.prediction_id, record))
    store.append(events)
    return [e.record.row() for e in events]

