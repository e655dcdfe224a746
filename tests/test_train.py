"""Training: provenance, evaluation, reproducibility, behaviour floors, and bad input."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DEMO_EXTRACT, DEMO_SPEC, MODELS, SHIPPED

from core import synthetic
from core.artifacts import load, load_model, read_manifest, sha256_file
from core.cleaning import clean, read_extract
from core.config import PROJ_ROOT
from core.features import model_frame
from core.spec import load_spec, validate_payload
from core.train import train

AUROC_FLOOR = 0.75


@pytest.fixture(scope="module")
def trained() -> Path:
    """The demonstration model the suite trains for itself (conftest), read-only."""
    return MODELS / "v1"


def pipeline_of(path: Path):
    return load_model(path, read_manifest(path))


def sample_frame(spec) -> pd.DataFrame:
    """The shipped sample patients, validated the way scoring validates them."""
    rows = pd.read_csv(PROJ_ROOT / "data" / "sample_patients.csv", dtype=str,
                       keep_default_na=False).to_dict("records")
    return model_frame([validate_payload(spec, r)[1] for r in rows], spec)


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_train_writes_every_artefact_file_with_recorded_hashes(trained):
    m = manifest(trained)
    for name in ("model.skops", "spec.json", "statistics.json", "evaluation.json"):
        assert m["files"][name] == sha256_file(trained / name)


def test_manifest_records_provenance(trained):
    m = manifest(trained)
    assert m["data"]["sha256"] == sha256_file(DEMO_EXTRACT)
    flow = m["data"]["flow"]
    assert flow[0]["step"] == "raw_extract" and flow[-1]["rows_after"] == m["data"]["patients_included"]
    assert all(a["rows_after"] - b["excluded"] == b["rows_after"] for a, b in zip(flow, flow[1:], strict=False))
    assert m["created_by"] == "test suite" and m["random_seed"] == 20261126
    assert m["created_at"].endswith("Z")
    assert set(m["libraries"]) >= {"python", "scikit-learn", "numpy", "pandas"}
    assert "git_commit" in m


def test_artefact_spec_carries_validated_ranges(trained):
    spec = load_spec(trained / "spec.json")
    egfr = spec.feature("egfr")
    assert egfr.hard_min <= egfr.validated_min < egfr.validated_max <= egfr.hard_max
    assert spec.feature("sex").validated_categories == ["female", "male"]


def test_evaluation_reports_required_metrics(trained):
    ev = json.loads((trained / "evaluation.json").read_text())
    overall = ev["overall"]
    for key in ("auroc", "auroc_ci95", "brier", "calibration_slope", "calibration_in_the_large",
                "sensitivity", "specificity", "ppv", "npv"):
        assert overall[key] is not None, key
    lo, hi = overall["auroc_ci95"]
    assert lo < overall["auroc"] < hi
    assert set(ev["subgroups"]["sex"]) == {"female", "male"}
    assert set(ev["subgroups"]["age"]) == {"18-64", "65-74", "75-84", "85+"}


def test_model_meets_floors_and_is_calibrated(trained):
    overall = json.loads((trained / "evaluation.json").read_text())["overall"]
    assert overall["auroc"] >= AUROC_FLOOR
    assert 0.8 <= overall["calibration_slope"] <= 1.2
    assert abs(overall["mean_predicted_risk"] - overall["event_rate"]) < 0.02


def test_model_tracks_the_data_generating_risk(trained):
    """On the eligible cohort, predictions correlate strongly with the known true risk."""
    spec = load_spec(DEMO_SPEC)
    cohort, _ = clean(read_extract(DEMO_EXTRACT), spec)
    sample = cohort.sample(3000, random_state=1)
    predicted = pipeline_of(trained).predict_proba(model_frame(sample, spec))[:, 1]
    truth = synthetic.true_risk(sample)
    assert np.corrcoef(predicted, truth)[0, 1] > 0.9
    assert abs(predicted.mean() - truth.mean()) < 0.02


def test_routing_rule_is_recorded_with_targets_and_achieved_rates(trained):
    r = manifest(trained)["routing"]
    assert 0 < r["safe_low_bound"] <= r["action_threshold"]
    assert r["calibration_n"] > 1000
    achieved = r["achieved_on_test"]
    assert abs(achieved["share_auto_low"] + achieved["share_auto_high"] + achieved["share_review"] - 1) < 1e-3
    assert 0 < r["expected_review_share"] < 0.5
    assert "review" in r["description"]


def test_training_twice_gives_identical_metrics_and_predictions(trained, tmp_path):
    again = train(data=DEMO_EXTRACT, spec_path=DEMO_SPEC, version="t2",
                  models_dir=tmp_path, trained_by="test suite")
    assert (trained / "evaluation.json").read_text() == (again / "evaluation.json").read_text()
    assert manifest(trained)["routing"] == manifest(again)["routing"]
    frame = sample_frame(load_spec(trained / "spec.json"))
    a = pipeline_of(trained).predict_proba(frame)
    b = pipeline_of(again).predict_proba(frame)
    assert np.array_equal(a, b)


def test_retraining_reproduces_the_shipped_v1(trained):
    shipped = SHIPPED / "v1"
    assert (trained / "evaluation.json").read_text() == (shipped / "evaluation.json").read_text()
    assert manifest(trained)["metrics"] == manifest(shipped)["metrics"]
    assert manifest(trained)["routing"] == manifest(shipped)["routing"]
    assert (trained / "spec.json").read_text() == (shipped / "spec.json").read_text()


def test_scoring_arithmetic_equals_predict_proba(trained):
    artefact = load(trained.parent, trained.name)
    frame = sample_frame(artefact.spec)
    pipeline = pipeline_of(trained)
    assert np.allclose(artefact.predictor.predict(frame).risk, pipeline.predict_proba(frame)[:, 1])


# ---- bad input: a clear message, non-zero exit, nothing written ---------------------------


def run_train(tmp_path, data, spec=None):
    spec = spec or DEMO_SPEC
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    env = {**os.environ, "APP_MODELS": str(models), "APP_DB": str(tmp_path / "s.duckdb")}
    proc = subprocess.run([sys.executable, "-m", "core", "train", "--data", str(data),
                           "--spec", str(spec), "--version", "bad"],
                          capture_output=True, text=True, env=env, cwd=PROJ_ROOT, timeout=120)
    return proc, sorted(p.name for p in models.iterdir())


def write_extract(path: Path, df: pd.DataFrame) -> Path:
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    with gzip.open(DEMO_EXTRACT, "rt") as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False, nrows=3000)


def test_train_rejects_missing_columns(tmp_path, raw):
    proc, written = run_train(tmp_path, write_extract(tmp_path / "x.csv", raw.drop(columns=["egfr"])))
    assert proc.returncode == 2 and "lacks required columns: egfr" in proc.stderr
    assert written == []


def test_train_rejects_wrong_types(tmp_path, raw):
    bad = raw.copy()
    bad.loc[5, "potassium_baseline"] = "high"
    proc, written = run_train(tmp_path, write_extract(tmp_path / "x.csv", bad))
    assert proc.returncode == 2 and "potassium_baseline" in proc.stderr and "'high'" in proc.stderr
    assert written == []


def test_train_rejects_cohort_without_events(tmp_path, raw):
    calm = raw.copy()
    calm["followup_potassium_max"] = np.where(calm["followup_potassium_max"] == "", "", "4.5")
    proc, written = run_train(tmp_path, write_extract(tmp_path / "x.csv", calm))
    assert proc.returncode == 2 and "0 events" in proc.stderr
    assert written == []


def test_train_rejects_spec_with_unknown_field(tmp_path, raw):
    spec = json.loads(DEMO_SPEC.read_text())
    spec["features"][0]["colour"] = "blue"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc, written = run_train(tmp_path, write_extract(tmp_path / "x.csv", raw), spec_path)
    assert proc.returncode == 2 and "features.0.colour: unknown field" in proc.stderr
    assert written == []


def test_train_refuses_an_existing_version(tmp_path, trained):
    with pytest.raises(Exception, match="already exists"):
        train(data=DEMO_EXTRACT, spec_path=DEMO_SPEC, version=trained.name,
              models_dir=trained.parent, trained_by="x")


def test_delong_auroc_matches_sklearn_and_covers_it():
    from sklearn.metrics import roc_auc_score

    from core.evaluate import auroc_ci

    rng = np.random.default_rng(3)
    y = rng.random(2000) < 0.2
    p = np.clip(0.2 + 0.3 * y + rng.normal(0, 0.25, 2000), 0, 1).round(2)  # ties on purpose
    auc, lo, hi = auroc_ci(y, p)
    assert auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert lo < auc < hi and 0.02 < hi - lo < 0.1
