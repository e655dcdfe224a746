"""Building a model version, shared by training and import: the checks on the cohort, the
validated ranges, the out-of-distribution statistics, the routing rule with its warnings and
safe fallback, the held-out evaluation, and writing the version (all or nothing), into the
models folder or a bucket."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core import artifacts, evaluate, explain, routing, uncertainty
from core.artifacts import ARTEFACT_FORMAT, Models, sha256_file
from core.cleaning import out_of_limits, transformations
from core.errors import TrainingDataError
from core.features import model_frame
from core.predict import REASON_CODES, Predictor
from core.spec import Feature, Spec, dump_spec

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
MIN_CATEGORY_COUNT = 30  # a category seen fewer times than this is not "validated"
DOCUMENTED_EXCLUSIONS = ("Correct these values, or leave these patients out of the extract and "
                         "record them in the spec's extraction_exclusions (name, description, "
                         "number excluded), so the cohort flow shows them.")


def check_version(version: str, models: Models) -> None:
    """TrainingDataError for a bad name, or one the folder or bucket already has (a bucket is
    asked now, so that its problems show before any training)."""
    if not VERSION_RE.match(version):
        raise TrainingDataError(f"version {version!r} must be 1-40 letters, digits, '.', '_' or '-'")
    if artifacts.exists(models, version):
        raise TrainingDataError(f"version {version} already exists in {models}; choose a new one")


def checked_frame(cohort: pd.DataFrame, spec: Spec, *, min_rows: int, min_events: int,
                  what: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The model frame and outcomes of a cleaned cohort, or TrainingDataError naming every
    problem (values outside the hard limits with the extract's rows, and how to exclude them)."""
    y = cohort[spec.outcome.name].to_numpy(dtype=int)
    if len(y) < min_rows:
        raise TrainingDataError(f"only {len(y)} patients remain in the {what} after exclusions; "
                                f"need {min_rows}")
    events = int(y.sum())
    if events < min_events or len(y) - events < min_events:
        raise TrainingDataError(
            f"the {what} has {events} events among {len(y)} patients; need at least "
            f"{min_events} events and {min_events} patients without one")
    frame = model_frame(cohort, spec)
    problems = out_of_limits(cohort, frame, spec)
    if problems:
        raise TrainingDataError(f"the cleaned {what} does not fit the spec: " + "; ".join(problems)
                                + ". " + DOCUMENTED_EXCLUSIONS)
    return frame, y


def with_validated_ranges(spec: Spec, frame: pd.DataFrame) -> Spec:
    """The spec with the ranges the data really covered (quantiles from the spec)."""
    features = []
    for f in spec.features:
        col = frame[f.name].dropna()
        extra: dict = {}
        if f.numeric:
            lo, hi = np.quantile(col, spec.routing.validated_range_quantiles)
            digits = 0 if f.type == "integer" else 1
            extra = {"validated_min": float(np.floor(lo * 10**digits) / 10**digits),
                     "validated_max": float(np.ceil(hi * 10**digits) / 10**digits)}
        elif f.type == "category":
            counts = col.value_counts()
            extra = {"validated_categories": [c for c in f.categories
                                              if counts.get(c, 0) >= MIN_CATEGORY_COUNT]}
        features.append(Feature(**{**f.model_dump(), **extra}))
    return spec.model_copy(update={"features": features})


def novelty(spec: Spec, x: pd.DataFrame) -> dict:
    """Mahalanobis distance over the numeric features, with its quantile among these patients."""
    names = [f.name for f in spec.features if f.numeric]
    q = spec.routing.novelty_quantile
    if not names:
        return {"features": [], "mean": [], "median": [], "precision": [], "quantile": q,
                "threshold": None}
    values = x[names].to_numpy(dtype=float)
    median = np.nanmedian(values, axis=0)
    values = np.where(np.isnan(values), median, values)
    mean = values.mean(axis=0)
    covariance = np.atleast_2d(np.cov(values, rowvar=False))
    try:
        precision = np.linalg.inv(covariance)
    except np.linalg.LinAlgError:  # a constant or collinear input: the pseudo-inverse
        precision = np.linalg.pinv(covariance)
    d = values - mean
    scores = np.einsum("ij,jk,ik->i", d, precision, d)
    return {"features": names, "mean": mean.tolist(), "median": median.tolist(),
            "precision": precision.tolist(), "quantile": q,
            "threshold": float(np.quantile(scores, q))}


