"""Every CSV the product writes goes through here, so that no cell is a spreadsheet formula.

A text cell that starts with =, +, -, @, a tab or a carriage return would be evaluated by a
spreadsheet (`=HYPERLINK(...)` in a rejected patient reference or a reviewer's comment is an
attack on whoever opens the file). Such text is written with a leading apostrophe, which
spreadsheets show as text. Numbers stay numbers: only text cells are escaped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A cell as written: formula-like text prefixed with an apostrophe, anything else as is."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class SafeDictWriter(csv.DictWriter):
    """csv.DictWriter whose text cells cannot be formulas."""

    def writerow(self, rowdict: Mapping[str, Any]):
        return super().writerow({k: safe_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]):
        return super().writerows({k: safe_cell(v) for k, v in r.items()} for r in rowdicts)


def frame_csv(frame: pd.DataFrame) -> bytes:
    """A table as CSV bytes (UTF-8), its text cells made safe; numbers stay numbers."""
    safe = frame.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(safe_cell)
    out = io.StringIO()
    safe.to_csv(out, index=False, lineterminator="\r\n")  # RFC 4180; a \r in a cell is quoted
    return out.getvalue().encode("utf-8")
