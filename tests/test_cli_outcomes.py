"""`python -m core outcomes import CSV`: the report names every rejected row; exit 1 if any."""

import subprocess
from pathlib import Path

from conftest import run_core

import core
from core import store as core_store
from core.clock import now_utc
from core.config import get_settings


def run_import(csv: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_core("outcomes", "import", str(csv), *extra)


def test_import_reports_rejected_rows_and_exits_1(any_store, valid_payload, tmp_path):
    first = core.score(valid_payload, user="dr.clin", source="form")
    second = core.score({**valid_payload, "patient_ref": "TEST-2"}, user="dr.clin", source="form")
    today = now_utc().date()
    csv = tmp_path / "lab.csv"
    csv.write_text(
        "prediction_id,patient_ref,sample_date,event,max_potassium,source\n"
        f"{first.prediction_id},,{today},,6.1,lab export\n"         # event on the sample date
        f"{second.prediction_id},,,maybe,,lab export\n"             # not yes/no
        f"{second.prediction_id},,,no,,lab export\n"                # horizon not passed
        ",NOBODY,2026-01-01,,5.0,lab export\n")                     # no such patient
    run = run_import(csv, "--user", "lab.import")
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"{csv}: 4 rows, 1 recorded, 3 rejected"
    assert lines[1] == "  row 2: event: must be yes or no"  # plain words, not the validator's
    assert lines[2].startswith("  row 3: event: 'no event' can only be recorded once the 42-day horizon")
    assert lines[3].startswith("  row 4: no prediction for this patient")
    store = core_store.open_store(get_settings().db)
    recorded = store.current_outcome(first.prediction_id)
    assert (recorded["event"], recorded["measured_value"], recorded["user_name"]) == (True, 6.1, "lab.import")
    assert str(recorded["event_date"]) == str(today)
    assert store.current_outcome(second.prediction_id) is None


def test_import_of_clean_file_exits_0(any_store, valid_payload, tmp_path):
    scored = core.score(valid_payload, user="dr.clin", source="form")
    csv = tmp_path / "lab.csv"
    csv.write_text(f"prediction_id,event,event_date,source\n{scored.prediction_id},yes,"
                   f"{now_utc().date()},ward lab\n")
    run = run_import(csv)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines() == [f"{csv}: 1 rows, 1 recorded, 0 rejected"]
    assert run_import(tmp_path / "missing.csv").returncode == 2


def test_import_refuses_a_supersedes_or_unknown_column_and_records_nothing(any_store, valid_payload,
                                                                           tmp_path):
    scored = core.score(valid_payload, user="dr.clin", source="form")
    csv = tmp_path / "lab.csv"
    csv.write_text(f"prediction_id,event,event_date,source,supersedes,note\n{scored.prediction_id},yes,"
                   f"{now_utc().date()},ward lab,some-outcome-id,x\n")
    run = run_import(csv)
    assert run.returncode == 2
    assert "supersedes: is not a column of the outcome import (a correction is made" in run.stderr
    assert "note: is not a column of the outcome import" in run.stderr
    assert core_store.open_store(get_settings().db).count("outcomes") == 0
