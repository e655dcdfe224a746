"""The estimator families `python -m core train` can fit, each calibrated on the calibration
split: the spec's `estimator.family` chooses, logistic regression by default."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from core.features import build_preprocessor
from core.spec import Spec

DESCRIPTIONS = {
    "logistic_regression": "StandardScaler/one-hot + L2 logistic regression (C=1)",
    "hist_gradient_boosting": "StandardScaler/one-hot + histogram gradient boosting (200 "
                              "iterations, learning rate 0.05, early stopping off)",
    "random_forest": "StandardScaler/one-hot + random forest (300 trees, at least 10 patients "
                     "per leaf)",
}
LIMITATIONS = {
    "logistic_regression": "Logistic regression: effects are additive on the log-odds scale; "
                           "interactions are not modelled.",
    "hist_gradient_boosting": "Gradient boosting: interactions and non-linear effects are "
                              "learned from the data, so effects are harder to read than "
                              "coefficients; the factors shown are the model's, not causes.",
    "random_forest": "Random forest: interactions and non-linear effects are learned from the "
                     "data, and risks near 0% or 100% are rare; the factors shown are the "
                     "model's, not causes.",
}


def _classifier(family: str, seed: int):
    if family == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05,
                                              early_stopping=False, random_state=seed)
    if family == "random_forest":
        return RandomForestClassifier(n_estimators=300, min_samples_leaf=10, n_jobs=1,
                                      random_state=seed)
    return LogisticRegression(C=1.0, max_iter=2000)


def fit(spec: Spec, parts: dict, seed: int) -> tuple[Pipeline, dict]:
    """Fit on the training split, calibrate on the calibration split: (pipeline, statistics).

    The statistics of a sigmoid-calibrated logistic regression include the coefficient
    covariance, the input of the delta method (core.uncertainty)."""
    x_train, y_train = parts["train"]
    x_cal, y_cal = parts["calibration"]
    family, method = spec.estimator.family, spec.estimator.calibration
    pre = build_preprocessor(spec).fit(x_train)
    z = pre.transform(x_train)
    clf = _classifier(family, seed).fit(z, y_train)
    calibrated = CalibratedClassifierCV(FrozenEstimator(clf), method=method)
    calibrated.fit(pre.transform(x_cal), y_cal)
    pipeline = Pipeline([("preprocess", pre), ("classifier", calibrated)])
    stats: dict = {}
    if linear(spec):
        stats["coef_covariance"] = _coef_covariance(clf, z).tolist()
    return pipeline, stats


def linear(spec: Spec) -> bool:
    """Whether training gives a model the delta method and the coefficient shortcut apply to."""
    return spec.estimator.family == "logistic_regression" and spec.estimator.calibration == "sigmoid"


def describe(spec: Spec) -> str:
    return (f"{DESCRIPTIONS[spec.estimator.family]}, {spec.estimator.calibration}-calibrated on "
            "the calibration split")


def _coef_covariance(lr: LogisticRegression, z: np.ndarray) -> np.ndarray:
    """Inverse penalised Fisher information of (intercept, coefficients): the delta method's input."""
    design = np.hstack([np.ones((len(z), 1)), z])
    p = lr.predict_proba(z)[:, 1]
    info = design.T @ (design * (p * (1 - p))[:, None])
    info[1:, 1:] += np.eye(z.shape[1]) / lr.C  # L2 penalty, intercept unpenalised
    return np.linalg.inv(info)


def split(frame: pd.DataFrame, y: np.ndarray, seed: int, shares: dict) -> dict:
    """Stratified splits of a frame: {name: (frame, y)} in the order of `shares` (which add
    up to 1); the last split takes what the others leave."""
    idx, parts, left = np.arange(len(y)), {}, 1.0
    names = list(shares)
    for name in names[:-1]:
        take, idx = train_test_split(idx, train_size=shares[name] / left, stratify=y[idx],
                                     random_state=seed)
        parts[name] = take
        left -= shares[name]
    parts[names[-1]] = idx
    return {name: (frame.iloc[i], y[i]) for name, i in parts.items()}
