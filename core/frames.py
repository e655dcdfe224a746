"""Store reads as plain rows: the Python values a typed read record is built from."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


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
