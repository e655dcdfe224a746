"""Batch scoring: `python -m core score-batch` on a file with valid and invalid rows, and the
chunked path giving the same counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import core
from core import store as core_store
from core.batch import score_batch
from core.store import Store

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "sample_patients.csv"

# (change to a valid sample row, the field its error must name)
INVALID = [
    ({"patient_ref": "BAD-K", "potassium": "abc"}, "potassium"),
    ({"patient_ref": "BAD-SEX", "sex": "unknown"}, "sex"),
    ({"patient_ref": "BAD-EGFR", "egfr": "500"}, "egfr"),
    ({"patient_ref": "BAD-AGE", "age": ""}, "age"),
    ({"patient_ref": "bad ref"}, "patient_ref"),
]


@pytest.fixture
def mixed_csv(tmp_path: Path) -> tuple[Path, pd.DataFrame, dict[int, str]]:
    """The sample patients, one invalid row in the middle and the others appended.

    Returns the file, its rows as text, and {1-based row number: field its error names}."""
    samples = pd.read_csv(SAMPLES, dtype=str, keep_default_na=False)
    template = samples.iloc[0].to_dict()
    bad = [{**template, **change} for change, _ in INVALID]
    frame = pd.concat([samples.iloc[:150], pd.DataFrame(bad[:1]), samples.iloc[150:],
                       pd.DataFrame(bad[1:])], ignore_index=True)
    path = tmp_path / "patients.csv"
    frame.to_csv(path, index=False)
    rows = {151: INVALID[0][1]}
    rows.update({len(samples) + 1 + i: field for i, (_, field) in enumerate(INVALID[1:], start=1)})
    return path, frame, rows


def test_score_batch_command(fresh_store: Store, mixed_csv, tmp_path: Path):
    path, frame, invalid_rows = mixed_csv
    out = tmp_path / "scored.csv"
    core_store.close_all()  # the command opens the store file itself
    run = subprocess.run(
        [sys.executable, "-m", "core", "score-batch", "--input", str(path), "--output", str(out),
         "--user", "batch.tester", "--quiet"],
        cwd=REPO, env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    n, n_bad = len(frame), len(invalid_rows)
    assert f"{n} rows: {n - n_bad} scored" in run.stdout
    assert f"{n_bad} rejected" in run.stdout

    result = pd.read_csv(out, dtype={"patient_ref": str}, keep_default_na=False)
    assert list(result["row"]) == list(range(1, n + 1))  # one row per input row, in order
    assert list(result["patient_ref"]) == list(frame["patient_ref"])
    rejected = result[result["status"] == "rejected"]
    assert dict(zip(rejected["row"], rejected["errors"], strict=True)).keys() == invalid_rows.keys()
    for row, errors in zip(rejected["row"], rejected["errors"], strict=True):
        assert errors.startswith(f"{invalid_rows[row]}: "), errors
    scored = result[result["status"] == "scored"]
    assert len(scored) == n - n_bad
    assert scored["prediction_id"].is_unique

    store = core_store.open_store(fresh_store.path)
    assert store.count("predictions") == n - n_bad
    assert store.count("rejected_inputs") == n_bad
    kinds = store._cursor().execute("SELECT kind, count(*) FROM audit_log GROUP BY ALL").fetchall()
    assert dict(kinds) == {"prediction": n - n_bad, "rejected_input": n_bad,
                           "configuration_change": 1}  # the command records its settings first
    sources = store._cursor().execute(
        "SELECT source, user_name, count(*) FROM predictions GROUP BY ALL").fetchall()
    assert sources == [("batch", "batch.tester", n - n_bad)]
    ids = {r[0] for r in store._cursor().execute("SELECT prediction_id FROM predictions").fetchall()}
    assert ids == set(scored["prediction_id"])
    recorded = store.rejections()
    assert set(recorded["source"]) == {"batch"}
    assert sorted(json.loads(f)[0]["field"] for f in recorded["fields_json"]) == sorted(
        invalid_rows.values())

    # Each scored row says what single scoring says for the same row.
    inputs = frame.to_dict("records")
    for row, risk, routing in zip(scored["row"], scored["risk"].astype(float), scored["routing"],
                                  strict=True):
        single = core.score(inputs[row - 1], user="dr.test")
        assert (single.risk, single.routing) == (risk, routing), row


def test_chunked_batch_counts_add_up(fresh_store: Store, mixed_csv, tmp_path: Path, monkeypatch):
    path, frame, invalid_rows = mixed_csv
    monkeypatch.setenv("APP_BATCH_CHUNK_ROWS", "50")
    out = tmp_path / "scored.csv"
    counts = score_batch(path, out, user="batch.tester", progress=False)
    n, n_bad = len(frame), len(invalid_rows)
    assert counts["rows"] == n
    assert counts["rejected"] == n_bad
    assert counts["scored"] == n - n_bad
    result = pd.read_csv(out, keep_default_na=False)
    assert list(result["row"]) == list(range(1, n + 1))
    assert counts["review"] == int((result["routing"] == "review").sum())
    assert fresh_store.count("predictions") == n - n_bad
    assert fresh_store.count("rejected_inputs") == n_bad
    entries = fresh_store.audit_entries()
    assert list(entries["seq"]) == list(range(1, n + 1))
    assert list(entries["prev_hash"].iloc[1:]) == list(entries["entry_hash"].iloc[:-1])
