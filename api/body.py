"""Request bodies read strictly: a declared media type, a size limit while reading (not after),
and JSON as RFC 8259 has it: no NaN or Infinity literals, no repeated keys, no numbers too
long to be a number anyone measured."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from api.problems import ApiProblem

JSON_LIMIT = 1 << 20  # one patient, or a list of them: 1 MiB
MAX_NUMBER_CHARS = 40


class Unreadable(ValueError):
    """The body is not JSON this API accepts; the message says where and why."""


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def check_media_type(request: Request, *accepted: str) -> None:
    kind = media_type(request)
    if kind not in accepted:
        raise ApiProblem(415, f"send the body as {' or '.join(accepted)}"
                              + (f", not {kind}" if kind else " (no Content-Type was given)"))


async def chunks(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives; 413 as soon as it passes `limit` bytes (or declares more)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiProblem(413, f"the body is {int(declared)} bytes; the limit is {limit}")
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise ApiProblem(413, f"the body is larger than the limit of {limit} bytes")
        yield chunk


def _no_constant(name: str) -> Any:
    raise Unreadable(f"{name} is not a JSON number")


def _number(text: str) -> float | int:
    if len(text) > MAX_NUMBER_CHARS:
        raise Unreadable(f"a number of {len(text)} characters is not a measurement")
    value = float(text) if any(c in text for c in ".eE") else int(text)
    if value in (float("inf"), float("-inf")):
        raise Unreadable(f"{text[:20]} is out of range")
    return value


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise Unreadable(f"the key {key[:40]!r} is given twice")
        out[key] = value
    return out


def parse_json(raw: bytes) -> Any:
    """The JSON value of a body, or Unreadable saying why."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise Unreadable("the body is empty")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_number,
                          parse_int=_number, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        raise Unreadable(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                         ) from None
    except RecursionError:
        raise Unreadable("nested too deeply") from None


async def read_json(request: Request, limit: int = JSON_LIMIT) -> Any:
    """The body's JSON value (415 for another media type, 413 past the limit, Unreadable)."""
    check_media_type(request, "application/json")
    return parse_json(b"".join([c async for c in chunks(request, limit)]))
