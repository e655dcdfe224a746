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

import pandas as pd

from core import artifacts
from core.clock import now_utc
from core.config import Settings, get_settings
from core.errors import ArtefactMismatch, SpecError
from core.performance import performance
from core.scoring import UNKNOWN_FIELD, known_fields
from core.spec import Spec
from core.store import Store, open_store


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
    spec = _subgroup_spec(settings, store, model_version)
    features = tuple(g.feature for g in spec.subgroups) if spec else ()
    return Dashboard(frames=frames, alerts=override_alerts(store.agg_override_window(window)),
                     expected_review_share=expected,
                     performance=performance(store.outcome_pairs(f, features),
                                             settings.min_outcomes_for_metrics, spec))


def _subgroup_spec(settings, store: Store, model_version: str | None) -> Spec | None:
    """The spec whose subgroups the performance is cut by: the chosen version's, or for all
    versions the serving one's (None when it cannot be read: no subgroups then)."""
    version = model_version or artifacts.serving_version(store.active_activation(), settings.models)
    if version is None:
        return None
    try:
        return artifacts.spec_of(settings.models, version)
    except (SpecError, ArtefactMismatch, FileNotFoundError):
        return None


def _known_fields(models: Path) -> set[str]:
    """Field names a rejection may show, across every model version on disk (a version whose
    spec cannot be read adds none: its names then show as unknown, the safe side)."""
    names: set[str] = set()
    for version in artifacts.list_versions(models):
        with contextlib.suppress(SpecError):
            names |= known_fields(artifacts.spec_of(models, version))
    return names


DAILY_UP_TO = 92  # days: a longer range is charted per week (its CSV stays per day)


def per_period(daily: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Predictions per day and routing (agg_predictions_daily) as the chart shows them: per day
    up to DAILY_UP_TO days, per week (starting Monday) beyond, so a year stays chart-sized.
    Returns the frame (its 'day' the period's first day) and 'day' or 'week'."""
    if daily.empty or daily["day"].nunique() <= DAILY_UP_TO:
        return daily, "day"
    day = pd.to_datetime(daily["day"])
    week = (day - pd.to_timedelta(day.dt.day_of_week, unit="D")).dt.date
    weekly = daily.assign(day=week).groupby(["day", "routing"], as_index=False)["predictions"].sum()
    return weekly, "week"


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
