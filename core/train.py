"""Training: extract -> clean cohort -> pipeline + statistics + routing rule -> artefact folder.

`python -m core train --data PATH --spec PATH --version VERSION` runs `train()`. Nothing is
written under model_artifacts/ unless every step succeeds: the version is assembled in a
temporary folder beside it and renamed into place at the end.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import scipy
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from core import evaluate, routing
from core.artifacts import ARTEFACT_FILES, sha256_file
from core.cleaning import clean, read_extract
from core.config import PROJ_ROOT
from core.errors import TrainingDataError
from core.features import build_preprocessor, model_frame
from core.predict import REASON_CODES, Predictor
from core.spec import Feature, Spec, dump_spec, load_spec

DEFAULT_SEED = 20261126
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
MIN_ROWS, MIN_EVENTS = 200, 20
MIN_CATEGORY_COUNT = 30  # a category seen fewer times than this is not "validated"
SPLIT = {"train": 0.6, "calibration": 0.2, "test": 0.2}


def train(*, data: Path, spec_path: Path, version: str, models_dir: Path,
          trained_by: str, seed: int = DEFAULT_SEED) -> Path:
    """Train, evaluate and write model_artifacts/VERSION/; returns its path."""
    if not VERSION_RE.match(version):
        raise TrainingDataError(f"version {version!r} must be 1-40 letters, digits, '.', '_' or '-'")
    target = Path(models_dir) / version
    if target.exists():
        raise TrainingDataError(f"version {version} already exists in {models_dir}; choose a new one")
    spec = load_spec(spec_path)
    cohort, flow = clean(read_extract(data), spec)
    frame, y = _checked_frame(cohort, spec)
    parts = _split(frame, y, seed)
    pipeline, stats = _fit(spec, parts)
    spec = _with_validated_ranges(spec, frame, spec.routing.validated_range_quantiles)
    rule = _fit_rule(spec, pipeline, stats, parts["calibration"])
    evaluation = _evaluate(spec, Predictor(pipeline, spec, stats, rule), pipeline,
                           parts["test"], cohort.loc[parts["test"][0].index])
    manifest = _manifest(spec, version, trained_by, seed, Path(data), cohort, flow, parts,
                         rule, evaluation)
    return _write(target, pipeline, spec, stats, evaluation, manifest)


def _checked_frame(cohort: pd.DataFrame, spec: Spec) -> tuple[pd.DataFrame, np.ndarray]:
    y = cohort[spec.outcome.name].to_numpy(dtype=int)
    if len(y) < MIN_ROWS:
        raise TrainingDataError(f"only {len(y)} patients remain after exclusions; need {MIN_ROWS}")
    if y.sum() < MIN_EVENTS or y.sum() == len(y):
        raise TrainingDataError(
            f"the cohort has {int(y.sum())} events among {len(y)} patients; "
            f"need at least {MIN_EVENTS} events and some non-events"
        )
    frame = model_frame(cohort, spec)
    problems = []
    for f in spec.features:
        col = frame[f.name]
        if f.required and col.isna().any():
            problems.append(f"{f.name}: {int(col.isna().sum())} missing values in a required feature")
        if f.numeric:
            outside = ((col < f.hard_min) | (col > f.hard_max)).sum()
            if outside:
                problems.append(f"{f.name}: {int(outside)} values outside the hard limits "
                                f"{f.hard_min:g}-{f.hard_max:g}")
        if f.type == "category":
            unknown = sorted(set(col.dropna()) - set(f.categories))
            if unknown:
                problems.append(f"{f.name}: categories not in the spec: {unknown[:5]}")
    if problems:
        raise TrainingDataError("the cleaned cohort does not fit the spec: " + "; ".join(problems))
    return frame, y


def _split(frame: pd.DataFrame, y: np.ndarray, seed: int) -> dict:
    idx = np.arange(len(y))
    train_idx, rest = train_test_split(idx, train_size=SPLIT["train"], stratify=y, random_state=seed)
    cal_idx, test_idx = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    return {name: (frame.iloc[i], y[i])
            for name, i in (("train", train_idx), ("calibration", cal_idx), ("test", test_idx))}


def _fit(spec: Spec, parts: dict) -> tuple[Pipeline, dict]:
    x_train, y_train = parts["train"]
    x_cal, y_cal = parts["calibration"]
    pre = build_preprocessor(spec).fit(x_train)
    z = pre.transform(x_train)
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(z, y_train)
    calibrated = CalibratedClassifierCV(FrozenEstimator(lr), method="sigmoid")
    calibrated.fit(pre.transform(x_cal), y_cal)
    pipeline = Pipeline([("preprocess", pre), ("classifier", calibrated)])
    return pipeline, {
        "coef_covariance": _coef_covariance(lr, z).tolist(),
        "transformed_mean": z.mean(axis=0).tolist(),
        "novelty": _novelty(spec, x_train),
    }


def _coef_covariance(lr: LogisticRegression, z: np.ndarray) -> np.ndarray:
    """Inverse penalised Fisher information of (intercept, coefficients): the delta method's input."""
    design = np.hstack([np.ones((len(z), 1)), z])
    p = lr.predict_proba(z)[:, 1]
    info = design.T @ (design * (p * (1 - p))[:, None])
    info[1:, 1:] += np.eye(z.shape[1]) / lr.C  # L2 penalty, intercept unpenalised
    return np.linalg.inv(info)


