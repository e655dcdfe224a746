"""The REST API, endpoint by endpoint: what each success returns and records, and what each error
answers (problem+json, never a traceback), records (a refused payload as a rejected input of
source "api" under the client's name) and leaves alone (every other row, and the audit chain).
The real store and the suite's own model v1; the API mounted under /api/v1 as serve.py mounts it."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from datetime import date, datetime, timedelta
from types import SimpleNamespace

import pytest
import store_oracle as oracle
from api_support import (
    add_clients,
    added,
    api_client,
    bearer,
    chain_intact,
    counts,
    last_rejection,
    problem_json,
)
from conftest import TYPICAL_PATIENT

import core
from api import PREFIX, body, predictions, security
from core.clients import FailureThrottle
from core.errors import InvalidInput
from core.scoring import UNKNOWN_FIELD, ScoreResult, known_fields
from core.spec import validate_payload
from core.stop_switch import set_suspended

JSON = {"content-type": "application/json"}
CSV = {"content-type": "text/csv"}
PATIENT = {**TYPICAL_PATIENT, "patient_ref": "API-0001"}
ONE_RECORD = {"audit_log": 1}  # what a recorded event adds besides its own row
REJECTED = {"rejected_inputs": 1, **ONE_RECORD}  # what a refused payload adds, and nothing else
REASON = "clinical context not captured by the model"


@pytest.fixture
def api(fresh_store, monkeypatch):
    """A client of the API, an API client of each role and its headers; the refused-token
    throttle starts afresh (it is the process's)."""
    monkeypatch.setattr(security, "throttle", FailureThrottle())
    tokens = add_clients()
    return SimpleNamespace(http=api_client(), store=fresh_store, tokens=tokens,
                           as_role={role: bearer(token) for role, token in tokens.items()})


def _csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: str(v).lower() if isinstance(v, bool) else ("" if v is None else v)
                      for k, v in row.items()} for row in rows)
    return out.getvalue().encode()


def _core_errors(spec, payload) -> list[dict]:
    with pytest.raises(InvalidInput) as exc:
        validate_payload(spec, payload, strict=True)  # JSON's own types, as for every API payload
    return exc.value.errors


def _recorded_fields(spec, errors: list[dict]) -> list[dict]:
    """How a rejection records these problems: names of the model's fields kept, others not."""
    known = known_fields(spec)
    return [{"field": e["field"] if e["field"] in known else UNKNOWN_FIELD, "message": e["message"]}
            for e in errors]


def _queued(api) -> ScoreResult:
    """A prediction routed to review (an optional value missing), scored through the API."""
    response = api.http.post("/predictions", json={**PATIENT, "lvef": None},
                             headers=api.as_role["clinician"])
    assert response.status_code == 201, response.text
    result = ScoreResult.model_validate(response.json())
    assert result.routing == "review"
    return result


# ---- scoring: one patient, a list, a file ---------------------------------------------------


def test_score_one_is_recorded_returned_as_core_scores_it_and_located(api, v1):
    before = counts()
    response = api.http.post("/predictions", json=PATIENT, headers=api.as_role["clinician"])

    assert response.status_code == 201, response.text
    result = ScoreResult.model_validate(response.json())
    assert result.patient_ref == "API-0001" and result.model_version == "v1"
    assert result.model_sha256 == v1.sha256 and result.routing == "auto_finalised"
    assert added(before, counts()) == {"predictions": 1, "phi_inputs": 1, **ONE_RECORD}
    row = api.store.prediction(result.prediction_id)
    assert (row["source"], row["user_name"]) == ("api", "client:clinician-system")
    assert (row["risk"], row["risk_class"], row["routing"]) == (
        result.risk, result.risk_class, result.routing)

    # the same payload scored by core (as the form does) gives the same answer
    same = core.score(PATIENT, user="dr.form", source="form")
    assert (same.risk, same.risk_interval_95, same.risk_class, same.confidence, same.routing,
            same.reasons, same.top_factors) == (
        result.risk, result.risk_interval_95, result.risk_class, result.confidence,
        result.routing, result.reasons, result.top_factors)

    # Location names the prediction under the API's prefix, and reading it gives it back
    location = response.headers["location"]
    assert location == f"{PREFIX}/predictions/{result.prediction_id}"
    state = api.http.get(f"http://testserver{location}", headers=api.as_role["clinician"])
    assert state.status_code == 200, state.text
    assert state.json()["prediction_id"] == result.prediction_id
    assert state.json()["risk"] == result.risk and state.json()["status"] == "auto_finalised"
    assert chain_intact()


