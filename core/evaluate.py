"""Held-out evaluation: discrimination, calibration, threshold metrics, subgroups, routing."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from core.routing import logit, wilson_upper
from core.spec import Feature, Spec

Z95 = 1.959964


def auroc_ci(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """AUROC with its 95% CI by DeLong's method (fast placement values, Sun and Xu 2014).

    Analytic and deterministic: the same data always give the same interval, and a million
    outcomes take well under a second, so the monitoring page can afford it."""
    y = np.asarray(y).astype(bool)
    pos, neg = np.asarray(p, dtype=float)[y], np.asarray(p, dtype=float)[~y]
    m, n = len(pos), len(neg)
    both = rankdata(np.concatenate([pos, neg]))
    auc = (both[:m].sum() - m * (m + 1) / 2) / (m * n)
    v01 = (both[:m] - rankdata(pos)) / n  # for each positive: share of negatives ranked below
    v10 = 1 - (both[m:] - rankdata(neg)) / m  # for each negative: share of positives above
    se = np.sqrt(v01.var(ddof=1) / m + v10.var(ddof=1) / n)
    return float(auc), float(max(0.0, auc - Z95 * se)), float(min(1.0, auc + Z95 * se))


def calibration_slope(y: np.ndarray, p: np.ndarray) -> float:
    """Logistic recalibration of the outcome on logit(risk): a slope of 1 is perfect, below 1 the
    risks are too extreme, above 1 too modest."""
    from sklearn.linear_model import LogisticRegression  # here: only a metric's computation needs it

    fit = LogisticRegression(C=np.inf).fit(logit(p).reshape(-1, 1), y)
    return float(fit.coef_[0, 0])


def calibration_in_the_large(y: np.ndarray, p: np.ndarray) -> float:
    """The calibration intercept as TRIPOD readers expect it: the intercept of a logistic model
    of the outcome with logit(risk) as an offset (slope fixed at 1). 0 is perfect; above 0 the
    model underestimates risk on average, below 0 it overestimates it. Newton's method on one
    parameter: the log-likelihood is concave."""
    y, offset = np.asarray(y, dtype=float), logit(p)
    a = 0.0
    for _ in range(100):
        q = 1 / (1 + np.exp(-(a + offset)))
        step = (y - q).sum() / max(float((q * (1 - q)).sum()), 1e-12)
        a += step
        if abs(step) < 1e-12:
            break
    return float(a)


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    pos = p >= threshold
    tp, fp = int((pos & (y == 1)).sum()), int((pos & (y == 0)).sum())
    fn, tn = int((~pos & (y == 1)).sum()), int((~pos & (y == 0)).sum())

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    return {"sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
            "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def summarise(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Every headline metric for one group of patients."""
    out = {"n": int(len(y)), "events": int(y.sum()),
           "event_rate": round(float(y.mean()), 4) if len(y) else None,
           "mean_predicted_risk": round(float(p.mean()), 4) if len(y) else None}
    if len(y) < 50 or y.sum() < 5 or y.sum() == len(y):
        out["note"] = "too few patients or events for stable estimates"
        out.update(threshold_metrics(y, p, threshold))
        return out
    from sklearn.metrics import brier_score_loss  # here: only computing it needs scikit-learn

    auc, lo, hi = auroc_ci(y, p)
    out.update({"auroc": round(auc, 4), "auroc_ci95": [round(lo, 4), round(hi, 4)],
                "brier": round(float(brier_score_loss(y, p)), 4),
                "calibration_slope": round(calibration_slope(y, p), 3),
                "calibration_in_the_large": round(calibration_in_the_large(y, p), 3)})
    out.update(threshold_metrics(y, p, threshold))
    return out


def calibration_deciles(y: np.ndarray, p: np.ndarray) -> list[dict]:
    order = np.argsort(p, kind="mergesort")
    return [{"decile": i + 1, "n": int(len(b)), "mean_predicted": round(float(p[b].mean()), 4),
             "observed": round(float(y[b].mean()), 4)}
            for i, b in enumerate(np.array_split(order, 10))]


def routing_outcomes(y: np.ndarray, risk_class: np.ndarray, review: np.ndarray) -> dict:
    """How the routing rule behaved on held-out patients."""
    n = len(y)
    auto_low = (risk_class == "low") & ~review
    auto_high = (risk_class == "high") & ~review
    low_events = int(y[auto_low].sum())
    return {
        "n": n,
        "share_auto_low": round(float(auto_low.mean()), 4),
        "share_auto_high": round(float(auto_high.mean()), 4),
        "share_review": round(float(review.mean()), 4),
        "event_rate_auto_low": round(low_events / max(int(auto_low.sum()), 1), 4),
        "event_rate_auto_low_upper95": round(wilson_upper(low_events, int(auto_low.sum())), 4),
        "event_rate_auto_high": round(float(y[auto_high].mean()), 4) if auto_high.any() else None,
        "event_rate_review": round(float(y[review].mean()), 4) if review.any() else None,
    }


