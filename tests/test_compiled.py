"""The compiled scoring path (core.compiled): for every estimator family trained here, for a
team's imported pipeline and for the other standard steps, it gives the pipeline's own
predict_proba (and the delta-method model's transformed inputs) to 1e-12, with missing values
and unknown categories; an unsupported step, a pipeline whose answers depend on how many rows
it is given, and a deliberately wrong compiled constant all leave the version served by its
pipeline, and say so."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from conftest import DEMO_EXTRACT, DEMO_SPEC
from import_support import DIABETES_SPEC, diabetes_files, spec_with, team_pipeline
from threadpoolctl import threadpool_limits

from core import artifacts, build, compiled, estimators, explain
from core.cleaning import clean, read_extract
from core.errors import NotCompiled
from core.features import Rows, model_frame, model_rows
from core.predict import Predictor
from core.spec import load_spec, parse_spec
from core.task import Estimator
from core.train import train

TOLERANCE = compiled.TOLERANCE


def assert_equal_to_pipeline(fast: compiled.Compiled, model, rows: Rows, pre=None) -> None:
    want = np.asarray(model.predict_proba(rows.frame))[:, 1]
    np.testing.assert_allclose(fast.proba(rows), want, rtol=0, atol=TOLERANCE)
    if pre is not None:
        np.testing.assert_allclose(fast.transform(rows), pre.transform(rows.frame), rtol=0,
                                   atol=TOLERANCE)


def with_missing(rows: Rows, spec, every: int = 3) -> Rows:
    """The rows with each optional input missing in every `every`-th row."""
    columns = {k: v.copy() for k, v in rows.columns.items()}
    for f in spec.features:
        if not f.required:
            col = columns[f.name]
            col[::every] = None if col.dtype == object else np.nan
    return Rows(columns)


def one_thread():
    """Gradient boosting's OpenMP threads on one core: on two busy cores they only wait."""
    return threadpool_limits(limits=1, user_api="openmp")


# ---- every estimator family core.estimators trains ----------------------------------------

@pytest.fixture(scope="module")
def demo():
    """A slice of the demonstration cohort (every kind of input: required and optional numbers,
    yes/no, categories), split as training splits it, and its spec with validated ranges."""
    spec = load_spec(DEMO_SPEC)
    cohort, _ = clean(read_extract(DEMO_EXTRACT).head(1500), spec)
    frame, y = build.checked_frame(cohort, spec, min_rows=200, min_events=20, what="cohort")
    return build.with_validated_ranges(spec, frame), estimators.split(
        frame, y, 1, {"train": 0.6, "calibration": 0.2, "test": 0.2})


@pytest.mark.parametrize("family", ["logistic_regression", "hist_gradient_boosting",
                                    "random_forest"])
@pytest.mark.parametrize("calibration", ["sigmoid", "isotonic"])
def test_every_family_trained_here_compiles_to_its_own_probabilities(demo, family, calibration):
    spec, parts = demo
    spec = spec.model_copy(update={"estimator": Estimator(family=family, calibration=calibration)})
    with one_thread():
        pipeline, _ = estimators.fit(spec, parts, 1)
    fast = compiled.compile_model(pipeline, spec)
    pre = pipeline.named_steps["preprocess"]
    held_out = Rows.of(parts["test"][0])
    assert_equal_to_pipeline(fast, pipeline, held_out, pre)
    assert_equal_to_pipeline(fast, pipeline, with_missing(held_out, spec), pre)
    found = compiled.check(fast, pipeline, spec, explain.reference_values(spec, parts["train"][0]),
                           pre)
    assert found.compiled and found.max_difference <= TOLERANCE, found.detail


def test_the_check_rows_cover_every_category_missing_values_and_the_limits(demo):
    spec, parts = demo
    reference = explain.reference_values(spec, parts["train"][0])
    rows = compiled.check_rows(spec, reference)
    again = compiled.check_rows(spec, reference)  # the same rows at every load
    assert all(np.array_equal(rows[n], again[n], equal_nan=True) if rows[n].dtype != object
               else rows[n].tolist() == again[n].tolist() for n in spec.names)
    for f in spec.features:
        col = rows[f.name]
        if f.type == "category":
            assert set(f.categories) <= set(col.tolist())
        elif f.numeric:
            assert {f.hard_min, f.hard_max, f.validated_min, f.validated_max} <= set(col.tolist())
            assert np.isnan(col).any() == (not f.required)


