"""The one write path: event records and their chained audit entries, committed together.

Every append gives its entries the seqs after the chain's head, INSIDE its transaction. Two
appends on the same head (another Store object, another thread, another process where the
backend allows one) both insert the same seq; the audit log's primary key lets only the first
commit, and the other is retried on the new head, its precondition checked again. So the chain
stays one line and "first decision wins" holds without any lock of this process, and a
precondition (the stop switch, the decision in force) always sees every write committed before
the one it guards.

The head an append starts from is the one this object last wrote (or read): the audit log only
grows, and any write since, by anyone, took that head's next seq, so this append then fails on
the seq's key and is retried on the head read from the database, with the stop switch read in
the same statement. Its precondition's stop-switch read is the state at that head: a write that
changed it took the next seq too. A precondition that refuses on a head this object knew is run
again on the head read from the database before the refusal stands. So one committed event costs
its inserts and the commit: no read, unless another writer came first.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime

from core import audit
from core.errors import StoreUnavailable
from core.store.queries import STATE, STATE_WITH_HEAD, state_sql
from core.store.records import Event
from core.store.schema import AUDIT_COLUMNS, PHI_COLUMNS, TABLES

ATTEMPTS = 20  # appends racing on one head: each retry has lost to a write that committed
# The head (one aggregate pass over the seqs from a hint: no sort) and the state rows.
HEAD_SQL = ("SELECT max(seq), arg_max(entry_hash, seq), "
            + ", ".join(f"({state_sql(name)})" for name in STATE_WITH_HEAD)
            + " FROM audit_log WHERE seq >= ?")
STATE_OF = {table: [name for name, (t, _) in STATE.items() if t == table]
            for table in TABLES}  # the state reads an event table's write changes


class ChainWrites:
    """The append path; mixed into a store."""

    _head_sql = HEAD_SQL
    # Whether an append starts from the head this object last wrote: where another writer is
    # rare (one process holds the file); False where appends wait for the head's lock anyway.
    _reuse_head = True

    def _begin(self, cur) -> None:
        """Start an append's transaction."""
        cur.execute("BEGIN")

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
            # (head, states) this object last wrote or read, or None (read it in the transaction)
            known = self._known_head if self._reuse_head else None
            for _ in range(ATTEMPTS):
                fresh = known is None
                cur = self._writer()
                self._begin(cur)
                try:
                    if fresh:
                        known = self._read_head(cur)
                    head, states = known
                    if precondition is not None and not self._precondition(precondition, states,
                                                                            fresh=fresh):
                        self._rollback(cur)  # refused on what this object knew: ask the database
                        known = None
                        continue
                    seqs, last = self._write(cur, head, table, events, contents, digests, pick, also)
                    cur.execute("COMMIT")
                except self._dialect.Error as exc:
                    self._rollback(cur)
                    known = None  # the head is read at the next attempt
                    if self._dialect.lost_the_head(exc):
                        continue  # another write took this head: again, on the new one
                    raise StoreUnavailable(f"the store did not record the {table} event: {exc}") from exc
                except BaseException:
                    self._rollback(cur)
                    raise
                # The head this write made, and the state it leaves (a write to a state table
                # changes it: read again, as are that state's cached reads).
                changed = STATE_OF.get(table)
                self._known_head = None if changed else ((seqs[-1], last), states)
                self._head_hint = seqs[-1]
                for name in changed or ():
                    self._cached.pop(name, None)
                return seqs
        raise StoreUnavailable(f"the store did not record the {table} event: {ATTEMPTS} other "
                               "writes committed first; try again")

    def _precondition(self, precondition: Callable[[], None], states: dict, *, fresh: bool) -> bool:
        """Run an append's precondition, its fresh state reads (the stop switch) being `states`,
        those at the head this append writes on. False when it refuses on a head this object
        knew (not `fresh`): the database may have moved on, and the caller reads it again."""
        self._read_with_head.states = states
        try:
            precondition()
        except Exception:
            if fresh:
                raise
            return False
        finally:
            self._read_with_head.states = None
        return True

    def _read_head(self, cur) -> tuple[tuple[int, str], dict]:
        """The chain's head (seq, entry hash) and the STATE_WITH_HEAD state rows, in one
        statement of the append's transaction. The head is the largest seq, read from the seq
        this object last saw on: the chain only grows, so that is the same answer without
        reading the whole audit log (its earlier row groups are skipped); a hint past the end
        (a store replaced by a restore) finds nothing, and the whole log is read."""
        row = cur.execute(self._head_sql, [self._head_hint]).fetchone()
        if row[0] is None and self._head_hint:
            row = cur.execute(self._head_sql, [0]).fetchone()
        head = (row[0], row[1]) if row[0] is not None else (0, audit.GENESIS)
        return head, dict(zip(STATE_WITH_HEAD, row[2:], strict=True))

    def _write(self, cur, head: tuple[int, str], table: str, events: list[Event], contents: list[str],
               digests: list[str], pick, also) -> tuple[list[int], str]:
        """Insert the entries and rows; their seqs and the last entry's hash."""
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
        parsed = self._parsed
        self._dialect.insert(cur, "audit_log", AUDIT_COLUMNS, audit_rows, parsed=parsed)
        self._dialect.insert(cur, table, TABLES[table], rows, parsed=parsed)
        phi = [[ev.phi[c] for c in PHI_COLUMNS] for ev in events if ev.phi]
        if phi:
            self._dialect.insert(cur, "phi_inputs", PHI_COLUMNS, phi, parsed=parsed)
        for sql, params in also:
            cur.execute(sql, params)
        return [r[0] for r in audit_rows], prev

    def purge_phi(self, *, before: datetime, event: Callable[[int], Event]) -> int:
        """Delete raw inputs older than `before` and record the purge (`event(rows_removed)`),
        in one transaction."""
        with self._lock:
            n = self._one("SELECT count(*) FROM phi_inputs WHERE created_at <= ?", [before])[0]
            self.append([event(n)], also=(("DELETE FROM phi_inputs WHERE created_at <= ?", [before]),))
            return n

    def _rollback(self, cur) -> None:
        try:
            cur.execute("ROLLBACK")
        except self._dialect.Error:
            pass  # a failed commit has rolled back already
