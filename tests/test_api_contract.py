"""The API keeps its contract: requests generated from the OpenAPI document (valid and invalid,
for every operation) never cause a server error, and every response matches what the document
says (status, content type, headers, body schema): Schemathesis's default checks.

The document is read once, at import, from the API over a store of its own (its request schemas
come from the serving version's spec, the suite's v1, the same at run time); each operation's
test then runs over a fresh store with an API client holding every role, so every route
authorises and scores, records and reads for real."""

from __future__ import annotations

import zlib

import pytest
import schemathesis
from api_support import add_clients, bearer, chain_intact, counts, mounted, own_store
from conftest import TYPICAL_PATIENT
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

import core
from api import PREFIX, security
from core import clients
from core.clients import FailureThrottle
from core.config import ROLES

APP = mounted()


with own_store():
    schema = schemathesis.openapi.from_asgi(f"{PREFIX}/openapi.json", APP)


@pytest.fixture
def contract(fresh_store, monkeypatch):
    """A client holding every role, and a prediction of each routing to read and follow up.
    The contract is not about the refused-token throttle: Schemathesis's auth checks send many
    tokenless requests from one address on purpose."""
    monkeypatch.setattr(security, "throttle", FailureThrottle(limit=10**9))
    token = clients.add_client("contract", roles=list(ROLES), by="admin")
    add_clients()
    finalised = core.score({**TYPICAL_PATIENT, "patient_ref": "C-1"}, user="dr.c", source="form")
    queued = core.score({**TYPICAL_PATIENT, "patient_ref": "C-2", "lvef": None}, user="dr.c",
                        source="form")
    return {"headers": bearer(token), "ids": [finalised.prediction_id, queued.prediction_id]}


# The document's request schemas cannot say everything the API checks: the reason codes are the
# deployment's settings, an override needs a comment, an outcome's date must fall within its
# prediction's horizon, free text has no control characters, a CSV body must have the model's
# columns, and a CDS Hooks call's prefetched inputs must be the model's. For these operations a
# schema-valid request may rightly be refused (422).
RULES_BEYOND_SCHEMA = {"POST /outcomes", "POST /predictions/{prediction_id}/review",
                       "POST /predictions/csv",
                       # CDS Hooks: `prefetch.inputs` is the model's inputs (412 without, 422 when
                       # they do not validate); feedback names a card this client was given
                       "POST /cds-services/{service}", "POST /cds-services/{service}/feedback"}
# A list answers 200 with each patient scored or rejected (as a file is), so a schema-violating
# patient in it is rejected in the answer, not refused with a 4xx: only one patient's call is.
STRICT_OPERATIONS = {"POST /predictions"}
GENERATION = settings(max_examples=25, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))


def _call_and_validate(case, contract) -> None:
    ids = case.path_parameters.get("prediction_id") if case.path_parameters else None
    if isinstance(ids, str) and zlib.crc32(ids.encode("utf-8", "surrogatepass")) % 2:
        # half the generated ids name a real prediction (one routed to review, one not)
        case.path_parameters["prediction_id"] = contract["ids"][len(ids) % 2]
    # A patient sent to the API is validated with JSON's own types (core.scoring.STRICT_SOURCES),
    # so a request the document forbids is refused. Outcomes and decisions are read as their
    # page reads them (a yes/no may come as "yes"): not checked there.
    excluded = [] if case.operation.label in STRICT_OPERATIONS else [negative_data_rejection]
    if case.operation.label in RULES_BEYOND_SCHEMA:
        excluded.append(positive_data_acceptance)
    case.call_and_validate(headers=contract["headers"], excluded_checks=excluded)


@schema.parametrize()
@GENERATION
def test_api_keeps_its_contract(case, contract):
    _call_and_validate(case, contract)


def test_document_names_every_route_and_the_serving_model():
    doc = schema.raw_schema
    assert doc["info"]["x-model-version"] == "v1"
    assert doc["servers"] == [{"url": PREFIX}]
    operations = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert operations == {
        ("POST", "/predictions"), ("POST", "/predictions/batch"), ("POST", "/predictions/csv"),
        ("GET", "/predictions/{prediction_id}"), ("POST", "/outcomes"), ("GET", "/review-queue"),
        ("POST", "/predictions/{prediction_id}/review"), ("GET", "/model"), ("GET", "/model/card"),
        ("GET", "/health/live"), ("GET", "/health/ready"), ("GET", "/cds-services"),
        ("POST", "/cds-services/{service}"), ("POST", "/cds-services/{service}/feedback")}


def test_store_stays_verifiable_after_generated_requests(contract):
    """A smaller run of the same generated requests, then the audit chain still verifies."""
    before = counts()
    operation = schema["/predictions"]["POST"]
    strategy = operation.as_strategy()

    @given(strategy)
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call(headers=contract["headers"])
        assert response.status_code < 500, response.text

    run()
    assert counts()["audit_log"] >= before["audit_log"]
    assert chain_intact()
