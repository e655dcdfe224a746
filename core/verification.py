"""Verifying the audit trail: the whole chain (streamed, constant memory), or only what was
added since the last verification of the whole chain, and the record of each verification.

A whole verification reads every entry and every event row, in bulk and in windows of seqs
(constant memory). It runs on demand (`python -m core audit verify`, the Admin and Governance
pages) and is itself recorded, with the entry it verified through. The Governance page then
checks only what came after: that entry still has the hash that was verified, and every entry
and row added since chains onto it and matches. An edit to an older row is found by the next
whole verification, not by the incremental check; the page says which it shows.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from core import audit, audit_windows
from core.clock import now_utc
from core.config import get_settings
from core.store import TABLES, Event, Store, open_store
from core.store.records import RECORDS, AuditVerification, chain_content


@dataclass(frozen=True)
class TrailStatus:
    """What the Governance page says about the audit trail."""

    problems: list[str]
    head: tuple[int, str]
    verified_at: datetime  # the last whole verification
    verified_by: str
    verified_through: int
    checked_since: int  # entries checked incrementally after it


WALK_UP_TO = 2_000  # entries walked one by one: fewer than the bulk check's set-up costs


def verify_audit(store: Store, *, head: tuple[int, str] | None = None,
                 since: tuple[int, str] = (0, audit.GENESIS), bound_memory: bool = False
                 ) -> tuple[list[str], tuple[int, str]]:
    """(problems, head) for the store's chain after `since` (default: all of it); empty
    problems means intact. Reads a consistent picture while others keep writing.

    `bound_memory`: hold the database's memory and threads down while a long chain is read
    (Store.bounded_memory), for a process that does nothing else meanwhile (the audit and
    restore commands). DuckDB applies those settings to the whole database, so the running
    service, where clinicians keep scoring while an administrator verifies, leaves them alone.

    More than WALK_UP_TO entries are checked in bulk, a batch at a time (core.audit_windows), as
    long as each is intact; from the first that is not, audit.walk_chain names every problem
    from there on, as if it had walked the whole chain (the batches before it had none)."""
    upto = store.last_seq()
    after = since[0]
    problems = []
    if after:
        at = store.entry_hash_at(after)
        if at != since[1]:
            problems.append(f"entry {after}: hash differs from when it was verified (altered or "
                            "removed)" if at else f"entry {after}: removed since it was verified")
    head_seq = None if head is None else head[0]
    (low, prev), hash_at_head = since, None
    bounded = store.bounded_memory(entries=upto - after) if bound_memory else contextlib.nullcontext()
    with bounded:
        if upto - after > WALK_UP_TO:
            (low, prev), hash_at_head = audit_windows.intact_through(
                since, store.entry_batches(after=after, upto=upto),
                {table: store.row_batches(table, after=after, upto=upto) for table in TABLES},
                entries_ok=lambda seqs: _entries_ok(store, seqs),
                rows_ok=lambda table, rows: _rows_ok(store, table, rows), head_seq=head_seq)
        rows = {table: store.iter_rows(table, after=low, upto=upto) for table in TABLES}
        found, last, walked = audit.walk_chain(store.iter_audit(after=low, upto=upto), rows,
                                               since=(low, prev), content_of=_expected,
                                               head_seq=head_seq)
    if head_seq is not None and head_seq > low:
        hash_at_head = walked
    problems += found + audit.head_problems(head, since=since, last=last, hash_at_head=hash_at_head)
    for table in TABLES:  # rows above the head read: each must have an entry (appended since)
        problems += [f"{table} row with audit seq {seq} has no audit entry (inserted)"
                     for seq in store.rows_without_entry(table, above=upto)]
    return problems, last


FEW = 64  # entries of a window checked again one query each; more: one pass over their span


def _at(read, seqs: list[int], key: str):
    """The dicts `read(after=, upto=)` gives at `seqs` (ascending)."""
    if len(seqs) <= FEW:
        for seq in seqs:
            yield from read(after=seq - 1, upto=seq)
        return
    wanted = set(seqs)
    yield from (r for r in read(after=seqs[0] - 1, upto=seqs[-1]) if r[key] in wanted)


def _entries_ok(store: Store, seqs: list[int]) -> bool:
    """Whether those entries' hashes match their fields, by core.audit's own rule."""
    return all(audit.entry_hash_of(e) == e["entry_hash"] for e in _at(store.iter_audit, seqs, "seq"))


def _rows_ok(store: Store, table: str, rows: list[tuple[int, str]]) -> bool:
    """Whether the table's row at each seq matches the content_json of its entry, by
    core.audit's own rule (the bulk check found each entry's row, once)."""
    content = dict(rows)
    return not any(audit.row_problems(content[row["audit_seq"]], table, row, _expected)
                   for row in _at(lambda **kw: store.iter_rows(table, **kw), list(content), "audit_seq"))


def _expected(table: str, row: dict) -> dict:
    """What a whole-row entry holds for `row`: its record's chain content."""
    return chain_content(RECORDS[table], row)


def record_verification(store: Store, problems: list[str], head: tuple[int, str], *, by: str) -> None:
    """Append the result of a whole verification (through entry `head`) to the trail."""
    at = now_utc()
    store.append([Event("audit_verification", by, at, "audit trail", AuditVerification(
        verification_id=str(uuid.uuid4()), created_at=at, user_name=by, through_seq=head[0],
        through_hash=head[1], intact=not problems, problems=len(problems),
        first_problem=problems[0] if problems else ""))])


def verify_whole(store: Store | None = None, *, by: str, head: tuple[int, str] | None = None,
                 bound_memory: bool = False) -> tuple[list[str], tuple[int, str]]:
    """Verify the whole chain and record that it was done (with its result); `store`: the
    settings' store unless given; `bound_memory`: as verify_audit's."""
    store = store or open_store(get_settings().db)
    problems, last = verify_audit(store, head=head, bound_memory=bound_memory)
    record_verification(store, problems, last, by=by)
    return problems, last


_checked: dict[str, tuple[int, str, list[str]]] = {}  # store file -> (seq, hash, problems) so far


def forget_checked(path) -> None:
    """Forget what this process checked of a store file (a restore put another store there)."""
    _checked.pop(str(path), None)


def trail_status(store: Store, *, by: str) -> TrailStatus:
    """The trail as of the last whole verification plus what was added since (checked now,
    from where this process last checked). Verifies the whole chain first if it never was."""
    last = store.last_verification()
    if last is None:
        verify_whole(store, by=by)
        last = store.last_verification()
    base = (last["through_seq"], last["through_hash"])
    problems = [] if last["intact"] else [last["first_problem"]]
    key = str(store.path)
    seen = _checked.get(key)
    start, carried = (seen[:2], seen[2]) if seen and seen[0] >= base[0] else (base, [])
    found, head = verify_audit(store, since=start)
    carried = carried + found
    _checked[key] = (*head, carried)
    return TrailStatus(problems + carried, head, last["created_at"], last["user_name"],
                       base[0], head[0] - base[0])
