"""Prediction with everything a reviewer needs: calibrated risk, its uncertainty, confidence,
routing, out-of-distribution reasons and the inputs that moved the risk.

One code path for training's evaluation, import, single scoring and batch scoring, for any
model with predict_proba. A logistic regression trained here is computed as matrix arithmetic
(one transform, no row-by-row calls) that training checks against the pipeline's own
predict_proba; any other model's predict_proba is called once per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import explain, routing, uncertainty
from core.errors import ArtefactMismatch
from core.features import model_frame, output_owners
from core.spec import Spec

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


class LinearView:
    """A sigmoid-calibrated logistic regression trained here, as arithmetic on its transformed
    inputs: the calibrated logit is -(a * (z . w + b0) + b) (sklearn's sigmoid calibration)."""

    def __init__(self, pipeline, spec: Spec, stats: dict):
        self.pre = pipeline.named_steps["preprocess"]
        calibrated = pipeline.named_steps["classifier"].calibrated_classifiers_[0]
        lr = calibrated.estimator.estimator  # FrozenEstimator -> LogisticRegression
        sig = calibrated.calibrators[0]
        self.w, self.b0 = lr.coef_.ravel(), float(lr.intercept_[0])
        self.a, self.b = float(sig.a_), float(sig.b_)
        self.cov = np.asarray(stats["coef_covariance"])
        self.owners = output_owners(self.pre, spec)
        self.z_reference = self.pre.transform(model_frame([stats["reference"]], spec))

    def eta(self, z: np.ndarray) -> np.ndarray:
        return -(self.a * (z @ self.w + self.b0) + self.b)

    def se(self, z: np.ndarray) -> np.ndarray:
        """Standard error of the calibrated logit: the delta method on the coefficients."""
        design = np.hstack([np.ones((len(z), 1)), z])
        return abs(self.a) * np.sqrt(np.einsum("ij,jk,ik->i", design, self.cov, design))


class Predictor:
    """A loaded artefact's model plus the statistics it shipped with."""

    def __init__(self, model, spec: Spec, stats: dict, rule: routing.RoutingRule):
        self.model, self.spec, self.rule = model, spec, rule
        self.linear = LinearView(model, spec, stats) if rule.uncertainty == "delta_method" else None
        # Absent only while a version is being built: its neighbours come from these logits.
        self.neighbours = (uncertainty.Neighbours(stats["neighbourhood"])
                           if "neighbourhood" in stats else None)
        self.recalibration = stats.get("recalibration")  # {"intercept", "slope"} on the logit
        self.reference = stats["reference"]
        self.novelty = stats["novelty"]
        self.nov_mean = np.asarray(self.novelty["mean"])
        self.nov_precision = np.asarray(self.novelty["precision"])
        self.nov_median = np.asarray(self.novelty["median"])

    def logit(self, frame: pd.DataFrame, z: np.ndarray | None = None) -> np.ndarray:
        """The calibrated log-odds of each row (after the recorded recalibration, if any)."""
        if self.linear is not None:
            return self.linear.eta(self.linear.pre.transform(frame) if z is None else z)
        try:
            p = np.asarray(self.model.predict_proba(frame), dtype=float)[:, 1]
        except Exception as exc:  # the team's own model: anything may go wrong inside it
            raise ArtefactMismatch(f"the model's predict_proba failed: {exc}") from exc
        bad = ~np.isfinite(p) | (p < 0) | (p > 1)
        if bad.any():
            raise ArtefactMismatch(f"the model returned {int(bad.sum())} probabilities that are "
                                   "not between 0 and 1; nothing was scored")
        eta = routing.logit(p)
        if self.recalibration:
            eta = self.recalibration["intercept"] + self.recalibration["slope"] * eta
        return eta

    def distribution(self, frame: pd.DataFrame, eta: np.ndarray, z: np.ndarray | None = None,
                     own: np.ndarray | None = None):
        """The uncertainty of each row's true risk (core.uncertainty); `own`: the outcomes of
        calibration patients scored against their own split (left out of their neighbours)."""
        if self.linear is not None:
            return uncertainty.Normal(eta, self.linear.se(self.linear.pre.transform(frame)
                                                          if z is None else z))
        return self.neighbours.distribution(eta, own)

    def predict(self, frame: pd.DataFrame) -> Predictions:
        z = self.linear.pre.transform(frame) if self.linear is not None else None
        eta = self.logit(frame, z)
        dist = self.distribution(frame, eta, z)
        risk = 1 / (1 + np.exp(-eta))
        t, lo = self.rule.action_threshold, self.rule.safe_low_bound
        conf = routing.confidence(dist, eta, threshold=t, safe_low=lo)
        texts, codes = self._reasons(frame, risk, conf)
        low, high = dist.interval()
        return Predictions(
            risk=risk, risk_low=low, risk_high=high,
            risk_class=np.where(risk >= t, "high", "low"),
            confidence=conf,
            review=np.fromiter(map(bool, codes), dtype=bool, count=len(codes)),
            reasons=texts,
            reason_codes=codes,
            factors=explain.top_factors(self.effects(frame, z), self.spec),
        )

    def effects(self, frame: pd.DataFrame, z: np.ndarray | None = None) -> np.ndarray:
        """Per row and input: the change in log-odds from the input's typical value
        (core.explain); for the linear model from its coefficients, exactly."""
        if self.linear is not None:
            lin = self.linear
            z = lin.pre.transform(frame) if z is None else z
            return explain.linear_effects(z, lin.z_reference, -lin.a * lin.w, lin.owners, self.spec)
        return explain.perturbation_effects(self.logit, frame, self.spec, self.reference)

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
        if lo == 0:
            return (f"Risk {risk:.1%} is below the action threshold, but this model version "
                    "auto-finalises no low-risk result (its routing rule's safe fallback).")
        return (f"Risk {risk:.1%} is not clearly below the safe-low bound ({lo:.1%}) for "
                f"auto-finalising a low-risk result (confidence {conf:.0%}).")

    def _novel(self, frame: pd.DataFrame) -> list[tuple[int, list[str]]]:
        names = self.novelty["features"]
        if not names:
            return []
        x = frame[names].to_numpy(dtype=float)
        x = np.where(np.isnan(x), self.nov_median, x)
        d = x - self.nov_mean
        per_feature = d * (d @ self.nov_precision)
        score = per_feature.sum(axis=1)
        hits = np.flatnonzero(score > self.novelty["threshold"])
        labels = [self.spec.feature(n).label for n in names]
        return [(i, [labels[j] for j in np.argsort(-per_feature[i])[:2]]) for i in hits]


def _range_reason(f, value: float, side: str) -> str:
    return (f"{f.label} {value:g} is {side} the range the model was validated on "
            f"({f.describe_validated()}).")