def test_score_list_scores_and_rejects_each_patient_in_order(api, v1):
    late = {**PATIENT, "patient_ref": "API-0003", "age": 500, "colour": "blue"}
    patients = [PATIENT, late, "not a patient", {**PATIENT, "patient_ref": "API-0004"}]
    before = counts()
    response = api.http.post("/predictions/batch", json={"patients": patients},
                             headers=api.as_role["clinician"])

    assert response.status_code == 200, response.text
    out = response.json()
    assert (out["scored"], out["rejected"]) == (2, 2)
    assert [r["index"] for r in out["results"]] == [0, 1, 2, 3]
    assert [r["status"] for r in out["results"]] == ["scored", "rejected", "rejected", "scored"]
    assert out["results"][1]["problems"] == _core_errors(v1.spec, late)
    assert out["results"][2]["problems"] == _core_errors(v1.spec, "not a patient")
    assert {r["prediction"]["patient_ref"] for r in out["results"] if r["prediction"]} == {
        "API-0001", "API-0004"}
    # one transaction of predictions, one of rejections
    assert added(before, counts()) == {"predictions": 2, "phi_inputs": 2, "rejected_inputs": 2,
                                       "audit_log": 4}
    rejected = oracle.rows(api.store, "rejected_inputs")
    assert set(rejected["source"]) == {"api"} and set(rejected["user_name"]) == {"client:clinician-system"}
    assert json.loads(rejected["fields_json"].iloc[0]) == _recorded_fields(
        v1.spec, out["results"][1]["problems"])
    for r in out["results"]:
        if r["prediction"]:
            assert r["prediction"]["risk"] == core.score(
                PATIENT, user="dr.form", source="form").risk
    assert chain_intact()


@pytest.mark.parametrize("payload,field,message", [
    ({"patients": []}, "patients", "a list of 1 to 1000 patients"),
    ({"patients": [PATIENT] * 1001}, "patients", "a list of 1 to 1000 patients"),
    ([PATIENT], "patients", "send an object with `patients`: a list of patients"),
    ({"patients": PATIENT}, "patients", "send an object with `patients`: a list of patients"),
    ({"patients": [PATIENT], "patient": 1}, "patient", "not a field of this request (only `patients`)"),
])
def test_score_list_refuses_a_body_that_is_not_a_list_of_patients(api, payload, field, message):
    before = counts()
    response = api.http.post("/predictions/batch", json=payload, headers=api.as_role["clinician"])
    assert response.status_code == 422
    problem = problem_json(response)
    assert [(e["field"], e["message"]) for e in problem["errors"]] == [(field, message)]
    assert added(before, counts()) == REJECTED
    assert last_rejection()["source"] == "api"
    assert chain_intact()


