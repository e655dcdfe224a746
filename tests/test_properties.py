"""Property-based tests of score(): thousands of random and hostile payloads never raise
anything but InvalidInput and never turn invalid input into a prediction; random valid
payloads always score with a coherent result.

Validity is decided by an oracle written here from the spec file's hard limits, categories and
patient-reference rule, independently of core's validator. Where text could reasonably be read
as a value (numbers, yes/no words, padded text), the oracle reads it generously: a prediction
from a payload the oracle calls invalid is a failure, so the oracle must never be stricter than
the contract, only never more lenient about limits, finiteness, categories or required fields.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest
from conftest import MODELS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core
from core.scoring import ScoreResult
from core.store import Store

REPO = Path(__file__).resolve().parent.parent
SPEC = json.loads((MODELS / "v1" / "spec.json").read_text())
FEATURES = {f["name"]: f for f in SPEC["features"]}
REF_MAX = SPEC["patient_reference"]["max_length"]
REF_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_/.\-]*", re.ASCII)
LEVEL = SPEC["routing"]["confidence_level"]
THRESHOLD = SPEC["action_threshold"]
BOOL_WORDS = {"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"}
MISSING = object()

PROPERTY_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                              HealthCheck.data_too_large, HealthCheck.large_base_example],
}

# ---- the oracle -------------------------------------------------------------------------------


def _text(value):
    """The text a value stands for, or None (bytes are read as UTF-8 text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _blank(value) -> bool:
    text = _text(value)
    return value is MISSING or value is None or (text is not None and not text.strip())


def _number(value):
    """The number a value stands for, or None when it is not a number (a yes/no is not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    text = _text(value)
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def numeric_ok(feature: dict, value) -> bool:
    if _blank(value):
        return not feature["required"]
    n = _number(value)
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return False
    if not feature["hard_min"] <= n <= feature["hard_max"]:
        return False
    return feature["type"] == "number" or float(n).is_integer()


def boolean_ok(value) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return value in (0, 1)
    text = _text(value)
    return text is not None and text.strip().lower() in BOOL_WORDS


def category_ok(feature: dict, value) -> bool:
    if value is MISSING or value is None or (isinstance(value, str) and not value.strip()):
        return not feature["required"]
    return isinstance(value, str) and value.strip() in feature["categories"]


def reference_ok(value) -> bool:
    text = _text(value)
    if text is None:
        return False
    text = text.strip()
    return 1 <= len(text) <= REF_MAX and REF_PATTERN.fullmatch(text) is not None


def oracle_valid(payload) -> bool:
    """Whether the spec allows a prediction from this payload."""
    if not isinstance(payload, Mapping):
        return False
    if any(not isinstance(k, str) for k in payload):
        return False
    if set(payload) - {"patient_ref", *FEATURES}:
        return False
    if not reference_ok(payload.get("patient_ref", MISSING)):
        return False
    for name, f in FEATURES.items():
        value = payload.get(name, MISSING)
        if f["type"] in ("number", "integer"):
            ok = numeric_ok(f, value)
        elif f["type"] == "boolean":
            ok = value is not MISSING and boolean_ok(value)
        else:
            ok = category_ok(f, value)
        if not ok:
            return False
    return True


def test_oracle_agrees_on_known_cases(valid_payload):
    assert oracle_valid(valid_payload)
    assert oracle_valid({**valid_payload, "weight_kg": None, "egfr": " 58 ", "diabetes": "yes"})
    assert oracle_valid({k: v for k, v in valid_payload.items() if k != "lvef"})
    assert not oracle_valid({k: v for k, v in valid_payload.items() if k != "egfr"})
    assert not oracle_valid({**valid_payload, "egfr": math.nan})
    assert not oracle_valid({**valid_payload, "egfr": True})
    assert not oracle_valid({**valid_payload, "potassium": 9.01})
    assert not oracle_valid({**valid_payload, "age": 70.5})
    assert not oracle_valid({**valid_payload, "sex": "Male"})
    assert not oracle_valid({**valid_payload, "diabetes": 2})
    assert not oracle_valid({**valid_payload, "patient_ref": "A\x00B"})
    assert not oracle_valid({**valid_payload, "patient_ref": "A" * (REF_MAX + 1)})
    assert not oracle_valid({**valid_payload, "extra": 1})
    assert not oracle_valid({**valid_payload, 1: 1})
    assert not oracle_valid([valid_payload])


# ---- strategies -------------------------------------------------------------------------------


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


# Integers past Python's 4300-digit str limit, nesting past the recursion limit and lone
# surrogates (what JSON '\\ud800' decodes to) are all in the strategies, and have tests below.
HUGE_INT = 10**5000
NESTING = 5000

control_text = st.text(st.characters(codec=None, categories=["Cc", "Cf", "Zl", "Zp", "Zs"]),
                       max_size=20)
surrogate_text = st.text(st.characters(codec=None, categories=["Cs", "Lu", "Nd"]), min_size=1,
                         max_size=6)
long_text = st.builds(lambda c, n: c * n, st.sampled_from(["9", "a", " ", "\x00", "é", "A-"]),
                      st.integers(500, 200_000))
number_text = st.builds(
    lambda x, fmt, pad: pad + format(x, fmt) + pad,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "g", "e", ".3f", ".0f"]),
    st.sampled_from(["", " ", "\t", "\n"]),
)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-HUGE_INT, HUGE_INT),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 2**53 + 1, -(2**63)]),
    st.text(max_size=30),
    control_text,
    surrogate_text,
    long_text,
    number_text,
    st.binary(max_size=20),
    st.integers(1, NESTING).map(_nested),
    st.recursive(st.none() | st.integers() | st.floats() | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                 | st.tuples(inner, inner),
                 max_leaves=8),
    st.sampled_from([set(), frozenset({1}), 1j, object(), Ellipsis, type, sys]),
)


def plausible(name: str):
    """Values a form or file could send for this field, legal or not (near the limits too)."""
    if name == "patient_ref":
        return st.one_of(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_/.\-]{0,70}\Z"),
                         st.text(max_size=REF_MAX + 5))
    f = FEATURES[name]
    if f["type"] == "boolean":
        return st.one_of(st.booleans(), st.sampled_from([0, 1, 2, -1, 0.0, 1.0, 0.5, "yes", "no",
                                                        "Y", "off", "maybe", "", "yes ", b"no"]))
    if f["type"] == "category":
        return st.one_of(st.sampled_from(f["categories"]),
                         st.sampled_from([c.upper() for c in f["categories"]] + ["", " ", "other"]),
                         st.sampled_from(f["categories"]).map(lambda c: f" {c}\t"))
    lo, hi = f["hard_min"], f["hard_max"]
    width = hi - lo
    inside = (st.integers(int(math.ceil(lo)), int(hi)) if f["type"] == "integer"
              else st.floats(lo, hi))
    edges = st.sampled_from([lo, hi, math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf),
                             lo - 1, hi + 1, int(lo), int(hi), -lo, 0, 0.0, -0.0])
    return st.one_of(inside, edges, st.floats(lo - width, hi + width), inside.map(str),
                     inside.map(lambda x: f" {x} ".encode()))


@st.composite
def valid_payloads(draw):
    payload = {"patient_ref": draw(st.from_regex(rf"\A[A-Za-z0-9][A-Za-z0-9_/.\-]{{0,{REF_MAX - 1}}}\Z"))}
    for name, f in FEATURES.items():
        if not f["required"] and draw(st.booleans()):
            if draw(st.booleans()):
                payload[name] = None
            continue
        if f["type"] == "integer":
            payload[name] = draw(st.integers(int(f["hard_min"]), int(f["hard_max"])))
        elif f["type"] == "number":
            payload[name] = draw(st.floats(f["hard_min"], f["hard_max"]))
        elif f["type"] == "boolean":
            payload[name] = draw(st.booleans())
        else:
            payload[name] = draw(st.sampled_from(f["categories"]))
    return payload


extra_keys = st.one_of(st.text(max_size=10), st.sampled_from(["Patient_Ref", "age ", "egfr\x00", ""]),
                      st.integers(), st.none(), st.floats(), st.tuples(st.integers()),
                      st.binary(max_size=4), surrogate_text)


@st.composite
def hostile_payloads(draw):
    """Payloads of three kinds: a valid one with a few hostile changes (near the boundary of
    validity), one drawn field by field from plausible values and junk, and non-mappings."""
    kind = draw(st.sampled_from(["changed-valid"] * 5 + ["field-by-field"] * 4 + ["not-a-mapping"]))
    if kind == "not-a-mapping":
        return draw(junk | st.lists(junk, max_size=3) | st.text() | st.binary())
    if kind == "changed-valid":
        payload = draw(valid_payloads())
        for _ in range(draw(st.integers(0, 3))):
            change = draw(st.sampled_from(["plausible", "junk", "drop", "extra"]))
            name = draw(st.sampled_from(["patient_ref", *FEATURES]))
            if change == "plausible":
                payload[name] = draw(plausible(name))
            elif change == "junk":
                payload[name] = draw(junk)
            elif change == "drop":
                payload.pop(name, None)
            else:
                payload[draw(extra_keys)] = draw(junk)
    else:
        payload = {}
        for name in ["patient_ref", *FEATURES]:
            presence = draw(st.sampled_from(["plausible"] * 6 + ["junk", "absent"]))
            if presence == "plausible":
                payload[name] = draw(plausible(name))
            elif presence == "junk":
                payload[name] = draw(junk)
        payload.update(draw(st.dictionaries(extra_keys, junk, max_size=2)))
    wrap = draw(st.sampled_from([dict, dict, dict, MappingProxyType]))
    return wrap(payload)


# ---- properties -------------------------------------------------------------------------------


# Validation does not depend on the store: the embedded store takes the long runs, PostgreSQL a
# shorter one of the same properties (what it records, and that it records nothing else).
ON_DUCKDB = pytest.mark.parametrize("any_store", ["duckdb"], indirect=True)
ON_POSTGRESQL = pytest.mark.parametrize("any_store", ["postgresql"], indirect=True)


@ON_DUCKDB
@settings(max_examples=700, **PROPERTY_SETTINGS)
@given(payload=hostile_payloads())
def test_hostile_payloads_never_crash_or_predict_from_invalid_input(any_store: Store, payload):
    _hostile(any_store, payload)


@ON_POSTGRESQL
@settings(max_examples=250, **PROPERTY_SETTINGS)
@given(payload=hostile_payloads())
def test_hostile_payloads_on_postgresql(any_store: Store, payload):
    _hostile(any_store, payload)


def _hostile(any_store: Store, payload) -> None:
    predictions, rejections = any_store.count("predictions"), any_store.count("rejected_inputs")
    valid = oracle_valid(payload)
    try:
        result = core.score(payload, user="fuzz", source="form")
    except core.InvalidInput as exc:
        assert exc.errors, "InvalidInput must name at least one problem"
        assert all(set(e) == {"field", "message", "value"} for e in exc.errors)
        assert any_store.count("predictions") == predictions
        assert any_store.count("rejected_inputs") == rejections + 1
        return
    assert isinstance(result, ScoreResult)
    assert valid, f"a prediction was made from input the spec does not allow: {payload!r:.300}"
    assert any_store.count("predictions") == predictions + 1
    assert any_store.count("rejected_inputs") == rejections
    # What was recorded is inside every hard limit and category, whatever text it came from.
    recorded = json.loads(any_store.prediction(result.prediction_id)["input_json"])
    for name, f in FEATURES.items():
        value = recorded[name]
        if f["type"] in ("number", "integer"):
            assert value is None and not f["required"] or f["hard_min"] <= value <= f["hard_max"]
        elif f["type"] == "boolean":
            assert isinstance(value, bool)
        else:
            assert value in f["categories"]


@ON_DUCKDB
@settings(max_examples=500, **PROPERTY_SETTINGS)
@given(payload=valid_payloads())
def test_valid_payloads_always_score_coherently(any_store: Store, payload):
    _valid(any_store, payload)


@ON_POSTGRESQL
@settings(max_examples=125, **PROPERTY_SETTINGS)
@given(payload=valid_payloads())
def test_valid_payloads_score_coherently_on_postgresql(any_store: Store, payload):
    _valid(any_store, payload)


def _valid(any_store: Store, payload) -> None:
    assert oracle_valid(payload)
    before = any_store.count("predictions")
    result = core.score(payload, user="fuzz", source="form")
    assert any_store.count("predictions") == before + 1
    low, high = result.risk_interval_95
    assert 0.0 <= low <= result.risk <= high <= 1.0
    assert 0.0 <= result.confidence <= 1.0
    if result.risk > THRESHOLD + 1e-4:  # risks are shown to 4 decimals
        assert result.risk_class == "high"
    if result.risk < THRESHOLD - 1e-4:
        assert result.risk_class == "low"
    if result.confidence < LEVEL:
        assert result.routing == "review"
    if result.routing == "review":
        assert result.reasons, "a prediction sent to review says why"
    else:
        assert result.reasons == [] and result.confidence >= LEVEL
    assert len(result.top_factors) <= 3


def test_hostile_run_covered_both_outcomes(any_store: Store):
    """The hostile strategy reaches valid payloads often, so the prediction path is exercised
    near the boundary of validity, not only the rejection path."""
    found = {"valid": 0, "invalid": 0}

    @settings(max_examples=200, database=None, **PROPERTY_SETTINGS)
    @given(payload=hostile_payloads())
    def tally(payload):
        found["valid" if oracle_valid(payload) else "invalid"] += 1

    tally()
    assert found["valid"] >= 20 and found["invalid"] >= 20, found


# ---- hostile values that once escaped as other exceptions -------------------------------------


def test_integer_beyond_4300_digits_is_rejected(any_store: Store, valid_payload):
    with pytest.raises(core.InvalidInput):
        core.score({**valid_payload, "age": 10**5000}, user="fuzz", source="form")


def test_deeply_nested_value_is_rejected(any_store: Store, valid_payload):
    with pytest.raises(core.InvalidInput):
        core.score({**valid_payload, "egfr": _nested(10_000)}, user="fuzz", source="form")


@pytest.mark.parametrize("where", ["value", "reference", "key"])
def test_lone_surrogate_is_rejected(any_store: Store, valid_payload, where):
    payload = {"value": {**valid_payload, "sex": "\ud800"},
               "reference": {**valid_payload, "patient_ref": "A\ud800"},
               "key": {**valid_payload, "\ud800": 1}}[where]
    with pytest.raises(core.InvalidInput):
        core.score(payload, user="fuzz", source="form")
