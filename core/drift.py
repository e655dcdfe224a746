"""Input drift: how far each input's recorded values over a recent window have moved from the
training distribution that the version which scored them ships (core.distribution), as a
population stability index (PSI); and each input's missing and out-of-validated-range rates per
week. Every count comes from the store (store.agg_drift_*), so only chart-sized frames leave it.

The raw inputs are kept for the retention period only (APP_RETENTION_DAYS), so drift covers that
period at most. A version built before versions shipped a training distribution has none: its
inputs are shown as such, and nothing fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from core import artifacts, distribution
from core.clock import now_utc
from core.conditions import Condition
from core.config import Settings, get_settings
from core.errors import ArtefactMismatch, SpecError
from core.spec import Spec
from core.store import Store, open_store

NO_REFERENCE = ("this version carries no training distribution; rebuild it with train or "
                "import-model to monitor drift")
LEVELS = ("alert", "warn", "ok", "too_few", "no_reference")  # worst first
INPUT_COLUMNS = ["model_version", "feature", "label", "kind", "n", "psi", "level"]
BIN_COLUMNS = ["model_version", "feature", "label", "bin", "training_share", "window_share"]
WEEKLY_COLUMNS = ["week", "model_version", "feature", "label", "predictions", "missing",
                  "missing_rate", "out_of_range", "out_of_range_rate"]


@dataclass(frozen=True)
class DriftReport:
    """Drift per (model version, input) over [window_start, window_end), and weekly rates over
    the range asked for. `inputs` (INPUT_COLUMNS): `psi` is NaN unless `level` is ok, warn or
    alert; `n` is the window's predictions with their raw inputs kept. `bins` (BIN_COLUMNS):
    each bin's training and window shares. `weekly` (WEEKLY_COLUMNS): `out_of_range_rate` is
    NaN for an input without a validated range. `versions`: why a version's drift cannot be
    measured (no training distribution, an unreadable artefact)."""

    window_start: datetime
    window_end: datetime
    window_days: int
    warn: float
    alert: float
    min_predictions: int
    retention_days: int
    inputs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INPUT_COLUMNS))
    bins: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BIN_COLUMNS))
    weekly: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=WEEKLY_COLUMNS))
    versions: dict[str, str] = field(default_factory=dict)

    def conditions(self) -> list[Condition]:
        """A condition for each input at or above the alert threshold (no patient data)."""
        over = self.inputs[self.inputs["level"] == "alert"]
        return [Condition(
            key=f"drift:{r.model_version}:{r.feature}", kind="drift",
            title=f"Input drift: {r.label} (model {r.model_version})",
            message=(f"{r.label}, an input of model {r.model_version}, has a population stability "
                     f"index (PSI) of {r.psi:.2f} over the {r.n} predictions of the "
                     f"{self.window_days} days to {self.window_end:%d %b %Y %H:%M} UTC, at or above "
                     f"the alert threshold {self.alert:g}: its recent values are distributed "
                     "differently from the training data's. Check whether the population being "
                     "scored or the data feed changed (a new referral route, a laboratory method "
                     "or unit, a form or export change), and whether the model's performance "
                     "still holds, before relying on its predictions."))
            for r in over.itertuples()]


def drift(store: Store, settings: Settings, start: datetime, end: datetime,
          model_version: str | None = None, *, now: datetime | None = None) -> DriftReport:
    """Drift of every input of each version (one, or all with predictions), the window ending at
    `end` or now (this second included), whichever is first; weekly rates over [start, end)."""
    window_end = min(end, (now or now_utc()) + timedelta(seconds=1))
    window_start = window_end - timedelta(days=settings.drift_window_days)
    fw, fr = (window_start, window_end, model_version), (start, end, model_version)
    sizes = dict(store.agg_drift_inputs(fw)[["model_version", "n"]].itertuples(index=False))
    versions = [model_version] if model_version else sorted(
        set(sizes) | set(store.agg_drift_inputs(fr)["model_version"]))
    refs = {v: _reference(settings.models, v) for v in versions}
    bins, ranges = [], []
    for v, (spec, dist, _) in refs.items():
        for f in spec.features if spec else []:
            entry = dist["features"].get(f.name) if dist else None
            if entry and entry["kind"] == "numeric":
                bins += [(v, f.name, i, lo, hi) for i, (_, lo, hi, _) in
                         enumerate(distribution.bins(entry))]
            elif entry:
                bins.append((v, f.name, None, None, None))
            ranged = f.numeric and f.validated_min is not None
            ranges.append((v, f.name, f.validated_min if ranged else None,
                           f.validated_max if ranged else None))
    counted = _counts(store.agg_drift_window(fw, bins))
    rows, shares = [], []
    for v, (spec, dist, _) in refs.items():
        for f in spec.features if spec else []:
            row, bin_rows = _judge(settings, v, f, dist, sizes.get(v, 0), counted)
            rows.append(row)
            shares += bin_rows
    return DriftReport(
        window_start=window_start, window_end=window_end,
        window_days=settings.drift_window_days, warn=settings.drift_psi_warn,
        alert=settings.drift_psi_alert, min_predictions=settings.drift_min_predictions,
        retention_days=settings.retention_days,
        inputs=_sorted(pd.DataFrame(rows, columns=INPUT_COLUMNS).astype({"n": int, "psi": float})),
        bins=pd.DataFrame(shares, columns=BIN_COLUMNS),
        weekly=_weekly(store.agg_drift_weekly(fr, ranges), refs),
        versions={v: why for v, (_, _, why) in refs.items() if why})


def conditions(store: Store, settings: Settings, now: datetime) -> list[Condition]:
    """The drift conditions in force at `now`: inputs at or above APP_DRIFT_PSI_ALERT over the
    last APP_DRIFT_WINDOW_DAYS, for every version with predictions in it."""
    end = now + timedelta(seconds=1)
    return drift(store, settings, end - timedelta(days=settings.drift_window_days), end,
                 now=now).conditions()


def report(*, start: datetime, end: datetime, model_version: str | None = None,
           now: datetime | None = None) -> DriftReport:
    """`drift` over the store and models the settings name (for the monitoring page)."""
    settings = get_settings()
    return drift(open_store(settings.db), settings, start, end, model_version, now=now)


def _reference(models, version: str) -> tuple[Spec | None, dict | None, str | None]:
    """(spec, training distribution, why there is none) of a version."""
    try:
        spec = artifacts.spec_of(models, version)
    except SpecError as exc:
        return None, None, f"its artefact cannot be read ({exc})"
    try:
        dist = artifacts.statistics_of(models, version).get("distribution")
    except ArtefactMismatch as exc:
        return spec, None, f"its training statistics cannot be read ({exc})"
    return (spec, dist, None) if dist else (spec, None, NO_REFERENCE)


def _counts(window: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """(version, input) -> {bin index or value text: count} (missing values are not counted)."""
    out: dict[tuple[str, str], dict] = {}
    for r in window.itertuples():
        key = r.value if pd.isna(r.bin) else int(r.bin)
        out.setdefault((r.model_version, r.feature), {})[key] = int(r.n)
    return out


def _judge(settings: Settings, version: str, f, dist: dict | None, n: int,
           counted: dict) -> tuple[list, list[list]]:
    """The input's row of `inputs` and its rows of `bins`."""
    entry = dist["features"].get(f.name) if dist else None
    if entry is None:
        return [version, f.name, f.label, f.type, n, None, "no_reference"], []
    expected = distribution.expected(entry)
    got = counted.get((version, f.name), {})
    if entry["kind"] == "numeric":
        counts = [got.get(i, 0) for i in range(len(expected) - 1)]
    else:
        known = dict(expected[:-2])
        counts = [got.get(k, 0) for k in known] + [sum(c for k, c in got.items() if k not in known)]
    counts.append(n - sum(counts))  # missing: the rest
    actual = [c / n if n else 0.0 for c in counts]
    bin_rows = [[version, f.name, f.label, name, e, round(a, 6)]
                for (name, e), a in zip(expected, actual, strict=True)]
    if n < settings.drift_min_predictions:
        return [version, f.name, f.label, f.type, n, None, "too_few"], bin_rows
    value = round(distribution.psi([e for _, e in expected], actual), 4)
    level = ("alert" if value >= settings.drift_psi_alert else
             "warn" if value >= settings.drift_psi_warn else "ok")
    return [version, f.name, f.label, f.type, n, value, level], bin_rows


