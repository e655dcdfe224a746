"""Cleaning and inclusion/exclusion: named steps applied to a raw extract before training.

Each step is a small documented function. Transformations change values (units, codes);
exclusions drop rows and are counted, so the manifest and model card can report the cohort flow.
A spec names its recipe: `hfref_spironolactone_export` for the hospital export in data/, or
`clean` for an extract whose columns already carry the spec's feature names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import TrainingDataError
from core.spec import Spec

LB_PER_KG = 2.2046226218
HYPERKALAEMIA_MMOL_L = 5.5
FLAG = {"Y": True, "N": False}

RAW_COLUMNS = {
    "record_id": "text", "patient_id": "text", "site": "text", "index_date": "date",
    "mra_drug": "text", "age_years": "number", "sex": "text", "weight_value": "number",
    "weight_unit": "text", "egfr": "number", "potassium_baseline": "number",
    "potassium_haemolysed": "flag", "diabetes": "flag", "raas_inhibitor": "text",
    "spironolactone_dose_mg": "number", "nyha_class": "text", "lvef_value": "number",
    "lvef_unit": "text", "sbp_mmhg": "number", "loop_diuretic": "flag",
    "potassium_supplement": "flag", "nsaid_use": "flag", "followup_potassium_max": "number",
}


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
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as exc:
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


def to_flag(df: pd.DataFrame, column: str) -> pd.Series:
    text = df[column].astype(str).str.strip().str.upper()
    bad = text[~text.isin(FLAG)]
    if len(bad):
        examples = ", ".join(repr(v) for v in bad.unique()[:3])
        raise TrainingDataError(f"column {column} must be Y or N; found {examples}")
    return text.map(FLAG).astype(bool)


# ---- hfref_spironolactone_export: transformations --------------------------------------


def parse_types(df: pd.DataFrame) -> pd.DataFrame:
    """Parse numbers, Y/N flags and dates; a value that does not parse stops training."""
    check_columns(df, list(RAW_COLUMNS))
    out = df.copy()
    for column, kind in RAW_COLUMNS.items():
        if kind == "number":
            out[column] = to_number(df, column)
        elif kind == "flag":
            out[column] = to_flag(df, column)
        elif kind == "date":
            out[column] = pd.to_datetime(df[column], format="%Y-%m-%d", errors="coerce")
            if out[column].isna().any():
                raise TrainingDataError(f"column {column} has dates that are not YYYY-MM-DD")
    return out


def harmonise_units(df: pd.DataFrame) -> pd.DataFrame:
    """Weight to kg (one site exports pounds); LVEF to percent (one site exports a fraction)."""
    out = df.copy()
    unknown_w = set(out["weight_unit"].dropna()) - {"kg", "lb", ""}
    unknown_l = set(out["lvef_unit"].dropna()) - {"%", "fraction", ""}
    if unknown_w or unknown_l:
        raise TrainingDataError(f"unknown units: {sorted(unknown_w | unknown_l)}")
    lb = out["weight_unit"] == "lb"
    out["weight_kg"] = np.where(lb, out["weight_value"] / LB_PER_KG, out["weight_value"]).round(1)
    fraction = out["lvef_unit"] == "fraction"
    out["lvef"] = np.where(fraction, out["lvef_value"] * 100, out["lvef_value"]).round(0)
    return out


def normalise_codes(df: pd.DataFrame) -> pd.DataFrame:
    """Map site-specific codes to the spec's categories (sex F/female, RAAS ACEi -> acei)."""
    out = df.copy()
    out["sex"] = out["sex"].str.strip().str.lower().map(
        {"f": "female", "female": "female", "m": "male", "male": "male"}
    )
    out["raas_inhibitor"] = out["raas_inhibitor"].str.strip().str.lower()
    out["nyha_class"] = out["nyha_class"].str.strip().str.upper()
    return out.rename(
        columns={"age_years": "age", "sbp_mmhg": "sbp", "nsaid_use": "nsaid"}
    )


