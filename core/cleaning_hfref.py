"""The demonstration cohort's cleaning recipe, `hfref_spironolactone_export`: the synthetic
hospital export that core/synthetic.py generates (mixed units by site, haemolysed samples,
duplicates, ineligible patients; see data/README.md). Each step is a small documented function;
exclusions are counted so the manifest and model card can report the cohort flow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.cleaning import Step, check_columns, drop_exact_duplicates, to_flag, to_number
from core.errors import TrainingDataError

NAME = "hfref_spironolactone_export"
LB_PER_KG = 2.2046226218
HYPERKALAEMIA_MMOL_L = 5.5

RAW_COLUMNS = {
    "record_id": "text", "patient_id": "text", "site": "text", "index_date": "date",
    "mra_drug": "text", "age_years": "number", "sex": "text", "weight_value": "number",
    "weight_unit": "text", "egfr": "number", "potassium_baseline": "number",
    "potassium_haemolysed": "flag", "diabetes": "flag", "raas_inhibitor": "text",
    "spironolactone_dose_mg": "number", "nyha_class": "text", "lvef_value": "number",
    "lvef_unit": "text", "sbp_mmhg": "number", "loop_diuretic": "flag",
    "potassium_supplement": "flag", "nsaid_use": "flag", "followup_potassium_max": "number",
}


# ---- transformations ------------------------------------------------------------------


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


def derive_outcome(df: pd.DataFrame, outcome: str, threshold: float = HYPERKALAEMIA_MMOL_L
                   ) -> pd.DataFrame:
    """Outcome = highest potassium within the horizon >= 5.5 mmol/L (missing when not measured)."""
    out = df.copy()
    k = out["followup_potassium_max"]
    out[outcome] = (k >= threshold).astype(float).where(k.notna())
    return out


# ---- exclusions (each one counted) ----------------------------------------------------


def keep_first_record_per_patient(df: pd.DataFrame) -> pd.DataFrame:
    ordered = df.sort_values(["patient_id", "index_date"], kind="mergesort")
    return ordered.drop_duplicates("patient_id", keep="first")


def recipe(spec) -> list[Step]:
    o = spec.outcome.name
    measured = spec.outcome.measurement
    threshold = measured.event_threshold if measured else HYPERKALAEMIA_MMOL_L
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
        Step("derive_outcome", derive_outcome.__doc__, lambda d: derive_outcome(d, o, threshold),
             False),
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
