"""The store in the institution's PostgreSQL database (APP_DB=postgresql://...): the same tables,
migrations, append path and reads as the embedded file, with what is PostgreSQL's own in
postgres_dialect.py.

Several processes may write at once (the service, a second API process, a command): each append
takes the chain head's advisory lock inside its transaction, so appends are serialised in the
database and the head is always read after the one before committed; the audit seq's primary
key stays the backstop. The append-only guarantees are the database's: triggers refuse UPDATE,
DELETE and TRUNCATE on the event tables (UPDATE and TRUNCATE on the raw inputs, which the
retention purge deletes from), and the service's role needs only SELECT and INSERT (and DELETE
on phi_inputs): RUNBOOK.md has the SQL for the two roles.

A role that does not own the schema does not migrate it: a database behind the code, opened by
the service's role, is refused with the command that brings it up to date."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from core.audit import GENESIS
from core.errors import StoreUnavailable
from core.store import postgres_dialect
from core.store.aggregates import MonitoringReads
from core.store.alert_reads import AlertReads
from core.store.base import StoreBase
from core.store.chain_windows import ChainWindowReads
from core.store.drift_reads import DriftReads
from core.store.queries import STATE, STATE_WITH_HEAD, AccessReads, OutcomeReads, RecordReads, ReviewReads
from core.store.schema import APPEND_ONLY, IDENTITY_TABLE, MIGRATIONS, TABLES
from core.store.writes import ChainWrites

GUARDED = [*APPEND_ONLY, *TABLES]


class PostgresStore(StoreBase, ChainWrites, RecordReads, ReviewReads, OutcomeReads, AccessReads,
                    MonitoringReads, ChainWindowReads, AlertReads, DriftReads):
    """A store in a PostgreSQL database; create with `open_store(url)` (one per process)."""

    _dialect = postgres_dialect
    # Several processes write: an append reads the head after taking the head's lock, rather
    # than start from this process's last one and lose to another's on the seq's key.
    _reuse_head = False

    def __init__(self, url: str, *, identity: tuple | None = None):
        """`identity`: (deployment id, created at) a new database takes (a store moved here
        keeps its deployment's), instead of a new one."""
        self.url = url
        self.path = postgres_dialect.redacted(url)  # names it, never with its password
        self._con = postgres_dialect.connect(url)
        try:
            if identity is not None:
                self._seed_identity(identity)
            self._setup()
        except BaseException:
            self._con.close()
            raise

    # ---- plumbing -----------------------------------------------------------------------

    def _cursor(self) -> postgres_dialect.Cursor:
        return self._con.cursor()

    def _writer(self) -> postgres_dialect.Cursor:
        """An append's cursor: its transaction keeps one connection of the pool until it ends."""
        return self._con.cursor()

    def _begin(self, cur) -> None:
        cur.execute("BEGIN")
        postgres_dialect.lock_head(cur)

    def _read_head(self, cur) -> tuple[tuple[int, str], dict]:
        """The chain's head and the STATE_WITH_HEAD rows, inside the append's transaction (which
        holds the head's lock: nothing commits on the chain until it ends)."""
        row = cur.execute("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        head = (row[0], row[1]) if row else (0, GENESIS)
        return head, {name: self._read_state(name, cur) for name in STATE_WITH_HEAD}

    def _read_state(self, name: str, cur=None) -> tuple | None:
        table, columns = STATE[name]
        return (cur or self._cursor()).execute(
            f"SELECT {columns} FROM {table} ORDER BY audit_seq DESC LIMIT 1").fetchone()

    def _seed_identity(self, identity: tuple) -> None:
        if self._one("SELECT to_regclass('schema_migrations') IS NOT NULL")[0]:
            raise StoreUnavailable(f"the database {self.path} already holds a store: move a "
                                   "store only into an empty database")
        cur = self._cursor()
        cur.execute(f"CREATE TABLE IF NOT EXISTS {IDENTITY_TABLE}")  # m007 keeps it
        cur.execute("INSERT INTO store_identity VALUES (?, ?)", list(identity))

    def _owns_schema(self) -> bool:
        return bool(self._one(
            "SELECT pg_has_role(current_user, nspowner, 'USAGE') FROM pg_namespace "
            "WHERE nspname = current_schema()")[0])

    def _migrate(self) -> None:
        exists = self._one("SELECT to_regclass('schema_migrations') IS NOT NULL")[0]
        done = {r[0] for r in self._all("SELECT version FROM schema_migrations")} if exists else set()
        newest = max(v for v, _, _ in MIGRATIONS)
        if done and max(done) > newest:
            raise StoreUnavailable(
                f"the database {self.path} has schema version {max(done)}, newer than this "
                f"release's {newest}: run the release that migrated it")
        if {v for v, _, _ in MIGRATIONS} <= done:
            return
        if not self._owns_schema():
            raise StoreUnavailable(
                f"the database {self.path} is at schema version {max(done, default=0)} and this "
                f"release needs {newest}, but role {self._one('SELECT current_user')[0]} does not "
                "own its schema: run `python -m core store upgrade` with the schema owner's URL "
                "in APP_DB (RUNBOOK.md, Use the institution's PostgreSQL)")
        super()._migrate()

    def _guard(self) -> None:
        """The append-only triggers: made by the schema's owner, checked by every other role."""
        if self._owns_schema():
            super()._guard()
            return
        have = {r[0] for r in self._all(
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = c.relname || '_append_only' AND NOT t.tgisinternal")}
        missing = sorted((set(GUARDED) | {"phi_inputs"}) - have)
        if missing:
            raise StoreUnavailable(f"the database {self.path} lacks the append-only triggers on "
                                   f"{', '.join(missing)}: run `python -m core store upgrade` "
                                   "with the schema owner's URL in APP_DB")

    def privilege_problems(self) -> list[str]:
        """The service's role must not own the schema, nor hold UPDATE, DELETE or TRUNCATE on a
        recorded table (DELETE on the raw inputs excepted: the retention purge)."""
        role = self._one("SELECT current_user")[0]
        if self._owns_schema():
            return [f"APP_DB connects as {role}, which owns the store's schema: run the service "
                    "as a role that may only read and append (RUNBOOK.md, Use the institution's "
                    "PostgreSQL, step 3)"]
        extra = [f"{verb} on {table}" for table in (*GUARDED, "phi_inputs")
                 for verb in ("UPDATE", "DELETE", "TRUNCATE")
                 if not (table == "phi_inputs" and verb == "DELETE")
                 and self._one("SELECT has_table_privilege(current_user, ?, ?)", [table, verb])[0]]
        return [f"APP_DB's role {role} may change recorded rows ({', '.join(extra)}): grant it "
                "SELECT and INSERT only (RUNBOOK.md, Use the institution's PostgreSQL)"] if extra else []

    def close(self) -> None:
        self._con.close()

    def copy_to(self, target) -> None:
        raise StoreUnavailable(
            "a PostgreSQL store is backed up by the database's own tools (pg_dump, or the "
            "institution's backups), not by this command: RUNBOOK.md, Use the institution's "
            "PostgreSQL")

    # ---- the chain read in bulk: PostgreSQL has no Arrow stream here, so verification walks
    # the chain entry by entry (core.verification falls back when a table has no bulk form).

    def entry_batches(self, *, after: int, upto: int) -> Iterator:  # noqa: ARG002
        return iter(())

    def row_batches(self, table: str, *, after: int, upto: int) -> None:  # noqa: ARG002
        return None

    @contextlib.contextmanager
    def bounded_memory(self, *, entries: int):  # noqa: ARG002 - the server bounds its own memory
        yield
