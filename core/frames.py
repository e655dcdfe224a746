"""Store reads as plain rows: the Python values a typed read record is built from; and what
every typed read of a recorded prediction carries."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, PlainSerializer


def _utc_text(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


# A time the store keeps as naive UTC: a datetime in Python (as pages format it), and in JSON
# the ISO text with its offset (+00:00), as an API's date-time must have one.
UtcDatetime = Annotated[datetime, PlainSerializer(_utc_text, return_type=str, when_used="json")]


def plain(value: Any) -> Any:
    """One cell as a plain Python value: a missing one (NaN, NaT, NA) as None, a time as a
    datetime, a list column as a list."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return plain(value.item())
    return value


def plain_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row of a frame as a dict of plain values, in the frame's order."""
    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


class PredictionSummary(BaseModel):
    """A recorded prediction as every read of one names it (the journeys add their own fields)."""

    model_config = ConfigDict(frozen=True)

    prediction_id: str
    created_at: UtcDatetime
    patient_ref: str | None  # None once the retention purge removed it
    risk: float
    risk_class: Literal["high", "low"]
    routing: Literal["auto_finalised", "review"]
    model_version: str
