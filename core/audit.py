"""The audit chain's hashing: every event enters as the hash of its content, chained to the
previous entry. PHI fields enter only as keyed hashes, so a later retention purge of raw
inputs never breaks the chain."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text: the same content always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hash(content: dict) -> str:
    return sha256_text(canonical_json(content))


def patient_key(reference: str, key: bytes) -> str:
    """Keyed hash of a patient reference: links records without keeping the reference."""
    return hmac.new(key, reference.encode("utf-8"), hashlib.sha256).hexdigest()


def entry_hash(*, prev_hash: str, seq: int, at: datetime, kind: str, actor: str,
               content_sha256: str) -> str:
    return sha256_text(canonical_json(
        [prev_hash, seq, at.isoformat(), kind, actor, content_sha256]
    ))