def _novelty(spec: Spec, x_train: pd.DataFrame) -> dict:
    """Mahalanobis distance over the numeric features, with its training-set quantile."""
    names = [f.name for f in spec.features if f.numeric]
    x = x_train[names].to_numpy(dtype=float)
    median = np.nanmedian(x, axis=0)
    x = np.where(np.isnan(x), median, x)
    mean = x.mean(axis=0)
    precision = np.linalg.inv(np.cov(x, rowvar=False))
    d = x - mean
    scores = np.einsum("ij,jk,ik->i", d, precision, d)
    q = spec.routing.novelty_quantile
    return {"features": names, "mean": mean.tolist(), "median": median.tolist(),
            "precision": precision.tolist(), "quantile": q,
            "threshold": float(np.quantile(scores, q))}


def _with_validated_ranges(spec: Spec, frame: pd.DataFrame, quantiles) -> Spec:
    features = []
    for f in spec.features:
        col = frame[f.name].dropna()
        extra: dict = {}
        if f.numeric:
            lo, hi = np.quantile(col, quantiles)
            digits = 0 if f.type == "integer" else 1
            extra = {"validated_min": float(np.floor(lo * 10**digits) / 10**digits),
                     "validated_max": float(np.ceil(hi * 10**digits) / 10**digits)}
        elif f.type == "category":
            counts = col.value_counts()
            extra = {"validated_categories": [c for c in f.categories
                                              if counts.get(c, 0) >= MIN_CATEGORY_COUNT]}
        features.append(Feature(**{**f.model_dump(), **extra}))
    return spec.model_copy(update={"features": features})


def _fit_rule(spec: Spec, pipeline: Pipeline, stats: dict, cal: tuple) -> routing.RoutingRule:
    x_cal, y_cal = cal
    draft = routing.RoutingRule(
        method="delta-method confidence with a safe-low bound fitted on the calibration split",
        action_threshold=spec.action_threshold, safe_low_bound=0.0,
        confidence_level=spec.routing.confidence_level,
        low_risk_event_rate_target=spec.routing.low_risk_event_rate_target,
        calibration_n=int(len(y_cal)), calibration_events=int(y_cal.sum()),
    )
    eta, se = Predictor(pipeline, spec, stats, draft).logit_and_se(x_cal)
    bound = routing.fit_safe_low_bound(
        eta, se, y_cal, threshold=spec.action_threshold,
        level=spec.routing.confidence_level, target=spec.routing.low_risk_event_rate_target,
    )
    return draft.model_copy(update={"safe_low_bound": bound})


