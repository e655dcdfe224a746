"""Prediction with everything a reviewer needs: calibrated risk, its uncertainty, confidence,
routing, out-of-distribution reasons and the features that moved the risk.

One code path for training's evaluation, single scoring and batch scoring. It never calls
predict_proba row by row: one transform, then matrix arithmetic that a test checks against
the pipeline's own predict_proba.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from core import routing
from core.features import group_by_owner, output_owners
from core.spec import Spec

TOP_FACTORS = 3
REASON_CODES = {
    "uncertain": "too uncertain to auto-finalise",
    "outside_validated_range": "value outside the validated range",
    "missing_value": "optional value missing",
    "rare_category": "category too rare to be validated",
    "unusual_combination": "unusual combination of values",
}


@dataclass
class Predictions:
    """Per-row arrays for a frame of validated inputs."""

    risk: np.ndarray
    risk_low: np.ndarray  # 95% interval of the risk
    risk_high: np.ndarray
    risk_class: np.ndarray  # "high" / "low"
    confidence: np.ndarray
    review: np.ndarray  # bool: routed to clinical review
    reasons: list[list[str]]  # plain-language reasons, for the clinician
    reason_codes: list[list[str]]  # one code per reason (REASON_CODES), for filters and counts
    factors: list[list[dict]]


class Predictor:
    """A loaded artefact's pipeline plus the statistics it shipped with."""

    def __init__(self, pipeline: Pipeline, spec: Spec, stats: dict, rule: routing.RoutingRule):
        self.spec, self.rule = spec, rule
        self.pre = pipeline.named_steps["preprocess"]
        calibrated = pipeline.named_steps["classifier"].calibrated_classifiers_[0]
        lr = calibrated.estimator.estimator  # FrozenEstimator -> LogisticRegression
        sig = calibrated.calibrators[0]
        self.w = lr.coef_.ravel()
        self.b0 = float(lr.intercept_[0])
        self.a, self.b = float(sig.a_), float(sig.b_)
        self.cov = np.asarray(stats["coef_covariance"])
        self.z_mean = np.asarray(stats["transformed_mean"])
        self.owners = output_owners(self.pre, spec)
        self.novelty = stats["novelty"]
        self.nov_mean = np.asarray(self.novelty["mean"])
        self.nov_precision = np.asarray(self.novelty["precision"])
        self.nov_median = np.asarray(self.novelty["median"])

    def logit_and_se(self, frame: pd.DataFrame, z: np.ndarray | None = None):
        """Calibrated log-odds and its standard error (delta method, coefficient covariance)."""
        z = self.pre.transform(frame) if z is None else z
        eta = -(self.a * (z @ self.w + self.b0) + self.b)  # sklearn's sigmoid calibration
        design = np.hstack([np.ones((len(z), 1)), z])
        se = abs(self.a) * np.sqrt(np.einsum("ij,jk,ik->i", design, self.cov, design))
        return eta, se

    def predict(self, frame: pd.DataFrame) -> Predictions:
        z = self.pre.transform(frame)
        eta, se = self.logit_and_se(frame, z)
        risk = 1 / (1 + np.exp(-eta))
        t, lo = self.rule.action_threshold, self.rule.safe_low_bound
        conf = routing.confidence(eta, se, threshold=t, safe_low=lo)
        texts, codes = self._reasons(frame, risk, conf)
        return Predictions(
            risk=risk,
            risk_low=1 / (1 + np.exp(-(eta - 1.959964 * se))),
            risk_high=1 / (1 + np.exp(-(eta + 1.959964 * se))),
            risk_class=np.where(risk >= t, "high", "low"),
            confidence=conf,
            review=np.fromiter(map(bool, codes), dtype=bool, count=len(codes)),
            reasons=texts,
            reason_codes=codes,
            factors=self._factors(z),
        )

    def _reasons(self, frame: pd.DataFrame, risk: np.ndarray, conf: np.ndarray
                 ) -> tuple[list[list[str]], list[list[str]]]:
        """Plain-language reasons and their codes (REASON_CODES), row by row, in step."""
        texts: list[list[str]] = [[] for _ in range(len(frame))]
        codes: list[list[str]] = [[] for _ in range(len(frame))]

        def add(rows, code: str, text) -> None:
            for i in rows:
                texts[i].append(text(i) if callable(text) else text)
                codes[i].append(code)

        add(np.flatnonzero(conf < self.rule.confidence_level), "uncertain",
            lambda i: self._uncertain_reason(risk[i], conf[i]))
        for f in self.spec.features:
            col = frame[f.name].to_numpy()
            if f.numeric:
                v = col.astype(float)
                if not f.required:
                    add(np.flatnonzero(np.isnan(v)), "missing_value",
                        f"{f.label} was not given; the model filled in a typical value.")
                if f.validated_min is not None:
                    add(np.flatnonzero(v < f.validated_min), "outside_validated_range",
                        lambda i, f=f, v=v: _range_reason(f, v[i], "below"))
                    add(np.flatnonzero(v > f.validated_max), "outside_validated_range",
                        lambda i, f=f, v=v: _range_reason(f, v[i], "above"))
            elif f.type == "category" and f.validated_categories:
                rare = ~np.isin(col.astype(object), f.validated_categories) & pd.notna(col)
                add(np.flatnonzero(rare), "rare_category",
                    lambda i, f=f, col=col: f"{f.label} '{col[i]}' was too rare in the training "
                                            "data to be validated.")
        rarer = round(1 / (1 - self.novelty["quantile"]))
        for i, names in self._novel(frame):
            add([i], "unusual_combination",
                "This combination of values is unusual for the patients the model was trained "
                f"on (rarer than 1 in {rarer}), mostly because of " + " and ".join(names) + ".")
        return texts, codes

    def _uncertain_reason(self, risk: float, conf: float) -> str:
        t, lo = self.rule.action_threshold, self.rule.safe_low_bound
        if risk >= t:
            return (f"Risk {risk:.0%} is close to the action threshold ({t:.0%}): "
                    f"only {conf:.0%} sure it is truly above it.")
        return (f"Risk {risk:.1%} is not clearly below the safe-low bound ({lo:.1%}) for "
                f"auto-finalising a low-risk result (confidence {conf:.0%}).")

    def _novel(self, frame: pd.DataFrame) -> list[tuple[int, list[str]]]:
        names = self.novelty["features"]
        x = frame[names].to_numpy(dtype=float)
        x = np.where(np.isnan(x), self.nov_median, x)
        d = x - self.nov_mean
        per_feature = d * (d @ self.nov_precision)
        score = per_feature.sum(axis=1)
        hits = np.flatnonzero(score > self.novelty["threshold"])
        labels = [self.spec.feature(n).label for n in names]
        return [(i, [labels[j] for j in np.argsort(-per_feature[i])[:2]]) for i in hits]

    def _factors(self, z: np.ndarray) -> list[list[dict]]:
        contrib = group_by_owner((z - self.z_mean) * self.w * -self.a, self.owners, self.spec.names)
        top = np.argsort(-np.abs(contrib), axis=1)[:, :TOP_FACTORS]
        effects = np.take_along_axis(contrib, top, axis=1).round(3).tolist()  # plain floats: fast
        names, labels = self.spec.names, [f.label for f in self.spec.features]
        return [[{"feature": names[j], "label": labels[j], "effect": e,
                  "direction": "raises risk" if e > 0 else "lowers risk"}
                 for j, e in zip(idx, row, strict=True) if e != 0]
                for idx, row in zip(top.tolist(), effects, strict=True)]


def _range_reason(f, value: float, side: str) -> str:
    return (f"{f.label} {value:g} is {side} the range the model was validated on "
            f"({f.describe_validated()}).")
