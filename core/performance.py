"""Real-world performance from recorded outcomes: by routing group, month by month, for each
subgroup the model's spec names, and who was right on overrides.

A group with fewer outcomes than the minimum (settings.min_outcomes_for_metrics, with at least
MIN_EVENTS events and as many non-events) is reported as too few, with its counts only: an
AUROC or an observed rate from a handful of patients means nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core import evaluate
from core.spec import Feature, Spec

MIN_EVENTS = 10
ROUTING_GROUPS = {"all": None, "auto_finalised": "auto_finalised", "reviewed": "review"}
NOT_RECORDED = "not recorded"  # a subgroup value missing from the inputs (or removed by a purge)


def too_few(n: int, events: int, minimum: int) -> str | None:
    """Why a group's estimates would mean nothing, or None when it has enough."""
    if n < minimum or events < MIN_EVENTS or n - events < MIN_EVENTS:
        return (f"Too few outcomes for stable estimates: {n} with {events} events (need {minimum} "
                f"with at least {MIN_EVENTS} events and {MIN_EVENTS} without).")
    return None


def summary(y: np.ndarray, p: np.ndarray, minimum: int, *, deciles: bool = False) -> dict:
    """Counts always; with enough outcomes, AUROC with its 95% CI, Brier score, observed and mean
    predicted risk, the calibration intercept and slope (and the deciles when asked)."""
    n, events = int(len(y)), int(y.sum())
    out: dict = {"n": n, "events": events}
    reason = too_few(n, events, minimum)
    if reason:
        out["too_few"] = reason
        return out
    auc, lo, hi = evaluate.auroc_ci(y, p)
    out.update({"auroc": round(auc, 3), "auroc_ci95": [round(lo, 3), round(hi, 3)],
                "brier": round(float(np.mean((p - y) ** 2)), 4),
                "observed": round(events / n, 4), "mean_predicted": round(float(p.mean()), 4),
                "calibration_in_the_large": round(evaluate.calibration_in_the_large(y, p), 3),
                "calibration_slope": round(evaluate.calibration_slope(y, p), 3)})
    if deciles:
        out["calibration"] = evaluate.calibration_deciles(y, p)
    return out


def _arrays(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return g["event"].to_numpy(dtype=int), g["risk"].to_numpy(dtype=float)


def performance(pairs: pd.DataFrame, minimum: int, spec: Spec | None = None) -> dict:
    """Observed against predicted by routing group, by month and by the spec's subgroups; and
    who was right on overrides. `pairs`: Store.outcome_pairs with the subgroups' features."""
    groups = {name: pairs if routing is None else pairs[pairs["routing"] == routing]
              for name, routing in ROUTING_GROUPS.items()}
    return {"groups": {name: summary(*_arrays(g), minimum, deciles=True) for name, g in groups.items()},
            "by_month": by_month(pairs, minimum),
            "subgroups": subgroups(pairs, minimum, spec) if spec is not None else {},
            "overrides": who_was_right(pairs)}


def by_month(pairs: pd.DataFrame, minimum: int) -> pd.DataFrame:
    """Per calendar month of the prediction: outcomes, events, and (enough outcomes only) the
    observed rate with its 95% interval, the mean predicted risk and the calibration intercept."""
    columns = ["month", "outcomes", "events", "observed", "observed_low", "observed_high",
               "mean_predicted", "calibration_in_the_large", "too_few"]
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    month = pd.to_datetime(pairs["created_at"]).dt.to_period("M").dt.to_timestamp()
    rows = []
    for start, g in pairs.groupby(month, sort=True):
        y, p = _arrays(g)
        n, events = len(y), int(y.sum())
        row = {"month": start.date(), "outcomes": n, "events": events, "too_few": too_few(n, events, minimum)}
        if row["too_few"] is None:
            lo, hi = evaluate.wilson(events, n)
            row.update({"observed": round(events / n, 4), "observed_low": round(lo, 4),
                        "observed_high": round(hi, 4), "mean_predicted": round(float(p.mean()), 4),
                        "calibration_in_the_large": round(evaluate.calibration_in_the_large(y, p), 3)})
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def subgroup_values(f: Feature, text: pd.Series) -> pd.Series:
    """A feature's recorded text (Store.outcome_pairs) as the values its groups are cut from."""
    if f.type == "boolean":
        return text.map({"true": True, "false": False})
    if f.type == "category":
        return text
    return pd.to_numeric(text, errors="coerce")


def subgroups(pairs: pd.DataFrame, minimum: int, spec: Spec) -> dict[str, pd.DataFrame]:
    """For each subgroup feature of the spec: one row per group (and one for outcomes whose
    inputs do not record it), with counts and, where there are enough, the metrics."""
    out: dict[str, pd.DataFrame] = {}
    if pairs.empty:
        return out
    for group in spec.subgroups:
        f = spec.feature(group.feature)
        column = f"input.{f.name}"
        if column not in pairs:
            continue
        values = subgroup_values(f, pairs[column])
        rows, covered = [], np.zeros(len(pairs), dtype=bool)
        for label, mask in evaluate.group_masks(f, values, group.bands or []):
            covered |= mask
            rows.append({"group": label, **_flat(summary(*_arrays(pairs[mask]), minimum))})
        if (~covered).any():
            rows.append({"group": NOT_RECORDED, **_flat(summary(*_arrays(pairs[~covered]), minimum))})
        out[f.name] = pd.DataFrame(rows, columns=["group", *SUBGROUP_COLUMNS])
        out[f.name].attrs['label'] = f.label
    return out


SUBGROUP_COLUMNS = ("outcomes", "events", "auroc", "auroc_low", "auroc_high", "observed",
                    "mean_predicted", "calibration_in_the_large", "too_few")


def _flat(s: dict) -> dict:
    ci = s.get("auroc_ci95") or [None, None]
    return {"outcomes": s["n"], "events": s["events"], "auroc": s.get("auroc"), "auroc_low": ci[0],
            "auroc_high": ci[1], "observed": s.get("observed"), "mean_predicted": s.get("mean_predicted"),
            "calibration_in_the_large": s.get("calibration_in_the_large"), "too_few": s.get("too_few")}


def who_was_right(pairs: pd.DataFrame) -> pd.DataFrame:
    """Overrides with an outcome, by direction: how often the reviewer's and the model's class
    matched the outcome."""
    over = pairs[pairs["direction"].isin(["upgrade", "downgrade"])]
    rows = []
    for direction in ("upgrade", "downgrade"):
        g = over[over["direction"] == direction]
        event = g["event"].astype(bool)
        rows.append({"direction": direction, "overrides_with_outcome": len(g),
                     "reviewer_right": int(((g["reviewer_class"] == "high") == event).sum()),
                     "model_right": int(((g["risk_class"] == "high") == event).sum())})
    return pd.DataFrame(rows)
