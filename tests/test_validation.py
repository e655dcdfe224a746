"""Validation: every kind of bad payload is refused with InvalidInput naming each problem,
recorded as a rejected input (field names and a payload hash, never the values), and never
turned into a prediction."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from datetime import date

import pytest
import store_oracle as oracle
from conftest import TEST_PATIENT_KEY

import core
from core.errors import InvalidInput, problem
from core.store import Store

MAX_ECHO = 80  # the longest value echo an error may carry


def _without(field: str):
    def change(p: dict) -> dict:
        return {k: v for k, v in p.items() if k != field}
    return change


def _with(**values):
    def change(p: dict) -> dict:
        return {**p, **values}
    return change


# (id, change to the valid payload, field named in the error, words in the message)
REJECTIONS = [
    ("wrong-type-number", _with(egfr=[58.0]), "egfr", "must be a number"),
    ("wrong-type-text-in-number", _with(potassium="four"), "potassium", "must be a number"),
    ("wrong-type-category", _with(sex=1), "sex", "listed options"),
    ("wrong-type-boolean", _with(diabetes="maybe"), "diabetes", "yes or no"),
    ("wrong-type-reference", _with(patient_ref=12345), "patient_ref", "must be text"),
    ("fraction-in-integer", _with(age=70.5), "age", "whole number"),
    ("missing-required-number", _without("egfr"), "egfr", "is required"),
    ("missing-required-boolean", _without("nsaid"), "nsaid", "is required"),
    ("missing-reference", _without("patient_ref"), "patient_ref", "is required"),
    ("empty-reference", _with(patient_ref="   "), "patient_ref", "is required"),
    ("nan", _with(potassium=math.nan), "potassium", "finite number"),
    ("nan-text", _with(potassium="NaN"), "potassium", "finite number"),
    ("plus-infinity", _with(egfr=math.inf), "egfr", "finite number"),
    ("minus-infinity", _with(sbp=-math.inf), "sbp", "finite number"),
    ("above-hard-limit", _with(potassium=9.5), "potassium", "between 1.5 and 9 mmol/L"),
    ("below-hard-limit", _with(age=17), "age", "between 18 and 120 years"),
    ("optional-below-hard-limit", _with(weight_kg=10.0), "weight_kg", "between 25 and 350 kg"),
    ("unknown-category", _with(sex="other"), "sex", "must be one of: female, male"),
    ("category-wrong-case", _with(nyha_class="iv"), "nyha_class", "must be one of: I, II, III, IV"),
    ("unknown-extra-field", _with(heart_rate=72), "heart_rate", "unknown field"),
    ("oversized-reference", _with(patient_ref="A" * 65), "patient_ref", "at most 64 characters"),
    ("oversized-text-in-number", _with(egfr="x" * 100_000), "egfr", "must be a number"),
    ("reference-nul", _with(patient_ref="AB\x00C"), "patient_ref", "no spaces or control"),
    ("reference-newline-inside", _with(patient_ref="AB\nC"), "patient_ref", "no spaces or control"),
    ("reference-escape", _with(patient_ref="AB\x1b[2JC"), "patient_ref", "no spaces or control"),
    ("reference-bidi-override", _with(patient_ref="AB\u202eC"), "patient_ref", "no spaces or control"),
    ("reference-space", _with(patient_ref="AB C"), "patient_ref", "no spaces or control"),
    ("bool-in-number", _with(egfr=True), "egfr", "not yes/no"),
    ("bool-in-integer", _with(age=False), "age", "not yes/no"),
]


@pytest.mark.parametrize(("change", "field", "words"), [r[1:] for r in REJECTIONS],
                         ids=[r[0] for r in REJECTIONS])
def test_each_rejection_kind_is_refused_named_and_recorded(any_store: Store, valid_payload, v1,
                                                           change, field, words):
    payload = change(valid_payload)
    with pytest.raises(core.InvalidInput) as info:
        core.score(payload, user="dr.test", source="form")
    errors = info.value.errors
    assert [e for e in errors if e["field"] == field and words in e["message"]], errors
    for e in errors:
        assert set(e) == {"field", "message", "value"}
        assert isinstance(e["value"], str) and len(e["value"]) <= MAX_ECHO
    assert any_store.count("predictions") == 0
    assert any_store.count("rejected_inputs") == 1
    recorded = json.loads(oracle.rows(any_store, "rejected_inputs").iloc[0]["fields_json"])
    known = {"patient_ref", "(payload)", *v1.spec.names}  # any other name is recorded anonymously
    assert (field if field in known else "(unknown field)") in [f["field"] for f in recorded]


def test_a_field_the_model_does_not_have_is_recorded_without_its_name(any_store: Store,
                                                                      valid_payload):
    name = "Jane Roe born 1950-02-03"  # a key is whatever the sender typed
    with pytest.raises(core.InvalidInput) as info:
        core.score({**valid_payload, name: 1, "sex": "other"}, user="dr.test", source="form")
    assert {e["field"] for e in info.value.errors} == {name, "sex"}  # the sender is told
    recorded = json.loads(oracle.rows(any_store, "rejected_inputs").iloc[0]["fields_json"])
    assert recorded == [{"field": "sex", "message": "must be one of: female, male"},
                        {"field": "(unknown field)",
                         "message": "is not an input of this model (unknown field)"}]
    entries = oracle.rows(any_store, "audit_log")
    assert not any("Jane Roe" in text for text in entries["content_json"])


@pytest.mark.parametrize("payload", [None, [], ["age", 70], "age=70", 42, (("age", 70),), b"{}"],
                         ids=["none", "list", "list-of-items", "text", "number", "pairs", "bytes"])
def test_non_mapping_payload_is_refused(any_store: Store, payload):
    with pytest.raises(core.InvalidInput) as info:
        core.score(payload, user="dr.test", source="form")
    (error,) = info.value.errors
    assert error["field"] == "(payload)"
    assert "mapping" in error["message"]
    assert any_store.count("predictions") == 0
    assert any_store.count("rejected_inputs") == 1


@pytest.mark.parametrize("key", [7, None, 1.5, ("age",), b"age"], ids=repr)
def test_non_text_key_is_refused(any_store: Store, valid_payload, key):
    with pytest.raises(core.InvalidInput) as info:
        core.score({**valid_payload, key: 70}, user="dr.test", source="form")
    assert [e for e in info.value.errors
            if e["field"] == repr(key) and "field names must be text" in e["message"]]
    assert any_store.count("predictions") == 0


def test_every_problem_is_listed_at_once(any_store: Store, valid_payload):
    payload = {k: v for k, v in valid_payload.items() if k != "age"}
    payload.update(patient_ref="bad ref", sex="other", egfr=math.nan, potassium=99.0,
                   diabetes="maybe", lvef=math.inf, nsaid=None, heart_rate=72)
    with pytest.raises(core.InvalidInput) as info:
        core.score(payload, user="dr.test", source="form")
    named = {e["field"] for e in info.value.errors}
    assert named == {"patient_ref", "age", "sex", "egfr", "potassium", "diabetes", "lvef",
                     "nsaid", "heart_rate"}
    assert "(+4 more)" in str(info.value)  # the message summarises five and counts the rest


def test_non_text_key_does_not_hide_other_problems(any_store: Store, valid_payload):
    with pytest.raises(core.InvalidInput) as info:
        core.score({**valid_payload, 7: "x", "egfr": "not a number"}, user="dr.test", source="form")
    assert {"7", "egfr"} <= {e["field"] for e in info.value.errors}


def test_rejected_value_echo_is_truncated(any_store: Store, valid_payload):
    with pytest.raises(core.InvalidInput) as info:
        core.score({**valid_payload, "egfr": "9" * 10_000 + "x"}, user="dr.test", source="form")
    (error,) = info.value.errors
    assert len(error["value"]) == MAX_ECHO
    assert error["value"].startswith("'999") and error["value"].endswith("...")


def test_rejection_is_recorded_without_values_and_no_prediction_is_written(
        any_store: Store, valid_payload):
    secret_ref, secret_value = "REF-SECRET-4711", "value-secret-0815"
    payload = {**valid_payload, "patient_ref": secret_ref, "egfr": secret_value, "sex": "other"}
    with pytest.raises(core.InvalidInput):
        core.score(payload, user="dr.test", source="form")

    assert any_store.count("predictions") == 0
    rejections = oracle.rows(any_store, "rejected_inputs")
    assert len(rejections) == 1
    row = rejections.iloc[0]
    assert row["user_name"] == "dr.test"
    assert row["model_version"] == "v1"
    assert sorted(f["field"] for f in json.loads(row["fields_json"])) == ["egfr", "sex"]
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # keyed with the deployment's key: the same payload matches, a guess without the key cannot
    assert row["payload_sha256"] == hmac.new(TEST_PATIENT_KEY.encode(), ("payload:" + canonical).encode(),
                                             "sha256").hexdigest()
    assert row["payload_sha256"] != hashlib.sha256(canonical.encode()).hexdigest()

    entries = oracle.rows(any_store, "audit_log")
    assert list(entries["kind"]) == ["rejected_input"]
    assert list(entries["seq"]) == [int(row["audit_seq"])]

    # Neither the rejected value nor the patient reference is kept anywhere in the store.
    tables = [r[0] for r in oracle.sql(
        any_store, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")]
    for table in tables:
        for cells in oracle.sql(any_store, f'SELECT * FROM "{table}"'):  # noqa: S608 (names from the catalogue)
            text = " ".join(map(str, cells))
            assert secret_value not in text, table
            assert secret_ref not in text, table


def test_whitespace_around_values_is_tolerated(any_store: Store, valid_payload):
    """Form and CSV values arrive as text with stray spaces; they mean the same patient."""
    padded = {**valid_payload, "patient_ref": " TEST-0001 ", "sex": " male ", "egfr": " 58 ",
              "age": "70"}
    assert core.score(padded, user="dr.test", source="form").risk == core.score(valid_payload, user="dr.test", source="form").risk


def test_validate_many_agrees_with_validate_payload(v1, valid_payload):
    """Batch validation gives the same rows and the same errors as row-by-row validation."""
    from core.spec import validate_many, validate_payload

    payloads = [valid_payload, {**valid_payload, "egfr": "abc"}, {**valid_payload, 3: "x"},
                "not a mapping", {**valid_payload, "patient_ref": "T-2", "lvef": ""},
                {**valid_payload, "age": True, "zz": 1}]
    good, bad = validate_many(v1.spec, payloads)
    expected_good, expected_bad = [], []
    for i, payload in enumerate(payloads):
        try:
            expected_good.append((i, *validate_payload(v1.spec, payload)))
        except core.InvalidInput as exc:
            expected_bad.append((i, exc.errors))
    assert good == expected_good and bad == expected_bad
    assert [i for i, _ in bad] == [1, 2, 3, 5]


@pytest.mark.parametrize("value", ["5_8", b"58", bytearray(b"58")])
def test_number_typos_and_bytes_are_rejected(any_store: Store, valid_payload, value):
    with pytest.raises(core.InvalidInput) as info:
        core.score({**valid_payload, "egfr": value}, user="dr.test", source="form")
    assert [(e["field"], e["message"]) for e in info.value.errors] == [("egfr", "must be a number")]


def test_a_rejected_patient_number_cannot_be_recovered_from_its_record(any_store: Store):
    """A payload can be as small as one patient number: its record must not give it back to
    someone who tries every number (here, every number near it)."""
    with pytest.raises(core.InvalidInput):
        core.score({"patient_ref": "04172238"}, user="dr.test", source="form")
    recorded = oracle.rows(any_store, "rejected_inputs").iloc[0]["payload_sha256"]
    guesses = {hashlib.sha256(json.dumps({"patient_ref": f"{n:08d}"}, separators=(",", ":"))
                              .encode()).hexdigest() for n in range(4_172_000, 4_173_000)}
    assert recorded not in guesses
    assert "04172238" not in " ".join(oracle.rows(any_store, "audit_log")["content_json"])


def test_problem_echoes_a_short_printable_value_and_field():
    p = problem("f" * 500, "is wrong", "v" * 10_000)
    assert len(p["field"]) == MAX_ECHO and len(p["value"]) == MAX_ECHO and p["value"].endswith("...")
    assert problem("f", "is wrong", 10 ** 5000)["value"] == "<int>"  # too long to print: never raises
    assert problem("f", "is wrong", "secret", shown="(not shown)")["value"] == "(not shown)"
    assert len(problem("f", "is wrong", None, shown="s" * 500)["value"]) == MAX_ECHO
    lone = problem("\ud800", "is wrong", "\udfff")  # lone surrogates, as a sender may type them
    assert json.loads(json.dumps(lone, ensure_ascii=False).encode("utf-8")) == lone
    assert set(lone) == {"field", "message", "value"}


def test_invalid_input_groups_messages_by_field_in_first_seen_order():
    exc = InvalidInput([problem("age", "is required", None), problem("(form)", "too late", None),
                        problem("age", "must be a number", "x")])
    assert exc.by_field() == {"age": ["is required", "must be a number"], "(form)": ["too late"]}
    assert list(exc.by_field()) == ["age", "(form)"]


def test_too_many_problems_end_with_one_that_counts_the_rest():
    exc = InvalidInput([problem(f"f{i}", "is wrong", i) for i in range(60)])
    assert len(exc.errors) == InvalidInput.MAX_PROBLEMS
    assert exc.errors[-1] == {"field": "(more)", "message": "and 11 more problems", "value": ""}


def test_field_sentence_names_the_field_in_plain_words():
    from core.errors import field_sentence

    assert field_sentence("Age", "is required") == "Age is required."
    assert field_sentence("Age", "must be between 18 and 120 years.") == "Age must be between 18 and 120 years."
    assert field_sentence("Date of the event", "this model's outcome records no event date") == (
        "Date of the event: this model's outcome records no event date.")
    assert field_sentence("", "a comment is required for an override") == "A comment is required for an override."


def test_form_problems_never_show_the_validators_text():
    from pydantic import BaseModel, Field, ValidationError

    class Form(BaseModel):
        source: str = Field(min_length=1, max_length=5)
        event: bool
        count: int = Field(ge=1)
        day: date

    with pytest.raises(ValidationError) as caught:
        Form.model_validate({"source": "", "event": None, "count": 0, "day": "soon"})
    exc = InvalidInput.from_pydantic(caught.value)
    assert exc.by_field() == {"source": ["is required"], "event": ["is required"],
                              "count": ["must be at least 1"], "day": ["must be a date (YYYY-MM-DD)"]}
    assert exc.sentences({"source": "Source", "event": "Event"}) == {
        "source": ["Source is required."], "event": ["Event is required."],
        "count": ["'count' must be at least 1."], "day": ["'day' must be a date (YYYY-MM-DD)."]}
    with pytest.raises(ValidationError) as caught:
        Form.model_validate({"source": "too long", "event": "perhaps", "count": "x", "day": "2026-01-01"})
    assert InvalidInput.from_pydantic(caught.value).by_field() == {
        "source": ["must be at most 5 characters"], "event": ["must be yes or no"], "count": ["must be a number"]}