def test_score_csv_returns_the_scored_file_through_the_batch_path(api):
    rows = [{**PATIENT, "patient_ref": "CSV-1"}, {**PATIENT, "patient_ref": "CSV-2", "age": 500},
            {**PATIENT, "patient_ref": "CSV-3", "lvef": None}]
    before = counts()
    response = api.http.post("/predictions/csv", content=_csv(rows),
                             headers={**api.as_role["clinician"], **CSV})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert (response.headers["x-rows-rows"], response.headers["x-rows-scored"],
            response.headers["x-rows-rejected"], response.headers["x-rows-review"]) == ("3", "2", "1", "1")
    out = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["row"], r["patient_ref"], r["status"]) for r in out] == [
        ("1", "CSV-1", "scored"), ("2", "CSV-2", "rejected"), ("3", "CSV-3", "scored")]
    assert "age" in out[1]["errors"] and out[2]["routing"] == "review"
    assert float(out[0]["risk"]) == core.score(PATIENT, user="dr.form", source="form").risk
    grew = added(before, counts())
    assert (grew["predictions"], grew["rejected_inputs"]) == (2 + 1, 1)  # + core.score's one
    sources = oracle.sql(api.store, "SELECT source, user_name, count(*) FROM predictions "
                                    "GROUP BY ALL ORDER BY source")
    assert sources == [("api", "client:clinician-system", 2), ("form", "dr.form", 1)]
    assert chain_intact()


@pytest.mark.parametrize("text,fields", [
    ("a,b\n1,2\n", None),  # the model's columns are missing, two unknown ones given
    ("patient_ref,age\nX-1,70\n", None),  # required columns missing
    ("", ["(payload)"]),
    ("\n\npatient_ref\n", ["(payload)"]),
    ('patient_ref,age\n"X-1,70\n', ["(payload)"]),  # a quote opened and never closed
])
def test_score_csv_refuses_a_file_that_is_not_the_models_input(api, v1, text, fields):
    before = counts()
    response = api.http.post("/predictions/csv", content=text.encode(),
                             headers={**api.as_role["clinician"], **CSV})
    assert response.status_code == 422, response.text
    problem = problem_json(response)
    named = [e["field"] for e in problem["errors"]]
    if fields is None:  # the header: every missing or unknown column named
        header = text.split("\n")[0].split(",")
        missing = [n for n in ["patient_ref", *(f.name for f in v1.spec.features if f.required)]
                   if n not in header]
        assert set(missing) <= set(named)
        assert {n for n in header if n not in known_fields(v1.spec)} <= set(named)
    else:
        assert named == fields
    assert tempfile.gettempdir() not in response.text and "input.csv" not in response.text  # no server path
    assert added(before, counts()) == REJECTED  # recorded once, nothing scored
    rejection = last_rejection()
    assert (rejection["source"], rejection["user_name"]) == ("api", "client:clinician-system")
    assert rejection["fields"] == _recorded_fields(v1.spec, problem["errors"])
    assert chain_intact()


def test_score_csv_refuses_non_utf8_text(api):
    before = counts()
    response = api.http.post("/predictions/csv", content="patient_ref,âge\n".encode("latin-1"),
                             headers={**api.as_role["clinician"], **CSV})
    assert response.status_code == 422
    assert [(e["field"], e["message"][:16]) for e in problem_json(response)["errors"]] == [
        ("(payload)", "is not UTF-8 tex")]
    assert added(before, counts()) == REJECTED
    assert chain_intact()


# ---- 422: a payload core's validation refuses -------------------------------------------------


BAD_PAYLOADS = {
    "wrong types": {**PATIENT, "age": "seventy", "diabetes": "maybe", "sex": 1},
    "a number as yes/no": {**PATIENT, "egfr": True},
    "an object for a value": {**PATIENT, "potassium": {"value": 4.4}},
    "a list for a value": {**PATIENT, "sbp": [118, 120]},
    "unknown fields": {**PATIENT, "colour": "blue", "MRN 12345": 1},
    "missing required fields": {"patient_ref": "API-0002", "age": 70},
    "outside the plausible range": {**PATIENT, "age": 500, "potassium": -1},
    "a huge number": {**PATIENT, "weight_kg": 10**30},
    "not a category": {**PATIENT, "nyha_class": "V"},
    "a patient reference with spaces": {**PATIENT, "patient_ref": "John Smith"},
    "a whole number expected": {**PATIENT, "age": 70.5},
    "text for a number": {**PATIENT, "age": "70", "egfr": "58.0"},
    "a number for yes/no": {**PATIENT, "nsaid": 0, "diabetes": "no"},
}


