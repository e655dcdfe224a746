"""Tests for the synthetic cohort generator (core.synthetic)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import synthetic
from core.synthetic import (
    CLEAN_FEATURES,
    RAW_COLUMNS,
    TRUE_COEFFICIENTS,
    TRUE_INTERCEPT,
    generate_extract,
    main,
    true_risk,
    write_extract,
)

SMALL_N = 3000


@pytest.fixture(scope="module")
def full() -> pd.DataFrame:
    """The default extract (24,000 patients), as committed."""
    return generate_extract()


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return generate_extract(SMALL_N, seed=7)


def _eligible_clean(raw: pd.DataFrame) -> pd.DataFrame:
    """Minimal reference cleaning: dedupe, first record per patient, the documented
    exclusions in order, then clean feature columns plus the outcome."""
    df = raw.drop_duplicates()
    df = df.sort_values(["patient_id", "index_date", "record_id"])
    df = df.drop_duplicates("patient_id", keep="first")
    lvef = np.where(df["lvef_unit"] == "fraction", df["lvef_value"] * 100, df["lvef_value"])
    keep = (
        (df["mra_drug"] == "spironolactone")
        & (df["age_years"] >= 18)
        & ~(lvef > 40)
        & df["potassium_baseline"].notna()
        & (df["potassium_haemolysed"] == "N")
        & df["egfr"].notna()
        & df["followup_potassium_max"].notna()
    )
    df, lvef = df[keep], lvef[keep.to_numpy()]
    weight = np.where(df["weight_unit"] == "lb", df["weight_value"] / 2.20462, df["weight_value"])
    sex = df["sex"].map({"F": "female", "M": "male", "female": "female", "male": "male"})
    return pd.DataFrame({
        "age": df["age_years"], "sex": sex, "weight_kg": weight, "egfr": df["egfr"],
        "potassium": df["potassium_baseline"], "diabetes": df["diabetes"] == "Y",
        "raas_inhibitor": df["raas_inhibitor"].str.lower(),
        "spironolactone_dose_mg": df["spironolactone_dose_mg"],
        "nyha_class": df["nyha_class"], "lvef": lvef, "sbp": df["sbp_mmhg"],
        "loop_diuretic": df["loop_diuretic"] == "Y",
        "potassium_supplement": df["potassium_supplement"] == "Y",
        "nsaid": df["nsaid_use"] == "Y",
        "event": df["followup_potassium_max"] >= 5.5,
    })


def _patient(**changes) -> pd.DataFrame:
    """One clean reference patient (the model's reference values), with changes."""
    row = {
        "age": 70, "sex": "male", "weight_kg": 80.0, "egfr": 60.0, "potassium": 4.4,
        "diabetes": False, "raas_inhibitor": "none", "spironolactone_dose_mg": 25.0,
        "nyha_class": "II", "lvef": 30.0, "sbp": 118.0, "loop_diuretic": False,
        "potassium_supplement": False, "nsaid": False,
    }
    row.update(changes)
    return pd.DataFrame([row])


# --- determinism -------------------------------------------------------------------------


def test_same_seed_gives_identical_frame():
    first, second = generate_extract(SMALL_N, seed=11), generate_extract(SMALL_N, seed=11)
    pd.testing.assert_frame_equal(first, second)


def test_different_seed_gives_different_frame():
    assert not generate_extract(SMALL_N, seed=11).equals(generate_extract(SMALL_N, seed=12))


def test_written_file_is_byte_identical_and_round_trips(tmp_path):
    first = write_extract(tmp_path / "a" / "extract.csv.gz", SMALL_N, seed=11)
    second = write_extract(tmp_path / "b" / "other_name.csv.gz", SMALL_N, seed=11)
    assert first.read_bytes() == second.read_bytes()
    back = pd.read_csv(first, keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(back, generate_extract(SMALL_N, seed=11), check_dtype=False)


def test_command_line_writes_the_same_file(tmp_path):
    out = tmp_path / "cli.csv.gz"
    assert main(["--out", str(out), "--n", "500", "--seed", "3"]) == 0
    assert out.read_bytes() == write_extract(tmp_path / "api.csv.gz", 500, seed=3).read_bytes()


# --- shape and identifiers -----------------------------------------------------------------


def test_columns_are_exactly_the_raw_extract_columns(small):
    assert tuple(small.columns) == RAW_COLUMNS


def test_default_extract_has_at_least_20000_patients(full):
    assert full["patient_id"].nunique() >= 20000
    assert len(full) >= 20000


def test_identifier_formats(small):
    assert small["record_id"].str.fullmatch(r"R\d{7}").all()
    assert small["patient_id"].str.fullmatch(r"SYN-\d{6}").all()
    dates = pd.to_datetime(small["index_date"], format="%Y-%m-%d")
    assert dates.between("2021-01-01", "2024-12-31").all()


def test_record_id_repeats_only_in_exact_duplicate_rows(full):
    n_dup = int(full.duplicated().sum())
    assert 0.01 * len(full) < n_dup < 0.02 * len(full)
    assert full["record_id"].duplicated().sum() == n_dup
    assert full.drop_duplicates()["record_id"].is_unique


def test_some_patients_have_a_second_later_record(full):
    dedup = full.drop_duplicates()
    repeated = dedup[dedup["patient_id"].duplicated(keep=False)]
    per_patient = repeated.groupby("patient_id")["index_date"].agg(["nunique", "size"])
    n_patients = full["patient_id"].nunique()
    assert 0.003 * n_patients < len(per_patient) < 0.008 * n_patients
    assert (per_patient["nunique"] == per_patient["size"]).all()


# --- messiness ---------------------------------------------------------------------------------


def test_pounds_only_at_west_site(small):
    units = small.groupby("site")["weight_unit"].unique()
    assert set(units["west"].dropna()) == {"lb"}
    for site in ("north", "south", "east"):
        assert set(units[site].dropna()) == {"kg"}


def test_lvef_is_a_fraction_only_at_south_site(small):
    south = small[small["site"] == "south"].dropna(subset=["lvef_value"])
    other = small[small["site"] != "south"].dropna(subset=["lvef_value"])
    assert (south["lvef_unit"] == "fraction").all() and south["lvef_value"].between(0.05, 0.8).all()
    assert (other["lvef_unit"] == "%").all() and other["lvef_value"].between(5, 80).all()
    assert (other["lvef_value"] > 40).any()


def test_sex_spelling_differs_at_east_site(small):
    assert set(small.loc[small["site"] == "east", "sex"]) == {"female", "male"}
    assert set(small.loc[small["site"] != "east", "sex"]) == {"F", "M"}


def test_haemolysed_samples_are_flagged_and_read_high(full):
    haem = full["potassium_haemolysed"] == "Y"
    assert set(full["potassium_haemolysed"]) == {"Y", "N"}
    assert 0.02 < haem.mean() < 0.04
    mean_k = full.groupby(haem)["potassium_baseline"].mean()
    assert mean_k[True] - mean_k[False] > 0.5


def test_excludable_rows_are_present(small):
    assert 0.015 < (small["mra_drug"] == "eplerenone").mean() < 0.045
    assert set(small["mra_drug"]) == {"spironolactone", "eplerenone"}
    minors = small.loc[small["age_years"] < 18, "age_years"]
    assert len(minors) > 0 and set(minors) <= {16, 17}


def test_optional_fields_have_missing_values(small):
    for col in ("weight_value", "egfr", "potassium_baseline", "lvef_value", "sbp_mmhg",
                "followup_potassium_max"):
        assert small[col].isna().any(), col
    assert (small["weight_value"].isna() == small["weight_unit"].isna()).all()
    assert (small["lvef_value"].isna() == small["lvef_unit"].isna()).all()
    required = ["record_id", "patient_id", "site", "index_date", "mra_drug", "age_years", "sex"]
    assert small[required].notna().all().all()


def test_category_codes(small):
    assert set(small["raas_inhibitor"]) == {"none", "ACEi", "ARB", "ARNI"}
    assert set(small["nyha_class"]) == {"I", "II", "III", "IV"}
    assert set(small["spironolactone_dose_mg"]) == {12.5, 25.0, 50.0}
    for col in ("diabetes", "loop_diuretic", "potassium_supplement", "nsaid_use"):
        assert set(small[col]) == {"Y", "N"}, col


def test_followup_potassium_separates_events_cleanly(small):
    value = small["followup_potassium_max"].dropna()
    assert value.between(3.0, 7.2).all()
    assert not value.between(5.41, 5.49).any()
    assert ((value * 10).round() == value * 10).all()


# --- outcome and data-generating model -------------------------------------------------------


def test_event_rate_among_eligible_patients_is_in_band(full):
    eligible = _eligible_clean(full)
    assert len(eligible) > 18000
    assert 0.08 <= eligible["event"].mean() <= 0.16


def test_true_risk_is_calibrated_against_the_generated_outcome(full):
    eligible = _eligible_clean(full)
    assert abs(true_risk(eligible).mean() - eligible["event"].mean()) < 0.015


def test_true_risk_at_reference_patient_is_the_intercept():
    assert true_risk(_patient())[0] == pytest.approx(1 / (1 + np.exp(-TRUE_INTERCEPT)))


@pytest.mark.parametrize(
    ("feature", "low", "high"),
    [("potassium", 4.0, 5.2), ("egfr", 75.0, 25.0), ("loop_diuretic", True, False),
     ("diabetes", False, True), ("potassium_supplement", False, True), ("nsaid", False, True)],
)
def test_true_risk_moves_in_the_expected_direction(feature, low, high):
    assert true_risk(_patient(**{feature: low}))[0] < true_risk(_patient(**{feature: high}))[0]


def test_true_risk_is_monotone_across_the_cohort(small):
    base = _eligible_clean(small).drop(columns="event")
    risk = true_risk(base)
    assert ((risk > 0) & (risk < 1)).all()
    assert (true_risk(base.assign(potassium=base["potassium"] + 0.3)) > risk).all()
    assert (true_risk(base.assign(egfr=base["egfr"] - 10)) > risk).all()
    assert (true_risk(base.assign(loop_diuretic=True)) <= risk).all()


def test_true_risk_has_no_effect_of_lvef_or_sbp():
    assert TRUE_COEFFICIENTS["lvef"] == 0 and TRUE_COEFFICIENTS["sbp"] == 0
    low, high = _patient(lvef=20.0, sbp=90.0), _patient(lvef=38.0, sbp=150.0)
    assert true_risk(low)[0] == true_risk(high)[0]


def test_true_risk_substitutes_population_means_for_missing_values():
    means = synthetic.POPULATION_MEANS
    filled = _patient(
        weight_kg=means["weight_kg"], potassium=means["potassium"], egfr=means["egfr"]
    )
    gaps = _patient(weight_kg=np.nan, potassium=None, egfr=np.nan, lvef=None, sbp=np.nan)
    assert true_risk(gaps)[0] == pytest.approx(true_risk(filled)[0])


def test_true_risk_is_pure_and_accepts_common_spellings():
    df = _patient(sex="Female", raas_inhibitor="ARNI", diabetes="Y", nyha_class="iv")
    before = df.copy()
    canonical = _patient(sex="female", raas_inhibitor="arni", diabetes=True, nyha_class="IV")
    expected = true_risk(canonical)
    np.testing.assert_allclose(true_risk(df), expected)
    pd.testing.assert_frame_equal(df, before)


def test_true_risk_rejects_bad_input():
    with pytest.raises(KeyError):
        true_risk(_patient().drop(columns="potassium"))
    with pytest.raises(ValueError):
        true_risk(_patient(raas_inhibitor="beta-blocker"))
    with pytest.raises(ValueError):
        true_risk(_patient(nsaid="maybe"))


def test_clean_feature_list_matches_the_model():
    assert set(_patient().columns) == set(CLEAN_FEATURES)
    assert len(CLEAN_FEATURES) == 14
