"""Import a team's own fitted model as a new version, without retraining it:

    python -m core import-model --pipeline FILE --data FILE --spec FILE --version V [--recalibrate]

The pipeline is anything with predict_proba that takes a DataFrame of the spec's inputs (a
pickle or joblib file: loading it runs code, so the person importing vouches for it, and that is
recorded). The data is held out from its training, in the spec's extract format; it is split in
two: a calibration half (the routing rule, its neighbours, the optional recalibration) and a
test half (the evaluation). The version folder keeps the team's file byte for byte.
"""

from __future__ import annotations

import platform
import shutil
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import is_regressor
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.linear_model import LogisticRegression

from core import build, distribution, estimators, explain, routing, uncertainty
from core.artifacts import Models, sha256_file
from core.cleaning import clean, read_extract
from core.errors import ModelImportError
from core.predict import Predictor
from core.spec import Spec, load_spec
from core.train import DEFAULT_SEED

MIN_ROWS, MIN_EVENTS = 100, 20  # 20 events: 10 for the routing rule's half, 10 for evaluation
SPLIT = {"calibration": 0.5, "test": 0.5}
MODEL_FILE = "model.pkl"


def import_model(*, pipeline: Path, data: Path, spec_path: Path, version: str, models_dir: Models,
                 imported_by: str, recalibrate: bool = False, seed: int = DEFAULT_SEED) -> Path:
    """Check, evaluate and write VERSION for a fitted model into the models folder or bucket;
    returns the folder of its files (for a bucket, its copy in the cache)."""
    build.check_version(version, models_dir)
    spec = load_spec(spec_path)
    pipeline = Path(pipeline)
    cohort, flow = clean(read_extract(data), spec)
    frame, y = build.checked_frame(cohort, spec, min_rows=MIN_ROWS, min_events=MIN_EVENTS,
                                   what="held-out data")
    model, pickled_with = _load(pipeline)
    check_model(model, spec, frame)
    parts = estimators.split(frame, y, seed, SPLIT)
    x_cal, y_cal = parts["calibration"]
    stats: dict = {"reference": explain.reference_values(spec, x_cal),
                   "novelty": build.novelty(spec, x_cal)}
    if recalibrate:
        stats["recalibration"] = _recalibration(model, x_cal, y_cal)
    spec = build.with_validated_ranges(spec, frame)
    stats["distribution"] = distribution.training_distribution(
        spec, frame, "the held-out data supplied at import")

    def make(rule: routing.RoutingRule) -> Predictor:
        return Predictor(model, spec, stats, rule)

    draft = routing.RoutingRule(
        method="held-out-neighbours confidence with a safe-low bound fitted on the calibration "
               "half of the supplied data", uncertainty="held_out_neighbours",
        action_threshold=spec.action_threshold, safe_low_bound=0.0,
        confidence_level=spec.routing.confidence_level,
        low_risk_event_rate_target=spec.routing.low_risk_event_rate_target,
        calibration_n=len(y_cal), calibration_events=int(y_cal.sum()))
    stats["neighbourhood"] = uncertainty.fit_neighbours(make(draft).logit(x_cal), y_cal)
    rule, warned = build.fit_rule(spec, make(draft), parts["calibration"], method=draft.method,
                                  uncertainty=draft.uncertainty)
    rule, evaluation, more = build.evaluate_version(
        spec, make, rule, parts["test"], cohort.loc[parts["test"][0].index],
        check=None if recalibrate else lambda x: np.asarray(model.predict_proba(x))[:, 1])
    if (held_out := make(rule).held_out_check(parts["test"][0])) is not None:
        stats["compiled_check"] = held_out  # read by core.predict when the version is loaded
    manifest = {
        **build.manifest(spec, version=version, origin="imported", created_by=imported_by,
                         seed=seed, data=Path(data), cohort=cohort, flow=flow, parts=parts,
                         routing_entry=build.routing_section(spec, rule, evaluation, warned + more),
                         evaluation=evaluation, stats=stats),
        "model": f"the team's own fitted {_describe(model)}, imported without retraining",
        "model_file": MODEL_FILE,
        "model_format": "pickle",
        "preprocessing": "Preprocessing is the team's own, inside their pipeline; it receives the "
                         "spec's inputs as a table (numbers, yes/no as 1/0, categories as text, "
                         "missing values empty).",
        "limitations": [
            "Imported model: its training data and fitting are the team's own and are not "
            "reproduced here; the evaluation covers only the held-out data supplied at import.",
            "The validated ranges come from the supplied held-out data, not from the data the "
            "model was fitted on."],
        "ood_policy": build.ood_policy("the held-out data supplied at import",
                                       "whatever the team's pipeline does with it"),
        "provenance": {
            "pipeline_file": pipeline.name, "pipeline_sha256": sha256_file(pipeline),
            "format": "pickle", "vouched_for_by": imported_by, "pickled_with": pickled_with,
            "recalibration": stats.get("recalibration")},
        "libraries": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                      "numpy": np.__version__, "pandas": pd.__version__,
                      "joblib": joblib.__version__},
    }
    return build.write(models_dir, version, lambda path: shutil.copyfile(pipeline, path),
                       MODEL_FILE, spec, stats, evaluation, manifest)


