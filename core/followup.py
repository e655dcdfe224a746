"""What the Outcomes page reads: the predictions whose outcome is due, and one prediction with
its outcome history (oldest first) and the outcome in force."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from core.clock import now_utc
from core.config import get_settings
from core.errors import SpecError
from core.frames import PredictionSummary, UtcDatetime, plain, plain_rows
from core.outcomes import horizon_days
from core.store import Store, open_store

DUE_LIMIT = 500  # the most overdue this many are listed


class DuePrediction(PredictionSummary):
    """A prediction past the outcome horizon of its own model version with no outcome recorded."""

    user_name: str  # who scored it
    horizon_days: int
    days_overdue: int


class ScoredPrediction(PredictionSummary):
    """A recorded prediction, as the outcome of it is entered against."""

    user_name: str


class OutcomeEntry(BaseModel):
    """One recorded outcome; a correction supersedes the entry it names."""

    model_config = ConfigDict(frozen=True)

    outcome_id: str
    created_at: UtcDatetime
    user_name: str
    event: bool
    event_date: date | None
    measured_value: float | None
    source: str
    supersedes: str | None
    in_force: bool


class PredictionOutcomes(BaseModel):
    """A prediction, every outcome recorded for it (oldest first) and the one in force."""

    model_config = ConfigDict(frozen=True)

    prediction: ScoredPrediction
    history: list[OutcomeEntry]
    current: OutcomeEntry | None


def due_outcomes(*, now: datetime | None = None, limit: int = DUE_LIMIT,
                 store: Store | None = None) -> list[DuePrediction]:
    """Predictions past the horizon of their own model version (its spec) with no outcome, most
    overdue first. A version whose spec cannot be read is left out: no outcome can be recorded
    for it."""
    store = store or open_store(get_settings().db)
    horizons = {}
    for version in store.prediction_versions():
        try:
            horizons[version] = horizon_days(version)
        except SpecError:
            continue
    rows = plain_rows(store.due_outcomes(now=now or now_utc(), horizons=horizons, limit=limit))
    return [DuePrediction(**row) for row in rows]


def prediction_outcomes(prediction_id: str, *, store: Store | None = None
                        ) -> PredictionOutcomes | None:
    """One prediction with its outcomes, or None when there is no such prediction."""
    store = store or open_store(get_settings().db)
    found = store.prediction(prediction_id)
    if found is None:
        return None
    prediction = ScoredPrediction(**{name: plain(found[name]) for name in ScoredPrediction.model_fields})
    current = store.current_outcome(prediction_id)
    in_force = current["outcome_id"] if current else None
    fields = [f for f in OutcomeEntry.model_fields if f != "in_force"]
    history = [OutcomeEntry(**{f: row[f] for f in fields}, in_force=row["outcome_id"] == in_force)
               for row in plain_rows(store.outcome_history(prediction_id))]
    return PredictionOutcomes(prediction=prediction, history=history,
                              current=next((h for h in history if h.in_force), None))
