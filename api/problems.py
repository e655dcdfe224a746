"""Errors as RFC 9457 problem details (application/problem+json), never a traceback.

Every error the API returns has `type`, `title`, `status` and `detail`; a refused input adds
`errors`, the same field-level problems the form shows (field, message, value received)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    AlreadyDecided,
    AlreadyRecorded,
    ArtefactMismatch,
    ConfigError,
    CoreError,
    InvalidInput,
    NotFound,
    ScoringSuspended,
    StoreUnavailable,
    UserError,
    problem,
)

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("api")


class FieldProblem(BaseModel):
    field: str
    message: str
    value: str


class ProblemDetail(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


TITLES = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 409: "Conflict", 412: "Precondition failed",
          413: "Content too large",
          415: "Unsupported media type", 422: "Invalid input", 429: "Too many requests",
          500: "Internal error", 503: "Service unavailable"}


class ApiProblem(Exception):
    """Raise to answer with a problem (status, detail, optional field problems and headers)."""

    def __init__(self, status: int, detail: str, *, errors: list | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, errors, headers


def problem_response(status: int, detail: str, *, errors: list | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    body = ProblemDetail(title=TITLES.get(status, "Error"), status=status, detail=detail,
                         errors=errors).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


# A core error's status; the first class in the list that the error is an instance of wins.
STATUS_OF: list[tuple[type[CoreError], int]] = [
    (InvalidInput, 422), (NotFound, 404), (AlreadyDecided, 409), (AlreadyRecorded, 409),
    (ScoringSuspended, 503), (StoreUnavailable, 503), (ArtefactMismatch, 503), (ConfigError, 503),
    (UserError, 400),
]


def status_of(exc: CoreError) -> int:
    return next((status for cls, status in STATUS_OF if isinstance(exc, cls)), 500)


def _detail(exc: CoreError, status: int) -> str:
    if isinstance(exc, AlreadyDecided):
        return "a decision is already in force for this prediction; send `supersedes` to correct it"
    if status == 500:
        return "the request could not be completed; nothing was returned that is not recorded"
    return str(exc)


def install(app: FastAPI) -> None:
    """Answer every error of this app as problem+json."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)

    @app.exception_handler(CoreError)
    async def _core(request: Request, exc: CoreError) -> JSONResponse:
        status = status_of(exc)
        if status == 500:
            log.error("API %s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return problem_response(status, _detail(exc, status),
                                errors=exc.errors if isinstance(exc, InvalidInput) else None,
                                headers={"Retry-After": "60"} if status == 503 else None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [problem(".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]),
                          e["msg"].removeprefix("Value error, "), e.get("input"))
                  for e in exc.errors()]
        return problem_response(422, "the request does not fit this endpoint", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
        return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        log.error("API %s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return problem_response(500, "the request could not be completed; nothing was returned "
                                     "that is not recorded")


def responses(*statuses: int) -> dict:
    """The OpenAPI `responses` entry of these error statuses (all problem+json)."""
    return {s: {"model": ProblemDetail, "description": TITLES[s],
                "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}}
            for s in statuses}