def fit_rule(spec: Spec, predictor: Predictor, cal: tuple, *, method: str, uncertainty: str
             ) -> tuple[routing.RoutingRule, list[str]]:
    """The routing rule fitted on the calibration split, and the warnings when it cannot meet
    the target there (then the safe fallback: a safe-low bound of 0)."""
    x_cal, y_cal = cal
    target, t = spec.routing.low_risk_event_rate_target, spec.action_threshold
    draft = routing.RoutingRule(
        method=method, uncertainty=uncertainty, action_threshold=t, safe_low_bound=0.0,
        confidence_level=spec.routing.confidence_level, low_risk_event_rate_target=target,
        calibration_n=int(len(y_cal)), calibration_events=int(y_cal.sum()))
    eta = predictor.logit(x_cal)
    own = y_cal if uncertainty == "held_out_neighbours" else None
    dist = predictor.distribution(x_cal, eta, own=own)
    low = eta < routing.logit(t)
    need, event = routing.smallest_supporting_group(target), spec.outcome.event
    if int(low.sum()) < need:
        return draft, [
            f"The calibration split has {int(low.sum())} patients below the action threshold; "
            f"showing that the {event} rate among auto-finalised low-risk predictions stays at "
            f"or below {routing.share(target)} (upper 95% bound) needs at least {need}, even with no event "
            "among them."]
    bound = routing.fit_safe_low_bound(dist.p_below, low, y_cal, threshold=t,
                                       level=spec.routing.confidence_level, target=target)
    warnings = [] if bound > 0 else [
        f"No safe-low bound keeps the upper 95% bound of the {event} rate among auto-finalised "
        f"low-risk predictions on the calibration split ({len(y_cal)} patients) at or below "
        f"{routing.share(target)}."]
    return draft.model_copy(update={"safe_low_bound": bound}), warnings


def evaluate_version(spec: Spec, make: Callable[[routing.RoutingRule], Predictor],
                     rule: routing.RoutingRule, test: tuple, test_cohort: pd.DataFrame,
                     check: Callable[[pd.DataFrame], np.ndarray] | None = None
                     ) -> tuple[routing.RoutingRule, dict, list[str]]:
    """The held-out evaluation; when the test split's upper bound misses the target, a warning
    and the fallback rule (evaluated again). `check`: the model's own predict_proba, which the
    served risks must equal."""
    x_test, y_test = test
    pred = make(rule).predict(x_test)
    if check is not None and not np.allclose(pred.risk, check(x_test), atol=1e-9):
        raise RuntimeError("scoring arithmetic disagrees with the pipeline's predict_proba")
    warnings = []
    achieved = evaluate.routing_outcomes(y_test, pred.risk_class, pred.review)
    target = rule.low_risk_event_rate_target
    if rule.safe_low_bound > 0 and achieved["event_rate_auto_low_upper95"] > target:
        warnings.append(
            f"On the held-out test split ({len(y_test)} patients) the upper 95% bound of the "
            f"{spec.outcome.event} rate among auto-finalised low-risk predictions is "
            f"{achieved['event_rate_auto_low_upper95']:.1%}, above the target {routing.share(target)}.")
        rule = rule.model_copy(update={"safe_low_bound": 0.0})
        pred = make(rule).predict(x_test)
    t = spec.action_threshold
    codes = [c for cs in pred.reason_codes for c in cs]
    column = spec.index.date_column
    return rule, {
        "split": "test",
        "overall": evaluate.summarise(y_test, pred.risk, t),
        "calibration_by_decile": evaluate.calibration_deciles(y_test, pred.risk),
        "subgroups": evaluate.subgroups(x_test, y_test, pred.risk, t, spec),
        "routing": {**evaluate.routing_outcomes(y_test, pred.risk_class, pred.review),
                    "share_flagged_out_of_distribution": round(float(np.mean(
                        [any(c != "uncertain" for c in cs) for cs in pred.reason_codes])), 4),
                    "reasons_per_100_predictions": {
                        code: round(100 * codes.count(code) / len(y_test), 1)
                        for code in REASON_CODES}},
        "index_dates": date_range(test_cohort, column),
        "curves": evaluate.curves(y_test, pred.risk, t),
    }, warnings


def date_range(cohort: pd.DataFrame, column: str | None) -> list[str] | None:
    if not column or column not in cohort:
        return None
    dates = cohort[column]
    return [str(dates.min())[:10], str(dates.max())[:10]]


