"""Held-out evaluation: discrimination, calibration, threshold metrics, subgroups, routing."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from core.routing import logit, wilson_upper

Z95 = 1.959964
AGE_BANDS = [(18, 65, "18-64"), (65, 75, "65-74"), (75, 85, "75-84"), (85, 200, "85+")]


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


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Logistic recalibration of the outcome on logit(risk): slope 1, intercept 0 is perfect."""
    fit = LogisticRegression(C=np.inf).fit(logit(p).reshape(-1, 1), y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


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
    auc, lo, hi = auroc_ci(y, p)
    slope, intercept = calibration_slope_intercept(y, p)
    out.update({"auroc": round(auc, 4), "auroc_ci95": [round(lo, 4), round(hi, 4)],
                "brier": round(float(brier_score_loss(y, p)), 4),
                "calibration_slope": round(slope, 3), "calibration_intercept": round(intercept, 3)})
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


def subgroups(df: pd.DataFrame, y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """The same metrics by sex and by age band."""
    out: dict[str, dict] = {"sex": {}, "age_band": {}}
    if "sex" in df:
        for value in sorted(df["sex"].dropna().unique()):
            m = (df["sex"] == value).to_numpy()
            out["sex"][str(value)] = summarise(y[m], p[m], threshold)
    if "age" in df:
        for lo, hi, label in AGE_BANDS:
            m = ((df["age"] >= lo) & (df["age"] < hi)).to_numpy()
            out["age_band"][label] = summarise(y[m], p[m], threshold)
    return out
