"""Deterministic generator for the SYNTHETIC hyperkalaemia demo cohort.

SYNTHETIC DATA ONLY: every row is drawn from a random-number generator. These
are not real patients, and neither the data nor any model trained on them is
fit for clinical use.

Scenario: adults with heart failure with reduced ejection fraction (HFrEF)
starting spironolactone. Outcome: hyperkalaemia (serum potassium >= 5.5 mmol/L)
within 42 days of the first dose. ``generate_extract`` returns the raw,
deliberately messy extract as a hospital export might look; ``true_risk`` is the
documented data-generating risk model over clean feature values. The datasheet
is ``data/README.md``.

Regenerate the committed extract with::

    python -m core.synthetic --out data/cohort_extract.csv.gz
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_N_PATIENTS = 24000
DEFAULT_SEED = 20261126
HYPERKALAEMIA_THRESHOLD = 5.5  # mmol/L
SITES = ("north", "south", "east", "west")
RAW_COLUMNS = (
    "record_id", "patient_id", "site", "index_date", "mra_drug", "age_years", "sex",
    "weight_value", "weight_unit", "egfr", "potassium_baseline", "potassium_haemolysed",
    "diabetes", "raas_inhibitor", "spironolactone_dose_mg", "nyha_class", "lvef_value",
    "lvef_unit", "sbp_mmhg", "loop_diuretic", "potassium_supplement", "nsaid_use",
    "followup_potassium_max",
)
CLEAN_FEATURES = (
    "age", "sex", "weight_kg", "egfr", "potassium", "diabetes", "raas_inhibitor",
    "spironolactone_dose_mg", "nyha_class", "lvef", "sbp", "loop_diuretic",
    "potassium_supplement", "nsaid",
)

# Log-odds of the outcome for the reference patient: age 70, male, 80 kg,
# eGFR 60, potassium 4.4, no diabetes, no RAAS inhibitor, 25 mg, NYHA I/II,
# no loop diuretic, no potassium supplement, no NSAID.
TRUE_INTERCEPT: float = -2.95
# Continuous terms enter as coefficient * (value - REFERENCE_VALUES[term]);
# indicator terms ("diabetes", "sex_female", "raas_inhibitor_acei", ...) as 0/1.
TRUE_COEFFICIENTS: dict[str, float] = {
    "potassium": 1.8,  # per mmol/L
    "egfr": -0.03,  # per mL/min/1.73m2
    "age": 0.015,  # per year
    "weight_kg": -0.005,  # per kg
    "spironolactone_dose_mg": 0.025,  # per mg
    "lvef": 0.0,  # per % (no true effect)
    "sbp": 0.0,  # per mmHg (no true effect)
    "sex_female": 0.10, "diabetes": 0.45,
    "raas_inhibitor_acei": 0.35, "raas_inhibitor_arb": 0.30, "raas_inhibitor_arni": 0.40,
    "nyha_class_III": 0.15, "nyha_class_IV": 0.30,
    "loop_diuretic": -0.45, "potassium_supplement": 0.80, "nsaid": 0.55,
}
REFERENCE_VALUES: dict[str, float] = {
    "potassium": 4.4, "egfr": 60.0, "age": 70.0, "weight_kg": 80.0,
    "spironolactone_dose_mg": 25.0, "lvef": 30.0, "sbp": 118.0,
}
# Population means of every term as designed in the generator; true_risk
# substitutes these for missing (NaN) values.
POPULATION_MEANS: dict[str, float] = {
    "potassium": 4.4, "egfr": 58.0, "age": 70.0, "weight_kg": 78.5,
    "spironolactone_dose_mg": 26.25, "lvef": 30.0, "sbp": 118.0,
    "sex_female": 0.35, "diabetes": 0.35, "raas_inhibitor_acei": 0.35,
    "raas_inhibitor_arb": 0.20, "raas_inhibitor_arni": 0.30,
    "nyha_class_III": 0.35, "nyha_class_IV": 0.10, "loop_diuretic": 0.70,
    "potassium_supplement": 0.08, "nsaid": 0.06,
}
CATEGORY_LEVELS: dict[str, tuple[str, ...]] = {
    "sex": ("female", "male"),
    "raas_inhibitor": ("none", "acei", "arb", "arni"),
    "nyha_class": ("I", "II", "III", "IV"),
}
_LEVEL_TERMS = {  # indicator term -> (clean column, level), e.g. "nyha_class_IV"
    f"{col}_{lvl}": (col, lvl) for col, lvls in CATEGORY_LEVELS.items() for lvl in lvls
    if f"{col}_{lvl}" in TRUE_COEFFICIENTS
}
_BOOLEAN_FEATURES = ("diabetes", "loop_diuretic", "potassium_supplement", "nsaid")
_RAAS_RAW = {"none": "none", "acei": "ACEi", "arb": "ARB", "arni": "ARNI"}
_LB_PER_KG = 2.20462


def _indicator(values: pd.Series, column: str) -> np.ndarray:
    """Convert a boolean-like column (bool, 0/1, "Y"/"N") to floats; NaN stays NaN."""
    mapping = {True: 1.0, False: 0.0, "Y": 1.0, "N": 0.0}  # 1 and 0 match True and False
    out = values.map(lambda v: np.nan if pd.isna(v) else mapping.get(v, -1.0))
    out = out.to_numpy(dtype=float)
    if (out == -1.0).any():
        raise ValueError(f"unrecognised value in boolean column {column!r}")
    return out


def _category(values: pd.Series, column: str) -> pd.Series:
    """Normalise a categorical column's spelling and check it against the known levels."""
    case = str.upper if column == "nyha_class" else str.lower
    out = values.astype(object).map(lambda v: case(v.strip()) if isinstance(v, str) else v)
    levels = CATEGORY_LEVELS[column]
    if not out.map(lambda v: pd.isna(v) or v in levels).all():
        raise ValueError(f"unrecognised value in {column!r}; expected one of {levels}")
    return out


