"""Scoring through the API: one patient, a JSON list, a CSV file; and a prediction's state.

Each route reads the body strictly (api.body), then makes the same core call the pages make;
a body that cannot be a payload is recorded as a rejected input too, so nothing sent is lost."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from api.body import Unreadable, check_media_type, chunks, read_json
from api.problems import ApiProblem, responses
from api.security import caller, record_read
from core import score
from core.batch import score_batch
from core.clients import ApiClient
from core.errors import InvalidInput, problem, safe_repr
from core.prediction_state import PredictionState, prediction_state
from core.scoring import ScoredOne, ScoreResult, reject, score_many
from core.spec import WHOLE_PAYLOAD

router = APIRouter(tags=["predictions"])
MAX_LIST = 1000  # patients in one JSON list
CSV_LIMIT = 50 << 20  # bytes of one CSV upload
Scorer = Annotated[ApiClient, Depends(caller("score"))]
ERRORS = responses(401, 403, 413, 415, 422, 429, 503)


class ScoredList(BaseModel):
    """Every patient of a list, in order: scored (with its recorded prediction) or rejected."""

    scored: int
    rejected: int
    results: list[ScoredOne]


async def _payload(request: Request, client: ApiClient) -> Any:
    """The body's JSON value; a body that is none is recorded as a rejected input first."""
    try:
        return await read_json(request)
    except Unreadable as exc:
        raise await run_in_threadpool(reject, {"body": str(exc)}, [problem(WHOLE_PAYLOAD, str(exc),
                                      None, shown="")], user=client.principal, source="api"
                                      ) from None
    except ApiProblem as exc:
        await run_in_threadpool(reject, {"body": exc.detail}, [problem(WHOLE_PAYLOAD, exc.detail,
                                None, shown="")], user=client.principal, source="api")
        raise


@router.post("/predictions", status_code=201, response_model=ScoreResult, responses=ERRORS,
             openapi_extra={"x-request-schema": "PatientInput"},
             summary="Score one patient (validated, routed and recorded before it is returned)")
async def score_one(request: Request, client: Scorer) -> JSONResponse:
    payload = await _payload(request, client)
    result = await run_in_threadpool(score, payload, user=client.principal, source="api")
    return JSONResponse(result.model_dump(mode="json"), status_code=201,
                        headers={"Location": f"{request.scope.get('root_path', '')}"
                                             f"/predictions/{result.prediction_id}"})


@router.post("/predictions/batch", response_model=ScoredList, responses=ERRORS,
             openapi_extra={"x-request-schema": "PatientList"},
             summary="Score a JSON list of patients (each scored or rejected, all recorded)")
async def score_list(request: Request, client: Scorer) -> ScoredList:
    body = await _payload(request, client)
    patients = body.get("patients") if isinstance(body, dict) else None
    extra = sorted(body)[:5] if isinstance(body, dict) else []
    problems = []
    if not isinstance(patients, list):
        problems.append(problem("patients", "send an object with `patients`: a list of patients",
                                body if not isinstance(body, dict) else patients))
    elif not 1 <= len(patients) <= MAX_LIST:
        problems.append(problem("patients", f"a list of 1 to {MAX_LIST} patients", len(patients)))
    problems += [problem(k, "not a field of this request (only `patients`)", None, shown="")
                 for k in extra if k != "patients"]
    if problems:
        raise await run_in_threadpool(reject, body, problems, user=client.principal, source="api")
    results = await run_in_threadpool(score_many, patients, user=client.principal, source="api")
    scored = sum(r.status == "scored" for r in results)
    return ScoredList(scored=scored, rejected=len(results) - scored, results=results)


@router.post("/predictions/csv", responses={**ERRORS, 200: {
    "content": {"text/csv": {"schema": {"type": "string"}}},
    "description": "The scored file: a row per input row, `scored` or `rejected` (as score-batch)"}},
    response_class=FileResponse, openapi_extra={"x-request-schema": "PatientCsv"},
    summary="Score a CSV file (the score-batch columns), streamed through the batch path")
async def score_csv(request: Request, client: Scorer) -> FileResponse:
    try:
        check_media_type(request, "text/csv")
    except ApiProblem as exc:
        await run_in_threadpool(reject, {"body": exc.detail}, [problem(WHOLE_PAYLOAD, exc.detail,
                                None, shown="")], user=client.principal, source="api")
        raise
    folder = tempfile.TemporaryDirectory(prefix="api-csv-")
    try:
        source, target = Path(folder.name) / "input.csv", Path(folder.name) / "scored.csv"
        with open(source, "wb") as fh:
            try:
                async for chunk in chunks(request, CSV_LIMIT):
                    fh.write(chunk)
            except ApiProblem as exc:
                await run_in_threadpool(reject, {"body": exc.detail}, [problem(
                    WHOLE_PAYLOAD, exc.detail, None, shown="")], user=client.principal, source="api")
                raise
        try:
            counts = await run_in_threadpool(score_batch, source, target, user=client.principal,
                                             progress=False, source="api")
        except InvalidInput as exc:
            raise await _unreadable_file(exc, source, client) from None
    except BaseException:
        folder.cleanup()
        raise
    headers = {f"X-Rows-{k.title()}": str(v) for k, v in counts.items()}
    return FileResponse(target, media_type="text/csv", filename="scored.csv", headers=headers,
                        background=BackgroundTask(folder.cleanup))


async def _unreadable_file(exc: InvalidInput, source: Path, client: ApiClient) -> InvalidInput:
    """A body that is no CSV file at all (empty, not UTF-8, an open quote) is refused by the batch
    path's first read, which names the file it read: here that is the server's temporary copy,
    so the problem is the body's, recorded as a rejected input like any unreadable body. Any
    other refusal (a header that does not fit the model) the batch path has recorded itself."""
    here = safe_repr(str(source))
    if not any(e["value"] == here for e in exc.errors):
        return exc
    problems = [problem(WHOLE_PAYLOAD, e["message"], None, shown="") if e["value"] == here else e
                for e in exc.errors]
    return await run_in_threadpool(reject, {"body": [e["message"] for e in problems]}, problems,
                                   user=client.principal, source="api")


@router.get("/predictions/{prediction_id}", response_model=PredictionState,
            responses=responses(401, 403, 404, 429, 503),
            summary="A prediction's current state: finalised, waiting for review, reviewed, outcome")
def state(prediction_id: str, request: Request,
          client: Annotated[ApiClient, Depends(caller("read_prediction"))]) -> PredictionState:
    found = prediction_state(prediction_id)
    record_read(client, request, prediction_id)
    return found


