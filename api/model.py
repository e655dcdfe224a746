"""The serving model, its model card, and whether this process is alive and ready."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from api.problems import responses
from api.security import caller
from core.clients import ApiClient
from core.model_card import render
from core.preflight import readiness
from core.registry import ServingModel, serving_model
from core.serving import serving_artefact

router = APIRouter()
Reader = Annotated[ApiClient, Depends(caller("read_model_card"))]


class Health(BaseModel):
    status: str  # "ok", "ready" or "not ready"
    checks: dict[str, str] = {}  # each check's problem, "" when it passes


@router.get("/model", response_model=ServingModel, tags=["model"],
            responses=responses(401, 403, 429, 503),
            summary="The serving model: version, spec, routing rule, metrics")
def model(client: Reader) -> ServingModel:
    return serving_model()


@router.get("/model/card", response_class=PlainTextResponse, tags=["model"],
            responses={**responses(401, 403, 429, 503), 200: {
                "content": {"text/markdown": {"schema": {"type": "string"}}},
                "description": "The serving version's model card (Markdown)"}},
            summary="The serving model's card, generated from its artefact")
def card(client: Reader) -> PlainTextResponse:
    return PlainTextResponse(render(serving_artefact()), media_type="text/markdown")


@router.get("/health/live", response_model=Health, tags=["health"],
            summary="Liveness: the process answers (no token needed)")
def live() -> Health:
    return Health(status="ok")


@router.get("/health/ready", response_model=Health, tags=["health"],
            responses={503: {"model": Health, "description": "Not ready: each failing check says why"}},
            summary="Readiness: the store is writable, the model verified, scoring not suspended")
def ready() -> JSONResponse:
    checks = readiness()
    ok = not any(checks.values())
    return JSONResponse(Health(status="ready" if ok else "not ready", checks=checks).model_dump(),
                        status_code=200 if ok else 503)