# ---- the served artefacts: the same predictions, whichever path ---------------------------

def test_the_demonstration_model_is_served_compiled(v1):
    path = v1.predictor.scoring_path
    assert path.compiled and path.max_difference <= TOLERANCE and path.rows > 100
    rows = with_missing(compiled.check_rows(v1.spec, v1.predictor.reference), v1.spec)
    np.testing.assert_allclose(v1.predictor.transform(Rows(rows.columns), fast=True),
                               v1.predictor.linear.pre.transform(rows.frame), rtol=0,
                               atol=TOLERANCE)


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """Versions of the diabetes example trained here, one per family (an optional input, glu)."""
    folder = tmp_path_factory.mktemp("families")
    extract = diabetes_files(folder)["extract"]
    models = folder / "models"
    for family, calibration in (("logistic_regression", "sigmoid"),
                                ("hist_gradient_boosting", "sigmoid"),
                                ("random_forest", "isotonic")):
        spec = spec_with(folder / f"{family}.json", estimator={"family": family,
                                                               "calibration": calibration})
        with one_thread():
            train(data=extract, spec_path=spec, version=family, models_dir=models, trained_by="t")
    return models


@pytest.mark.parametrize("family", ["logistic_regression", "hist_gradient_boosting",
                                    "random_forest"])
