"""The routing rule: which predictions are auto-finalised and which go to a human reviewer.

Rule, in one sentence for a clinician: a prediction is auto-finalised only when the model is at
least 97.5% sure (confidence level from the spec) that the patient's true risk lies on the safe
side of the boundary for the class shown (below the safe-low bound for "low risk", at or above
the action threshold for "high risk") and no input is out of distribution; everything else goes
to review. The safe-low bound is fitted on the calibration split so that the upper 95% confidence
bound of the event rate among auto-finalised low-risk predictions stays at or below the target.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.special import ndtr


class RoutingRule(BaseModel):
    """What the manifest records about routing; read back by scoring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str
    action_threshold: float
    safe_low_bound: float
    confidence_level: float
    low_risk_event_rate_target: float
    calibration_n: int
    calibration_events: int


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def confidence(eta: np.ndarray, se: np.ndarray, *, threshold: float, safe_low: float) -> np.ndarray:
    """P(true risk on the safe side of the shown class's boundary), normal approximation on the logit.

    High class (risk >= threshold): P(true risk >= threshold).
    Low class: P(true risk < safe_low); 0 when no safe-low bound exists.
    """
    eta = np.asarray(eta, dtype=float)
    se = np.maximum(np.asarray(se, dtype=float), 1e-9)
    high = eta >= logit(threshold)
    conf_high = ndtr((eta - logit(threshold)) / se)
    conf_low = ndtr((logit(safe_low) - eta) / se) if safe_low > 0 else np.zeros_like(eta)
    return np.where(high, conf_high, conf_low)


def wilson_upper(events: int, n: int, z: float = 1.959964) -> float:
    """Upper bound of the Wilson score interval for a proportion."""
    if n == 0:
        return 1.0
    p = events / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + margin) / (1 + z * z / n)


def fit_safe_low_bound(
    eta: np.ndarray, se: np.ndarray, y: np.ndarray, *, threshold: float, level: float, target: float
) -> float:
    """The largest bound whose auto-low group's event-rate upper 95% bound is <= target."""
    best = 0.0
    for bound in np.round(np.arange(0.005, threshold + 1e-9, 0.0025), 4):
        auto_low = confidence(eta, se, threshold=threshold, safe_low=bound) >= level
        auto_low &= eta < logit(threshold)
        n = int(auto_low.sum())
        if n and wilson_upper(int(y[auto_low].sum()), n) <= target:
            best = float(bound)
    return best


def describe(rule: RoutingRule) -> str:
    """The rule in one paragraph, for the manifest, the model card and the app."""
    lvl = f"{rule.confidence_level:.1%}"
    return (
        f"Risk class is 'high' at or above the action threshold ({rule.action_threshold:.0%}). "
        f"A prediction is auto-finalised only when the model is at least {lvl} sure the patient's "
        f"true risk is on the safe side of its class boundary (below {rule.safe_low_bound:.1%} "
        f"for low risk, at or above {rule.action_threshold:.0%} for high risk) and every input is "
        "within the validated distribution; all other predictions go to clinical review. The "
        f"safe-low bound was chosen on a calibration split of {rule.calibration_n} patients so that "
        "the upper 95% bound of the hyperkalaemia rate among auto-finalised low-risk predictions "
        f"is at most {rule.low_risk_event_rate_target:.0%}."
    )