def _evaluate(spec, predictor, pipeline, test, test_cohort) -> dict:
    x_test, y_test = test
    pred = predictor.predict(x_test)
    reference = pipeline.predict_proba(x_test)[:, 1]
    if not np.allclose(pred.risk, reference, atol=1e-9):
        raise RuntimeError("scoring arithmetic disagrees with the pipeline's predict_proba")
    t = spec.action_threshold
    codes = [c for cs in pred.reason_codes for c in cs]
    return {
        "split": "test",
        "overall": evaluate.summarise(y_test, pred.risk, t),
        "calibration_by_decile": evaluate.calibration_deciles(y_test, pred.risk),
        "subgroups": evaluate.subgroups(x_test, y_test, pred.risk, t),
        "routing": {**evaluate.routing_outcomes(y_test, pred.risk_class, pred.review),
                    "share_flagged_out_of_distribution": round(float(np.mean(
                        [any(c != "uncertain" for c in cs) for cs in pred.reason_codes])), 4),
                    "reasons_per_100_predictions": {
                        code: round(100 * codes.count(code) / len(y_test), 1)
                        for code in REASON_CODES}},
        "index_dates": [str(test_cohort["index_date"].min())[:10],
                        str(test_cohort["index_date"].max())[:10]]
        if "index_date" in test_cohort else None,
    }


def _workload(share: float) -> str:
    return (f"About {round(share * 100)} of every 100 predictions go to clinical review. A clinic "
            f"starting 20 patients a week on spironolactone would see about {round(share * 20)} "
            "reviews a week, a few minutes each: workable for one reviewer with a deputy. Compare "
            "with the live review share on the monitoring page and revisit the rule if it drifts.")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJ_ROOT, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _manifest(spec, version, trained_by, seed, data, cohort, flow, parts, rule, evaluation):
    overall = evaluation["overall"]
    dates = cohort["index_date"] if "index_date" in cohort else None
    return {
        "version": version,
        "model_name": spec.model_name,
        "synthetic_data": spec.synthetic,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "trained_by": trained_by,
        "random_seed": seed,
        "git_commit": _git_commit(),
        "data": {
            "file": data.name, "sha256": sha256_file(data), "cleaning_recipe": spec.cleaning,
            "flow": flow, "patients_included": int(len(cohort)),
            "events": int(cohort[spec.outcome.name].sum()),
            "index_date_range": [str(dates.min())[:10], str(dates.max())[:10]]
            if dates is not None else None,
        },
        "splits": {k: {"n": int(len(v[1])), "events": int(v[1].sum())} for k, v in parts.items()},
        "model": "StandardScaler/one-hot + L2 logistic regression (C=1), sigmoid-calibrated on "
                 "the calibration split",
        "outcome": spec.outcome.model_dump(),
        "action_threshold": spec.action_threshold,
        "action": spec.action,
        "routing": {**rule.model_dump(), "description": routing.describe(rule),
                    "achieved_on_test": evaluation["routing"],
                    "expected_review_share": evaluation["routing"]["share_review"],
                    "workload": _workload(evaluation["routing"]["share_review"])},
        "ood_policy": OOD_POLICY,
        "metrics": {k: overall.get(k) for k in
                    ("auroc", "auroc_ci95", "brier", "calibration_slope", "calibration_intercept")},
        "libraries": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                      "numpy": np.__version__, "pandas": pd.__version__,
                      "scipy": scipy.__version__, "joblib": joblib.__version__},
    }


OOD_POLICY = (
    "Values outside the hard limits in the spec are rejected with a structured error and no "
    "prediction. A prediction is still computed and shown, but routed to clinical review with a "
    "plain-language reason, when: a value lies inside the hard limits but outside the range the "
    "model was validated on (the 0.5th-99.5th percentiles of the training cohort); an optional "
    "value is missing (the model fills in the training median); a category was too rare in "
    "training to be validated; or the combination of numeric values is unusual (Mahalanobis "
    "distance above the 99.5th percentile of the training patients)."
)


def _write(target, pipeline, spec, stats, evaluation, manifest) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        joblib.dump(pipeline, tmp / "model.joblib")
        (tmp / "spec.json").write_text(dump_spec(spec))
        (tmp / "statistics.json").write_text(json.dumps(stats) + "\n")
        (tmp / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
        manifest["files"] = {name: sha256_file(tmp / name) for name in ARTEFACT_FILES}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.chmod(0o755)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