def test_json_types_are_the_documents_while_a_form_reads_text(api, v1):
    """The API takes JSON's own types only (its document's); the same values typed into the
    form or a file are text, read as such. 70.0 is the whole number 70 in JSON."""
    lenient = {**PATIENT, "age": "70", "nsaid": 0}
    refused = api.http.post("/predictions", json=lenient, headers=api.as_role["clinician"])
    assert refused.status_code == 422
    assert {e["field"]: e["message"] for e in refused.json()["errors"]} == {
        "age": "must be a number", "nsaid": "must be true or false"}
    assert core.score(lenient, user="dr.form", source="form").risk == core.score(
        PATIENT, user="dr.form", source="form").risk
    whole = api.http.post("/predictions", json={**PATIENT, "age": 70.0},
                          headers=api.as_role["clinician"])
    assert whole.status_code == 201 and whole.json()["risk"] == core.score(
        PATIENT, user="dr.form", source="form").risk


@pytest.mark.parametrize("name", list(BAD_PAYLOADS))
def test_refused_payload_names_every_field_as_core_does_and_is_recorded(api, v1, name):
    payload = BAD_PAYLOADS[name]
    before = counts()
    response = api.http.post("/predictions", json=payload, headers=api.as_role["clinician"])

    assert response.status_code == 422, response.text
    problem = problem_json(response)
    assert problem["errors"] == _core_errors(v1.spec, payload)  # field, message, value: identical
    assert added(before, counts()) == REJECTED
    rejection = last_rejection()
    assert (rejection["source"], rejection["user_name"]) == ("api", "client:clinician-system")
    assert rejection["fields"] == _recorded_fields(v1.spec, problem["errors"])
    assert chain_intact()


UNREADABLE = {
    "malformed JSON": (b'{"age": 70,', "not valid JSON"),
    "NaN": (b'{"patient_ref": "X-1", "age": NaN}', "NaN is not a JSON number"),
    "Infinity": (b'{"patient_ref": "X-1", "potassium": Infinity}', "Infinity is not a JSON number"),
    "-Infinity": (b'{"patient_ref": "X-1", "potassium": -Infinity}', "-Infinity is not a JSON number"),
    "a number past double range": (b'{"patient_ref": "X-1", "age": 1e400}', "out of range"),
    "a 41-character number": (b'{"age": 1' + b"0" * 40 + b"}", "a number of 41 characters"),
    "a key given twice": (b'{"patient_ref": "X-1", "patient_ref": "X-2"}', "given twice"),
    "an empty body": (b"", "the body is empty"),
    "not UTF-8": ('{"patient_ref": "Zoë"}'.encode("latin-1"), "not UTF-8 text"),
    "nested too deeply": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
}


@pytest.mark.parametrize("path", ["/predictions", "/predictions/batch"])
@pytest.mark.parametrize("name", list(UNREADABLE))
def test_unreadable_body_is_refused_naming_why_and_recorded(api, name, path):
    raw, why = UNREADABLE[name]
    before = counts()
    response = api.http.post(path, content=raw, headers={**api.as_role["clinician"], **JSON})

    assert response.status_code == 422, response.text
    errors = problem_json(response)["errors"]
    assert len(errors) == 1 and errors[0]["field"] == "(payload)" and why in errors[0]["message"]
    assert added(before, counts()) == REJECTED
    rejection = last_rejection()
    assert (rejection["source"], rejection["user_name"]) == ("api", "client:clinician-system")
    assert rejection["fields"] == [{"field": "(payload)", "message": errors[0]["message"]}]
    assert chain_intact()


