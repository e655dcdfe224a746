"""The clinician's recent predictions: what became of each (auto-finalised, waiting for a
reviewer, or reviewed, with the decision in force)."""

from __future__ import annotations

from core.config import get_settings
from core.frames import PredictionSummary, UtcDatetime, plain_rows
from core.review import label
from core.store import Store, open_store

STATUS = {"auto_finalised": "auto-finalised", "review": "awaiting clinical review"}
REVIEWED = "clinically reviewed"


class RecentPrediction(PredictionSummary):
    """One of a user's recorded predictions, with the review decision in force (if any)."""

    confidence: float
    status: str  # STATUS of its routing, or REVIEWED once a reviewer decided
    review: str  # core.review.label: "agreed", "overridden to ...", "pending", "not needed"
    reviewer_name: str | None
    decided_at: UtcDatetime | None


def recent_predictions(user: str, *, limit: int = 20, store: Store | None = None
                       ) -> list[RecentPrediction]:
    """A user's most recent predictions, newest first."""
    store = store or open_store(get_settings().db)
    out = []
    for row in plain_rows(store.recent_predictions_with_review(user=user, limit=limit)):
        decision = row.pop("decision")
        reviewer_class, direction = row.pop("reviewer_class"), row.pop("direction")
        out.append(RecentPrediction(
            **row, status=STATUS[row["routing"]] if decision is None else REVIEWED,
            review=label(decision, reviewer_class, direction, routing=row["routing"])))
    return out
