"""Outcomes (what a lab system pushes) and the review queue with its decisions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.body import Unreadable, read_json
from api.problems import responses
from api.security import caller, record_read
from core.clients import ApiClient
from core.errors import InvalidInput, problem
from core.outcomes import OutcomeInput, record_outcome
from core.review import ReviewDecision, decide
from core.review_queue import QueueItem, queue
from core.text import clean_text

router = APIRouter(tags=["follow-up"])


class Recorded(BaseModel):
    """A recorded event: its id and the time it was recorded (UTC)."""

    id: str
    prediction_id: str
    recorded_at: str


class ReviewQueue(BaseModel):
    count: int
    items: list[QueueItem]


class DecisionRequest(ReviewDecision):
    """A reviewer's decision, relayed by an integration: `reviewer_name` is the person who
    decided, as the integration knows them (recorded beside the client that sent it)."""

    prediction_id: str | None = None  # taken from the path
    reviewer_name: str | None = None


async def _body(request: Request) -> dict:
    try:
        body = await read_json(request)
    except Unreadable as exc:
        raise InvalidInput([problem("(body)", str(exc), None, shown="")]) from None
    if not isinstance(body, dict):
        raise InvalidInput([problem("(body)", "must be a JSON object", body)])
    return body


def _recorded(row: dict, id_column: str, status: int) -> JSONResponse:
    return JSONResponse(Recorded(id=row[id_column], prediction_id=row["prediction_id"],
                                 recorded_at=row["created_at"].isoformat() + "Z").model_dump(),
                        status_code=status)


@router.post("/outcomes", status_code=201, response_model=Recorded,
             responses=responses(401, 403, 404, 409, 413, 415, 422, 429, 503),
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": OutcomeInput.model_json_schema(ref_template="#/components/schemas/{model}")}}}},
             summary="Record the observed outcome of a prediction (or correct one with `supersedes`)")
async def outcome(request: Request,
                  client: Annotated[ApiClient, Depends(caller("record_outcome"))]) -> JSONResponse:
    body = await _body(request)
    row = await run_in_threadpool(record_outcome, body, user=client.principal)
    return _recorded(row, "outcome_id", 201)


@router.get("/review-queue", response_model=ReviewQueue, responses=responses(401, 403, 422, 429, 503),
            summary="Predictions waiting for review, oldest first")
def review_queue(request: Request, client: Annotated[ApiClient, Depends(caller("review"))],
                 reason: Annotated[str | None, Query(max_length=100)] = None,
                 model_version: Annotated[str | None, Query(max_length=100)] = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> ReviewQueue:
    items = queue(reason, model_version, limit=limit)
    record_read(client, request, f"{len(items)} predictions")
    return ReviewQueue(count=len(items), items=items)


@router.post("/predictions/{prediction_id}/review", status_code=201, response_model=Recorded,
             responses=responses(401, 403, 404, 409, 413, 415, 422, 429, 503),
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": DecisionRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}},
             summary="Record a reviewer's signed decision on a prediction waiting for review")
async def decision(prediction_id: str, request: Request,
                   client: Annotated[ApiClient, Depends(caller("review"))]) -> JSONResponse:
    body: dict[str, Any] = await _body(request)
    if body.get("prediction_id") not in (None, prediction_id):  # absent or null: the path's
        raise InvalidInput([problem("prediction_id", "differs from the prediction in the path",
                                    body["prediction_id"])])
    name = body.pop("reviewer_name", None)
    try:
        name = clean_text(name, max_length=200) if name is not None else ""
    except (ValueError, TypeError) as exc:
        raise InvalidInput([problem("reviewer_name", str(exc), name)]) from None
    display = f"{name} (via {client.principal})" if name else client.principal
    row = await run_in_threadpool(decide, {**body, "prediction_id": prediction_id},
                                  user=client.principal, display_name=display)
    return _recorded(row, "decision_id", 201)