def _sorted(inputs: pd.DataFrame) -> pd.DataFrame:
    """Largest PSI first, then inputs without one, worst level first."""
    rank = inputs["level"].map({level: i for i, level in enumerate(LEVELS)})
    order = inputs.assign(_rank=rank).sort_values(["psi", "_rank", "model_version", "feature"],
                                                  ascending=[False, True, True, True],
                                                  na_position="last")
    return order.drop(columns="_rank").reset_index(drop=True)


def _weekly(weekly: pd.DataFrame, refs: dict) -> pd.DataFrame:
    if weekly.empty:
        return pd.DataFrame(columns=WEEKLY_COLUMNS)
    labels = {(v, f.name): f.label for v, (spec, _, _) in refs.items() if spec for f in spec.features}
    ranged = {(v, f.name) for v, (spec, _, _) in refs.items() if spec for f in spec.features
              if f.numeric and f.validated_min is not None}
    keys = list(zip(weekly["model_version"], weekly["feature"], strict=True))
    out = weekly.assign(
        label=[labels[k] for k in keys],
        missing_rate=(weekly["missing"] / weekly["predictions"]).round(4),
        out_of_range_rate=[round(o / p, 4) if k in ranged else None for k, o, p in
                           zip(keys, weekly["out_of_range"], weekly["predictions"], strict=True)])
    return out[WEEKLY_COLUMNS].astype({"out_of_range_rate": float}).reset_index(drop=True)
