"""Top contributing factors: the model-agnostic method (one input at a time set to its typical
value, through predict_proba) gives, for the logistic regression, exactly what its coefficients
give; and it works for a model without coefficients."""

import numpy as np
import pandas as pd
from conftest import REPO

from core import explain, routing
from core.features import model_frame
from core.spec import validate_payload


def sample_frame(spec, n=60) -> pd.DataFrame:
    rows = pd.read_csv(REPO / "data" / "sample_patients.csv", dtype=str, keep_default_na=False)
    return model_frame([validate_payload(spec, r)[1] for r in rows.head(n).to_dict("records")], spec)


def test_perturbation_equals_the_coefficients_for_the_linear_model(v1):
    predictor = v1.predictor
    frame = sample_frame(v1.spec)
    from_coefficients = predictor.effects(frame)  # linear shortcut: coefficients x transformed change

    def logit_of(rows):  # the model-agnostic route: nothing but predict_proba
        return routing.logit(predictor.model.predict_proba(rows)[:, 1])

    by_perturbation = explain.perturbation_effects(logit_of, frame, v1.spec, predictor.reference)
    np.testing.assert_allclose(by_perturbation, from_coefficients, rtol=0, atol=1e-8)
    assert (np.abs(from_coefficients) > 0.05).any(axis=1).all()  # every patient has some factor
    top = explain.top_factors(by_perturbation, v1.spec)
    assert top == explain.top_factors(from_coefficients, v1.spec)


def test_a_feature_at_its_typical_value_contributes_nothing(v1):
    typical = model_frame([v1.predictor.reference], v1.spec)
    assert np.allclose(v1.predictor.effects(typical), 0)


def test_direction_follows_the_change_in_risk(v1):
    frame = sample_frame(v1.spec, n=20)
    effects = v1.predictor.effects(frame)
    egfr = v1.spec.names.index("egfr")
    low = frame["egfr"] < v1.predictor.reference["egfr"]
    assert (effects[low.to_numpy(), egfr] > 0).all()  # lower eGFR than typical raises risk
    for row, factors in zip(effects, explain.top_factors(effects, v1.spec), strict=True):
        for f in factors:
            j = v1.spec.names.index(f["feature"])
            assert f["direction"] == ("raises risk" if row[j] > 0 else "lowers risk")
