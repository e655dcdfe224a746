"""The audit chain's hashing: every event enters as the hash of its content, chained to the
previous entry. PHI fields enter only as keyed hashes, so a later retention purge of raw
inputs never breaks the chain."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import orjson

GENESIS = "0" * 64


_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text, ISO dates: the same content always gives the same
    bytes (orjson: the chain hashes every event, so this is on the scoring path)."""
    return orjson.dumps(value, option=_CANONICAL).decode("utf-8")


def sha256_text(text: str) -> str:
    # surrogatepass: a lone surrogate in hostile input must still hash, deterministically.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def patient_key(reference: str, key: bytes) -> str:
    """Keyed hash of a patient reference: links records without keeping the reference."""
    return hmac.digest(key, reference.encode("utf-8"), "sha256").hex()


def entry_hash(*, prev_hash: str, seq: int, at: datetime, kind: str, actor: str, subject: str,
               event_table: str, content_sha256: str) -> str:
    """Hash of one entry: its place in the chain, its envelope and its content's hash."""
    return sha256_text(canonical_json(
        [prev_hash, seq, at.isoformat(), kind, actor, subject, event_table, content_sha256]
    ))


def verify_chain(entries, event_rows: dict[str, Iterator[dict]], *,
                 head: tuple[int, str] | None = None, since: tuple[int, str] = (0, GENESIS),
                 content_of: Callable[[str, dict], dict] | None = None
                 ) -> tuple[list[str], tuple[int, str]]:
    """Check the chain and that every event row still says what was recorded, streaming.

    entries: audit entries in seq order, after `since`; event_rows: per event table, its rows
    with an audit seq after `since`, in audit-seq order (both sides are walked together, so
    memory stays constant). `since` (seq, entry hash): a point verified before, from which to
    go on (0 and GENESIS: the whole chain). `content_of(table, row)`: the content a whole-row
    entry (format 2) must hold for that row. Returns (problems, head); problems name the first
    bad entry first, and are empty when intact."""
    problems, last, hash_at_head = walk_chain(entries, event_rows, since=since, content_of=content_of,
                                              head_seq=None if head is None else head[0])
    return problems + head_problems(head, since=since, last=last, hash_at_head=hash_at_head), last


def walk_chain(entries, event_rows: dict[str, Iterator[dict]], *, since: tuple[int, str],
               content_of: Callable[[str, dict], dict] | None, head_seq: int | None = None
               ) -> tuple[list[str], tuple[int, str], str | None]:
    """verify_chain without the published head: (problems, last entry, hash of the entry at
    `head_seq` if walked)."""
    problems: list[str] = []
    prev, expected = since[1], since[0] + 1
    cursors = {t: iter(rows) for t, rows in event_rows.items()}
    pending = {t: next(it, None) for t, it in cursors.items()}
    hash_at_head = None

    def inserted_before(table: str, seq: int) -> None:
        # rows of `table` whose audit seq no entry of that table claims, up to `seq`
        while pending.get(table) is not None and pending[table]["audit_seq"] < seq:
            problems.append(f"{table} row with audit seq {pending[table]['audit_seq']} has no "
                            "audit entry (inserted)")
            pending[table] = next(cursors[table], None)

    for e in entries:
        seq = e["seq"]
        if seq == head_seq:
            hash_at_head = e["entry_hash"]
        where = f"entry {seq} ({e['kind']})"
        if seq != expected:
            problems.append(f"entry {expected}: missing or out of order (next entry is {seq})")
        if e["prev_hash"] != prev:
            problems.append(f"{where}: previous-entry hash does not match the chain")
        if sha256_text(e["content_json"]) != e["content_sha256"]:
            problems.append(f"{where}: content does not match its hash (altered)")
        if entry_hash_of(e) != e["entry_hash"]:
            problems.append(f"{where}: entry hash does not match its fields (altered)")
        table = e["event_table"]
        inserted_before(table, seq)
        row = pending.get(table)
        if row is None or row["audit_seq"] != seq:
            problems.append(f"{where}: its {table} row is missing (deleted)")
        else:
            problems.extend(f"{where}: {table}.{col} differs from what was recorded"
                            for col in row_problems(e["content_json"], table, row, content_of))
            pending[table] = next(cursors[table], None)
        prev, expected = e["entry_hash"], expected + 1
    for table in cursors:
        inserted_before(table, float("inf"))
    return problems, (expected - 1, prev), hash_at_head


def entry_hash_of(entry: dict) -> str:
    """The hash an audit entry (as the store reads it) should have, from its fields."""
    return entry_hash(prev_hash=entry["prev_hash"], seq=entry["seq"], at=entry["recorded_at"],
                      kind=entry["kind"], actor=entry["actor"], subject=entry["subject"],
                      event_table=entry["event_table"], content_sha256=entry["content_sha256"])


def head_problems(head: tuple[int, str] | None, *, since: tuple[int, str], last: tuple[int, str],
                  hash_at_head: str | None) -> list[str]:
    """What the published head (seq, entry hash) says of a chain verified after `since` up to
    `last`, whose entry at the head's seq had `hash_at_head`: the end cut off, or that entry
    changed."""
    if head is None:
        return []
    seq, digest = head
    if seq > last[0]:
        return [f"entry {last[0] + 1}: the chain ends at {last[0]} but the published head is "
                f"{seq} (entries were removed from the end)"]
    if seq > since[0] and hash_at_head != digest:
        return [f"entry {seq}: hash differs from the published head"]
    return []


WHOLE_ROW_PREFIX = '{"_format":2,'  # canonical JSON sorts "_format" before every column name


def row_problems(content_json: str, table: str, row: dict,
                 content_of: Callable[[str, dict], dict] | None) -> list[str]:
    """The columns of `row` that differ from its entry's content.

    A whole-row entry (format 2) must hold exactly what the row gives, every column: one
    comparison of canonical JSON, and column by column only to name a difference (a column that
    cannot be mapped to the content is named too). An older entry recorded some columns, under
    its own names: those are compared (_differing)."""
    if content_of is not None and content_json.startswith(WHOLE_ROW_PREFIX):
        want = canonical_json(content_of(table, row))
        if want == content_json:
            return []
        recorded, wanted = orjson.loads(content_json), orjson.loads(want)
        return sorted(k for k in set(recorded) | set(wanted) if recorded.get(k, ...) != wanted.get(k, ...))
    return _differing(orjson.loads(content_json), row)


def _differing(content: dict, row: dict) -> list[str]:
    out = []
    for key, recorded in content.items():
        column = key if key in row else f"{key}_json" if f"{key}_json" in row else None
        if column is None:
            continue
        actual = row[column]
        if column != key:
            try:
                actual = orjson.loads(actual) if actual is not None else None
            except orjson.JSONDecodeError:
                out.append(column)
                continue
        # Both sides in their canonical bytes: a date and its ISO text, a list and a tuple, an
        # int and the same float compare equal, anything else does not.
        if orjson.dumps(actual, option=_CANONICAL) != orjson.dumps(recorded, option=_CANONICAL):
            if _loose(actual) != _loose(recorded):
                out.append(column)
    return out


def _loose(value: Any) -> Any:
    """A value as JSON would read it back (1 and 1.0 alike): the slow path, only on a mismatch."""
    return json.loads(canonical_json(value))
