"""Cleaning and inclusion/exclusion: named steps applied to a raw extract before training.

Each step is a small documented function. Transformations change values (units, codes);
exclusions drop rows and are counted, so the manifest and model card can report the cohort flow
(after the spec's own extraction-time exclusions). A spec names its recipe: `clean` for an
extract in the documented generic format (one column per feature, RUNBOOK.md "Adopt your own
model"), or a recipe module of its own, such as the demonstration's in core/cleaning_hfref.py.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from core.errors import TrainingDataError

if TYPE_CHECKING:
    from core.spec import Spec

GENERIC = "clean"
RECIPE_MODULES = ("core.cleaning_hfref",)  # each has NAME and recipe(spec) -> list[Step]
FLAG = {"Y": True, "N": False}
YES_NO = {"Y": True, "N": False, "YES": True, "NO": False, "1": True, "0": False, "TRUE": True,
          "FALSE": False}
ROW = "_row"  # the data row's number in the extract (1 = the first row after the header)


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    apply: Callable[[pd.DataFrame], pd.DataFrame]
    excludes: bool  # True when the step drops rows (an inclusion/exclusion criterion)


def read_extract(path: Path | str) -> pd.DataFrame:
    """Read a CSV extract as text; parsing into types is a cleaning step, not a read option."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise TrainingDataError(f"data file not found: {path}") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError,
            OSError) as exc:
        raise TrainingDataError(f"data file {path} is not a readable CSV: {exc}") from exc


def check_columns(df: pd.DataFrame, needed: list[str]) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise TrainingDataError(f"data file lacks required columns: {', '.join(missing)}")


def to_number(df: pd.DataFrame, column: str) -> pd.Series:
    """Parse a text column as numbers; empty is missing, anything else unparseable is an error."""
    text = df[column].astype(str).str.strip()
    values = pd.to_numeric(text.where(text != ""), errors="coerce")
    bad = text[(text != "") & values.isna()]
    if len(bad):
        examples = ", ".join(repr(v) for v in bad.unique()[:3])
        raise TrainingDataError(
            f"column {column} has {len(bad)} non-numeric values (for example {examples})"
        )
    return values.astype(float)


def to_flag(df: pd.DataFrame, column: str, words: dict[str, bool] = FLAG) -> pd.Series:
    text = df[column].astype(str).str.strip().str.upper()
    bad = text[~text.isin(words)]
    if len(bad):
        examples = ", ".join(repr(v) for v in bad.unique()[:3])
        allowed = "Y or N" if words is FLAG else "Y or N (or yes/no, 1/0, true/false)"
        raise TrainingDataError(f"column {column} must be {allowed}; found {examples}")
    return text.map(words).astype(bool)


def drop_exact_duplicates(df: pd.DataFrame) -> pd.DataFrame:
    return df[~df.drop(columns=ROW, errors="ignore").duplicated()]


# ---- the generic recipe: an extract already in the spec's terms -------------------------


def _recipe_clean(spec: Spec) -> list[Step]:
    o = spec.outcome.name
    date_column = spec.index.date_column

    def parse(df: pd.DataFrame) -> pd.DataFrame:
        check_columns(df, [*spec.names, o, *([date_column] if date_column else [])])
        out = df.copy()
        for f in spec.features:
            if f.numeric:
                out[f.name] = to_number(df, f.name)
            elif f.type == "boolean":
                out[f.name] = to_flag(df, f.name, YES_NO)
            else:
                out[f.name] = df[f.name].astype(str).str.strip().replace("", None)
        text = df[o].astype(str).str.strip().str.upper()
        out[o] = text.map({**{k: float(v) for k, v in YES_NO.items()}, "": float("nan")})
        bad = text[out[o].isna() & (text != "")]
        if len(bad):
            raise TrainingDataError(f"outcome column {o} must be 1 or 0 (or Y/N, yes/no, "
                                    f"true/false; empty when unknown); found "
                                    + ", ".join(repr(v) for v in bad.unique()[:3]))
        if date_column:
            out[date_column] = pd.to_datetime(df[date_column], format="%Y-%m-%d", errors="coerce")
            if out[date_column].isna().any():
                rows = _rows(df[out[date_column].isna()])
                raise TrainingDataError(f"column {date_column} has dates that are not YYYY-MM-DD "
                                        f"(rows {rows})")
        return out

    return [
        Step("parse_types", "Parse the spec's columns into numbers, yes/no flags and text.",
             parse, False),
        Step("drop_exact_duplicates", "Remove rows exported twice (identical in every column).",
             drop_exact_duplicates, True),
        Step("require_outcome", "Exclude rows whose outcome is unknown (empty).",
             lambda d: d[d[o].notna()], True),
    ]