def workload(share: float, spec: Spec) -> str:
    """The expected review workload in words, from the spec's setting when it has one."""
    text = f"About {round(share * 100)} of every 100 predictions go to clinical review."
    w = spec.routing.workload
    if w:
        text += (f" {w.setting}, scoring {w.patients_per_week} patients a week, would see about "
                 f"{round(share * w.patients_per_week)} reviews a week.")
    return text + (" Compare with the live review share on the monitoring page and revisit the "
                   "rule if it drifts.")


def routing_section(spec: Spec, rule: routing.RoutingRule, evaluation: dict,
                    warnings: list[str]) -> dict:
    """The manifest's routing entry: the rule, what it achieved, its warnings and workload."""
    share = evaluation["routing"]["share_review"]
    return {**rule.model_dump(), "description": routing.describe(rule, spec.outcome.event),
            "achieved_on_test": evaluation["routing"], "expected_review_share": share,
            "workload": workload(share, spec),
            "warnings": [*warnings, routing.FALLBACK] if warnings else []}


def ood_policy(source: str, filled_with: str) -> str:
    """The out-of-distribution policy in words; `source`: whose data set the validated ranges,
    `filled_with`: what the model uses for a missing optional value."""
    return (
        "Values outside the hard limits in the spec are rejected with a structured error and no "
        "prediction. A prediction is still computed and shown, but routed to clinical review "
        "with a plain-language reason, when: a value lies inside the hard limits but outside the "
        f"range the model was validated on (the 0.5th-99.5th percentiles of {source}); an "
        f"optional value is missing (the model fills in {filled_with}); a category was too rare "
        "to be validated; or the combination of numeric values is unusual (Mahalanobis distance "
        f"above the 99.5th percentile of {source}).")


def manifest(spec: Spec, *, version: str, origin: str, created_by: str, seed: int, data: Path,
             cohort: pd.DataFrame, flow: list[dict], parts: dict, routing_entry: dict,
             evaluation: dict, stats: dict) -> dict:
    """What every manifest records; training and import add their own entries."""
    overall = evaluation["overall"]
    kind = routing_entry["uncertainty"]
    k = stats.get("neighbourhood", {}).get("k")
    return {
        "artefact_format": ARTEFACT_FORMAT,
        "version": version,
        "origin": origin,
        "model_name": spec.model_name,
        "synthetic_data": spec.synthetic,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created_by": created_by,
        "random_seed": seed,
        "data": {
            "file": data.name, "sha256": sha256_file(data), "cleaning_recipe": spec.cleaning,
            "transformations": transformations(spec),
            "flow": flow, "patients_included": int(len(cohort)),
            "events": int(cohort[spec.outcome.name].sum()),
            "index_date_range": date_range(cohort, spec.index.date_column),
        },
        "splits": {name: {"n": int(len(v[1])), "events": int(v[1].sum())}
                   for name, v in parts.items()},
        "outcome": spec.outcome.model_dump(),
        "action_threshold": spec.action_threshold,
        "action": spec.action,
        "routing": routing_entry,
        "confidence": {"method": kind, "description":
                       uncertainty.DESCRIPTIONS[kind].format(k=k) + " "
                       + uncertainty.INTERVALS[kind]},
        "explanation": {"method": "one input at a time set to a typical value",
                        "description": explain.DESCRIPTION},
        "metrics": {key: overall.get(key) for key in
                    ("auroc", "auroc_ci95", "brier", "calibration_slope",
                     "calibration_in_the_large")},
    }


def write(models: Models, version: str, write_model: Callable[[Path], None], model_file: str,
          spec: Spec, stats: dict, evaluation: dict, manifest: dict) -> Path:
    """Assemble the version in a private folder (hidden, beside its place; for a bucket, in the
    cache), then publish it whole (core.artifacts.publish); the folder of its files."""
    tmp = artifacts.staging_folder(models, version)
    try:
        write_model(tmp / model_file)
        (tmp / "spec.json").write_text(dump_spec(spec))
        (tmp / "statistics.json").write_text(json.dumps(stats) + "\n")
        (tmp / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
        names = (model_file, "spec.json", "statistics.json", "evaluation.json")
        manifest["files"] = {name: sha256_file(tmp / name) for name in names}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return artifacts.publish(models, tmp, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
