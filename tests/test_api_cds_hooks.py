"""CDS Hooks (api/cds_hooks.py): discovery, a patient-view call answered with one card whose risk
is core's and whose prediction is recorded, refusals (recorded as rejected inputs), and feedback
recorded in the audit chain. Requests are shaped like the specification's examples."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime

import pytest
from conftest import TYPICAL_PATIENT
from fastapi.testclient import TestClient
from store_oracle import rows

import core
from api import create_api
from api.cds_hooks import model_card_page, service_id, suggestion_id
from core import clients
from core.cds_feedback import OVERRIDE_REASONS, OVERRIDE_SYSTEM
from core.display import pct
from core.scoring import UNKNOWN_FIELD
from core.spec import WHOLE_PAYLOAD
from core.stop_switch import set_suspended
from core.text import md_text
from core.verification import verify_audit

PATIENT_ID = "1288992"
# The specification's example request (CDS Hooks 2.0, "Calling a CDS Service"), with the
# model's inputs prefetched under `inputs`.
EXAMPLE = {
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "fhirServer": "http://hooks.smarthealthit.org:9080",
    "hook": "patient-view",
    "fhirAuthorization": {"access_token": "some-opaque-fhir-access-token", "token_type": "Bearer",
                          "expires_in": 300, "scope": "patient/Patient.read patient/Observation.read",
                          "subject": "cds-service4"},
    "context": {"userId": "Practitioner/example", "patientId": PATIENT_ID, "encounterId": "89284"},
}


def hook_request(inputs, **changes) -> dict:
    return {**copy.deepcopy(EXAMPLE), "prefetch": {"inputs": inputs}, **changes}


@pytest.fixture
def api(any_store):
    """The API over a fresh store, with an EHR's client (clinician) and its headers."""
    token = clients.add_client("ehr", roles=["clinician"], by="it")
    return TestClient(create_api()), {"Authorization": f"Bearer {token}"}


@pytest.fixture
def sid(v1) -> str:
    return service_id(v1.spec)


def call(api, sid, body):
    client, headers = api
    return client.post(f"/cds-services/{sid}", json=body, headers=headers)


def only_card(response) -> dict:
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert len(cards) == 1
    return cards[0]


def no_empty_values(value) -> bool:
    """The specification: no JSON element is null or empty ("", [], {})."""
    if isinstance(value, dict):
        return bool(value) and all(no_empty_values(v) for v in value.values())
    if isinstance(value, list):
        return bool(value) and all(no_empty_values(v) for v in value)
    return value is not None and value != ""


def test_discovery_lists_the_serving_model_as_one_patient_view_service(api, v1, sid):
    client, headers = api
    response = client.get("/cds-services", headers=headers)
    assert response.status_code == 200
    services = response.json()["services"]
    assert len(services) == 1 and no_empty_values(services)
    service = services[0]
    assert service["hook"] == "patient-view" and service["id"] == sid
    assert service["title"] == v1.spec.title and service["description"] == v1.spec.description
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", sid)
    assert service["prefetch"] == {"inputs": f"Patient/{{{{context.patientId}}}}/${sid}-inputs"}
    inputs = service["extension"]["clinical-risk-service.inputs"]
    assert [f["name"] for f in inputs] == v1.spec.names
    assert [f["required"] for f in inputs] == [f.required for f in v1.spec.features]
    assert service["extension"]["clinical-risk-service.model-version"] == "v1"


