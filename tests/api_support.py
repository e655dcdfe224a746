"""Helpers for the REST API tests: the API mounted under /api/v1 as serve.py mounts it, an API
client of each role with its token, and what a refused call may change in the store (nothing
but its own record) checked by counting every table and verifying the audit chain."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import store_oracle as oracle
from conftest import MODELS, TEST_PATIENT_KEY
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from api import PREFIX, create_api
from core import clients
from core import store as core_store
from core.config import ROLES, get_settings
from core.store import TABLES
from core.verification import verify_audit

BASE_URL = f"http://testserver{PREFIX}"
HEALTH = ("/health/live", "/health/ready")  # the routes that need no token
# The fields of a patient's data and of a prediction that a refusal must never carry
LEAKS = ("patient_ref", "prediction_id", "risk", "risk_class", "confidence", "routing",
         "TEST-0001", "input_json")


def mounted() -> Starlette:
    """The API as the one server process mounts it (serve.py), without the Streamlit UI."""
    return Starlette(routes=[Mount(PREFIX, app=create_api())])


@contextmanager
def own_store():
    """Settings naming a temporary store of their own (for reading the OpenAPI document at
    import, before any test's fixture has set them); the environment is restored after."""
    names = ("APP_DB", "APP_MODELS", "APP_PATIENT_KEY", "APP_DEMO")
    saved = {name: os.environ.get(name) for name in names}
    with tempfile.TemporaryDirectory(prefix="api-doc-") as folder:
        os.environ.update(APP_DB=str(Path(folder) / "doc.duckdb"), APP_MODELS=str(MODELS),
                          APP_PATIENT_KEY=TEST_PATIENT_KEY, APP_DEMO="0")
        try:
            yield
        finally:
            core_store.close_all()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def document() -> dict:
    """The OpenAPI document as the API serves it for the suite's model v1."""
    with own_store():
        return api_client().get("/openapi.json").json()


def operations(doc: dict) -> list[tuple[str, str]]:
    """Every (METHOD, path) the document names, in its order."""
    return [(method.upper(), path) for path, item in doc["paths"].items() for method in item]


def api_client(app=None, *, host: str = "testclient") -> TestClient:
    """A test client of the mounted API, calling from `host` (the address a refusal records);
    a server error comes back as its response, as a caller would see it."""
    return TestClient(app or mounted(), base_url=BASE_URL, client=(host, 50000),
                      raise_server_exceptions=False)


def add_clients() -> dict[str, str]:
    """An API client for each role ("<role>-system"), and its bearer token."""
    return {role: clients.add_client(f"{role}-system", roles=[role], by="admin") for role in ROLES}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def store() -> core_store.Store:
    return core_store.open_store(get_settings().db)


def counts(s: core_store.Store | None = None) -> dict[str, int]:
    """The number of rows in every table the product records to (and the audit chain)."""
    s = s or store()
    found = {table: s.count(table) for table in TABLES}
    found["audit_log"] = s.count("audit_log")
    found["phi_inputs"] = oracle.sql(s, "SELECT count(*) FROM phi_inputs")[0][0]
    return found


def added(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The tables that grew, and by how many rows."""
    return {t: after[t] - before[t] for t in after if after[t] != before[t]}


def chain_intact(s: core_store.Store | None = None) -> bool:
    problems, _ = verify_audit(s or store())
    assert problems == [], problems
    return True


def last_rejection(s: core_store.Store | None = None) -> dict:
    """The newest rejected input: who sent it, from where, and its fields and messages."""
    row = oracle.rows(s or store(), "rejected_inputs").iloc[-1]
    return {"user_name": row["user_name"], "source": row["source"],
            "fields": json.loads(row["fields_json"])}


def access_events(s: core_store.Store | None = None) -> list[dict]:
    """Every access event, oldest first (user, action, detail, source)."""
    frame = oracle.rows(s or store(), "access_events")
    return frame[["user_name", "action", "detail", "source"]].to_dict("records")


def problem_json(response) -> dict:
    """A problem+json body (RFC 9457), checked for its required members and for no traceback."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == response.status_code
    assert "Traceback" not in response.text and 'File "/' not in response.text
    return body
