"""Core of the service: everything except the Streamlit pages. Never imports streamlit.

`core.score(payload, user=..., source=...)` is the one public scoring entry point (the caller
states where the payload came from: "form", "batch" or "api"); `core.InvalidInput` is the one
exception it raises for a payload that fails validation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.errors import (
    ArtefactMismatch,
    BatchStopped,
    ConfigError,
    CoreError,
    InvalidInput,
    ScoringSuspended,
    SpecError,
    StoreUnavailable,
    TrainingDataError,
)

if TYPE_CHECKING:
    from core.scoring import ScoreResult

__all__ = ["score", "InvalidInput", "ArtefactMismatch", "BatchStopped", "ConfigError", "CoreError",
           "SpecError", "StoreUnavailable", "TrainingDataError", "ScoringSuspended"]


def score(payload: Any, *, user: str, source: str) -> ScoreResult:
    """Validate, predict, route and record one patient, recording `source` as where it came
    from (see core.scoring.score)."""
    from core.scoring import score as _score  # imported here: sklearn loads only when scoring

    return _score(payload, user=user, source=source)