def _rows(df: pd.DataFrame, limit: int = 10) -> str:
    """The extract's row numbers of some rows, e.g. '3, 17 and 2 more'."""
    numbers = [str(n) for n in df[ROW].head(limit)] if ROW in df else []
    more = len(df) - len(numbers)
    return ", ".join(numbers) + (f" and {more} more" if more > 0 else "")


def recipe_names() -> list[str]:
    """Every recipe a spec may name."""
    return [GENERIC, *(importlib.import_module(m).NAME for m in RECIPE_MODULES)]


def _steps(spec: Spec) -> list[Step]:
    if spec.cleaning == GENERIC:
        return _recipe_clean(spec)
    module = next(importlib.import_module(m) for m in RECIPE_MODULES
                  if importlib.import_module(m).NAME == spec.cleaning)
    return module.recipe(spec)


def transformations(spec: Spec) -> list[dict]:
    """The steps of the spec's recipe that change values (every one is applied to every row)."""
    return [{"step": s.name, "description": s.description} for s in _steps(spec) if not s.excludes]


def clean(raw: pd.DataFrame, spec: Spec) -> tuple[pd.DataFrame, list[dict]]:
    """Apply the spec's recipe: the clean cohort, and the flow (rows after each step).

    The flow starts with the spec's extraction-time exclusions (made before the extract, counted
    by the team), then the extract as received, then each exclusion of the recipe. The cohort
    keeps each row's number in the extract in column `_row`, so problems can name rows."""
    before_extract = len(raw) + sum(e.excluded for e in spec.extraction_exclusions)
    flow = []
    if spec.extraction_exclusions:
        flow.append({"step": "source_population",
                     "description": "Patients in the source population, before the exclusions "
                                    "made at extraction.", "rows_after": before_extract,
                     "excluded": 0})
        remaining = before_extract
        for e in spec.extraction_exclusions:
            remaining -= e.excluded
            flow.append({"step": e.name, "description": e.description + " (at extraction)",
                         "rows_after": remaining, "excluded": e.excluded})
    flow.append({"step": "raw_extract", "description": "Rows in the extract as received.",
                 "rows_after": len(raw), "excluded": 0})
    df = raw.assign(**{ROW: range(1, len(raw) + 1)})
    for step in _steps(spec):
        before = len(df)
        df = step.apply(df)
        if step.excludes:
            flow.append({"step": step.name, "description": step.description,
                         "rows_after": len(df), "excluded": before - len(df)})
    df = df.reset_index(drop=True)
    missing = [n for n in spec.names if n not in df.columns]
    if missing:
        raise TrainingDataError(f"cleaning did not produce the spec's features: {', '.join(missing)}")
    return df, flow


def out_of_limits(cohort: pd.DataFrame, frame: pd.DataFrame, spec: Spec) -> list[str]:
    """Every value of the cleaned cohort that the spec's hard limits or categories refuse, naming
    the extract's rows."""
    problems = []
    for f in spec.features:
        col = frame[f.name]
        if f.required and col.isna().any():
            problems.append(f"{f.name}: {int(col.isna().sum())} missing values in a required "
                            f"feature (rows {_rows(cohort[col.isna().to_numpy()])})")
        if f.numeric:
            outside = ((col < f.hard_min) | (col > f.hard_max)).to_numpy()
            if outside.any():
                problems.append(f"{f.name}: {int(outside.sum())} values outside the hard limits "
                                f"{f.hard_min:g}-{f.hard_max:g} (rows {_rows(cohort[outside])})")
        if f.type == "category":
            unknown = col.notna() & ~col.isin(f.categories)
            if unknown.any():
                found = sorted(set(col[unknown]))[:5]
                problems.append(f"{f.name}: categories not in the spec: {found} "
                                f"(rows {_rows(cohort[unknown.to_numpy()])})")
    return problems
