"""Who may call what: every operation of the OpenAPI document, called with no token, a revoked
token, a made-up token, a UI session cookie and each role's token. A refusal (401, or 403 for a
role without the route's action in core.access) carries no patient data and is recorded as an
access event; the right role gets through. Twenty refused tokens from one address in a minute,
and that address is refused outright (429) until the minute is over, recorded once.

The operations come from the document, so a new route is called here as soon as it exists; its
action must be stated in ACTION (the roles that get through are checked against it)."""

from __future__ import annotations

import time
from datetime import date
from types import SimpleNamespace

import pytest
import store_oracle as oracle
from api_support import (
    HEALTH,
    add_clients,
    added,
    api_client,
    bearer,
    chain_intact,
    counts,
    document,
    operations,
    store,
)
from conftest import TYPICAL_PATIENT

import core
from api import security
from api.cds_hooks import service_id
from core import access, artifacts, auth, clients
from core.clients import FailureThrottle
from core.config import ROLES

DOC = document()
OPERATIONS = operations(DOC)
# The action each operation needs (core.access.CAPABILITIES names the roles that hold it)
ACTION = {
    ("POST", "/predictions"): "score",
    ("POST", "/predictions/batch"): "score",
    ("POST", "/predictions/csv"): "score",
    ("GET", "/predictions/{prediction_id}"): "read_prediction",
    ("POST", "/outcomes"): "record_outcome",
    ("GET", "/review-queue"): "review",
    ("POST", "/predictions/{prediction_id}/review"): "review",
    ("GET", "/model"): "read_model_card",
    ("GET", "/model/card"): "read_model_card",
    ("GET", "/cds-services"): "read_model_card",
    ("POST", "/cds-services/{service}"): "score",
    ("POST", "/cds-services/{service}/feedback"): "score",
}
SECURED = [op for op in OPERATIONS if op[1] not in HEALTH]
PATIENT_REF = "ACC-0001"
CHALLENGE = 'Bearer realm="api"'
SOURCE = "testclient"  # the test client's peer address


def v1_spec():
    """The serving version's spec (the suite's v1), whose title names the CDS service."""
    from conftest import MODELS

    return artifacts.load(MODELS, "v1").spec


@pytest.fixture
def world(fresh_store, monkeypatch):
    """A client of each role, one revoked; a prediction waiting for review (scored by the
    form) to read, decide and follow up; a fresh throttle."""
    monkeypatch.setattr(security, "throttle", FailureThrottle())
    tokens = add_clients()
    revoked = clients.add_client("retired-system", roles=list(ROLES), by="admin")
    clients.revoke_client("retired-system", by="admin")
    queued = core.score({**TYPICAL_PATIENT, "patient_ref": PATIENT_REF, "lvef": None},
                        user="dr.form", source="form")
    assert queued.routing == "review"
    return SimpleNamespace(http=api_client(), tokens=tokens, revoked=revoked, queued=queued,
                           store=fresh_store)


def _request(world, method: str, path: str) -> dict:
    """httpx arguments for a call that the operation's right role can make successfully."""
    sid = service_id(v1_spec())
    url = path.replace("{prediction_id}", world.queued.prediction_id).replace("{service}", sid)
    patient = {**TYPICAL_PATIENT, "patient_ref": "ACC-0002"}
    header = ",".join(["patient_ref", *TYPICAL_PATIENT])
    row = ",".join(["ACC-0003", *(str(v).lower() if isinstance(v, bool) else str(v)
                                  for v in TYPICAL_PATIENT.values())])
    bodies = {
        "/predictions": {"json": patient},
        "/predictions/batch": {"json": {"patients": [patient]}},
        "/predictions/csv": {"content": f"{header}\n{row}\n".encode(),
                             "headers": {"content-type": "text/csv"}},
        "/outcomes": {"json": {"prediction_id": world.queued.prediction_id, "event": True,
                               "event_date": date.today().isoformat(), "source": "lab feed"}},
        "/predictions/{prediction_id}/review": {"json": {
            "decision": "agree", "reason_code": "clinical context not captured by the model"}},
    }
    if path.startswith("/cds-services/"):
        hook = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                "context": {"userId": "Practitioner/example", "patientId": "ACC-0004"},
                "prefetch": {"inputs": TYPICAL_PATIENT}}
        # a card the clinician's client was given, to report on
        shown = core.score({**TYPICAL_PATIENT, "patient_ref": "ACC-0005"},
                           user="client:clinician-system", source="api")
        bodies["/cds-services/{service}"] = {"json": hook}
        bodies["/cds-services/{service}/feedback"] = {"json": {"feedback": [{
            "card": shown.prediction_id, "outcome": "overridden",
            "outcomeTimestamp": "2026-12-01T10:00:00Z"}]}}
    documented = DOC["paths"][path][method.lower()].get("requestBody")
    default = {"json": {}} if documented else {}
    return {"method": method, "url": url, **bodies.get(path, default)}