def test_a_version_predicts_the_same_compiled_and_through_its_pipeline(families, family):
    served = artifacts.load(families, family).predictor
    assert served.scoring_path.compiled, served.scoring_path.detail
    stats = json.loads((families / family / "statistics.json").read_text())
    assert stats["compiled_check"]["agrees"] and stats["compiled_check"]["rows"] > 50
    rows = with_missing(compiled.check_rows(served.spec, served.reference), served.spec)
    by_pipeline = served.predict(rows.frame)  # a model frame goes through the pipeline
    by_compiled = served.predict(Rows(rows.columns))  # Rows without a frame: the compiled path
    np.testing.assert_allclose(by_compiled.risk, by_pipeline.risk, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(served.fast.proba(rows), served.model.predict_proba(rows.frame)[:, 1],
                               rtol=0, atol=TOLERANCE)  # (a served risk of 1 is 1 - 1e-12 either way)
    for name in ("risk_low", "risk_high", "confidence"):
        np.testing.assert_allclose(getattr(by_compiled, name), getattr(by_pipeline, name),
                                   rtol=0, atol=1e-9)
    assert by_compiled.reasons == by_pipeline.reasons
    assert by_compiled.reason_codes == by_pipeline.reason_codes
    assert by_compiled.factors == by_pipeline.factors
    assert (by_compiled.review == by_pipeline.review).all()


# ---- a team's imported pipeline, and the other standard steps ------------------------------

@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    files = diabetes_files(tmp_path_factory.mktemp("diabetes"))
    spec = load_spec(DIABETES_SPEC)
    heldout = pd.read_csv(files["heldout"], dtype={"sex": str})
    return spec, team_pipeline(files["training"]), model_frame(heldout.to_dict("records"), spec)


def test_the_teams_imported_pipeline_compiles_with_missing_and_unknown_values(diabetes):
    spec, pipeline, frame = diabetes
    fast = compiled.compile_model(pipeline, spec)
    rows = Rows.of(frame)
    assert_equal_to_pipeline(fast, pipeline, rows)
    assert_equal_to_pipeline(fast, pipeline, with_missing(rows, spec, every=2))
    unknown = {k: v.copy() for k, v in rows.columns.items()}
    unknown["sex"][::4] = "3"  # a code the team's encoder never saw (handle_unknown="ignore")
    assert_equal_to_pipeline(fast, pipeline, Rows(unknown))
    found = compiled.check(fast, pipeline, spec, frame.iloc[0].to_dict())
    assert found.compiled, found.detail


def standard_steps(numeric: list[str], categories: list[str], booleans: list[str], *,
                   sparse: bool = True):
    """A pipeline of the other steps the compiled path takes."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        MaxAbsScaler,
        MinMaxScaler,
        OneHotEncoder,
        OrdinalEncoder,
        RobustScaler,
        StandardScaler,
    )

    first, second, *rest = numeric
    cat_a, cat_b, *_ = categories
    return ColumnTransformer([
        ("minmax", Pipeline([("impute", SimpleImputer(strategy="mean", add_indicator=True)),
                             ("scale", MinMaxScaler(clip=True))]), [first]),
        ("robust", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value=50.0)),
                             ("scale", RobustScaler()), ("same", FunctionTransformer())]),
         [second]),
        ("maxabs", Pipeline([("impute", SimpleImputer(strategy="median")),
                             ("scale", MaxAbsScaler()), ("std", StandardScaler(with_mean=False))]),
         rest),
        ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                   encoded_missing_value=-2), [cat_a]),
        ("rare", OneHotEncoder(min_frequency=0.2, handle_unknown="infrequent_if_exist",
                               sparse_output=False), [cat_b]),
        ("binary", OneHotEncoder(drop="if_binary", handle_unknown="ignore", sparse_output=sparse),
         categories),
        ("flags", "passthrough", booleans),
    ], remainder="drop", transformer_weights={"ordinal": 0.5})


@pytest.fixture(scope="module")
def demo_frames(demo):
    spec, parts = demo
    x_train, y_train = parts["train"]
    return spec, x_train, y_train, Rows.of(parts["test"][0])


@pytest.mark.filterwarnings("ignore:Found unknown categories")  # the pipeline's own warning
@pytest.mark.parametrize("final", ["logistic", "calibrated_forest", "calibrated_linear_cv",
                                   "boosting_with_names", "other_estimator",
                                   "other_estimator_with_names"])
def test_the_other_standard_steps_compile(demo_frames, final):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import Pipeline

    spec, x, y, held_out = demo_frames
    numeric = [f.name for f in spec.features if f.numeric]
    categories = [f.name for f in spec.features if f.type == "category"]
    booleans = [f.name for f in spec.features if f.type == "boolean"]
    estimator = {
        "logistic": LogisticRegression(max_iter=2000),
        "calibrated_forest": CalibratedClassifierCV(
            ExtraTreesClassifier(n_estimators=20, min_samples_leaf=5, random_state=1),
            method="isotonic", cv=3),
        "calibrated_linear_cv": CalibratedClassifierCV(LogisticRegression(max_iter=2000), cv=3),
        "boosting_with_names": HistGradientBoostingClassifier(max_iter=30, random_state=1),
        "other_estimator": GaussianNB(),
        "other_estimator_with_names": GaussianNB(),  # its own predict_proba, on an array
    }[final]
    names = final.endswith("with_names")
    pre = standard_steps(numeric, categories, booleans, sparse=not names)
    if names:
        pre.set_output(transform="pandas")  # the estimator is fitted with feature names
    with one_thread():
        pipeline = Pipeline([("pre", pre), ("model", estimator)]).fit(x, y)
    fast = compiled.compile_model(pipeline, spec)
    with_gaps = with_missing(held_out, spec, every=2)
    unknown = {k: v.copy() for k, v in held_out.columns.items()}
    for name in categories:
        unknown[name][::5] = "never seen"
    for rows in (held_out, with_gaps, Rows(unknown)):
        assert_equal_to_pipeline(fast, pipeline, rows)
    found = compiled.check(fast, pipeline, spec, held_out.frame.iloc[0].to_dict())
    assert found.compiled, found.detail


def test_an_encoder_that_refuses_unknown_categories_leaves_them_to_the_pipeline(demo_frames):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    spec, x, y, held_out = demo_frames
    categories = [f.name for f in spec.features if f.type == "category"]
    pipeline = Pipeline([("pre", ColumnTransformer([("c", OneHotEncoder(), categories)])),
                         ("lr", LogisticRegression())]).fit(x, y)
    fast = compiled.compile_model(pipeline, spec)
    assert_equal_to_pipeline(fast, pipeline, held_out)
    unknown = {k: v.copy() for k, v in held_out.columns.items()}
    unknown[categories[0]][0] = "never seen"
    with pytest.raises(NotCompiled):
        fast.proba(Rows(unknown))  # the pipeline raises its own error for it


# ---- what is served by the pipeline instead ------------------------------------------------

def predictor_for(model, artefact: artifacts.Artefact) -> Predictor:
    stats = json.loads((artefact.path / "statistics.json").read_text())
    return Predictor(model, artefact.spec, stats, artefact.predictor.rule)


def test_an_unsupported_step_leaves_the_whole_pipeline_serving(families, caplog):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    artefact = artifacts.load(families, "hist_gradient_boosting")
    trained = artefact.predictor.model
    model = Pipeline([("shift", FunctionTransformer(lambda df: df)), *trained.steps])
    with caplog.at_level(logging.WARNING, logger="core.predict"):
        served = predictor_for(model, artefact)
    assert served.fast is None and not served.scoring_path.compiled
    assert "FunctionTransformer" in served.scoring_path.detail
    assert "served by its pipeline" in caplog.text and "FunctionTransformer" in caplog.text
    rows = model_rows([served.reference, {**served.reference, "glu": None}], served.spec)
    np.testing.assert_allclose(served.predict(rows).risk,
                               trained.predict_proba(rows.frame)[:, 1], rtol=0, atol=1e-12)


def test_a_wrong_compiled_constant_fails_the_check_and_the_pipeline_serves(v1, monkeypatch, caplog):
    real = compiled._Affine.__init__

    def corrupted(self, t, **kw):  # one scaler's mean a hair off
        real(self, t, **kw)
        if self.sub is not None:
            self.sub = self.sub + 1e-6

    monkeypatch.setattr(compiled._Affine, "__init__", corrupted)
    with caplog.at_level(logging.WARNING, logger="core.predict"):
        served = predictor_for(v1.predictor.model, v1)
    assert served.fast is None and not served.scoring_path.compiled
    assert "differs from the pipeline's predict_proba" in served.scoring_path.detail
    assert "served by its pipeline" in caplog.text
    rows = model_rows([served.reference], served.spec)
    np.testing.assert_allclose(served.predict(rows).risk,
                               v1.predictor.model.predict_proba(rows.frame)[:, 1], rtol=0,
                               atol=1e-12)


def test_a_pipeline_that_codes_a_missing_category_by_the_number_of_rows_falls_back(demo_frames):
    """pandas gives a missing category to the pipeline as None in a one-row frame and as NaN in
    a frame of many: an encoder that learned NaN as a category answers differently, so the
    compiled path (one answer) cannot serve it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    spec, x, y, held_out = demo_frames
    raw = json.loads(DEMO_SPEC.read_text())
    for f in raw["features"]:
        if f["name"] == "raas_inhibitor":
            f["required"] = False
    optional = parse_spec(raw, source="test")
    x = x.copy()
    x.loc[x.index[::7], "raas_inhibitor"] = None  # the training data has missing values
    pipeline = Pipeline([("pre", ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"),
                                                     ["raas_inhibitor"])])),
                         ("lr", LogisticRegression())]).fit(model_frame(x, optional), y)
    fast = compiled.compile_model(pipeline, optional)
    found = compiled.check(fast, pipeline, optional,
                           held_out.frame.iloc[0].to_dict())
    assert not found.compiled and "differs" in found.detail


def test_a_version_whose_compiled_path_differed_at_build_is_served_by_its_pipeline(v1):
    stats = json.loads((v1.path / "statistics.json").read_text())
    stats["compiled_check"] = {"agrees": False, "rows": 10, "max_difference": 1e-3,
                               "detail": "differs by 0.001"}
    served = Predictor(v1.predictor.model, v1.spec, stats, v1.predictor.rule)
    assert served.fast is None and "held-out test split" in served.scoring_path.detail