@pytest.mark.parametrize("raw", [b"[]", b'"API-0001"', b"70", b"null"])
def test_a_json_value_that_is_not_an_object_is_refused(api, v1, raw):
    before = counts()
    response = api.http.post("/predictions", content=raw, headers={**api.as_role["clinician"], **JSON})
    assert response.status_code == 422
    assert problem_json(response)["errors"] == _core_errors(v1.spec, json.loads(raw))
    assert added(before, counts()) == REJECTED


# ---- 413 and 415 --------------------------------------------------------------------------------


def test_oversized_json_is_refused_while_reading_and_recorded(api):
    padding = b" " * body.JSON_LIMIT
    raw = b'{"patient_ref": "API-0001"' + padding + b"}"
    before = counts()
    declared = api.http.post("/predictions", content=raw, headers={**api.as_role["clinician"], **JSON})
    assert declared.status_code == 413
    assert str(body.JSON_LIMIT) in problem_json(declared)["detail"]

    def stream():  # no Content-Length: sent in chunks, refused once past the limit
        yield raw[:1000]
        for i in range(1000, len(raw), 1 << 16):
            yield raw[i:i + (1 << 16)]

    streamed = api.http.post("/predictions/batch", content=stream(),
                             headers={**api.as_role["clinician"], **JSON})
    assert streamed.status_code == 413 and "content-length" not in {
        k.lower() for k in streamed.request.headers}
    problem_json(streamed)
    assert added(before, counts()) == {"rejected_inputs": 2, "audit_log": 2}
    assert last_rejection()["fields"] == [{"field": "(payload)",
                                          "message": problem_json(streamed)["detail"]}]
    assert chain_intact()


def test_oversized_csv_is_refused_and_nothing_is_scored(api, monkeypatch):
    monkeypatch.setattr(predictions, "CSV_LIMIT", 2_000)
    rows = [{**PATIENT, "patient_ref": f"BIG-{i}"} for i in range(40)]
    raw = _csv(rows)
    assert len(raw) > 2_000
    before = counts()
    response = api.http.post("/predictions/csv", content=raw, headers={**api.as_role["clinician"], **CSV})
    assert response.status_code == 413
    assert "2000" in problem_json(response)["detail"]
    assert added(before, counts()) == REJECTED
    assert chain_intact()


@pytest.mark.parametrize("path,content_type", [
    ("/predictions", "text/plain"), ("/predictions", None), ("/predictions", "text/csv"),
    ("/predictions/batch", "application/x-www-form-urlencoded"),
    ("/predictions/csv", "application/json"), ("/predictions/csv", None),
])
def test_wrong_content_type_is_refused_and_recorded(api, path, content_type):
    headers = {**api.as_role["clinician"], **({"content-type": content_type} if content_type else {})}
    before = counts()
    response = api.http.post(path, content=json.dumps(PATIENT).encode(), headers=headers)
    assert response.status_code == 415
    detail = problem_json(response)["detail"]
    assert ("text/csv" if path.endswith("csv") else "application/json") in detail
    assert added(before, counts()) == REJECTED
    assert chain_intact()


@pytest.mark.parametrize("path,role", [("/outcomes", "clinician"),
                                       ("/predictions/{id}/review", "reviewer")])
def test_follow_up_refuses_a_wrong_content_type(api, path, role):
    queued = _queued(api)
    before = counts()
    response = api.http.post(path.format(id=queued.prediction_id), content=b"event=true",
                             headers={**api.as_role[role], "content-type": "text/plain"})
    assert response.status_code == 415
    problem_json(response)
    assert added(before, counts()) == {}


# ---- 503: the stop switch -----------------------------------------------------------------------