def _call(world, request: dict, headers: dict | None = None):
    request = {**request, "headers": {**request.get("headers", {}), **(headers or {})}}
    return world.http.request(**request)


def _no_data(world, response) -> None:
    """A refusal says why, and nothing of any patient or prediction."""
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail"}, body
    for leak in (PATIENT_REF, "ACC-0002", "ACC-0003", "ACC-0004", "ACC-0005", world.queued.prediction_id,
                 str(world.queued.risk), "risk", "patient_ref"):
        assert leak not in response.text, (leak, response.text)
    assert "Traceback" not in response.text


def _new_events(before: int) -> list[dict]:
    frame = oracle.rows(store(), "access_events")
    return frame.iloc[before:][["user_name", "action", "detail", "source"]].to_dict("records")


def test_every_documented_operation_has_its_action_stated():
    assert {op for op in SECURED} == set(ACTION), "state the action of each new route in ACTION"
    assert set(ACTION.values()) <= set(access.CAPABILITIES)
    assert [op for op in OPERATIONS if op[1] in HEALTH] == [("GET", p) for p in HEALTH]


@pytest.mark.parametrize("method,path", SECURED, ids=[f"{m} {p}" for m, p in SECURED])
def test_refused_without_a_valid_token_recorded_and_telling_nothing(world, method, path):
    request = _request(world, method, path)
    attempts = {
        "no bearer token": {},
        "no bearer token ": {"Authorization": "Basic ZGVtbzpkZW1v"},
        "no bearer token  ": {"Cookie": "_streamlit_xsrf=2|abc|def|123; session=made-up-session; "
                                        "_streamlit_user=demo-clinician"},
        "unknown or revoked token": bearer(world.revoked),
        "unknown or revoked token ": bearer("crs_" + "x" * 43),
        "unknown or revoked token  ": bearer(world.tokens["clinician"][:-2] + "zz"),
    }
    for why, headers in attempts.items():
        before = counts()
        seen = len(oracle.rows(world.store, "access_events"))
        response = _call(world, request, headers)
        assert response.status_code == 401, (why, response.text)
        assert response.headers["www-authenticate"] == CHALLENGE
        assert response.headers["content-type"].startswith("application/problem+json")
        _no_data(world, response)
        assert why.strip() in response.json()["detail"]
        assert added(before, counts()) == {"access_events": 1, "audit_log": 1}
        assert _new_events(seen) == [{"user_name": auth.ANONYMOUS, "action": "api_token_refused",
                                      "detail": f"{why.strip()}, {method} {path}", "source": SOURCE}]
    assert chain_intact()


@pytest.mark.parametrize("method,path", SECURED, ids=[f"{m} {p}" for m, p in SECURED])
def test_only_the_roles_holding_the_action_get_through(world, method, path):
    action = ACTION[(method, path)]
    request = _request(world, method, path)
    allowed = []
    for role in ROLES:
        seen = len(oracle.rows(world.store, "access_events"))
        before = counts()
        response = _call(world, request, bearer(world.tokens[role]))
        if role in access.CAPABILITIES[action]:
            assert response.status_code not in (401, 403), (role, response.text)
            assert response.status_code < 300, (role, response.text)
            allowed.append(role)
        else:
            assert response.status_code == 403, (role, response.text)
            assert "www-authenticate" not in response.headers
            _no_data(world, response)
            assert f"'{action}'" in response.json()["detail"]
            assert added(before, counts()) == {"access_events": 1, "audit_log": 1}
            assert _new_events(seen) == [{
                "user_name": f"client:{role}-system", "action": "access_denied",
                "detail": f"action {action}, API {method} {path}", "source": SOURCE}]
    assert allowed == [r for r in ROLES if r in access.CAPABILITIES[action]] != []
    assert chain_intact()


