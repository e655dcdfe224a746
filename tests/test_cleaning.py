"""Cleaning steps and inclusion/exclusion on small hand-made extracts."""

import json

import pandas as pd
import pytest
from conftest import DEMO_SPEC

from core import build, cleaning
from core.errors import SpecError, TrainingDataError
from core.features import model_frame
from core.spec import load_spec, parse_spec


def raw_row(**overrides) -> dict:
    row = {
        "record_id": "R0000001", "patient_id": "SYN-000001", "site": "north",
        "index_date": "2022-03-01", "mra_drug": "spironolactone", "age_years": "70", "sex": "F",
        "weight_value": "80.0", "weight_unit": "kg", "egfr": "55.0", "potassium_baseline": "4.5",
        "potassium_haemolysed": "N", "diabetes": "Y", "raas_inhibitor": "ACEi",
        "spironolactone_dose_mg": "25", "nyha_class": "II", "lvef_value": "30", "lvef_unit": "%",
        "sbp_mmhg": "120", "loop_diuretic": "Y", "potassium_supplement": "N", "nsaid_use": "N",
        "followup_potassium_max": "5.0",
    }
    row.update(overrides)
    return row


@pytest.fixture
def spec():
    return load_spec(DEMO_SPEC)


def run(rows, spec):
    return cleaning.clean(pd.DataFrame(rows, dtype=str), spec)


def test_harmonise_units_converts_pounds_and_fractions(spec):
    df, _ = run([raw_row(weight_value="176.4", weight_unit="lb", lvef_value="0.32",
                         lvef_unit="fraction")], spec)
    assert df.loc[0, "weight_kg"] == pytest.approx(80.0, abs=0.1)
    assert df.loc[0, "lvef"] == 32


@pytest.mark.parametrize("raw,clean", [("F", "female"), ("female", "female"), ("M", "male"),
                                       ("male", "male")])
def test_normalise_codes_maps_site_sex_codes(spec, raw, clean):
    df, _ = run([raw_row(sex=raw)], spec)
    assert df.loc[0, "sex"] == clean


def test_haemolysed_baseline_potassium_excludes_patient(spec):
    df, flow = run([raw_row(), raw_row(record_id="R2", patient_id="SYN-2",
                                       potassium_haemolysed="Y", potassium_baseline="6.1")], spec)
    assert list(df["patient_id"]) == ["SYN-000001"]
    step = next(s for s in flow if s["step"] == "require_baseline_potassium")
    assert step["excluded"] == 1


def test_outcome_is_potassium_at_or_above_5_5(spec):
    rows = [raw_row(patient_id=f"P{i}", record_id=f"R{i}", followup_potassium_max=k)
            for i, k in enumerate(["5.4", "5.5", "6.2"])]
    df, _ = run(rows, spec)
    assert list(df["hyperkalaemia_42d"]) == [0.0, 1.0, 1.0]


def test_duplicates_and_later_records_are_dropped(spec):
    rows = [raw_row(), raw_row(),  # exact duplicate export
            raw_row(record_id="R9", index_date="2023-01-01", age_years="71")]  # later start
    df, flow = run(rows, spec)
    assert len(df) == 1 and df.loc[0, "age"] == 70
    counts = {s["step"]: s["excluded"] for s in flow}
    assert counts["drop_exact_duplicates"] == 1
    assert counts["keep_first_record_per_patient"] == 1


@pytest.mark.parametrize("override,step", [
    ({"mra_drug": "eplerenone"}, "require_spironolactone"),
    ({"age_years": "17"}, "require_adult"),
    ({"lvef_value": "55"}, "require_hfref"),
    ({"potassium_baseline": ""}, "require_baseline_potassium"),
    ({"egfr": ""}, "require_egfr"),
    ({"followup_potassium_max": ""}, "require_followup_potassium"),
])
def test_exclusion_criteria_each_counted(spec, override, step):
    df, flow = run([raw_row(), raw_row(record_id="R2", patient_id="SYN-2", **override)], spec)
    assert len(df) == 1
    assert {s["step"]: s["excluded"] for s in flow}[step] == 1


def test_missing_lvef_is_kept(spec):
    df, _ = run([raw_row(lvef_value="", lvef_unit="")], spec)
    assert len(df) == 1 and pd.isna(df.loc[0, "lvef"])


def test_parse_rejects_non_numeric_value_naming_column(spec):
    with pytest.raises(TrainingDataError, match="egfr.*non-numeric.*'abc'"):
        run([raw_row(egfr="abc")], spec)