def subgroups(df: pd.DataFrame, y: np.ndarray, p: np.ndarray, threshold: float,
              spec: Spec) -> dict:
    """The same metrics for each group of each subgroup feature the spec names: its values
    (categories, yes/no) or its bands (numbers)."""
    out: dict[str, dict] = {}
    for group in spec.subgroups:
        f = spec.feature(group.feature)
        col = df[f.name]
        out[f.name] = {label: summarise(y[m], p[m], threshold)
                       for label, m in group_masks(f, col, group.bands or [])}
    return out


def group_masks(f: Feature, col: pd.Series, cuts: list[float]):
    """(label, mask) of each group of a subgroup feature: yes/no, its categories, or its bands."""
    if f.type == "boolean":
        for value, label in ((True, "yes"), (False, "no")):
            yield label, (col == value).to_numpy()
    elif f.type == "category":
        for value in f.categories:
            m = (col == value).to_numpy()
            if m.any():
                yield str(value), m
    else:
        for label, lo, hi in band_labels(f, cuts):
            yield label, ((col >= lo) & (col < hi)).to_numpy()


def band_labels(f: Feature, cuts: list[float]) -> list[tuple[str, float, float]]:
    """(label, low, high) of each band: low <= value < high, e.g. '18-64' for whole numbers."""
    edges = [f.hard_min, *cuts, np.inf]
    out = []
    for i, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False)):
        if hi == np.inf:
            label = f"{lo:g}+"
        elif f.type == "integer":
            label = f"{lo:g}-{hi - 1:g}"
        else:
            label = f"<{hi:g}" if i == 0 else f"{lo:g} to <{hi:g}"
        out.append((label, lo, hi))
    return out


# ---- curves for the model card's figures (calibration, ROC, decision curve) ----------------

def wilson(events: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p, z = events / n, Z95
    centre = p + z * z / (2 * n)
    margin = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, (centre - margin) / (1 + z * z / n))), \
        float(min(1.0, (centre + margin) / (1 + z * z / n)))


def calibration_groups(y: np.ndarray, p: np.ndarray, groups: int = 10) -> list[dict]:
    """Observed against mean predicted risk in equal-sized risk groups, with the observed
    rate's 95% interval."""
    order = np.argsort(p, kind="mergesort")
    out = []
    for i, b in enumerate(np.array_split(order, groups)):
        events = int(y[b].sum())
        lo, hi = wilson(events, len(b))
        out.append({"group": i + 1, "n": int(len(b)), "events": events,
                    "mean_predicted": round(float(p[b].mean()), 4),
                    "observed": round(events / len(b), 4), "observed_ci95": [round(lo, 4), round(hi, 4)]})
    return out


def roc_points(y: np.ndarray, p: np.ndarray, max_points: int = 101) -> dict:
    """The ROC curve (false and true positive rates by threshold), thinned to at most
    `max_points` points that keep its ends."""
    from sklearn.metrics import roc_curve  # here: only computing it needs scikit-learn

    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=True)
    keep = np.unique(np.round(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr)))).astype(int))
    return {"fpr": [round(float(v), 4) for v in fpr[keep]],
            "tpr": [round(float(v), 4) for v in tpr[keep]],
            "threshold": [round(float(min(v, 1.0)), 4) for v in thresholds[keep]]}


def decision_thresholds(action_threshold: float) -> list[float]:
    """The thresholds a decision curve spans: 1% up to three times the action threshold (at
    least 30%, at most 95%), in steps of 1%, and the action threshold itself."""
    upper = min(0.95, max(0.30, 3 * action_threshold))
    steps = {round(float(t), 2) for t in np.arange(0.01, upper + 1e-9, 0.01)}
    return sorted(steps | {round(float(action_threshold), 4)})


def net_benefit(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float]:
    """(net benefit of acting on the model, of treating everyone) at a threshold probability:
    true positives minus false positives weighted by the threshold's odds, per patient."""
    n, odds = len(y), threshold / (1 - threshold)
    act = p >= threshold
    tp, fp = int((act & (y == 1)).sum()), int((act & (y == 0)).sum())
    prevalence = float(y.mean())
    return tp / n - fp / n * odds, prevalence - (1 - prevalence) * odds


def decision_curve(y: np.ndarray, p: np.ndarray, action_threshold: float) -> list[dict]:
    out = []
    for t in decision_thresholds(action_threshold):
        model, everyone = net_benefit(y, p, t)
        out.append({"threshold": t, "model": round(model, 5), "treat_all": round(everyone, 5)})
    return out


def curves(y: np.ndarray, p: np.ndarray, action_threshold: float) -> dict:
    """What the model card draws, computed on the held-out split at build time."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    both = 0 < int(y.sum()) < len(y)  # a ROC curve needs events and non-events
    return {"calibration": calibration_groups(y, p), "roc": roc_points(y, p) if both else None,
            "decision_curve": decision_curve(y, p, action_threshold)}
