"""What the Review queue page reads: the predictions waiting for review (oldest first, each
input next to the range its own model version was validated on), and the recent decisions
with their full history."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core import artifacts
from core.clock import now_utc
from core.config import get_settings
from core.display import confidence_meaning
from core.errors import ArtefactMismatch
from core.frames import UtcDatetime, plain_rows
from core.review import Decision, label
from core.spec import Spec
from core.store import Store, open_store

QUEUE_LIMIT = 500
PURGED = "input values removed by the retention purge"


class InputCheck(BaseModel):
    """One input of a queued prediction next to its model version's validated range."""

    model_config = ConfigDict(frozen=True)

    feature: str  # its label and unit
    value: str  # as entered, or "missing"
    validated: str  # the validated range or categories, or "any"
    check: Literal["", "missing", "outside validated range", "not validated"]


class QueueItem(BaseModel):
    """A prediction routed to review with no decision yet."""

    model_config = ConfigDict(frozen=True)

    prediction_id: str
    created_at: UtcDatetime
    age_hours: float
    age_text: str  # format_age of its age
    patient_ref: str | None  # None once the retention purge removed it
    risk: float
    risk_low: float
    risk_high: float
    risk_class: Literal["high", "low"]
    confidence: float
    confidence_meaning: str  # what its version's confidence means ("" when it cannot be loaded)
    reasons: list[str]
    reason_codes: list[str]
    model_version: str
    scored_by: str
    inputs: list[InputCheck] | None  # None after the retention purge or when the version cannot load
    inputs_note: str  # why `inputs` is None ("" otherwise)


class DecisionEntry(BaseModel):
    """One signed decision; a correction supersedes the decision it names."""

    model_config = ConfigDict(frozen=True)

    decision_id: str
    created_at: UtcDatetime
    user_name: str
    reviewer_name: str
    decision: Decision
    model_class: Literal["high", "low"]
    reviewer_class: Literal["high", "low"]
    direction: Literal["upgrade", "downgrade", "none"]
    reason_code: str
    comment: str
    meaning: str  # the signature's meaning, as recorded
    supersedes: str | None
    in_force: bool
    summary: str  # core.review.label of it


class DecidedPrediction(BaseModel):
    """A decided prediction with every decision on it (oldest first) and the one in force."""

    model_config = ConfigDict(frozen=True)

    prediction_id: str
    patient_ref: str | None
    risk: float
    model_class: Literal["high", "low"]
    model_version: str
    history: list[DecisionEntry]
    current: DecisionEntry | None


def format_age(age: timedelta) -> str:
    """How long an item has waited, e.g. '12 min', '5 h 03 min', '3 d 4 h'."""
    minutes = max(int(age.total_seconds() // 60), 0)
    hours, mins = divmod(minutes, 60)
    days, hours_left = divmod(hours, 24)
    if hours == 0:
        return f"{mins} min"
    return f"{hours} h {mins:02d} min" if days == 0 else f"{days} d {hours_left} h"


def queue(reason: str | None = None, model_version: str | None = None, *, store: Store | None = None,
          now: datetime | None = None, limit: int = QUEUE_LIMIT) -> list[QueueItem]:
    """Predictions waiting for review, oldest first (filtered by reason code and version)."""
    settings = get_settings()
    store = store or open_store(settings.db)
    now = now or now_utc()
    specs: dict[str, Spec | str] = {}
    meanings: dict[str, str] = {}
    items = []
    for row in plain_rows(store.pending_reviews(reason=reason, model_version=model_version,
                                                limit=limit)):
        version = row["model_version"]
        if version not in specs:
            try:
                artefact = artifacts.load(settings.models, version)
                specs[version], meanings[version] = artefact.spec, confidence_meaning(artefact)
            except ArtefactMismatch as exc:
                specs[version] = f"validated ranges unavailable: {exc}"
        age = now - row["created_at"]
        values = None if row["input_json"] is None else json.loads(row["input_json"])
        spec = specs[version]
        items.append(QueueItem(
            prediction_id=row["prediction_id"], created_at=row["created_at"],
            age_hours=round(age / timedelta(hours=1), 1), age_text=format_age(age),
            patient_ref=row["patient_ref"], risk=row["risk"], risk_low=row["risk_low"],
            risk_high=row["risk_high"], risk_class=row["risk_class"],
            confidence=row["confidence"], confidence_meaning=meanings.get(version, ""),
            reasons=json.loads(row["reasons_json"]), reason_codes=row["reason_codes"],
            model_version=version, scored_by=row["user_name"],
            inputs=None if values is None or isinstance(spec, str) else _inputs(spec, values),
            inputs_note=PURGED if values is None else spec if isinstance(spec, str) else ""))
    return items


def _inputs(spec: Spec, values: dict) -> list[InputCheck]:
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
        rows.append(InputCheck(feature=f"{f.label} ({f.unit})" if f.unit else f.label, value=shown,
                               validated=f.describe_validated() or "any", check=check))
    return rows


def recent_decisions(*, limit: int = 50, store: Store | None = None) -> list[DecidedPrediction]:
    """The most recently decided predictions, latest first, each with its full decision history."""
    store = store or open_store(get_settings().db)
    fields = [f for f in DecisionEntry.model_fields if f != "summary"]
    grouped: dict[str, dict] = {}
    for row in plain_rows(store.recent_decisions(limit=limit)):
        item = grouped.setdefault(row["prediction_id"], {
            "prediction_id": row["prediction_id"], "patient_ref": row["patient_ref"],
            "risk": row["risk"], "model_class": row["model_class"],
            "model_version": row["model_version"], "history": [], "current": None})
        entry = DecisionEntry(**{f: row[f] for f in fields}, summary=label(
            row["decision"], row["reviewer_class"], row["direction"]))
        item["history"].append(entry)
        if entry.in_force:
            item["current"] = entry
    return [DecidedPrediction(**item) for item in grouped.values()]