def test_suspended_scoring_fails_closed_and_readiness_names_the_stop_switch(api):
    set_suspended(True, by="pi.one", reason="calibration drift under review")
    before = counts()
    calls = [("/predictions", {"json": PATIENT}),
             ("/predictions/batch", {"json": {"patients": [PATIENT]}}),
             ("/predictions/csv", {"content": _csv([PATIENT]), "headers": CSV}),
             ("/predictions", {"content": b"{not json", "headers": JSON})]
    for path, kwargs in calls:
        headers = {**api.as_role["clinician"], **kwargs.pop("headers", {})}
        response = api.http.post(path, headers=headers, **kwargs)
        assert response.status_code == 503, (path, response.text)
        assert response.headers["retry-after"] == "60"
        problem = problem_json(response)
        assert "suspended" in problem["detail"] and "risk" not in problem
    assert added(before, counts()) == {}  # no prediction, nothing else either

    ready = api.http.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json() == {"status": "not ready", "checks": {
        "configuration": "", "store": "", "model": "", "stop_switch": "scoring is suspended: calibration drift under review"}}
    assert api.http.get("/health/live").json() == {"status": "ok", "checks": {}}
    assert api.http.get("/model", headers=api.as_role["clinician"]).json()["suspended"] is True

    set_suspended(False, by="pi.one", reason="recalibrated and signed off")
    assert api.http.get("/health/ready").status_code == 200
    assert api.http.post("/predictions", json=PATIENT, headers=api.as_role["clinician"]).status_code == 201
    assert chain_intact()


# ---- a prediction's state, the review queue, decisions and outcomes ----------------------------


def test_prediction_state_follows_review_and_outcome(api):
    queued = _queued(api)
    url = f"/predictions/{queued.prediction_id}"
    state = api.http.get(url, headers=api.as_role["reviewer"])
    assert state.status_code == 200
    assert (state.json()["status"], state.json()["final_class"], state.json()["review"]) == (
        "waiting_for_review", None, None)

    queue = api.http.get("/review-queue", headers=api.as_role["reviewer"])
    assert queue.status_code == 200
    assert queue.json()["count"] == 1
    assert queue.json()["items"][0]["prediction_id"] == queued.prediction_id
    assert api.http.get("/review-queue?limit=0", headers=api.as_role["reviewer"]).status_code == 422

    decision = {"decision": "agree", "reason_code": REASON, "reviewer_name": "Dr R. Jones",
                "prediction_id": None}
    before = counts()
    decided = api.http.post(f"{url}/review", json=decision, headers=api.as_role["reviewer"])
    assert decided.status_code == 201, decided.text
    assert set(decided.json()) == {"id", "prediction_id", "recorded_at"}
    assert decided.json()["prediction_id"] == queued.prediction_id
    assert decided.json()["recorded_at"].endswith("Z")
    assert added(before, counts()) == {"review_decisions": 1, **ONE_RECORD}
    row = api.store.current_decision(queued.prediction_id)
    assert (row["user_name"], row["reviewer_name"]) == (
        "client:reviewer-system", "Dr R. Jones (via client:reviewer-system)")
    assert api.http.get("/review-queue", headers=api.as_role["reviewer"]).json()["count"] == 0

    outcome = {"prediction_id": queued.prediction_id, "event": True,
               "event_date": date.today().isoformat(), "measured_value": 6.1, "source": "lab feed"}
    recorded = api.http.post("/outcomes", json=outcome, headers=api.as_role["clinician"])
    assert recorded.status_code == 201, recorded.text
    after = api.http.get(url, headers=api.as_role["pi"]).json()
    assert after["status"] == "reviewed" and after["final_class"] == queued.risk_class
    assert after["review"]["decision_id"] == decided.json()["id"]
    assert after["outcome"]["outcome_id"] == recorded.json()["id"]
    assert after["outcome"]["measured_value"] == 6.1
    reads = oracle.rows(api.store, "access_events", action="api_read")
    assert list(reads["user_name"]) == ["client:reviewer-system"] * 3 + ["client:pi-system"]
    assert set(reads["source"]) == {"testclient"}
    assert chain_intact()


