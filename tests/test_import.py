"""`python -m core import-model`: a team's fitted pipeline becomes a served version without
retraining; every unusable pipeline or data set is refused with a message, exit 2 and nothing
written."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from import_support import (
    DIABETES_SPEC,
    ConstantModel,
    OutOfRangeModel,
    diabetes_files,
    serve_from,
    spec_with,
    team_pipeline,
)
from sklearn.cluster import KMeans
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression

import core
from core import artifacts, cli, serving
from core.artifacts import sha256_file
from core.features import model_frame
from core.importer import import_model
from core.spec import load_spec


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("diabetes")
    files = diabetes_files(folder)
    files["pipeline"] = folder / "team_model.joblib"
    joblib.dump(team_pipeline(files["training"]), files["pipeline"])
    return files


@pytest.fixture(scope="module")
def imported(files, tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("models")
    return import_model(pipeline=files["pipeline"], data=files["heldout"], spec_path=DIABETES_SPEC,
                        version="hgb-1", models_dir=models, imported_by="Dr Team")


def test_import_keeps_the_teams_file_and_records_its_provenance(imported, files):
    m = json.loads((imported / "manifest.json").read_text())
    assert artifacts.verify(imported.parent, "hgb-1") == []
    assert (imported / "model.pkl").read_bytes() == files["pipeline"].read_bytes()
    p = m["provenance"]
    assert p["pipeline_sha256"] == sha256_file(files["pipeline"]) == m["files"]["model.pkl"]
    assert p["vouched_for_by"] == "Dr Team" and m["created_by"] == "Dr Team"
    assert p["pickled_with"].startswith("scikit-learn ") and p["recalibration"] is None
    assert m["origin"] == "imported" and m["model_format"] == "pickle"
    assert m["data"]["sha256"] == sha256_file(files["heldout"])
    assert "HistGradientBoostingClassifier" in m["model"]
    assert m["confidence"]["method"] == "held_out_neighbours"
    assert m["explanation"]["method"] == "one input at a time set to a typical value"


def test_import_evaluates_on_the_held_out_half(imported):
    m = json.loads((imported / "manifest.json").read_text())
    ev = json.loads((imported / "evaluation.json").read_text())
    assert set(m["splits"]) == {"calibration", "test"}
    assert m["splits"]["calibration"]["n"] + m["splits"]["test"]["n"] == m["data"]["patients_included"]
    overall = ev["overall"]
    for key in ("auroc", "auroc_ci95", "brier", "calibration_slope", "calibration_in_the_large",
                "sensitivity", "specificity", "ppv", "npv"):
        assert overall[key] is not None, key
    assert overall["auroc"] > 0.7
    assert set(ev["subgroups"]) == {"sex", "bmi"} and set(ev["subgroups"]["bmi"]) == {"<25", "25 to <30", "30+"}
    routing = m["routing"]
    assert routing["calibration_n"] == m["splits"]["calibration"]["n"]
    assert routing["expected_review_share"] == routing["achieved_on_test"]["share_review"]


def test_import_ships_the_held_out_datas_distribution_for_drift(imported, files):
    """The reference drift monitoring compares with: every input over all the held-out rows,
    the rows the validated ranges come from."""
    from core.cleaning import clean, read_extract
    from core.distribution import training_distribution

    stats = artifacts.statistics_of(imported.parent, "hgb-1")
    spec = load_spec(imported / "spec.json")
    cohort, _ = clean(read_extract(files["heldout"]), spec)
    assert stats["distribution"] == training_distribution(
        spec, model_frame(cohort, spec), "the held-out data supplied at import")
    assert stats["distribution"]["rows"] == json.loads((imported / "manifest.json").read_text()
                                                       )["data"]["patients_included"]


def test_imported_pipeline_is_served_with_its_own_probabilities(imported, files, tmp_path, monkeypatch):
    serve_from(imported.parent, tmp_path / "s.duckdb", monkeypatch)
    serving.activate("hgb-1", by="admin", reason="the team's validated model")
    rows = pd.read_csv(files["heldout"], dtype=str, keep_default_na=False).head(5)
    pipeline = joblib.load(files["pipeline"])
    spec = load_spec(imported / "spec.json")
    for row in rows.to_dict("records"):
        payload = {k: v for k, v in row.items() if k in spec.names}
        result = core.score({**payload, "patient_ref": row["patient_id"]}, user="dr.clin", source="form")
        values = {f.name: (float(payload[f.name]) if f.numeric and payload[f.name] != "" else
                           payload[f.name] or None) for f in spec.features}
        expected = pipeline.predict_proba(model_frame([values], spec))[0, 1]
        assert result.risk == round(float(expected), 4) and result.model_version == "hgb-1"
        assert result.risk_interval_95[0] <= result.risk <= result.risk_interval_95[1]
        assert 0 <= result.confidence < 1
        assert 1 <= len(result.top_factors) <= 3


def test_recalibration_is_a_flag_and_is_recorded(files, tmp_path):
    path = import_model(pipeline=files["pipeline"], data=files["heldout"], spec_path=DIABETES_SPEC,
                        version="hgb-recal", models_dir=tmp_path, imported_by="Dr Team",
                        recalibrate=True)
    m = json.loads((path / "manifest.json").read_text())
    recal = m["provenance"]["recalibration"]
    assert recal["slope"] > 0 and "logistic recalibration" in recal["description"]
    stats = json.loads((path / "statistics.json").read_text())
    assert stats["recalibration"]["intercept"] == recal["intercept"]
    served = artifacts.load(tmp_path, "hgb-recal").predictor
    frame = model_frame(pd.read_csv(files["heldout"], dtype={"sex": str}).to_dict("records")[:20],
                        served.spec)
    raw = np.asarray(joblib.load(files["pipeline"]).predict_proba(frame))[:, 1]
    eta = recal["intercept"] + recal["slope"] * np.log(raw / (1 - raw))
    assert np.allclose(served.predict(frame).risk, 1 / (1 + np.exp(-eta)))


# ---- bad input: a message naming the problem, exit 2, nothing written -----------------------


def run_import(tmp_path: Path, capsys, pipeline: Path, data: Path, spec: Path = DIABETES_SPEC,
               *extra: str) -> tuple[int, str, list[str]]:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    code = cli.main(["import-model", "--pipeline", str(pipeline), "--data", str(data),
                     "--spec", str(spec), "--version", "bad", *extra])
    return code, capsys.readouterr().err, sorted(p.name for p in models.iterdir())


@pytest.fixture
def bad_models(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("APP_DB", str(tmp_path / "s.duckdb"))


def dumped(tmp_path: Path, model) -> Path:
    path = tmp_path / "pipeline.joblib"
    joblib.dump(model, path)
    return path


def fitted(estimator, files, columns=None):
    data = pd.read_csv(files["training"], dtype={"sex": str})
    columns = columns or ["age", "bmi", "bp", "tc", "ldl", "hdl", "tch", "ltg"]
    return estimator.fit(data[columns], data["progression_1y"])


@pytest.mark.usefixtures("bad_models")
@pytest.mark.parametrize("make,message", [
    (lambda f: {"weights": [1, 2, 3]}, "has no predict_proba: it is not a classifier"),
    (lambda f: fitted(LinearRegression(), f), "is a regressor (LinearRegression), not a classifier"),
    (lambda f: fitted(KMeans(n_clusters=2, n_init=1, random_state=0), f), "has no predict_proba"),
    (lambda f: fitted(HistGradientBoostingClassifier(max_iter=5),
                      f, ["age", "bmi", "bp", "progression_score_baseline"]),
     "needs columns the spec lacks: progression_score_baseline"),
    (lambda f: fitted(DummyClassifier(strategy="prior"), f), "the same probability"),
    (lambda f: ConstantModel(), "the same probability (0.3) for every patient"),
    (lambda f: OutOfRangeModel(), "values outside [0, 1]"),
])
def test_import_refuses_an_unusable_pipeline(files, tmp_path, capsys, make, message):
    if "progression_score_baseline" in message:
        training = pd.read_csv(files["training"], dtype={"sex": str})
        training["progression_score_baseline"] = training["bmi"] * 3
        training.to_csv(tmp_path / "training.csv", index=False)
        files = {**files, "training": tmp_path / "training.csv"}
    code, err, written = run_import(tmp_path, capsys, dumped(tmp_path, make(files)), files["heldout"])
    assert code == 2 and message in err, err
    assert written == []


@pytest.mark.usefixtures("bad_models")
def test_import_refuses_a_file_that_is_no_pickle(files, tmp_path, capsys):
    not_a_pickle = tmp_path / "notes.joblib"
    not_a_pickle.write_text("my model is in the notebook")
    code, err, written = run_import(tmp_path, capsys, not_a_pickle, files["heldout"])
    assert code == 2 and "cannot be loaded as a pickle or joblib file" in err and written == []


@pytest.mark.usefixtures("bad_models")
def test_import_refuses_held_out_data_with_too_few_events(files, tmp_path, capsys):
    data = pd.read_csv(files["heldout"], dtype=str, keep_default_na=False)
    few = pd.concat([data[data["progression_1y"] == "1"].head(8), data[data["progression_1y"] == "0"]])
    few.to_csv(tmp_path / "few.csv", index=False)
    code, err, written = run_import(tmp_path, capsys, files["pipeline"], tmp_path / "few.csv")
    assert code == 2 and "has 8 events" in err and "need at least 20 events" in err
    assert written == []


@pytest.mark.usefixtures("bad_models")
def test_import_refuses_an_incomplete_outcome_definition(files, tmp_path, capsys):
    raw = json.loads(DIABETES_SPEC.read_text())
    del raw["outcome"]["measurement"]["event_threshold"]
    spec = spec_with(tmp_path / "spec.json", outcome=raw["outcome"])
    code, err, written = run_import(tmp_path, capsys, files["pipeline"], files["heldout"], spec)
    assert code == 2 and "outcome.measurement.event_threshold: Field required" in err
    assert written == []


@pytest.mark.usefixtures("bad_models")
def test_import_refuses_values_outside_the_hard_limits_naming_rows(files, tmp_path, capsys):
    data = pd.read_csv(files["heldout"], dtype=str, keep_default_na=False)
    data.loc[[2, 5], "bmi"] = "95"
    data.to_csv(tmp_path / "odd.csv", index=False)
    code, err, written = run_import(tmp_path, capsys, files["pipeline"], tmp_path / "odd.csv")
    assert code == 2 and "bmi: 2 values outside the hard limits 12-70 (rows 3, 6)" in err
    assert "extraction_exclusions" in err and written == []
