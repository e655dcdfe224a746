"""The routing rule for any model: estimator families, held-out-neighbour confidence, and the
warnings and safe fallback when the data cannot support the target; calibration reported as
slope and calibration-in-the-large."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_EXTRACT, DEMO_SPEC, MODELS
from import_support import DIABETES_SPEC, diabetes_files, spec_with

from core import artifacts, cli, evaluate, routing
from core.features import model_frame
from core.governance import snapshot
from core.model_card import render
from core.train import train


@pytest.fixture(scope="module")
def extract(tmp_path_factory) -> Path:
    return diabetes_files(tmp_path_factory.mktemp("diabetes"))["extract"]


def family_spec(tmp_path: Path, family: str, calibration: str = "sigmoid", **routing_changes) -> Path:
    raw = json.loads(DIABETES_SPEC.read_text())
    return spec_with(tmp_path / f"{family}.json", estimator={"family": family, "calibration": calibration},
                     routing={**raw["routing"], **routing_changes})


@pytest.mark.parametrize("family,calibration", [("hist_gradient_boosting", "sigmoid"),
                                                ("random_forest", "isotonic"),
                                                ("logistic_regression", "sigmoid")])
def test_each_family_trains_calibrated_and_serves_from_skops(extract, tmp_path, family, calibration):
    path = train(data=extract, spec_path=family_spec(tmp_path, family, calibration), version="f1",
                 models_dir=tmp_path / "models", trained_by="t")
    m = json.loads((path / "manifest.json").read_text())
    assert m["model_format"] == "skops" and (path / "model.skops").is_file()
    assert f"{calibration}-calibrated" in m["model"]
    expected = "delta_method" if family == "logistic_regression" else "held_out_neighbours"
    assert m["routing"]["uncertainty"] == m["confidence"]["method"] == expected
    served = artifacts.load(tmp_path / "models", "f1").predictor
    rows = json.loads((path / "spec.json").read_text())
    assert rows["estimator"]["family"] == family
    frame = model_frame([served.reference] * 3, served.spec)
    np.testing.assert_allclose(served.predict(frame).risk, served.model.predict_proba(frame)[:, 1],
                               atol=1e-9)
    pred = served.predict(frame)
    assert (pred.risk_low <= pred.risk).all() and (pred.risk <= pred.risk_high).all()


def test_a_calibration_split_too_small_for_the_target_warns_and_falls_back(extract, tmp_path,
                                                                            monkeypatch, capsys):
    monkeypatch.setenv("APP_MODELS", str(tmp_path / "models"))
    spec = family_spec(tmp_path, "random_forest", low_risk_event_rate_target=0.01)
    assert cli.main(["train", "--data", str(extract), "--spec", str(spec), "--version", "tight",
                     "--by", "t"]) == 0
    out = capsys.readouterr()
    assert "WARNING: The calibration split has" in out.err and "needs at least" in out.err
    assert "WARNING: Fallback in force" in out.err
    assert "expected review share" in out.out
    m = artifacts.read_manifest(tmp_path / "models" / "tight")
    r = m["routing"]
    assert r["safe_low_bound"] == 0 and r["achieved_on_test"]["share_auto_low"] == 0
    assert r["warnings"][0].startswith("The calibration split has") and r["warnings"][-1] == routing.FALLBACK
    card = render(artifacts.load(tmp_path / "models", "tight"))
    assert "**Routing warning:** The calibration split has" in card
    assert "routing fallback in force" in card and routing.FALLBACK in card


@pytest.fixture(scope="module")
def missed(tmp_path_factory) -> Path:
    """The demonstration cohort with a target of 6%: met on the calibration split, missed on
    the held-out test split (its upper 95% bound is 6.7%)."""
    folder = tmp_path_factory.mktemp("missed")
    raw = json.loads(DEMO_SPEC.read_text())
    raw["routing"]["low_risk_event_rate_target"] = 0.06
    (folder / "spec.json").write_text(json.dumps(raw))
    models = folder / "models"
    shutil.copytree(MODELS, models)
    for path in [models, *models.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    train(data=DEMO_EXTRACT, spec_path=folder / "spec.json", version="strict", models_dir=models,
          trained_by="t")
    return models


def test_a_held_out_upper_bound_above_the_target_warns_and_falls_back(missed, any_store, monkeypatch):
    r = artifacts.read_manifest(missed / "strict")["routing"]
    assert r["warnings"][0].startswith("On the held-out test split (4008 patients) the upper 95% "
                                       "bound of the hyperkalaemia rate")
    assert "above the target 6%" in r["warnings"][0]
    assert r["safe_low_bound"] == 0 and r["achieved_on_test"]["share_auto_low"] == 0
    assert r["expected_review_share"] == r["achieved_on_test"]["share_review"] > 0.5
    monkeypatch.setenv("APP_MODELS", str(missed))
    from core.serving import activate

    activate("strict", by="admin", reason="trial")
    snap = snapshot()
    assert "**Routing warning:** On the held-out test split" in snap["questions"][2][1]
    routing_item = snap["checklist"][3]
    assert routing_item.evidence.startswith("ROUTING WARNING: On the held-out test split")


def test_calibration_in_the_large_is_the_intercept_with_the_slope_fixed_at_one():
    rng = np.random.default_rng(1)
    p = np.full(4000, 0.2)
    y = (rng.random(4000) < 0.3).astype(int)
    observed = y.mean()
    citl = evaluate.calibration_in_the_large(y, p)
    assert citl == pytest.approx(np.log(observed / (1 - observed)) - np.log(0.2 / 0.8), abs=1e-9)
    p = rng.uniform(0.05, 0.6, 4000)  # well calibrated by construction: near 0 and near 1
    y = (rng.random(4000) < p).astype(int)
    assert abs(evaluate.calibration_in_the_large(y, p)) < 0.1
    assert evaluate.calibration_slope(y, p) == pytest.approx(1, abs=0.15)
