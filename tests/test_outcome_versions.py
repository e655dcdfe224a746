"""Each prediction keeps its own version's outcome definition: the due list uses every
prediction's own horizon; confidence never claims certainty anywhere; existing stores keep their
outcomes when the measured value's column becomes generic."""

from __future__ import annotations

import csv
import shutil
from datetime import timedelta

import pytest
from app_support import PATIENT, signed_in
from conftest import MODELS
from import_support import diabetes_files, spec_with

import core
from core import scoring, serving
from core.batch import score_batch
from core.display import confidence_text
from core.followup import due_outcomes
from core.scoring import CONFIDENCE_CAP
from core.train import train

CONFIDENT_BUT_ODD = {**PATIENT, "age": 110, "egfr": 12.0, "potassium": 5.8, "diabetes": True,
                     "nsaid": True, "potassium_supplement": True, "loop_diuretic": False,
                     "raas_inhibitor": "arni", "spironolactone_dose_mg": 100.0, "nyha_class": "IV"}


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    models = root / "models"
    shutil.copytree(MODELS, models)
    for path in [models, *models.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    spec = spec_with(root / "spec.json", estimator={"family": "logistic_regression"})  # quick
    train(data=diabetes_files(root)["extract"], spec_path=spec, version="yearly",
          models_dir=models, trained_by="t")
    return models


def test_due_list_uses_each_predictions_own_horizon(two_models, any_store, monkeypatch):
    monkeypatch.setenv("APP_MODELS", str(two_models))
    past = scoring.now_utc() - timedelta(days=50)
    with monkeypatch.context() as mp:
        mp.setattr(scoring, "now_utc", lambda: past)
        demo = core.score({**PATIENT, "patient_ref": "D-1"}, user="u", source="form")  # v1: 42 days
        serving.activate("yearly", by="admin", reason="switch")
        yearly = core.score({"patient_ref": "Y-1", "age": 50, "sex": "1", "bmi": 27.0, "bp": 90.0,
                             "tc": 190.0, "ldl": 115.0, "hdl": 50.0, "tch": 4.0, "ltg": 4.6,
                             "glu": 90.0}, user="u", source="form")
    listed = due_outcomes(now=scoring.now_utc())
    assert [d.prediction_id for d in listed] == [demo.prediction_id]  # 'yearly' is due after 365 days
    assert [(d.horizon_days, d.days_overdue) for d in listed] == [(42, 8)]
    later = due_outcomes(now=scoring.now_utc() + timedelta(days=330))
    assert [d.prediction_id for d in later] == [demo.prediction_id, yearly.prediction_id]
    assert [d.horizon_days for d in later] == [42, 365]


def test_no_output_claims_a_confidence_of_one(any_store, tmp_path):
    result = core.score(CONFIDENT_BUT_ODD, user="u", source="form")
    assert result.routing == "review" and result.confidence == CONFIDENCE_CAP < 1
    assert confidence_text(result.confidence) == "> 99.9%"
    path, out = tmp_path / "in.csv", tmp_path / "out.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(CONFIDENT_BUT_ODD))
        writer.writeheader()
        writer.writerow({k: ("" if v is None else v) for k, v in CONFIDENT_BUT_ODD.items()})
    score_batch(path, out, user="u", progress=False)
    with open(out, newline="") as fh:
        [row] = list(csv.DictReader(fh))
    assert float(row["confidence"]) == CONFIDENCE_CAP  # a number, below 1


def test_review_queue_shows_near_certain_confidence_as_above_99_9(demo_app):
    result = core.score(CONFIDENT_BUT_ODD, user="demo-clinician", source="form")
    at = signed_in("reviewer").switch_page("views/review_queue.py").run()
    shown = next(m for m in at.metric if m.label == "Confidence")
    assert shown.value == "> 99.9%" and "delta method" in shown.help
    queue = next(d.value for d in at.dataframe if "confidence" in d.value.columns)
    assert list(queue["confidence"]) == ["> 99.9%"]
    assert result.confidence == CONFIDENCE_CAP