def test_parse_rejects_missing_columns(spec):
    row = raw_row()
    del row["egfr"]
    with pytest.raises(TrainingDataError, match="lacks required columns: egfr"):
        run([row], spec)


def test_parse_rejects_bad_flag(spec):
    with pytest.raises(TrainingDataError, match="diabetes must be Y or N"):
        run([raw_row(diabetes="maybe")], spec)


# ---- the generic format (`clean`) and the spec's extraction-time exclusions -------------------


def generic_spec(**changes):
    raw = json.loads(DEMO_SPEC.read_text())
    raw.update(cleaning="clean", index={"description": "the first dose", "date_column": None},
               features=[f for f in raw["features"] if f["name"] in ("age", "sex", "diabetes")],
               subgroups=[{"feature": "sex"}], **changes)
    return parse_spec(raw)


def generic_rows(n=4, **overrides):
    rows = [{"patient_id": f"P{i}", "age": str(60 + i), "sex": "female", "diabetes": "yes",
             "hyperkalaemia_42d": "1" if i % 2 else "0"} for i in range(n)]
    for i, changes in overrides.items():
        rows[int(i)].update(changes)
    return pd.DataFrame(rows, dtype=str)


def test_generic_recipe_reads_yes_no_words_and_drops_unknown_outcomes():
    df, flow = cleaning.clean(generic_rows(3, **{"1": {"diabetes": "N"}, "2": {"hyperkalaemia_42d": ""}}),
                              generic_spec())
    assert list(df["diabetes"]) == [True, False] and list(df["hyperkalaemia_42d"]) == [0.0, 1.0]
    assert [s["step"] for s in flow] == ["raw_extract", "drop_exact_duplicates", "require_outcome"]
    assert flow[-1]["excluded"] == 1 and list(df[cleaning.ROW]) == [1, 2]


def test_extraction_exclusions_are_the_first_rows_of_the_cohort_flow():
    spec = generic_spec(extraction_exclusions=[
        {"name": "no_consent", "description": "Declined the use of their records", "excluded": 7},
        {"name": "transferred", "description": "Transferred in from another hospital", "excluded": 3}])
    _, flow = cleaning.clean(generic_rows(4), spec)
    assert [(s["step"], s["excluded"], s["rows_after"]) for s in flow[:4]] == [
        ("source_population", 0, 14), ("no_consent", 7, 7), ("transferred", 3, 4),
        ("raw_extract", 0, 4)]
    assert flow[1]["description"] == "Declined the use of their records (at extraction)"


def test_values_outside_the_hard_limits_name_the_rows_and_how_to_exclude_them():
    spec = generic_spec()
    cohort, _ = cleaning.clean(generic_rows(5, **{"1": {"age": "130"}, "3": {"age": "12"}}), spec)
    with pytest.raises(TrainingDataError) as exc:
        build.checked_frame(cohort, spec, min_rows=1, min_events=1, what="cohort")
    message = str(exc.value)
    assert "age: 2 values outside the hard limits 18-120 (rows 2, 4)" in message
    assert "extraction_exclusions" in message


@pytest.mark.parametrize("outcome,problem", [
    ({"label": "x", "event": "x", "definition": "x", "horizon_days": 30}, "outcome.name: Field required"),
    ({"name": "died", "label": "x", "event": "x", "definition": "x"}, "outcome.horizon_days: Field required"),
    ({"name": "died", "label": "x", "event": "x", "definition": "x", "horizon_days": 30,
      "measurement": {"name": "v", "label": "v", "min": 0, "max": 10}},
     "outcome.measurement.event_threshold: Field required"),
    ({"name": "died", "label": "x", "event": "x", "definition": "x", "horizon_days": 30,
      "measurement": {"name": "v", "label": "v", "min": 0, "max": 10, "event_threshold": 11}},
     "event_threshold must lie between min and max"),
])
def test_an_incomplete_outcome_definition_is_refused_naming_the_field(outcome, problem):
    raw = json.loads(DEMO_SPEC.read_text())
    raw["outcome"] = outcome
    with pytest.raises(SpecError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(raw)


def test_model_frame_keeps_the_rows_of_a_generic_extract():
    spec = generic_spec()
    cohort, _ = cleaning.clean(generic_rows(2), spec)
    assert list(model_frame(cohort, spec).columns) == ["age", "sex", "diabetes"]