def _load(path: Path):
    """The unpickled model and the scikit-learn version it was pickled with, if known."""
    if not path.is_file():
        raise ModelImportError(f"pipeline file not found: {path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = joblib.load(path)
        except Exception as exc:  # whatever unpickling raises, the file is not importable
            raise ModelImportError(f"{path} cannot be loaded as a pickle or joblib file: "
                                   f"{type(exc).__name__}: {exc}") from exc
    pickled = sorted({w.message.original_sklearn_version for w in caught
                      if isinstance(w.message, InconsistentVersionWarning)})
    if pickled:
        if any(v.split(".")[:2] != sklearn.__version__.split(".")[:2] for v in pickled):
            raise ModelImportError(
                f"{path} was pickled with scikit-learn {', '.join(pickled)}; this environment "
                f"has {sklearn.__version__}. Load it where it was made and save it again with "
                f"scikit-learn {sklearn.__version__}, or refit it there")
        return model, f"scikit-learn {', '.join(pickled)} (recorded in the pickle)"
    if isinstance(model, sklearn.base.BaseEstimator):
        return model, f"scikit-learn {sklearn.__version__} (the pickle records no other version)"
    return model, "unknown library versions"


def check_model(model, spec: Spec, frame: pd.DataFrame) -> np.ndarray:
    """The model's event probabilities on the held-out frame, or ModelImportError naming what
    makes it unusable: not a classifier, no predict_proba, columns the spec lacks, or
    probabilities that are constant, not finite or outside [0, 1]."""
    kind = type(model).__name__
    if isinstance(model, sklearn.base.BaseEstimator) and is_regressor(model):
        raise ModelImportError(f"the pipeline is a regressor ({kind}), not a classifier")
    if not callable(getattr(model, "predict_proba", None)):
        raise ModelImportError(f"the pipeline ({kind}) has no predict_proba: it is not a "
                               "classifier that gives probabilities")
    needed = getattr(model, "feature_names_in_", None)
    if needed is not None:
        missing = [str(c) for c in needed if c not in spec.names]
        if missing:
            raise ModelImportError("the pipeline needs columns the spec lacks: "
                                   + ", ".join(missing) + " (add them to the spec's features, "
                                   "named as the pipeline names them)")
    classes = getattr(model, "classes_", None)
    if classes is not None and (len(classes) != 2 or str(classes[1]).lower() not in ("1", "true")):
        raise ModelImportError(f"the pipeline's classes are {list(classes)}; it must predict two "
                               "classes, 0 and 1, with 1 the event")
    try:
        proba = np.asarray(model.predict_proba(frame), dtype=float)
    except Exception as exc:  # the team's own code: any failure means it cannot be served
        raise ModelImportError(f"predict_proba failed on the held-out data with the spec's "
                               f"columns ({', '.join(spec.names)}): {type(exc).__name__}: {exc}"
                               ) from exc
    if proba.ndim != 2 or proba.shape != (len(frame), 2):
        raise ModelImportError(f"predict_proba returned shape {proba.shape}; it must return one "
                               "row per patient and two columns (no event, event)")
    p = proba[:, 1]
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ModelImportError("predict_proba returned values outside [0, 1] (or not finite) for "
                               f"{int((~np.isfinite(p) | (p < 0) | (p > 1)).sum())} patients")
    if np.ptp(p) < 1e-9:
        raise ModelImportError(f"predict_proba returns the same probability ({p[0]:.4g}) for "
                               "every patient: the model does not discriminate")
    return p  # without classes_, the second column is taken as the event (as scikit-learn does)


def _recalibration(model, x_cal: pd.DataFrame, y_cal: np.ndarray) -> dict:
    """Logistic recalibration of the outcome on logit(risk), fitted on the calibration half."""
    eta = routing.logit(np.asarray(model.predict_proba(x_cal))[:, 1])
    fit = LogisticRegression(C=np.inf).fit(eta.reshape(-1, 1), y_cal)
    slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    return {"slope": slope, "intercept": intercept,
            "description": f"logit(risk) is replaced by {intercept:.3f} + {slope:.3f} x logit(risk), "
                           f"a logistic recalibration fitted on the calibration half "
                           f"({len(y_cal)} patients) of the supplied data."}


def _describe(model) -> str:
    steps = getattr(model, "steps", None)
    if steps:
        return "pipeline (" + " -> ".join(type(s).__name__ for _, s in steps) + ")"
    return type(model).__name__