def test_a_call_is_answered_with_a_card_of_the_recorded_prediction(api, sid, any_store, v1):
    card = only_card(call(api, sid, hook_request(TYPICAL_PATIENT)))
    assert no_empty_values(card)
    expected = core.score({**TYPICAL_PATIENT, "patient_ref": PATIENT_ID}, user="dr", source="form")
    recorded = any_store.prediction(card["uuid"])  # the card's uuid is the prediction's id
    assert recorded is not None
    assert (recorded["risk"], recorded["risk_low"], recorded["risk_high"]) == (
        expected.risk, *expected.risk_interval_95)
    assert recorded["user_name"] == "client:ehr" and recorded["source"] == "api"
    assert recorded["patient_ref"] == PATIENT_ID  # context.patientId, as the inputs gave none
    assert recorded["routing"] == expected.routing == "auto_finalised"
    low, high = (pct(b) for b in expected.risk_interval_95)
    assert card["summary"] == (f"{v1.spec.title}: {pct(expected.risk)} (95% interval {low} to "
                               f"{high}), {expected.risk_class} risk, finalised automatically")
    assert len(card["summary"]) < 140
    assert card["indicator"] == ("warning" if expected.risk_class == "high" else "info")
    assert "**Finalised automatically**" in card["detail"] and "reviewer" not in card["detail"]
    assert card["source"]["label"] == f"{v1.spec.title}, model v1"
    assert card["links"] == [{"label": "Model facts: intended use, validation, limits",
                              "url": f"http://testserver/{model_card_page()}", "type": "absolute"}]
    assert model_card_page() == "model_card"
    assert card["suggestions"] == [{"label": "Accept the risk estimate",
                                    "uuid": suggestion_id(card["uuid"])}]
    assert card["selectionBehavior"] == "at-most-one"
    assert {(r["system"], r["code"], r["display"]) for r in card["overrideReasons"]} == {
        (OVERRIDE_SYSTEM, code, display) for code, display in OVERRIDE_REASONS.items()}
    # the FHIR access token the client sent is not kept anywhere
    assert "some-opaque-fhir-access-token" not in json.dumps(rows(any_store, "audit_log").astype(str).values.tolist())


def test_a_high_risk_card_is_a_warning_and_the_patient_ref_of_the_inputs_wins(api, sid, any_store):
    high = {**TYPICAL_PATIENT, "potassium": 5.4, "egfr": 25.0, "patient_ref": "STUDY-7"}
    card = only_card(call(api, sid, hook_request(high)))
    recorded = any_store.prediction(card["uuid"])
    assert recorded["risk_class"] == "high" and card["indicator"] == "warning"
    assert "high risk" in card["summary"] and recorded["patient_ref"] == "STUDY-7"


def test_a_review_routed_prediction_says_it_was_sent_to_a_reviewer_and_why(api, sid, any_store):
    card = only_card(call(api, sid, hook_request({**TYPICAL_PATIENT, "lvef": None})))
    recorded = any_store.prediction(card["uuid"])
    reasons = json.loads(recorded["reasons_json"])
    assert recorded["routing"] == "review" and reasons
    assert card["summary"].endswith(", sent to a reviewer")
    assert "**Sent to a reviewer** before it is final, because:" in card["detail"]
    assert all(f"- {md_text(reason)}" in card["detail"] for reason in reasons)
    assert "Finalised automatically" not in card["detail"]


def test_inputs_as_a_fhir_parameters_resource_score_the_same(api, sid, any_store):
    value = {bool: "valueBoolean", int: "valueInteger", float: "valueDecimal", str: "valueCode"}
    parameters = {"resourceType": "Parameters", "parameter": [
        {"name": name, value[type(v)]: v} for name, v in TYPICAL_PATIENT.items()]}
    as_object = any_store.prediction(only_card(call(api, sid, hook_request(TYPICAL_PATIENT)))["uuid"])
    as_fhir = any_store.prediction(only_card(call(api, sid, hook_request(parameters)))["uuid"])
    assert as_fhir["input_sha256"] == as_object["input_sha256"] and as_fhir["risk"] == as_object["risk"]


