"""Monitoring for the PI: override rates, routing, backlog, and real-world performance.

Every figure is a SQL aggregate over the raw records (store.agg_*), so only chart-sized frames
leave the store. Real-world performance needs outcomes; with too few, it says so plainly.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from core import artifacts, evaluate
from core.clock import now_utc
from core.config import Settings, get_settings
from core.errors import SpecError
from core.scoring import UNKNOWN_FIELD, known_fields
from core.store import Store, open_store

MIN_EVENTS = 10


@dataclass
class Alert:
    direction: str  # 'upgrade' or 'downgrade'
    share: float
    overridden: int
    reviewed: int
    window_days: int
    top_reasons: list[tuple[str, int]]

    def message(self) -> str:
        words = {"upgrade": "upgraded from low to high risk",
                 "downgrade": "downgraded from high to low risk"}[self.direction]
        reasons = "; ".join(f"{r} ({n})" for r, n in self.top_reasons)
        return (f"{self.share:.0%} of the {self.reviewed} cases reviewed in the last "
                f"{self.window_days} days were {words} by reviewers ({self.overridden} cases). "
                f"The model may have a failure mode to address at the next retraining. "
                f"Most common reasons: {reasons}.")


@dataclass
class Dashboard:
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    expected_review_share: dict[str, float] = field(default_factory=dict)
    performance: dict = field(default_factory=dict)


def dashboard(*, start: datetime, end: datetime, model_version: str | None = None,
              now: datetime | None = None, store: Store | None = None) -> Dashboard:
    """Every aggregate the monitoring page shows, for [start, end) and one or all versions."""
    settings = get_settings()
    store = store or open_store(settings.db)
    now = now or now_utc()
    f = (start, end, model_version)
    frames = {
        "override_rate_by_week": _with_rates(store.agg_override_weekly(f)),
        "override_reasons": store.agg_reason_codes(f),
        "predictions_per_day": store.agg_predictions_daily(f),
        "review_share": store.agg_review_share(f),
        "review_reasons": store.agg_ood_reasons(f),
        "review_backlog": store.agg_backlog(f, now),
        "time_to_decision": store.agg_time_to_decision(f),
        "decisions_per_reviewer": store.agg_reviewer_workload(f),
        "rejected_fields": store.agg_rejected_fields(f, sorted(_known_fields(settings.models)),
                                                     UNKNOWN_FIELD),
    }
    expected = {}
    for version in frames["review_share"]["model_version"]:
        manifest = artifacts.manifest_of(settings.models, version)
        expected[version] = manifest["routing"]["expected_review_share"]
    share = frames["review_share"]
    if not share.empty:
        share["observed_share"] = (share["routed_to_review"] / share["predictions"]).round(4)
        share["expected_review_share"] = share["model_version"].map(expected)
    # The alert looks back from now (this second included), or from the range's end.
    window_end = min(end, now + timedelta(seconds=1))
    window = (window_end - timedelta(days=settings.override_alert_window_days), window_end,
              model_version)
    return Dashboard(frames=frames, alerts=override_alerts(store.agg_override_window(window)),
                     expected_review_share=expected,
                     performance=performance(store.outcome_pairs(f), settings.min_outcomes_for_metrics))


def _known_fields(models: Path) -> set[str]:
    """Field names a rejection may show, across every model version on disk (a version whose
    spec cannot be read adds none: its names then show as unknown, the safe side)."""
    names: set[str] = set()
    for version in artifacts.list_versions(models):
        with contextlib.suppress(SpecError):
            names |= known_fields(artifacts.spec_of(models, version))
    return names


def _with_rates(weekly: pd.DataFrame) -> pd.DataFrame:
    if weekly.empty:
        return weekly.assign(upgrade_rate=[], downgrade_rate=[])
    return weekly.assign(upgrade_rate=(weekly["upgrades"] / weekly["reviewed"]).round(4),
                         downgrade_rate=(weekly["downgrades"] / weekly["reviewed"]).round(4))


def override_alerts(window: pd.DataFrame, settings: Settings | None = None) -> list[Alert]:
    """The same-direction override alert: share >= threshold with enough reviewed cases."""
    settings = settings or get_settings()
    if window.empty:
        return []
    reviewed = int(window["reviewed"].iloc[0])
    alerts = []
    for row in window.itertuples():
        if row.direction == "none" or reviewed < settings.override_alert_min_reviewed:
            continue
        share = row.n / reviewed
        if share >= settings.override_alert_share:
            top = Counter(row.reasons).most_common(3)
            alerts.append(Alert(row.direction, round(share, 4), int(row.n), reviewed,
                                settings.override_alert_window_days, top))
    return alerts


def performance(pairs: pd.DataFrame, minimum: int) -> dict:
    """Observed against predicted, by routing group; and who was right on overrides."""
    groups = {"all": pairs, "auto_finalised": pairs[pairs["routing"] == "auto_finalised"],
              "reviewed": pairs[pairs["routing"] == "review"]}
    out: dict = {"groups": {}, "overrides": _who_was_right(pairs)}
    for name, g in groups.items():
        y, p = g["event"].to_numpy(dtype=int), g["risk"].to_numpy(dtype=float)
        summary = {"n": int(len(g)), "events": int(y.sum())}
        if len(g) < minimum or y.sum() < MIN_EVENTS or y.sum() == len(y):
            summary["too_few"] = (f"Too few outcomes for stable estimates: {len(g)} with "
                                  f"{int(y.sum())} events (need {minimum} with {MIN_EVENTS} events).")
        else:
            auc, lo, hi = evaluate.auroc_ci(y, p)
            summary.update({"auroc": round(auc, 3), "auroc_ci95": [round(lo, 3), round(hi, 3)],
                            "brier": round(float(np.mean((p - y) ** 2)), 4),
                            "calibration": evaluate.calibration_deciles(y, p)})
        out["groups"][name] = summary
    return out


def _who_was_right(pairs: pd.DataFrame) -> pd.DataFrame:
    over = pairs[pairs["direction"].isin(["upgrade", "downgrade"])]
    rows = []
    for direction in ("upgrade", "downgrade"):
        g = over[over["direction"] == direction]
        event = g["event"].astype(bool)
        rows.append({"direction": direction, "overrides_with_outcome": len(g),
                     "reviewer_right": int(((g["reviewer_class"] == "high") == event).sum()),
                     "model_right": int(((g["risk_class"] == "high") == event).sum())})
    return pd.DataFrame(rows)
