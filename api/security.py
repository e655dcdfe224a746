"""Who is calling: an API client's bearer token, and the action the route needs from the one
capability table (core.access). UI session cookies are never read here, so they authorise
nothing; tokens are never logged or recorded (only the refusal, with the client's address)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.problems import ApiProblem
from core import access, auth, clients, session
from core.clients import ApiClient

bearer = HTTPBearer(auto_error=False, description="An API client's token: "
                    "`python -m core clients add NAME --role ROLE` prints it once.")
throttle = clients.FailureThrottle()
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}


def address(request: Request) -> str:
    """Where a call comes from, as access events record it: the peer, or the address a
    trusted proxy (APP_TRUSTED_PROXIES) forwarded for, as for the UI."""
    return session.client_source(request.client.host if request.client else None,
                                 request.headers.get("x-forwarded-for"))


def route_of(request: Request) -> str:
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


def _refuse_token(request: Request, why: str) -> ApiProblem:
    source = address(request)
    throttle.failed(source)
    auth.record_access(auth.ANONYMOUS, "api_token_refused", f"{why}, {route_of(request)}",
                       source=source)
    return ApiProblem(401, f"{why}: send `Authorization: Bearer <token>` with an active API "
                           "client's token", headers=CHALLENGE)


def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None,
                  action: str) -> ApiClient:
    source = address(request)
    wait = throttle.retry_after(source)
    if wait:
        if throttle.first_refusal(source):
            auth.record_access(auth.ANONYMOUS, "api_throttled", f"too many refused tokens, "
                               f"{route_of(request)}", source=source)
        raise ApiProblem(429, "too many refused tokens from this address; try again later",
                         headers={"Retry-After": str(wait)})
    if credentials is None:
        raise _refuse_token(request, "no bearer token")
    client = clients.authenticate(credentials.credentials)
    if client is None:
        raise _refuse_token(request, "unknown or revoked token")
    if not access.authorise(client, action, how=f"API {route_of(request)}", source=source):
        raise ApiProblem(403, f"API client {client.name} does not hold the action '{action}' "
                              f"(its roles: {', '.join(client.roles)})")
    return client


def caller(action: str) -> Callable:
    """A dependency: the API client making this call, which must hold `action`."""
    async def dependency(request: Request,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                         ) -> ApiClient:
        return await run_in_threadpool(_authenticate, request, credentials, action)
    return dependency


def record_read(client: ApiClient, request: Request, subject: str) -> None:
    """Record a read of patient data (the prediction or queue it named)."""
    auth.record_access(client.principal, "api_read", f"{route_of(request)} {subject}".strip(),
                       source=address(request))
