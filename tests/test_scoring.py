"""Scoring: what a valid payload returns and records, how each out-of-distribution reason and
each side of the review band routes, and the directions the model's inputs move the risk."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import store_oracle as oracle
from conftest import MODELS

import core
from core.features import model_frame
from core.scoring import ScoreResult
from core.spec import validate_payload
from core.store import Store

REPO = Path(__file__).resolve().parent.parent
SPEC = json.loads((MODELS / "v1" / "spec.json").read_text())
FEATURES = {f["name"]: f for f in SPEC["features"]}
MANIFEST = json.loads((MODELS / "v1" / "manifest.json").read_text())
THRESHOLD = MANIFEST["routing"]["action_threshold"]
SAFE_LOW = MANIFEST["routing"]["safe_low_bound"]
LEVEL = MANIFEST["routing"]["confidence_level"]
# Baseline potassium values inside the validated range, finely spaced: the search grid.
K_GRID = np.round(np.arange(FEATURES["potassium"]["validated_min"],
                            FEATURES["potassium"]["validated_max"] + 1e-9, 0.01), 2)


def _validated_range(name: str) -> str:
    f = FEATURES[name]
    return f"{f['validated_min']:g}-{f['validated_max']:g} {f.get('unit', '')}".strip()


def _high_risk_profile(payload: dict) -> dict:
    """Every risk-raising input, each inside its validated range."""
    return {**payload, "age": 80, "egfr": 30.0, "diabetes": True, "nsaid": True,
            "potassium_supplement": True, "loop_diuretic": False, "raas_inhibitor": "arni",
            "spironolactone_dose_mg": 50.0, "nyha_class": "IV"}


# ---- what a valid payload returns and records ----------------------------------------------


def test_valid_payload_is_recorded_with_its_provenance(any_store: Store, v1, valid_payload):
    before = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    result = core.score(valid_payload, user="dr.test", source="form")
    after = datetime.now(UTC).replace(tzinfo=None)

    assert isinstance(result, ScoreResult)
    assert result.patient_ref == "TEST-0001"
    assert result.model_version == "v1"
    assert result.model_sha256 == MANIFEST["files"]["model.skops"] == v1.sha256
    assert result.created_at.utcoffset() == timedelta(0)
    assert result.action_threshold == THRESHOLD

    row = any_store.prediction(result.prediction_id)
    assert row is not None
    assert any_store.count("predictions") == 1
    assert row["user_name"] == "dr.test"
    assert row["source"] == "form"
    assert row["patient_ref"] == "TEST-0001"
    assert row["model_version"] == "v1"
    assert row["model_sha256"] == MANIFEST["files"]["model.skops"]
    assert (row["risk"], row["risk_class"], row["routing"]) == (
        result.risk, result.risk_class, result.routing)
    assert before <= row["created_at"] <= after  # stored as UTC
    assert row["created_at"] == result.created_at.replace(tzinfo=None)

    # The input hash is over the validated features (numbers as numbers, no patient reference).
    features = {k: v for k, v in valid_payload.items() if k != "patient_ref"}
    features = {k: float(v) if FEATURES[k]["type"] == "number" else v for k, v in features.items()}
    canonical = json.dumps(features, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert row["input_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()

    entries = oracle.rows(any_store, "audit_log")
    assert list(entries["seq"]) == [row["audit_seq"]] == [1]
    assert entries.iloc[0]["kind"] == "prediction"
    assert entries.iloc[0]["subject"] == result.prediction_id


def test_typical_complete_payload_is_auto_finalised(any_store: Store, valid_payload):
    result = core.score(valid_payload, user="dr.test", source="form")
    assert result.routing == "auto_finalised"
    assert result.reasons == []
    assert result.risk_class == "low"
    assert result.confidence >= LEVEL
    assert result.risk_interval_95[0] <= result.risk <= result.risk_interval_95[1]


def test_risk_equals_the_pipelines_predict_proba(any_store: Store, v1, valid_payload):
    pipeline = v1.predictor.model  # the pipeline as loaded from its hash-checked file
    result = core.score(valid_payload, user="dr.test", source="form")
    values = {k: v for k, v in valid_payload.items() if k != "patient_ref"}
    expected = pipeline.predict_proba(model_frame([values], v1.spec))[0, 1]
    assert result.risk == round(float(expected), 4)

    # The matrix arithmetic agrees with predict_proba to rounding error on every sample patient.
    samples = pd.read_csv(REPO / "data" / "sample_patients.csv", dtype=str, keep_default_na=False)
    rows = [validate_payload(v1.spec, r)[1] for r in samples.to_dict("records")]
    frame = model_frame(rows, v1.spec)
    np.testing.assert_allclose(v1.predictor.predict(frame).risk,
                               pipeline.predict_proba(frame)[:, 1], rtol=0, atol=1e-12)


def test_top_factors_are_at_most_three_with_directions(any_store: Store, valid_payload):
    for payload in (valid_payload, _high_risk_profile(valid_payload)):
        result = core.score(payload, user="dr.test", source="form")
        assert 1 <= len(result.top_factors) <= 3
        for factor in result.top_factors:
            assert factor.feature in FEATURES
            expected = "raises risk" if factor.effect > 0 else "lowers risk"
            assert factor.direction == expected
        effects = [abs(f.effect) for f in result.top_factors]
        assert effects == sorted(effects, reverse=True)


@pytest.mark.parametrize("user", ["", "   ", None, 42])
def test_score_needs_a_user(any_store: Store, valid_payload, user):
    with pytest.raises(ValueError, match="user"):
        core.score(valid_payload, user=user, source="form")
    with pytest.raises(TypeError):
        core.score(valid_payload)  # type: ignore[call-arg]
    assert any_store.count("predictions") == 0
    assert any_store.count("rejected_inputs") == 0


@pytest.mark.parametrize("source", ["form", "api"])
def test_score_records_the_source_its_caller_states(any_store: Store, valid_payload, source):
    result = core.score(valid_payload, user="dr.test", source=source)
    assert any_store.prediction(result.prediction_id)["source"] == source
    with pytest.raises(core.InvalidInput):
        core.score({**valid_payload, "egfr": "bad"}, user="dr.test", source=source)
    assert oracle.rows(any_store, "rejected_inputs")["source"].tolist() == [source]


@pytest.mark.parametrize("source", ["", "Form", "cds-hooks", None, 3])
def test_score_refuses_an_unknown_source_and_records_nothing(any_store: Store, valid_payload, source):
    with pytest.raises(ValueError, match="unknown source .*one of form, batch, api"):
        core.score(valid_payload, user="dr.test", source=source)
    with pytest.raises(ValueError, match="unknown source"):
        core.score({**valid_payload, "egfr": "bad"}, user="dr.test", source=source)
    with pytest.raises(TypeError):  # the caller must say where the payload came from
        core.score(valid_payload, user="dr.test")  # type: ignore[call-arg]
    assert any_store.count("predictions") == 0 and any_store.count("rejected_inputs") == 0


# ---- out of distribution: computed, shown, and routed to review with a reason -----------------


@pytest.mark.parametrize(("field", "value", "side"), [
    ("age", 30, "below"),
    ("egfr", 5.0, "below"),
    ("potassium", 3.0, "below"),
    ("spironolactone_dose_mg", 6.25, "below"),
    ("egfr", 150.0, "above"),
    ("weight_kg", 200.0, "above"),
    ("sbp", 200.0, "above"),
    ("spironolactone_dose_mg", 100.0, "above"),
])
def test_value_outside_validated_range_routes_to_review(any_store: Store, valid_payload,
                                                        field, value, side):
    f = FEATURES[field]
    assert f["hard_min"] <= value <= f["hard_max"]  # legal, so scored rather than rejected
    result = core.score({**valid_payload, field: value}, user="dr.test", source="form")
    assert result.routing == "review"
    expected = (f"{f['label']} {value:g} is {side} the range the model was validated on "
                f"({_validated_range(field)}).")
    assert expected in result.reasons, result.reasons
    assert any_store.prediction(result.prediction_id)["routing"] == "review"


@pytest.mark.parametrize("field", [n for n, f in FEATURES.items() if not f["required"]])
@pytest.mark.parametrize("how", ["absent", "none", "empty-text"])
def test_missing_optional_value_routes_to_review(any_store: Store, valid_payload, field, how):
    payload = dict(valid_payload)
    if how == "absent":
        del payload[field]
    else:
        payload[field] = None if how == "none" else ""
    result = core.score(payload, user="dr.test", source="form")
    assert result.routing == "review"
    label = FEATURES[field]["label"]
    assert [r for r in result.reasons if r.startswith(f"{label} was not given")], result.reasons


def test_unusual_combination_routes_to_review(any_store: Store, v1, valid_payload):
    """Two values each inside its validated range, unusual together (Mahalanobis novelty)."""
    numeric = [n for n, f in FEATURES.items() if f["type"] in ("number", "integer")]
    found = None
    for a, b in itertools.combinations(numeric, 2):
        fa, fb = FEATURES[a], FEATURES[b]
        for va, vb in itertools.product((fa["validated_min"], fa["validated_max"]),
                                        (fb["validated_min"], fb["validated_max"])):
            payload = {**valid_payload, a: va, b: vb}
            values = {k: v for k, v in payload.items() if k != "patient_ref"}
            pred = v1.predictor.predict(model_frame([values], v1.spec))
            if pred.reasons[0] and all("unusual" in r for r in pred.reasons[0]):
                found = (payload, FEATURES[a]["label"], FEATURES[b]["label"])
                break
        if found:
            break
    assert found, "no pair of validated extremes trips the novelty score"
    payload, label_a, label_b = found

    result = core.score(payload, user="dr.test", source="form")
    assert result.routing == "review"
    (reason,) = result.reasons
    assert reason.startswith("This combination of values is unusual")
    assert label_a in reason and label_b in reason


# ---- routing on both sides of the review band ---------------------------------------------------


def _landing(predictor, profile: dict) -> pd.DataFrame:
    """Risk, confidence and reasons for the profile over the potassium grid (nothing recorded)."""
    rows = [{**{k: v for k, v in profile.items() if k != "patient_ref"}, "potassium": float(k)}
            for k in K_GRID]
    pred = predictor.predict(model_frame(rows, predictor.spec))
    return pd.DataFrame({"potassium": K_GRID, "risk": pred.risk, "confidence": pred.confidence,
                         "reasons": pred.reasons, "routing": np.where(pred.review, "review",
                                                                      "auto_finalised")})


def _only_uncertainty(reasons: list[str]) -> bool:
    return len(reasons) == 1 and ("close to the action threshold" in reasons[0]
                                  or "not clearly below the safe-low bound" in reasons[0])


def _pick(grid: pd.DataFrame, mask: pd.Series, payload: dict) -> dict:
    assert mask.any(), "no potassium in the validated range lands in this region"
    return {**payload, "potassium": float(grid[mask].iloc[0]["potassium"])}


@pytest.fixture
def regions(v1, valid_payload) -> dict[str, dict]:
    """One payload per routing region of the served model, found by varying baseline potassium."""
    typical = _landing(v1.predictor, valid_payload)
    high = _landing(v1.predictor, _high_risk_profile(valid_payload))
    no_reason = typical["reasons"].map(len) == 0
    return {
        "uncertain_high": _pick(typical, (typical["risk"] >= THRESHOLD)
                                & (typical["confidence"] < LEVEL)
                                & typical["reasons"].map(_only_uncertainty), valid_payload),
        "clear_high": _pick(high, (high["risk"] >= THRESHOLD) & (high["confidence"] >= LEVEL)
                            & (high["reasons"].map(len) == 0), _high_risk_profile(valid_payload)),
        "clear_low": _pick(typical, (typical["risk"] < SAFE_LOW) & no_reason, valid_payload),
    }


def test_just_above_threshold_but_uncertain_goes_to_review(any_store: Store, regions):
    result = core.score(regions["uncertain_high"], user="dr.test", source="form")
    assert result.risk_class == "high" and result.risk >= THRESHOLD
    assert result.confidence < LEVEL
    assert result.routing == "review"
    assert "close to the action threshold" in result.reasons[0]


def test_clearly_high_is_auto_finalised_high(any_store: Store, regions):
    result = core.score(regions["clear_high"], user="dr.test", source="form")
    assert (result.risk_class, result.routing, result.reasons) == ("high", "auto_finalised", [])
    assert result.risk >= THRESHOLD and result.confidence >= LEVEL


def test_clearly_low_is_auto_finalised_low(any_store: Store, regions):
    result = core.score(regions["clear_low"], user="dr.test", source="form")
    assert (result.risk_class, result.routing, result.reasons) == ("low", "auto_finalised", [])
    assert result.risk < SAFE_LOW and result.confidence >= LEVEL


@pytest.fixture
def banded(v1):
    """The served model with a safe-low bound well below the threshold (the demonstration's own
    bound may equal it), so that the band between them exists."""
    predictor = copy.copy(v1.predictor)
    predictor.rule = v1.predictor.rule.model_copy(update={"safe_low_bound": 0.12})
    return predictor


def test_low_risk_above_the_safe_low_bound_goes_to_review(banded, valid_payload):
    grid = _landing(banded, valid_payload)
    band = grid[(grid["risk"] >= 0.12) & (grid["risk"] < THRESHOLD)]
    assert len(band) and (band["routing"] == "review").all()
    assert band["reasons"].map(lambda r: "not clearly below the safe-low bound (12.0%)" in r[0]).all()


def test_low_risk_below_the_bound_but_uncertain_goes_to_review(banded, valid_payload):
    grid = _landing(banded, valid_payload)
    unsure = grid[(grid["risk"] < 0.12) & (grid["confidence"] < LEVEL)]
    assert len(unsure) and (unsure["routing"] == "review").all()
    sure = grid[(grid["risk"] < 0.12) & (grid["confidence"] >= LEVEL) & (grid["reasons"].map(len) == 0)]
    assert len(sure) and (sure["routing"] == "auto_finalised").all()


def test_the_routing_fallback_auto_finalises_no_low_risk_result(v1, valid_payload):
    predictor = copy.copy(v1.predictor)
    predictor.rule = v1.predictor.rule.model_copy(update={"safe_low_bound": 0.0})
    grid = _landing(predictor, valid_payload)
    low = grid[grid["risk"] < THRESHOLD]
    assert len(low) and (low["routing"] == "review").all() and (low["confidence"] == 0).all()
    assert low["reasons"].map(lambda r: "auto-finalises no low-risk result" in r[0]).all()


# ---- directions the model must respect ----------------------------------------------------


def _risks(v1, payload: dict, field: str, values) -> np.ndarray:
    base = {k: v for k, v in payload.items() if k != "patient_ref"}
    return v1.predictor.predict(model_frame([{**base, field: v} for v in values], v1.spec)).risk


@pytest.fixture
def profiles(valid_payload) -> list[dict]:
    samples = pd.read_csv(REPO / "data" / "sample_patients.csv", dtype=str, keep_default_na=False)
    return [valid_payload, _high_risk_profile(valid_payload), *samples.head(20).to_dict("records")]


def _validated(v1, payload: dict) -> dict:
    return validate_payload(v1.spec, payload)[1]


def test_higher_potassium_never_lowers_risk(v1, profiles):
    grid = np.linspace(FEATURES["potassium"]["hard_min"], FEATURES["potassium"]["hard_max"], 151)
    for p in profiles:
        risks = _risks(v1, _validated(v1, p), "potassium", grid)
        assert np.all(np.diff(risks) >= 0), p
        assert risks[-1] > risks[0]


def test_lower_egfr_never_lowers_risk(v1, profiles):
    grid = np.linspace(FEATURES["egfr"]["hard_max"], FEATURES["egfr"]["hard_min"], 199)  # falling
    for p in profiles:
        risks = _risks(v1, _validated(v1, p), "egfr", grid)
        assert np.all(np.diff(risks) >= 0), p
        assert risks[-1] > risks[0]


def test_loop_diuretic_lowers_risk(v1, profiles):
    for p in profiles:
        without, with_loop = _risks(v1, _validated(v1, p), "loop_diuretic", [False, True])
        assert with_loop < without, p


def test_loop_diuretic_lowers_the_scored_risk(any_store: Store, v1, valid_payload):
    """Most training patients take a loop diuretic (the typical answer is yes), so being off one
    raises this patient's risk compared with the typical value, and being on one changes nothing."""
    on = core.score({**valid_payload, "loop_diuretic": True}, user="dr.test", source="form")
    off = core.score({**valid_payload, "loop_diuretic": False}, user="dr.test", source="form")
    assert on.risk < off.risk
    assert v1.predictor.reference["loop_diuretic"] is True
    assert any(f.feature == "loop_diuretic" and f.direction == "raises risk" for f in off.top_factors)
    assert all(f.feature != "loop_diuretic" for f in on.top_factors)


def test_new_ids_are_distinct_version_4_uuids():
    import uuid

    from core.scoring import new_ids

    ids = new_ids(5000)
    assert len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