def test_second_decision_and_second_outcome_conflict(api):
    queued = _queued(api)
    url = f"/predictions/{queued.prediction_id}/review"
    first = api.http.post(url, json={"decision": "agree", "reason_code": REASON},
                          headers=api.as_role["reviewer"])
    assert first.status_code == 201
    outcome = {"prediction_id": queued.prediction_id, "event": True,
               "event_date": date.today().isoformat(), "source": "lab feed"}
    assert api.http.post("/outcomes", json=outcome, headers=api.as_role["clinician"]).status_code == 201
    before = counts()

    again = api.http.post(url, json={"decision": "override_high", "reason_code": REASON,
                                     "comment": "second look"}, headers=api.as_role["reviewer"])
    assert again.status_code == 409
    assert "supersedes" in problem_json(again)["detail"]
    twice = api.http.post("/outcomes", json=outcome, headers=api.as_role["clinician"])
    assert twice.status_code == 409
    assert "already recorded" in problem_json(twice)["detail"]
    assert added(before, counts()) == {}

    # a correction names what it supersedes, and both stay
    corrected = api.http.post(url, json={"decision": "override_high", "reason_code": REASON,
                                         "comment": "recent AKI", "supersedes": first.json()["id"]},
                              headers=api.as_role["reviewer"])
    assert corrected.status_code == 201, corrected.text
    assert len(oracle.rows(api.store, "review_decisions")) == 2
    assert chain_intact()


def test_unknown_prediction_is_404_everywhere(api):
    before = counts()
    for method, path, role, payload in [
            ("GET", "/predictions/no-such-id", "clinician", None),
            ("POST", "/predictions/no-such-id/review", "reviewer",
             {"decision": "agree", "reason_code": REASON}),
            ("POST", "/outcomes", "clinician",
             {"prediction_id": "no-such-id", "event": False, "source": "lab feed"})]:
        response = api.http.request(method, path, json=payload, headers=api.as_role[role])
        assert response.status_code == 404, (path, response.text)
        assert "no-such-id" in problem_json(response)["detail"]
    assert added(before, counts()) == {}


@pytest.mark.parametrize("payload,field", [
    ({"decision": "maybe", "reason_code": REASON}, "decision"),
    ({"decision": "agree", "reason_code": "because"}, "reason_code"),
    ({"decision": "override_low", "reason_code": REASON}, "(form)"),
    ({"decision": "agree", "reason_code": REASON, "prediction_id": "another"}, "prediction_id"),
    ({"decision": "agree", "reason_code": REASON, "reviewer_name": ["x"]}, "reviewer_name"),
    ({"decision": "agree", "reason_code": REASON, "signed": True}, "signed"),
])
def test_refused_decision_names_the_field_and_records_nothing(api, payload, field):
    queued = _queued(api)
    before = counts()
    response = api.http.post(f"/predictions/{queued.prediction_id}/review", json=payload,
                             headers=api.as_role["reviewer"])
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in problem_json(response)["errors"]]
    assert added(before, counts()) == {}


@pytest.mark.parametrize("change,field", [
    ({"event": "perhaps"}, "event"),
    ({"event_date": "2001-01-01"}, "event_date"),
    ({"measured_value": "high"}, "measured_value"),
    ({"source": ""}, "source"),
    ({"lab": "x"}, "lab"),
])
def test_refused_outcome_names_the_field_and_records_nothing(api, change, field):
    queued = _queued(api)
    outcome = {"prediction_id": queued.prediction_id, "event": True,
               "event_date": date.today().isoformat(), "source": "lab feed", **change}
    before = counts()
    response = api.http.post("/outcomes", json=outcome, headers=api.as_role["clinician"])
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in problem_json(response)["errors"]]
    assert added(before, counts()) == {}


@pytest.mark.parametrize("raw", [b"{", b'{"event": NaN}', b"[1]", b'{"a": 1, "a": 2}'])
def test_unreadable_follow_up_body_is_refused(api, raw):
    queued = _queued(api)
    before = counts()
    for path, role in [("/outcomes", "clinician"),
                       (f"/predictions/{queued.prediction_id}/review", "reviewer")]:
        response = api.http.post(path, content=raw, headers={**api.as_role[role], **JSON})
        assert response.status_code == 422, response.text
        assert problem_json(response)["errors"][0]["field"] == "(body)"
    assert added(before, counts()) == {}


