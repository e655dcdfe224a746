"""The REST API (/api/v1): thin routes over the same core calls the pages make.

`create_api()` builds the FastAPI app; serve.py mounts it beside the Streamlit UI in the one
server process. The OpenAPI document describes the serving model version: its request schemas
are built from that version's spec, and `info.x-model-version` names it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api import cds_hooks, followup, model, predictions, problems
from core.config import get_settings
from core.errors import CoreError
from core.serving import serving_version

API_VERSION = "1"
PREFIX = "/api/v1"


def _request_schemas(spec) -> dict[str, Any]:
    """PatientInput (one patient, from the spec), PatientList and PatientCsv."""
    one = spec.input_model.model_json_schema(ref_template="#/components/schemas/{model}")
    columns = ", ".join(["patient_ref", *spec.names])
    return {
        "PatientInput": one,
        "PatientList": {"type": "object", "additionalProperties": False, "required": ["patients"],
                        "properties": {"patients": {
                            "type": "array", "minItems": 1, "maxItems": predictions.MAX_LIST,
                            "items": {"$ref": "#/components/schemas/PatientInput"}}}},
        "PatientCsv": {"type": "string", "description": f"CSV with a header row: {columns}"},
    }


def _media(name: str) -> str:
    return "text/csv" if name == "PatientCsv" else "application/json"


def create_api() -> FastAPI:
    api = FastAPI(title="Clinical risk service API", version=API_VERSION,
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
                  description="Score patients with the serving model, follow predictions up, "
                              "and read the model's facts. Every call needs an API client's "
                              "bearer token; every error is application/problem+json.")
    problems.install(api)
    for router in (predictions.router, followup.router, model.router, cds_hooks.router):
        api.include_router(router)
    cached: dict[str, dict] = {}

    def openapi() -> dict:
        try:
            version = serving_version(get_settings())
        except CoreError:
            version = None
        if version in cached:
            return cached[version]
        doc = get_openapi(title=api.title, version=api.version, description=api.description,
                          routes=api.routes, servers=[{"url": PREFIX}])
        doc["info"]["x-model-version"] = version
        doc.setdefault("components", {}).setdefault("schemas", {}).update(cds_hooks.request_schemas())
        if version is not None:
            spec = scoring_artefact_spec(version)
            doc["info"]["description"] += f" This document describes model version {version}."
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(_request_schemas(spec))
            cds_hooks.describe(doc, spec)
            for path in doc["paths"].values():
                for operation in path.values():
                    name = operation.pop("x-request-schema", None)
                    if name:
                        operation["requestBody"] = {"required": True, "content": {_media(name): {
                            "schema": {"$ref": f"#/components/schemas/{name}"}}}}
        cached.clear()
        cached[version] = doc
        return doc

    api.openapi = openapi
    return api


def scoring_artefact_spec(version: str):
    from core import artifacts

    return artifacts.load(get_settings().models, version).spec