def test_invalid_inputs_are_a_422_naming_each_field_and_recorded(api, sid, any_store):
    response = call(api, sid, hook_request({**TYPICAL_PATIENT, "age": "old", "egfr": 9999,
                                            "favourite_colour": "blue"}))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"prefetch.inputs.age", "prefetch.inputs.egfr", "prefetch.inputs.favourite_colour"}
    assert any_store.count("predictions") == 0
    recorded = json.loads(rows(any_store, "rejected_inputs").iloc[0]["fields_json"])
    assert {f["field"] for f in recorded} == {"age", "egfr", UNKNOWN_FIELD}
    assert rows(any_store, "rejected_inputs").iloc[0]["source"] == "api"


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"hook": "order-select"}, 422, "hook"),
    ({"hookInstance": "not-a-uuid"}, 422, "hookInstance"),
    ({"context": {"userId": "Practitioner/example"}}, 422, "context.patientId"),
    ({"fhirServer": None}, 422, "fhirServer"),  # fhirAuthorization needs it
    ({"prefetch": {}}, 412, "prefetch.inputs"),  # the specification: 412 without the prefetch
    ({"prefetch": {"inputs": None}}, 412, "prefetch.inputs"),
    ({"prefetch": {"inputs": [1, 2]}}, 422, "prefetch.inputs"),
    ({"prefetch": {"inputs": {"resourceType": "Observation"}}}, 422, "prefetch.inputs.resourceType"),
    ({"prefetch": {"inputs": {"resourceType": "Parameters", "parameter": [
        {"name": "age", "valueQuantity": {"value": 70}}]}}}, 422, "prefetch.inputs.parameter.0"),
    ({"prefetch": {"inputs": {"resourceType": "Parameters", "parameter": [
        {"name": "age", "valueInteger": 70}, {"name": "age", "valueInteger": 71}]}}}, 422,
     "prefetch.inputs.parameter.1.name"),
])
def test_a_request_that_does_not_fit_is_refused_naming_the_field_and_recorded(
        api, sid, any_store, change, status, field):
    response = call(api, sid, hook_request(TYPICAL_PATIENT) | change)
    assert response.status_code == status, response.text
    assert field in {e["field"] for e in response.json()["errors"]}
    assert any_store.count("predictions") == 0
    recorded = json.loads(rows(any_store, "rejected_inputs").iloc[0]["fields_json"])
    assert recorded[0]["field"] == WHOLE_PAYLOAD and any(r["message"].startswith(field) for r in recorded)


