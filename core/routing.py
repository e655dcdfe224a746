"""The routing rule: which predictions are auto-finalised and which go to a human reviewer.

Rule, in one sentence for a clinician: a prediction is auto-finalised only when the model is at
least 97.5% sure (confidence level from the spec) that the patient's true risk lies on the safe
side of the boundary for the class shown (below the safe-low bound for "low risk", at or above
the action threshold for "high risk") and no input is out of distribution; everything else goes
to review. The safe-low bound is fitted on the calibration split so that the upper 95% confidence
bound of the event rate among auto-finalised low-risk predictions stays at or below the target.
How sure the model is comes from core.uncertainty (delta method or held-out neighbours).

The rule never fails silently: when the calibration split cannot support the target, or the
held-out test split's upper bound misses it, training and import warn, record the warning, and
fall back to the safe behaviour: a safe-low bound of 0, so no low-risk prediction is
auto-finalised (every one goes to review).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

FALLBACK = ("Fallback in force: no low-risk prediction is auto-finalised; every low-risk "
            "result goes to clinical review (high-risk results are still auto-finalised when "
            "the model is confident).")


class RoutingRule(BaseModel):
    """What the manifest records about routing; read back by scoring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str
    uncertainty: Literal["delta_method", "held_out_neighbours"] = "delta_method"
    action_threshold: float
    safe_low_bound: float
    confidence_level: float
    low_risk_event_rate_target: float
    calibration_n: int
    calibration_events: int


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def confidence(dist, eta: np.ndarray, *, threshold: float, safe_low: float) -> np.ndarray:
    """P(true risk on the safe side of the shown class's boundary), from an uncertainty
    distribution (core.uncertainty.Normal or Beta).

    High class (risk >= threshold): P(true risk >= threshold).
    Low class: P(true risk < safe_low); 0 when no safe-low bound exists.
    """
    eta = np.asarray(eta, dtype=float)
    high = eta >= logit(threshold)
    conf_low = dist.p_below(safe_low) if safe_low > 0 else np.zeros_like(eta)
    return np.where(high, dist.p_above(threshold), conf_low)


def wilson_upper(events: int, n: int, z: float = 1.959964) -> float:
    """Upper bound of the Wilson score interval for a proportion."""
    if n == 0:
        return 1.0
    p = events / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + margin) / (1 + z * z / n)


def smallest_supporting_group(target: float) -> int:
    """Patients an auto-low group needs, even with no event at all, for the upper 95% bound of
    its event rate to reach the target."""
    n = 1
    while wilson_upper(0, n) > target:
        n += 1
    return n


def fit_safe_low_bound(p_below: Callable[[float], np.ndarray], low: np.ndarray, y: np.ndarray, *,
                       threshold: float, level: float, target: float) -> float:
    """The largest bound whose auto-low group's event-rate upper 95% bound is <= target
    (0.0 when none: the fallback). `p_below(bound)`: each calibration patient's P(true risk <
    bound); `low`: whether their predicted risk is below the action threshold."""
    best = 0.0
    for bound in np.round(np.arange(0.005, threshold + 1e-9, 0.0025), 4):
        auto_low = (p_below(float(bound)) >= level) & low
        n = int(auto_low.sum())
        if n and wilson_upper(int(y[auto_low].sum()), n) <= target:
            best = float(bound)
    return best


def share(x: float) -> str:
    """A target or threshold as a percentage without needless digits: 6%, 6.5%."""
    return f"{round(x * 100, 2):g}%"


def describe(rule: RoutingRule, event: str) -> str:
    """The rule in one paragraph, for the manifest, the model card and the app."""
    lvl = f"{rule.confidence_level:.1%}"
    text = (
        f"Risk class is 'high' at or above the action threshold ({rule.action_threshold:.0%}). "
        f"A prediction is auto-finalised only when the model is at least {lvl} sure the patient's "
        "true risk is on the safe side of its class boundary (")
    if rule.safe_low_bound > 0:
        text += f"below {rule.safe_low_bound:.1%} for low risk, "
    text += (f"at or above {rule.action_threshold:.0%} for high risk) and every input is within "
             "the validated distribution; all other predictions go to clinical review. ")
    if rule.safe_low_bound > 0:
        return text + (
            f"The safe-low bound was chosen on a calibration split of {rule.calibration_n} "
            f"patients so that the upper 95% bound of the {event} rate among auto-finalised "
            f"low-risk predictions is at most {share(rule.low_risk_event_rate_target)}.")
    return text + (
        f"No safe-low bound could be shown to keep the upper 95% bound of the {event} rate among "
        f"auto-finalised low-risk predictions at or below {share(rule.low_risk_event_rate_target)} "
        f"(calibration split of {rule.calibration_n} patients). " + FALLBACK)