def test_health_needs_no_token_and_records_nothing(world):
    for path in HEALTH:
        before = counts()
        response = world.http.get(path)
        assert response.status_code == 200, response.text
        assert added(before, counts()) == {}


def test_a_revoked_client_is_refused_at_once(world):
    token = clients.add_client("lab-feed", roles=["clinician"], by="admin")
    ok = world.http.get("/model", headers=bearer(token))
    assert ok.status_code == 200  # and now in the token cache
    clients.revoke_client("lab-feed", by="admin")
    refused = world.http.get("/model", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json()["detail"].startswith("unknown or revoked token")


def test_throttle_answers_429_after_twenty_refused_tokens_and_records_it_once(world):
    http = api_client(host="203.0.113.7")
    for i in range(security.throttle.limit):
        # an address the caller claims for itself changes nothing: the peer is no trusted proxy
        response = http.get("/model", headers={**bearer(f"crs_guess-{i}"),
                                               "X-Forwarded-For": f"192.0.2.{i}"})
        assert response.status_code == 401, (i, response.text)
    seen = len(oracle.rows(world.store, "access_events"))

    for headers in ({}, bearer("crs_guess-more"), bearer(world.tokens["admin"])):  # even a good one
        throttled = http.get("/model", headers=headers)
        assert throttled.status_code == 429, throttled.text
        assert 1 <= int(throttled.headers["retry-after"]) <= 61
        _no_data(world, throttled)
    assert http.post("/predictions", json=TYPICAL_PATIENT).status_code == 429
    events = _new_events(seen)
    assert events == [{"user_name": auth.ANONYMOUS, "action": "api_throttled",
                       "detail": "too many refused tokens, GET /model",
                       "source": "203.0.113.7"}]
    refused = oracle.rows(world.store, "access_events", action="api_token_refused")
    assert list(refused["source"]) == ["203.0.113.7"] * security.throttle.limit

    # another address is not held back by this one's refusals
    other = api_client(host="198.51.100.2")
    assert other.get("/model", headers=bearer(world.tokens["admin"])).status_code == 200
    assert world.http.get("/model", headers=bearer(world.tokens["pi"])).status_code == 200
    assert chain_intact()


def test_throttle_lifts_when_the_window_has_passed(world, monkeypatch):
    throttle = FailureThrottle(limit=3, window_s=0.5)
    monkeypatch.setattr(security, "throttle", throttle)
    for _ in range(3):
        assert world.http.get("/model").status_code == 401
    assert world.http.get("/model", headers=bearer(world.tokens["pi"])).status_code == 429
    time.sleep(0.6)
    assert world.http.get("/model", headers=bearer(world.tokens["pi"])).status_code == 200


def test_behind_a_trusted_proxy_the_throttle_counts_each_forwarded_address(world, monkeypatch):
    monkeypatch.setenv("APP_TRUSTED_PROXIES", '["10.0.0.0/24"]')
    proxy = api_client(host="10.0.0.5")
    for _ in range(security.throttle.limit):
        assert proxy.get("/model", headers={"X-Forwarded-For": "192.0.2.1"}).status_code == 401
    assert proxy.get("/model", headers={**bearer(world.tokens["pi"]),
                                        "X-Forwarded-For": "192.0.2.1"}).status_code == 429
    # the proxy's other clients are not held back by one client's refusals
    assert proxy.get("/model", headers={**bearer(world.tokens["pi"]),
                                        "X-Forwarded-For": "192.0.2.2"}).status_code == 200
    sources = set(oracle.rows(world.store, "access_events")["source"])
    assert sources == {"192.0.2.1"}
