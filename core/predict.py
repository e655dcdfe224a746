"""Prediction with everything a reviewer needs: calibrated risk, its uncertainty, confidence,
routing, out-of-distribution reasons and the inputs that moved the risk.

One code path for training's evaluation, import, single scoring and batch scoring, for any
model with predict_proba. A logistic regression trained here is computed as matrix arithmetic
(one transform, no row-by-row calls) that training checks against the pipeline's own
predict_proba; any other model's predict_proba is called once per frame.

Two ways to the model, with the same results: the pipeline itself, on a DataFrame; and the
pipeline compiled to array code (core.compiled), checked against the pipeline when the
Predictor is made. The compiled path serves the inputs of one call to core.score (`Rows`, no
DataFrame); a model frame (batch files, training, import) goes through the pipeline, whose
vectorised steps are as fast there. A version whose compiled path cannot be made or does not
pass its check is served by its pipeline alone; `scoring_path` says which and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import compiled, explain, routing, uncertainty
from core.errors import ArtefactMismatch, NotCompiled
from core.features import Rows, model_frame, model_rows, output_owners
from core.spec import Spec

log = logging.getLogger(__name__)

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
        self.reference_rows = model_rows([stats["reference"]], spec)
        self.fast, self.scoring_path = _compiled(model, spec, stats, self.linear)
        # Absent only while a version is being built: its neighbours come from these logits.
        self.neighbours = (uncertainty.Neighbours(stats["neighbourhood"])
                           if "neighbourhood" in stats else None)
        self.recalibration = stats.get("recalibration")  # {"intercept", "slope"} on the logit
        self.reference = stats["reference"]
        self.novelty = stats["novelty"]
        self.nov_mean = np.asarray(self.novelty["mean"])
        self.nov_precision = np.asarray(self.novelty["precision"])
        self.nov_median = np.asarray(self.novelty["median"])
        self._novelty_labels = [spec.feature(n).label for n in self.novelty["features"]]
        # The input checks of _reasons: each feature, with its validated categories as a set.
        self._checks = [(f, frozenset(f.validated_categories)
                         if f.type == "category" and f.validated_categories else None)
                        for f in spec.features]

    def transform(self, x: pd.DataFrame | Rows, fast: bool = False) -> np.ndarray:
        """The delta-method model's transformed inputs (its pipeline's preprocessing)."""
        if fast:
            return self.fast.transform(Rows.of(x))
        return self.linear.pre.transform(x.frame if isinstance(x, Rows) else x)

    def logit(self, frame: pd.DataFrame | Rows, z: np.ndarray | None = None, *,
              fast: bool = False) -> np.ndarray:
        """The calibrated log-odds of each row (after the recorded recalibration, if any);
        `fast`: by the compiled path (NotCompiled for a value only the pipeline handles)."""
        if self.linear is not None:
            return self.linear.eta(self.transform(frame, fast) if z is None else z)
        try:
            if fast:
                p = self.fast.proba(Rows.of(frame))
            else:
                p = np.asarray(self.model.predict_proba(
                    frame.frame if isinstance(frame, Rows) else frame), dtype=float)[:, 1]
        except NotCompiled:
            raise
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

    def distribution(self, frame: pd.DataFrame | Rows, eta: np.ndarray,
                     z: np.ndarray | None = None, own: np.ndarray | None = None):
        """The uncertainty of each row's true risk (core.uncertainty); `own`: the outcomes of
        calibration patients scored against their own split (left out of their neighbours)."""
        if self.linear is not None:
            return uncertainty.Normal(eta, self.linear.se(self.transform(frame) if z is None else z))
        return self.neighbours.distribution(eta, own)

    def predict(self, x: pd.DataFrame | Rows) -> Predictions:
        """Predictions for a model frame (through the pipeline) or for Rows (through the
        compiled path when the version has one; the pipeline for a value it leaves to it)."""
        rows = Rows.of(x)
        if self.fast is not None and isinstance(x, Rows):
            try:
                return self._predict(rows, fast=True)
            except NotCompiled:
                pass  # e.g. a category the team's encoder refuses: the pipeline says how
        return self._predict(rows, fast=False)

    def held_out_check(self, frame: pd.DataFrame) -> dict | None:
        """The compiled path against the pipeline on a version's held-out test split, for its
        statistics.json when it is built (a disagreement there makes it serve by its pipeline);
        None when it has no compiled path."""
        if self.fast is None:
            return None
        found = compiled.check(self.fast, self.model, self.spec, self.reference,
                               None if self.linear is None else self.linear.pre,
                               rows=Rows.of(frame), what="held-out test rows")
        worst = found.max_difference
        return {"agrees": found.compiled, "rows": found.rows,
                "max_difference": worst if worst is not None and np.isfinite(worst) else None,
                "detail": found.detail}

    def _predict(self, rows: Rows, *, fast: bool) -> Predictions:
        z = self.transform(rows, fast) if self.linear is not None else None
        if z is None and fast:
            # One model call for the risk and the factors: the rows, then one copy per input
            # with that input at its typical value (core.explain).
            eta_all = self.logit(explain.perturbed(rows, self.spec, self.reference_rows), fast=True)
            eta, effects = eta_all[:len(rows)], explain.effects_of(eta_all, len(rows), self.spec)
        else:
            eta = self.logit(rows, z)
            effects = self.effects(rows, z)
        dist = self.distribution(rows, eta, z)
        risk = 1 / (1 + np.exp(-eta))
        t, lo = self.rule.action_threshold, self.rule.safe_low_bound
        conf = routing.confidence(dist, eta, threshold=t, safe_low=lo)
        texts, codes = self._reasons(rows, risk, conf)
        low, high = dist.interval()
        return Predictions(
            risk=risk, risk_low=low, risk_high=high,
            risk_class=np.where(risk >= t, "high", "low"),
            confidence=conf,
            review=np.fromiter(map(bool, codes), dtype=bool, count=len(codes)),
            reasons=texts,
            reason_codes=codes,
            factors=explain.top_factors(effects, self.spec),
        )

    def effects(self, frame: pd.DataFrame | Rows, z: np.ndarray | None = None) -> np.ndarray:
        """Per row and input: the change in log-odds from the input's typical value
        (core.explain); for the linear model from its coefficients, exactly."""
        if self.linear is not None:
            lin = self.linear
            z = self.transform(frame) if z is None else z
            return explain.linear_effects(z, lin.z_reference, -lin.a * lin.w, lin.owners, self.spec)
        frame = frame.frame if isinstance(frame, Rows) else frame
        return explain.perturbation_effects(self.logit, frame, self.spec, self.reference)

    def _reasons(self, frame: Rows, risk: np.ndarray, conf: np.ndarray
                 ) -> tuple[list[list[str]], list[list[str]]]:
        """Plain-language reasons and their codes (REASON_CODES), row by row, in step."""
        texts: list[list[str]] = [[] for _ in range(len(frame))]
        codes: list[list[str]] = [[] for _ in range(len(frame))]

        def add(rows, code: str, text) -> None:
            for i in rows:
                texts[i].append(text(i) if callable(text) else text)
                codes[i].append(code)

        # Each check's rows are looked for only where the check fires (one patient: no index
        # arrays at all, the common case of a reason-free score costs a comparison per input).
        uncertain = conf < self.rule.confidence_level
        if uncertain.any():
            add(np.flatnonzero(uncertain), "uncertain",
                lambda i: self._uncertain_reason(risk[i], conf[i]))
        for f, validated in self._checks:
            col = frame[f.name]
            if f.numeric:
                v = np.asarray(col, dtype=float)
                if not f.required and (missing := np.isnan(v)).any():
                    add(np.flatnonzero(missing), "missing_value",
                        f"{f.label} was not given; the model filled in a typical value.")
                if f.validated_min is not None:
                    if (below := v < f.validated_min).any():
                        add(np.flatnonzero(below), "outside_validated_range",
                            lambda i, f=f, v=v: _range_reason(f, v[i], "below"))
                    if (above := v > f.validated_max).any():
                        add(np.flatnonzero(above), "outside_validated_range",
                            lambda i, f=f, v=v: _range_reason(f, v[i], "above"))
            elif validated is not None:
                rare = [i for i, c in enumerate(col.tolist())
                        if c not in validated and not _missing(c)]
                add(rare, "rare_category",
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

    def _novel(self, frame: Rows) -> list[tuple[int, list[str]]]:
        names = self.novelty["features"]
        if not names:
            return []
        x = np.column_stack([frame[n] for n in names]).astype(float)
        x = np.where(np.isnan(x), self.nov_median, x)
        d = x - self.nov_mean
        per_feature = d * (d @ self.nov_precision)
        score = per_feature.sum(axis=1)
        hits = np.flatnonzero(score > self.novelty["threshold"])
        labels = self._novelty_labels
        return [(i, [labels[j] for j in np.argsort(-per_feature[i])[:2]]) for i in hits]


def _compiled(model, spec: Spec, stats: dict, linear: LinearView | None
              ) -> tuple[compiled.Compiled | None, compiled.Check]:
    """The version's compiled path if it reproduces the pipeline (core.compiled.check), else
    None; and what was found, which is logged. A version whose compiled path differed from its
    pipeline on the held-out test split when it was built (statistics.json's
    "compiled_check", written by held_out_check) is served by its pipeline."""
    name = spec.model_name
    built = stats.get("compiled_check")
    try:
        fast = compiled.compile_model(model, spec)
    except NotCompiled as exc:
        found = compiled.Check(False, f"not compiled: {exc}")
    else:
        found = compiled.check(fast, model, spec, stats["reference"],
                               None if linear is None else linear.pre)
        if found.compiled and built is not None and not built["agrees"]:
            found = compiled.Check(False, "the compiled path differed from the pipeline on the "
                                          f"held-out test split when the version was built: "
                                          f"{built['detail']}")
    if not found.compiled:
        log.warning("%s: served by its pipeline (%s)", name, found.detail)
        return None, found
    log.info("%s: %s", name, found.detail)
    return fast, found


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _range_reason(f, value: float, side: str) -> str:
    return (f"{f.label} {value:g} is {side} the range the model was validated on "
            f"({f.describe_validated()}).")
