"""The one write path: event records and their chained audit entries, committed together.

Every append reads the chain's head INSIDE its transaction and gives its entries the next seqs.
Two appends that read the same head (another Store object, another thread, another process
where the backend allows one) both insert the same seq; the audit log's primary key lets only
the first commit, and the other is retried on the new head, its precondition checked again.
So the chain stays one line and "first decision wins" holds without any lock of this process,
and a precondition (the stop switch, the decision in force) always sees every write committed
before the one it guards.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime

from core import audit
from core.errors import StoreUnavailable
from core.store import duckdb_dialect as dialect
from core.store.records import Event
from core.store.schema import AUDIT_COLUMNS, PHI_COLUMNS, TABLES

ATTEMPTS = 20  # appends racing on one head: each retry has lost to a write that committed


class ChainWrites:
    """The append path; mixed into DuckDBStore."""

    def append(self, events: list[Event], *, also: tuple[tuple[str, list], ...] = (),
               precondition: Callable[[], None] | None = None) -> list[int]:
        """Commit the events' records and chained audit entries in one transaction; return their
        seqs. `also`: statements of this package run in the same transaction (the retention
        purge). `precondition`: called inside the transaction, before anything is written, and
        again on every retry; raising aborts (first decision wins, the stop switch)."""
        if not events:
            return []
        table = events[0].record.table
        if any(ev.record.table != table for ev in events):
            raise ValueError("one append writes one event table")
        contents = [audit.canonical_json(ev.record.content()) for ev in events]
        digests = [audit.sha256_text(c) for c in contents]
        pick = operator.itemgetter(*TABLES[table])
        with self._lock:
            for _ in range(ATTEMPTS):
                cur = self._cursor()
                cur.execute("BEGIN")
                try:
                    # The head first: a write that commits after this read takes a seq this
                    # append needs, so this one fails at commit and is retried; one that
                    # committed before it is seen by the precondition.
                    head = cur.execute("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC "
                                       "LIMIT 1").fetchone() or (0, audit.GENESIS)
                    if precondition is not None:
                        precondition()
                    seqs = self._write(cur, head, table, events, contents, digests, pick, also)
                    cur.execute("COMMIT")
                except dialect.Error as exc:
                    _rollback(cur)
                    if dialect.lost_the_head(exc):
                        continue  # another write took this head: again, on the new one
                    raise StoreUnavailable(f"the store did not record the {table} event: {exc}") from exc
                except BaseException:
                    _rollback(cur)
                    raise
                self._cached.clear()  # state this write may have changed is read again
                return seqs
        raise StoreUnavailable(f"the store did not record the {table} event: {ATTEMPTS} other "
                               "writes committed first; try again")

    def _write(self, cur, head: tuple[int, str], table: str, events: list[Event], contents: list[str],
               digests: list[str], pick, also) -> list[int]:
        seq, prev = head
        audit_rows, rows = [], []
        for ev, content_json, digest in zip(events, contents, digests, strict=True):
            seq += 1
            entry = audit.entry_hash(prev_hash=prev, seq=seq, at=ev.at, kind=ev.kind,
                                     actor=ev.actor, subject=ev.subject, event_table=table,
                                     content_sha256=digest)
            audit_rows.append([seq, ev.at, ev.kind, ev.actor, ev.subject, table, content_json,
                               digest, prev, entry])
            rows.append(list(pick({**ev.record.row(), "audit_seq": seq})))
            prev = entry
        dialect.insert(cur, "audit_log", AUDIT_COLUMNS, audit_rows)
        dialect.insert(cur, table, TABLES[table], rows)
        phi = [[ev.phi[c] for c in PHI_COLUMNS] for ev in events if ev.phi]
        if phi:
            dialect.insert(cur, "phi_inputs", PHI_COLUMNS, phi)
        for sql, params in also:
            cur.execute(sql, params)
        return [r[0] for r in audit_rows]

    def purge_phi(self, *, before: datetime, event: Callable[[int], Event]) -> int:
        """Delete raw inputs older than `before` and record the purge (`event(rows_removed)`),
        in one transaction."""
        with self._lock:
            n = self._one("SELECT count(*) FROM phi_inputs WHERE created_at <= ?", [before])[0]
            self.append([event(n)], also=(("DELETE FROM phi_inputs WHERE created_at <= ?", [before]),))
            return n


def _rollback(cur) -> None:
    try:
        cur.execute("ROLLBACK")
    except dialect.Error:
        pass  # a failed commit has rolled back already