def test_a_body_that_is_not_json_is_422_and_recorded(api, sid, any_store):
    client, headers = api
    response = client.post(f"/cds-services/{sid}", content=b'{"hook": "patient-view", "hook": 1}',
                           headers={**headers, "content-type": "application/json"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == WHOLE_PAYLOAD
    assert client.post(f"/cds-services/{sid}", content=b"hook=patient-view", headers={
        **headers, "content-type": "application/x-www-form-urlencoded"}).status_code == 415
    assert any_store.count("rejected_inputs") == 2 and any_store.count("predictions") == 0


def test_the_service_id_is_the_titles_words_in_ascii(v1):
    spec = v1.spec.model_copy(update={"title": "Risque d'hyperkaliémie à 6 mois"})
    assert service_id(spec) == "risque-d-hyperkaliemie-a-6-mois"


def test_a_refusal_never_echoes_or_records_the_fhir_access_token(api, sid, any_store):
    secret = "opaque-token-that-must-not-travel"
    body = hook_request(TYPICAL_PATIENT, fhirAuthorization={"access_token": secret, "token_type": "MAC"})
    response = call(api, sid, body)
    assert response.status_code == 422 and secret not in response.text
    assert "fhirAuthorization.token_type" in {e["field"] for e in response.json()["errors"]}
    assert secret not in json.dumps(rows(any_store, "rejected_inputs").astype(str).values.tolist())


def test_an_unknown_service_is_404_and_a_suspended_model_503(api, sid, any_store):
    assert call(api, "another-model", hook_request(TYPICAL_PATIENT)).status_code == 404
    set_suspended(True, by="pi", reason="checking calibration")
    response = call(api, sid, hook_request(TYPICAL_PATIENT))
    assert response.status_code == 503 and response.headers["retry-after"] == "60"
    assert response.headers["content-type"] == "application/problem+json"
    assert any_store.count("predictions") == 0


def test_every_route_needs_a_token_and_its_action(api, sid, any_store):
    client, _ = api
    reviewer = {"Authorization": f"Bearer {clients.add_client('queue', roles=['reviewer'], by='it')}"}
    feedback = {"feedback": [{"card": "x", "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:00:00Z"}]}
    for method, path, body in [("GET", "/cds-services", None),
                               ("POST", f"/cds-services/{sid}", hook_request(TYPICAL_PATIENT)),
                               ("POST", f"/cds-services/{sid}/feedback", feedback)]:
        assert client.request(method, path, json=body).status_code == 401
        bad = client.request(method, path, json=body, headers={"Authorization": "Bearer crs_nope"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"].startswith("Bearer")
        refused = client.request(method, path, json=body, headers=reviewer)
        # every role may read the discovery (the model's facts); only a clinician's client scores
        assert refused.status_code == (200 if method == "GET" else 403)
    assert any_store.count("predictions") == 0 and any_store.count("cds_feedback") == 0


# ---- feedback --------------------------------------------------------------------------------


def post_feedback(api, sid, *items):
    client, headers = api
    return client.post(f"/cds-services/{sid}/feedback", json={"feedback": list(items)},
                       headers=headers)


def test_accepted_and_overridden_feedback_is_recorded_with_exact_rows(api, sid, any_store):
    first = only_card(call(api, sid, hook_request(TYPICAL_PATIENT)))
    second = only_card(call(api, sid, hook_request({**TYPICAL_PATIENT, "age": 80})))
    response = post_feedback(
        api, sid,
        {"card": first["uuid"], "outcome": "accepted",
         "acceptedSuggestions": [{"id": first["suggestions"][0]["uuid"]}],
         "outcomeTimestamp": "2026-12-01T10:00:00Z"},
        {"card": second["uuid"], "outcome": "overridden",
         "overrideReason": {"reason": {"code": "already-addressed", "system": OVERRIDE_SYSTEM,
                                       "display": "Already addressed in the care plan"},
                            "userComment": "  Dose already halved\r\nby the renal team. "},
         "outcomeTimestamp": "2026-12-01T11:30:15.250+01:00"},
        {"card": second["uuid"], "outcome": "overridden",  # no reason: dismissed
         "outcomeTimestamp": "2026-12-01T12:00:00Z"})
    assert response.status_code == 200 and response.json() == {"recorded": 3}
    recorded = rows(any_store, "cds_feedback").drop(columns=["feedback_id", "audit_seq", "created_at"])
    assert recorded.to_dict("records") == [
        {"user_name": "client:ehr", "prediction_id": first["uuid"], "outcome": "accepted",
         "override_reason_system": "", "override_reason_code": "", "override_reason_display": "",
         "user_comment": "", "outcome_timestamp": datetime(2026, 12, 1, 10, 0, 0)},
        {"user_name": "client:ehr", "prediction_id": second["uuid"], "outcome": "overridden",
         "override_reason_system": OVERRIDE_SYSTEM, "override_reason_code": "already-addressed",
         "override_reason_display": "Already addressed in the care plan",
         "user_comment": "Dose already halved\nby the renal team.",
         "outcome_timestamp": datetime(2026, 12, 1, 10, 30, 15)},  # in UTC
        {"user_name": "client:ehr", "prediction_id": second["uuid"], "outcome": "overridden",
         "override_reason_system": "", "override_reason_code": "", "override_reason_display": "",
         "user_comment": "", "outcome_timestamp": datetime(2026, 12, 1, 12, 0, 0)}]
    entries = rows(any_store, "audit_log", event_table="cds_feedback")
    assert list(entries["kind"]) == ["cds_feedback"] * 3
    assert list(entries["subject"]) == [first["uuid"], second["uuid"], second["uuid"]]
    assert verify_audit(any_store)[0] == []


def test_a_reason_of_the_clients_own_code_system_is_recorded_as_sent(api, sid, any_store):
    card = only_card(call(api, sid, hook_request(TYPICAL_PATIENT)))
    response = post_feedback(api, sid, {
        "card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:00:00Z",
        "overrideReason": {"reason": {"code": "d7ecf885",
                                      "system": "https://example.com/cds-hooks/override-reason-system"}}})
    assert response.status_code == 200
    row = rows(any_store, "cds_feedback").iloc[0]
    assert (row.override_reason_system, row.override_reason_code) == (
        "https://example.com/cds-hooks/override-reason-system", "d7ecf885")


def test_feedback_on_an_unknown_or_another_clients_card_is_404_and_nothing_is_recorded(
        api, sid, any_store):
    card = only_card(call(api, sid, hook_request(TYPICAL_PATIENT)))
    theirs = core.score({**TYPICAL_PATIENT, "patient_ref": "P-2"}, user="client:other", source="api")
    mine = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-12-01T10:00:00Z"}
    for unknown in ("6f1c1d9e-8a55-4c1b-9d0e-2f1f7e3a9b10", theirs.prediction_id):
        response = post_feedback(api, sid, mine, {**mine, "card": unknown})
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert unknown in response.json()["detail"]
    assert post_feedback(api, "another-model", mine).status_code == 404
    assert any_store.count("cds_feedback") == 0


@pytest.mark.parametrize(("change", "field"), [
    ({"outcome": "ignored"}, "feedback.0.outcome"),
    ({"card": None}, "feedback.0.card"),
    ({"outcomeTimestamp": "2026-12-01T10:00:00"}, "feedback.0.outcomeTimestamp"),  # no time zone
    ({"outcomeTimestamp": "yesterday"}, "feedback.0.outcomeTimestamp"),
    ({"outcome": "accepted", "overrideReason": {"userComment": "no"}}, "feedback.0.overrideReason"),
    ({"acceptedSuggestions": [{"id": "x"}]}, "feedback.0.acceptedSuggestions"),
    ({"overrideReason": {"reason": {"code": "made-up", "system": OVERRIDE_SYSTEM}}},
     "feedback.0.overrideReason.reason.code"),
    ({"overrideReason": {"reason": {"code": "already-addressed"}}},
     "feedback.0.overrideReason.reason.system"),
    ({"overrideReason": {"userComment": "fine\u202egnirts"}}, "feedback.0.overrideReason.userComment"),
    ({"overrideReason": {"userComment": "x" * 2001}}, "feedback.0.overrideReason.userComment"),
])
def test_malformed_feedback_is_a_422_naming_the_field_and_nothing_is_recorded(
        api, sid, any_store, change, field):
    card = only_card(call(api, sid, hook_request(TYPICAL_PATIENT)))
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:00:00Z"}
    response = post_feedback(api, sid, {**item, **change})
    assert response.status_code == 422, response.text
    assert field in {e["field"] for e in response.json()["errors"]}, response.json()
    assert any_store.count("cds_feedback") == 0


def test_feedback_that_is_not_a_list_of_items_is_422(api, sid, any_store):
    client, headers = api
    for body in ({"feedback": []}, {"cards": []}, [], {"feedback": "accepted"}):
        response = client.post(f"/cds-services/{sid}/feedback", json=body, headers=headers)
        assert response.status_code == 422, body
    response = client.post(f"/cds-services/{sid}/feedback", content=b'{"feedback": [}',
                           headers={**headers, "content-type": "application/json"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == WHOLE_PAYLOAD
    assert any_store.count("cds_feedback") == 0


# ---- the OpenAPI document --------------------------------------------------------------------


def test_the_openapi_document_describes_the_cds_hooks_routes(api):
    client, _ = api
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    ok = {"/cds-services": ("get", "Discovery"), "/cds-services/{service}": ("post", "CdsResponse"),
          "/cds-services/{service}/feedback": ("post", "FeedbackAck")}
    for path, (method, model) in ok.items():
        operation = paths[path][method]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}, path
        assert operation["responses"]["401"]["content"]["application/problem+json"]
    assert paths["/cds-services/{service}"]["post"]["requestBody"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/CdsRequest"}
    assert paths["/cds-services/{service}/feedback"]["post"]["requestBody"]["content"][
        "application/json"]["schema"] == {"$ref": "#/components/schemas/FeedbackRequest"}
    assert "412" in paths["/cds-services/{service}"]["post"]["responses"]
    schemas = doc["components"]["schemas"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs - set(schemas) == set()  # every reference resolves
    assert {"hook", "hookInstance", "context"} <= set(schemas["CdsRequest"]["required"])
    assert set(schemas["Card"]["properties"]) >= {"uuid", "summary", "detail", "indicator", "source",
                                                  "suggestions", "overrideReasons", "links"}
