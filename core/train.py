"""Training: extract -> clean cohort -> calibrated pipeline + statistics + routing rule ->
version folder.

`python -m core train --data PATH --spec PATH --version VERSION` runs `train()`. The spec's
`estimator` chooses the family (core.estimators). Nothing is written under model_artifacts/
unless every step succeeds: the version is assembled in a hidden folder beside it and renamed
into place at the end; with APP_MODELS=s3://..., it is uploaded whole, manifest last (core.build).
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import scipy
import sklearn
import skops
import skops.io

from core import build, distribution, estimators, explain, uncertainty
from core.artifacts import Models
from core.cleaning import clean, read_extract
from core.config import PROJ_ROOT
from core.predict import Predictor
from core.routing import RoutingRule
from core.spec import Spec, load_spec

DEFAULT_SEED = 20261126
MIN_ROWS, MIN_EVENTS = 200, 20
SPLIT = {"train": 0.6, "calibration": 0.2, "test": 0.2}
MODEL_FILE = "model.skops"


def train(*, data: Path, spec_path: Path, version: str, models_dir: Models,
          trained_by: str, seed: int = DEFAULT_SEED) -> Path:
    """Train, evaluate and write VERSION into the models folder or bucket; returns the folder
    of its files (for a bucket, its copy in the cache)."""
    build.check_version(version, models_dir)
    spec = load_spec(spec_path)
    cohort, flow = clean(read_extract(data), spec)
    frame, y = build.checked_frame(cohort, spec, min_rows=MIN_ROWS, min_events=MIN_EVENTS,
                                   what="cohort")
    parts = estimators.split(frame, y, seed, SPLIT)
    pipeline, stats = estimators.fit(spec, parts, seed)
    x_train = parts["train"][0]
    stats["reference"] = explain.reference_values(spec, x_train)
    stats["novelty"] = build.novelty(spec, x_train)
    spec = build.with_validated_ranges(spec, frame)
    stats["distribution"] = distribution.training_distribution(spec, frame, "the training cohort")
    kind = "delta_method" if estimators.linear(spec) else "held_out_neighbours"

    def make(rule: RoutingRule) -> Predictor:
        return Predictor(pipeline, spec, stats, rule)

    x_cal, y_cal = parts["calibration"]
    draft = RoutingRule(method="", uncertainty=kind, action_threshold=spec.action_threshold,
                        safe_low_bound=0.0, confidence_level=spec.routing.confidence_level,
                        low_risk_event_rate_target=spec.routing.low_risk_event_rate_target,
                        calibration_n=len(y_cal), calibration_events=int(y_cal.sum()))
    if kind == "held_out_neighbours":
        stats["neighbourhood"] = uncertainty.fit_neighbours(make(draft).logit(x_cal), y_cal)
    method = ("delta-method confidence" if kind == "delta_method" else
              "held-out-neighbours confidence") + " with a safe-low bound fitted on the calibration split"
    rule, warnings = build.fit_rule(spec, make(draft), parts["calibration"], method=method,
                                    uncertainty=kind)
    test_cohort = cohort.loc[parts["test"][0].index]
    rule, evaluation, more = build.evaluate_version(
        spec, make, rule, parts["test"], test_cohort,
        check=lambda x: pipeline.predict_proba(x)[:, 1])
    if (held_out := make(rule).held_out_check(parts["test"][0])) is not None:
        stats["compiled_check"] = held_out  # read by core.predict when the version is loaded
    manifest = _manifest(spec, version, trained_by, seed, Path(data), cohort, flow, parts,
                         build.routing_section(spec, rule, evaluation, warnings + more),
                         evaluation, stats)
    return build.write(models_dir, version, lambda path: skops.io.dump(pipeline, path),
                       MODEL_FILE, spec, stats, evaluation, manifest)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJ_ROOT, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _manifest(spec: Spec, version, trained_by, seed, data: Path, cohort, flow, parts,
              routing_entry: dict, evaluation: dict, stats: dict) -> dict:
    return {
        **build.manifest(spec, version=version, origin="trained", created_by=trained_by,
                         seed=seed, data=data, cohort=cohort, flow=flow, parts=parts,
                         routing_entry=routing_entry, evaluation=evaluation, stats=stats),
        "git_commit": _git_commit(),
        "model": estimators.describe(spec),
        "model_file": MODEL_FILE,
        "model_format": "skops",
        "preprocessing": ("Optional numeric inputs missing at scoring are imputed with the "
                          "training median and flagged; the same feature code runs at training "
                          "and scoring."),
        "limitations": [estimators.LIMITATIONS[spec.estimator.family]],
        "ood_policy": build.ood_policy("the training cohort", "the training median"),
        "libraries": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                      "numpy": np.__version__, "pandas": pd.__version__,
                      "scipy": scipy.__version__, "joblib": joblib.__version__,
                      "skops": skops.__version__},
    }