def _design(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Build every model term from clean feature columns (NaN where missing)."""
    missing = [c for c in CLEAN_FEATURES if c not in df.columns]
    if missing:
        raise KeyError(f"missing clean feature columns: {missing}")
    terms = {t: pd.to_numeric(df[t]).to_numpy(dtype=float) for t in REFERENCE_VALUES}
    for col in _BOOLEAN_FEATURES:
        terms[col] = _indicator(df[col], col)
    categories = {col: _category(df[col], col) for col in CATEGORY_LEVELS}
    for term, (col, level) in _LEVEL_TERMS.items():
        values = categories[col]
        terms[term] = np.where(values.isna(), np.nan, (values == level).astype(float))
    return terms


def true_risk(df: pd.DataFrame) -> np.ndarray:
    """Return the true outcome probability for each row of clean features.

    ``df`` must hold every column in ``CLEAN_FEATURES`` (extra columns are
    ignored). A missing (NaN) value is replaced by the generator's population
    mean for that term. The input is not modified.
    """
    terms = _design(df)
    logit = np.full(len(df), TRUE_INTERCEPT, dtype=float)
    for name, coef in TRUE_COEFFICIENTS.items():
        x = np.where(np.isnan(terms[name]), POPULATION_MEANS[name], terms[name])
        logit += coef * (x - REFERENCE_VALUES.get(name, 0.0))
    return 1.0 / (1.0 + np.exp(-logit))


def _draw_patients(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Draw one complete (latent, clean) index record per synthetic patient."""
    age = np.clip(np.rint(rng.normal(70.0, 11.0, n)), 40, 95)
    female = rng.random(n) < 0.35
    egfr = np.clip(58.0 - 0.6 * (age - 70.0) + rng.normal(0.0, 19.0, n), 8.0, 130.0)
    diabetes = rng.random(n) < 0.35
    potassium = 4.4 - 0.008 * (egfr - 58.0) + 0.12 * (diabetes - 0.35)
    potassium = potassium + rng.normal(0.0, 0.41, n)
    minors = rng.random(n) < 0.005
    age[minors] = rng.integers(16, 18, int(minors.sum()))
    hfref = rng.random(n) >= 0.04
    lvef = np.clip(np.rint(rng.normal(30.0, 6.5, n)), 15, 40)
    lvef = np.where(hfref, lvef, rng.integers(41, 61, n))
    weight = np.clip(rng.normal(np.where(female, 72.0, 82.0), 15.0), 38.0, 190.0)
    ids = rng.choice(900_000, n, replace=False) + 100_000
    return pd.DataFrame({
        "patient_id": [f"SYN-{i:06d}" for i in ids],
        "site": rng.choice(SITES, n, p=[0.30, 0.25, 0.25, 0.20]),
        "index_date": np.datetime64("2021-01-01") + rng.integers(0, 1461, n),
        "mra_drug": np.where(rng.random(n) < 0.03, "eplerenone", "spironolactone"),
        "age": age.astype(int),
        "sex": np.where(female, "female", "male"),
        "weight_kg": np.round(weight, 1),
        "egfr": np.round(egfr, 1),
        "potassium": np.round(np.clip(potassium, 3.0, 6.0), 1),
        "diabetes": diabetes,
        "raas_inhibitor": rng.choice(CATEGORY_LEVELS["raas_inhibitor"], n, p=[.15, .35, .2, .3]),
        "spironolactone_dose_mg": rng.choice([12.5, 25.0, 50.0], n, p=[0.20, 0.65, 0.15]),
        "nyha_class": rng.choice(CATEGORY_LEVELS["nyha_class"], n, p=[.1, .45, .35, .1]),
        "lvef": lvef.astype(float),
        "sbp": np.clip(np.rint(rng.normal(118.0, 17.0, n)), 75.0, 200.0),
        "loop_diuretic": rng.random(n) < 0.70,
        "potassium_supplement": rng.random(n) < 0.08,
        "nsaid": rng.random(n) < 0.06,
    })


def _draw_later_records(rng: np.random.Generator, patients: pd.DataFrame) -> pd.DataFrame:
    """Draw a second, later, non-identical record for about 0.5% of patients."""
    last = np.datetime64("2024-12-31")
    dates = patients["index_date"].to_numpy().astype("datetime64[D]")
    candidates = np.flatnonzero(dates <= last - 180)
    size = min(len(candidates), round(0.005 * len(patients)))
    pick = np.sort(rng.choice(candidates, size, replace=False))
    later = patients.iloc[pick].reset_index(drop=True)
    room = (last - dates[pick]).astype(int)
    shift = rng.integers(30, room + 1)
    later["index_date"] = dates[pick] + shift
    later["age"] = later["age"] + shift // 365
    egfr = later["egfr"].to_numpy() + rng.normal(-1.5, 5.0, size)
    later["egfr"] = np.round(np.clip(egfr, 8.0, 130.0), 1)
    potassium = later["potassium"].to_numpy() + rng.normal(0.05, 0.2, size)
    later["potassium"] = np.round(np.clip(potassium, 3.0, 6.0), 1)
    return later


def _draw_followup(rng: np.random.Generator, latent: pd.DataFrame) -> np.ndarray:
    """Draw the maximum follow-up potassium; the outcome is value >= 5.5 mmol/L."""
    n = len(latent)
    event = rng.random(n) < true_risk(latent)
    high = np.minimum(HYPERKALAEMIA_THRESHOLD + rng.exponential(0.45, n), 7.2)
    low = np.clip(latent["potassium"].to_numpy() + rng.normal(0.1, 0.3, n), 3.0, 5.4)
    value = np.round(np.where(event, high, low), 1)
    value[rng.random(n) < 0.05] = np.nan
    return value


def _yes_no(flags: np.ndarray) -> np.ndarray:
    return np.where(flags, "Y", "N")


def _to_raw(
    rng: np.random.Generator, latent: pd.DataFrame, followup: np.ndarray
) -> pd.DataFrame:
    """Render latent records the way each site exports them, with gaps and artefacts."""
    n = len(latent)
    site = latent["site"].to_numpy()
    female = latent["sex"].to_numpy() == "female"
    west, south = site == "west", site == "south"
    no_weight, no_lvef = rng.random(n) < 0.04, rng.random(n) < 0.06
    haem = rng.random(n) < 0.03
    no_k = rng.random(n) < 0.015
    haem &= ~no_k
    k_raw = latent["potassium"].to_numpy() + np.where(haem, rng.uniform(0.3, 1.2, n), 0.0)
    weight = latent["weight_kg"].to_numpy()
    weight = np.where(no_weight, np.nan, np.round(np.where(west, weight * _LB_PER_KG, weight), 1))
    lvef = latent["lvef"].to_numpy()
    lvef = np.where(no_lvef, np.nan, np.where(south, np.round(lvef / 100.0, 2), lvef))
    sex = np.where(site == "east", latent["sex"].to_numpy(), np.where(female, "F", "M"))
    dates = latent["index_date"].to_numpy().astype("datetime64[D]")
    ids = rng.choice(9_000_000, n, replace=False) + 1_000_000
    raw = pd.DataFrame({
        "record_id": [f"R{i:07d}" for i in ids],
        "patient_id": latent["patient_id"].to_numpy(),
        "site": site,
        "index_date": np.datetime_as_string(dates),
        "mra_drug": latent["mra_drug"].to_numpy(),
        "age_years": latent["age"].to_numpy(dtype=int),
        "sex": sex,
        "weight_value": weight,
        "weight_unit": pd.Series(np.where(west, "lb", "kg")).mask(no_weight),
        "egfr": np.where(rng.random(n) < 0.01, np.nan, latent["egfr"].to_numpy()),
        "potassium_baseline": np.where(no_k, np.nan, np.round(k_raw, 1)),
        "potassium_haemolysed": _yes_no(haem),
        "diabetes": _yes_no(latent["diabetes"].to_numpy()),
        "raas_inhibitor": latent["raas_inhibitor"].map(_RAAS_RAW).to_numpy(),
        "spironolactone_dose_mg": latent["spironolactone_dose_mg"].to_numpy(dtype=float),
        "nyha_class": latent["nyha_class"].to_numpy(),
        "lvef_value": lvef,
        "lvef_unit": pd.Series(np.where(south, "fraction", "%")).mask(no_lvef),
        "sbp_mmhg": np.where(rng.random(n) < 0.03, np.nan, latent["sbp"].to_numpy()),
        "loop_diuretic": _yes_no(latent["loop_diuretic"].to_numpy()),
        "potassium_supplement": _yes_no(latent["potassium_supplement"].to_numpy()),
        "nsaid_use": _yes_no(latent["nsaid"].to_numpy()),
        "followup_potassium_max": followup,
    })
    return raw[list(RAW_COLUMNS)]


def generate_extract(
    n_patients: int = DEFAULT_N_PATIENTS, seed: int = DEFAULT_SEED
) -> pd.DataFrame:
    """Return the raw synthetic extract (one row per record, messy, shuffled).

    Deterministic: the same ``n_patients`` and ``seed`` give an identical frame.
    About 0.5% of patients get a second, later record and about 1.5% of rows are
    repeated as exact duplicates.
    """
    if not 1 <= n_patients <= 900_000:
        raise ValueError("n_patients must be between 1 and 900,000 (six-digit study IDs)")
    rng = np.random.default_rng(seed)
    patients = _draw_patients(rng, n_patients)
    latent = pd.concat([patients, _draw_later_records(rng, patients)], ignore_index=True)
    raw = _to_raw(rng, latent, _draw_followup(rng, latent))
    dup = np.sort(rng.choice(len(raw), round(0.015 * len(raw)), replace=False))
    raw = pd.concat([raw, raw.iloc[dup]], ignore_index=True)
    return raw.iloc[rng.permutation(len(raw))].reset_index(drop=True)


def write_extract(
    path: str | Path, n_patients: int = DEFAULT_N_PATIENTS, seed: int = DEFAULT_SEED
) -> Path:
    """Write the raw extract as a gzip CSV, byte-identical for the same arguments.

    The gzip header carries no timestamp and no file name, so the bytes do not
    depend on when or under which name the file is written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = generate_extract(n_patients=n_patients, seed=seed)
    text = df.to_csv(index=False, lineterminator="\n")
    with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    return path


def eligible_patients(n: int, seed: int = DEFAULT_SEED + 1) -> pd.DataFrame:
    """n eligible synthetic patients (adults, HFrEF, starting spironolactone) as clean feature
    values: patient_ref and CLEAN_FEATURES, nothing missing, booleans as bool."""
    rng = np.random.default_rng(seed)
    df = _draw_patients(rng, n * 2)
    df = df[(df["age"] >= 18) & (df["lvef"] <= 40) & (df["mra_drug"] == "spironolactone")]
    df = df.head(n).rename(columns={"patient_id": "patient_ref"})
    return df.drop(columns=["site", "index_date", "mra_drug"]).reset_index(drop=True)


def write_sample_patients(path: str | Path, n: int = 300, seed: int = DEFAULT_SEED + 1) -> Path:
    """Write eligible synthetic patients in the scoring input format (for score-batch examples)."""
    df = eligible_patients(n, seed)
    for column in _BOOLEAN_FEATURES:
        df[column] = np.where(df[column], "yes", "no")
    Path(path).write_text(df.to_csv(index=False, lineterminator="\n"))
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m core.synthetic --out PATH``."""
    parser = argparse.ArgumentParser(description="Write the SYNTHETIC demo cohort extract.")
    parser.add_argument("--out", required=True, type=Path, help="output .csv.gz path")
    parser.add_argument("--n", type=int, default=DEFAULT_N_PATIENTS, help="number of patients")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--samples", type=Path, help="also write sample patients (scoring input)")
    args = parser.parse_args(argv)
    path = write_extract(args.out, n_patients=args.n, seed=args.seed)
    print(f"wrote {path}")
    if args.samples:
        print(f"wrote {write_sample_patients(args.samples)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