def mask_haemolysed_potassium(df: pd.DataFrame) -> pd.DataFrame:
    """A haemolysed sample reads falsely high: treat that baseline potassium as not measured."""
    out = df.copy()
    out["potassium"] = out["potassium_baseline"].where(~out["potassium_haemolysed"])
    return out


def derive_outcome(df: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """Outcome = highest potassium within the horizon >= 5.5 mmol/L (missing when not measured)."""
    out = df.copy()
    k = out["followup_potassium_max"]
    out[outcome] = (k >= HYPERKALAEMIA_MMOL_L).astype(float).where(k.notna())
    return out


# ---- exclusions (each one counted) ----------------------------------------------------


def drop_exact_duplicates(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop_duplicates().reset_index(drop=True)


def keep_first_record_per_patient(df: pd.DataFrame) -> pd.DataFrame:
    ordered = df.sort_values(["patient_id", "index_date"], kind="mergesort")
    return ordered.drop_duplicates("patient_id", keep="first").reset_index(drop=True)


def _recipe_export(spec: Spec) -> list[Step]:
    o = spec.outcome.name
    return [
        Step("parse_types", parse_types.__doc__, parse_types, False),
        Step("drop_exact_duplicates", "Remove rows exported twice (identical in every column).",
             drop_exact_duplicates, True),
        Step("keep_first_record_per_patient", "Keep each patient's first spironolactone start.",
             keep_first_record_per_patient, True),
        Step("harmonise_units", harmonise_units.__doc__, harmonise_units, False),
        Step("normalise_codes", normalise_codes.__doc__, normalise_codes, False),
        Step("mask_haemolysed_potassium", mask_haemolysed_potassium.__doc__,
             mask_haemolysed_potassium, False),
        Step("derive_outcome", derive_outcome.__doc__, lambda d: derive_outcome(d, o), False),
        Step("require_spironolactone", "Exclude patients started on another MRA (eplerenone).",
             lambda d: d[d["mra_drug"].str.lower() == "spironolactone"], True),
        Step("require_adult", "Exclude patients younger than 18 at the first dose.",
             lambda d: d[d["age"] >= 18], True),
        Step("require_hfref", "Exclude LVEF above 40% (not HFrEF); missing LVEF is kept.",
             lambda d: d[d["lvef"].isna() | (d["lvef"] <= 40)], True),
        Step("require_baseline_potassium",
             "Exclude patients without a valid (non-haemolysed) baseline potassium.",
             lambda d: d[d["potassium"].notna()], True),
        Step("require_egfr", "Exclude patients without a baseline eGFR.",
             lambda d: d[d["egfr"].notna()], True),
        Step("require_followup_potassium",
             "Exclude patients with no potassium measured within the horizon (outcome unknown).",
             lambda d: d[d[o].notna()], True),
    ]


def _recipe_clean(spec: Spec) -> list[Step]:
    o = spec.outcome.name

    def parse(df: pd.DataFrame) -> pd.DataFrame:
        check_columns(df, ["patient_id", *spec.names, o])
        out = df.copy()
        for f in spec.features:
            if f.numeric:
                out[f.name] = to_number(df, f.name)
            elif f.type == "boolean":
                out[f.name] = to_flag(df, f.name)
        out[o] = to_number(df, o)
        if not out[o].dropna().isin([0, 1]).all():
            raise TrainingDataError(f"outcome column {o} must be 0 or 1")
        return out

    return [
        Step("parse_types", "Parse the spec's columns into numbers, yes/no flags and text.",
             parse, False),
        Step("drop_exact_duplicates", "Remove rows exported twice.", drop_exact_duplicates, True),
        Step("require_outcome", "Exclude rows whose outcome is unknown.",
             lambda d: d[d[o].notna()], True),
    ]


def clean(raw: pd.DataFrame, spec: Spec) -> tuple[pd.DataFrame, list[dict]]:
    """Apply the spec's recipe: the clean cohort, and the flow (rows after each step)."""
    steps = _recipe_export(spec) if spec.cleaning == "hfref_spironolactone_export" else _recipe_clean(spec)
    flow = [{"step": "raw_extract", "description": "Rows in the extract as received.",
             "rows_after": len(raw), "excluded": 0}]
    df = raw
    for step in steps:
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