# ---- the model, its card, health; and what the API does not serve -------------------------------


def test_model_and_its_card(api, v1):
    model = api.http.get("/model", headers=api.as_role["admin"])
    assert model.status_code == 200
    facts = model.json()
    assert (facts["version"], facts["model_sha256"], facts["suspended"]) == ("v1", v1.sha256, False)
    assert [f["name"] for f in facts["spec"]["features"]] == v1.spec.names
    assert facts["routing_rule"]["action_threshold"] == v1.predictor.rule.action_threshold
    card = api.http.get("/model/card", headers=api.as_role["reviewer"])
    assert card.status_code == 200 and card.headers["content-type"].startswith("text/markdown")
    assert card.text.startswith("# Model card:") and "version v1" in card.text.splitlines()[0]


def test_health_needs_no_token_and_reports_each_check(api):
    assert api.http.get("/health/live").json() == {"status": "ok", "checks": {}}
    ready = api.http.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"configuration": "", "store": "", "model": "", "stop_switch": ""}}


def test_unknown_route_and_method_are_problems(api):
    missing = api.http.get("/patients", headers=api.as_role["clinician"])
    assert missing.status_code == 404
    problem_json(missing)
    wrong = api.http.delete("/predictions", headers=api.as_role["clinician"])
    assert wrong.status_code == 405
    problem_json(wrong)


def test_openapi_document_describes_the_serving_version(api, v1):
    doc = api.http.get("/openapi.json").json()
    assert doc["info"]["x-model-version"] == "v1"
    assert doc["servers"] == [{"url": PREFIX}]
    patient = doc["components"]["schemas"]["PatientInput"]
    assert set(patient["properties"]) == {"patient_ref", *v1.spec.names}
    assert patient["additionalProperties"] is False
    body_of = doc["paths"]["/predictions/csv"]["post"]["requestBody"]["content"]
    assert list(body_of) == ["text/csv"]


# ---- times and readiness ------------------------------------------------------------------------


def test_times_in_a_state_and_the_queue_carry_their_utc_offset(api):
    queued = _queued(api)
    state = api.http.get(f"/predictions/{queued.prediction_id}", headers=api.as_role["reviewer"])
    item = api.http.get("/review-queue", headers=api.as_role["reviewer"]).json()["items"][0]
    decided = api.http.post(f"/predictions/{queued.prediction_id}/review", headers=api.as_role[
        "reviewer"], json={"decision": "agree", "reason_code": REASON})
    api.http.post("/outcomes", json={"prediction_id": queued.prediction_id, "event": True,
                                     "event_date": date.today().isoformat(), "source": "lab feed"},
                  headers=api.as_role["clinician"])
    after = api.http.get(f"/predictions/{queued.prediction_id}", headers=api.as_role["reviewer"])
    times = [state.json()["created_at"], item["created_at"], decided.json()["recorded_at"],
             after.json()["review"]["decided_at"], after.json()["outcome"]["recorded_at"],
             queued.created_at.isoformat()]
    for text in times:
        assert datetime.fromisoformat(text).utcoffset() == timedelta(0), text


def test_readiness_says_not_ready_when_the_configuration_cannot_score(api, monkeypatch):
    monkeypatch.delenv("APP_PATIENT_KEY")
    before = counts()
    scored = api.http.post("/predictions", json=PATIENT, headers=api.as_role["clinician"])
    assert scored.status_code == 503, scored.text  # unavailable, not an internal error
    assert "APP_PATIENT_KEY" in problem_json(scored)["detail"]
    ready = api.http.get("/health/ready")
    assert ready.status_code == 503
    assert "APP_PATIENT_KEY" in ready.json()["checks"]["configuration"]
    assert added(before, counts()) == {}
