"""Review decisions: a reviewer agrees with the model's risk class or overrides it.

Decisions are append-only. A correction is a new decision that supersedes the one in force;
both stay visible. The first decision on a prediction wins: a second reviewer deciding at the
same moment is told who decided and when (checked while the store holds writes).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core import artifacts
from core.clock import now_utc
from core.config import get_settings
from core.display import confidence_meaning
from core.errors import AlreadyDecided, ArtefactMismatch, InvalidInput, NotFound, problem
from core.spec import Spec
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
    settings = get_settings()
    store = store or open_store(settings.db)
    try:
        d = ReviewDecision.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInput.from_pydantic(exc) from None
    if d.reason_code not in settings.review_reason_codes:
        raise InvalidInput([problem("reason_code", "must be one of: "
                                    + "; ".join(settings.review_reason_codes), d.reason_code)])
    prediction = store.prediction(d.prediction_id)
    if prediction is None:
        raise NotFound(f"prediction {d.prediction_id} does not exist")
    model_class = prediction["risk_class"]
    reviewer_class = {"agree": model_class, "override_high": "high", "override_low": "low"}[d.decision]
    at = now_utc()
    name = display_name.strip() or user
    record = ReviewDecisionRecord(
        decision_id=str(uuid.uuid4()), created_at=at, user_name=user, reviewer_name=name,
        prediction_id=d.prediction_id, decision=d.decision, model_class=model_class,
        reviewer_class=reviewer_class, direction=direction(model_class, reviewer_class),
        reason_code=d.reason_code, comment=d.comment,
        meaning=meaning(name, d.decision, model_class, reviewer_class), supersedes=d.supersedes)

    def first_wins() -> None:
        current = store.current_decision(d.prediction_id)
        if current is not None and current["decision_id"] != d.supersedes:
            raise AlreadyDecided(current)
        if current is None and d.supersedes is not None:
            raise NotFound(f"decision {d.supersedes} is not the one in force for this prediction")

    store.append([Event("review_decision", user, at, d.prediction_id, record)],
                 precondition=first_wins)
    return record.row()


# ---- what the queue page and the clinician's list show ---------------------------------------


def label(decision: str | None, reviewer_class: str | None = None, direction: str | None = None,
          *, routing: str = "review") -> str:
    """A decision in a few words: 'agreed', 'overridden to high (upgrade)', 'pending', 'not needed'."""
    if decision is None:
        return "pending" if routing == "review" else "not needed"
    return "agreed" if decision == "agree" else f"overridden to {reviewer_class} ({direction})"


def labels(frame: pd.DataFrame) -> pd.Series:
    """label() for each row of a frame with routing, decision, reviewer_class and direction."""
    cols = ["routing", "decision", "reviewer_class", "direction"]
    rows = frame[cols].astype(object).where(frame[cols].notna(), None)
    return pd.Series([label(d, c, r, routing=routing) for routing, d, c, r in rows.itertuples(index=False)],
                     index=frame.index, dtype=object)


def format_age(age: timedelta) -> str:
    """How long an item has waited, e.g. '12 min', '5 h 03 min', '3 d 4 h'."""
    minutes = max(int(age.total_seconds() // 60), 0)
    hours, mins = divmod(minutes, 60)
    days, hours_left = divmod(hours, 24)
    if hours == 0:
        return f"{mins} min"
    return f"{hours} h {mins:02d} min" if days == 0 else f"{days} d {hours_left} h"


def queue(reason: str | None = None, model_version: str | None = None, *, store: Store | None = None,
          now: datetime | None = None, limit: int = 500) -> list[dict]:
    """Predictions waiting for review, oldest first, each with its age and its input values next to
    the ranges its own model version was validated on (`inputs` is None after a retention purge)."""
    settings = get_settings()
    store = store or open_store(settings.db)
    now = now or now_utc()
    specs: dict[str, Spec | str] = {}
    meanings: dict[str, str] = {}
    items = []
    for row in store.pending_reviews(reason=reason, model_version=model_version,
                                     limit=limit).to_dict("records"):
        version = row["model_version"]
        if version not in specs:
            try:
                artefact = artifacts.load(settings.models, version)
                specs[version], meanings[version] = artefact.spec, confidence_meaning(artefact)
            except ArtefactMismatch as exc:
                specs[version] = f"validated ranges unavailable: {exc}"
        age = now - row["created_at"].to_pydatetime()
        values = None if row["input_json"] is None else json.loads(row["input_json"])
        spec = specs[version]
        items.append({
            "prediction_id": row["prediction_id"], "created_at": row["created_at"],
            "age_hours": round(age / timedelta(hours=1), 1), "age_text": format_age(age),
            "patient_ref": row["patient_ref"], "risk": row["risk"], "risk_low": row["risk_low"],
            "risk_high": row["risk_high"], "risk_class": row["risk_class"],
            "confidence": row["confidence"], "confidence_meaning": meanings.get(version, ""),
            "reasons": json.loads(row["reasons_json"]),
            "reason_codes": list(row["reason_codes"]), "model_version": version,
            "scored_by": row["user_name"],
            "inputs": None if values is None or isinstance(spec, str) else _inputs(spec, values),
            "inputs_note": ("input values removed by the retention purge" if values is None
                            else spec if isinstance(spec, str) else ""),
        })
    return items


def _inputs(spec: Spec, values: dict) -> list[dict]:
    rows = []
    for f in spec.features:
        value = values.get(f.name)
        check = ""
        if value is None:
            shown, check = "missing", "missing"
        elif f.type == "boolean":
            shown = "yes" if value else "no"
        elif f.numeric:
            shown = f"{value:g}"
            if f.validated_min is not None and not f.validated_min <= value <= f.validated_max:
                check = "outside validated range"
        else:
            shown = str(value)
            if f.validated_categories and value not in f.validated_categories:
                check = "not validated"
        rows.append({"feature": f"{f.label} ({f.unit})" if f.unit else f.label, "value": shown,
                     "validated": f.describe_validated() or "any", "check": check})
    return rows


def recent_decisions(*, limit: int = 50, store: Store | None = None) -> list[dict]:
    """The most recently decided predictions, latest first, each with its full decision history
    (oldest first) and the decision in force."""
    store = store or open_store(get_settings().db)
    grouped: dict[str, dict] = {}
    for row in store.recent_decisions(limit=limit).to_dict("records"):
        item = grouped.setdefault(row["prediction_id"], {
            "prediction_id": row["prediction_id"], "patient_ref": row["patient_ref"],
            "risk": row["risk"], "model_class": row["model_class"],
            "model_version": row["model_version"], "history": [], "current": None})
        item["history"].append(row)
        if row["in_force"]:
            item["current"] = row
    return list(grouped.values())
