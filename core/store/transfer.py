"""Moving a store to another database (the embedded file to the institution's PostgreSQL): every
event row, its chain entry and the raw inputs copied as they are, in one transaction, then
compared row by row with the source.

Nothing is re-hashed or re-chained: the destination holds the same chain, so a head published
before the move still verifies after it, and the deployment's identity moves with it."""

from __future__ import annotations

from collections.abc import Iterator

from core.errors import StoreUnavailable
from core.store.schema import AUDIT_COLUMNS, PHI_COLUMNS, TABLES

CHUNK = 5_000
# What is copied: table -> (columns, the unique key it is read in the order of; None: all at once).
COPIED = {"audit_log": (AUDIT_COLUMNS, "seq"),
          **{table: (columns, "audit_seq") for table, columns in TABLES.items()},
          "phi_inputs": (PHI_COLUMNS, "prediction_id"),
          "renamed_columns": (["table_name", "old_name", "new_name"], None)}


def identity(store) -> tuple[str, object]:
    """(deployment id, created at) of a store."""
    return store._one("SELECT deployment_id, created_at FROM store_identity LIMIT 1")


def _rows(store, table: str) -> Iterator[list[tuple]]:
    """A table's rows in key order, CHUNK at a time (keyset pages: memory holds one page)."""
    columns, key = COPIED[table]
    names = ", ".join(columns)
    if key is None:  # a few rows
        yield [tuple(r) for r in store._all(f"SELECT {names} FROM {table} ORDER BY {names}")]
        return
    after = None
    while True:
        where, params = (f"WHERE {key} > ? ", [after]) if after is not None else ("", [])
        chunk = store._all(f"SELECT {names} FROM {table} {where}ORDER BY {key} LIMIT {CHUNK}", params)
        if not chunk:
            return
        yield [tuple(r) for r in chunk]
        after = chunk[-1][columns.index(key)]


def copy_events(source, target) -> dict[str, int]:
    """Copy every row of `source` into the empty `target` (one transaction: all or nothing),
    while `source` takes no other write; rows per table. StoreUnavailable when `target` already
    holds events."""
    with source._lock:
        if target.last_seq() != 0:
            raise StoreUnavailable(f"the destination {target.path} already holds audit entries: "
                                   "move a store only into an empty database")
        counts = {}
        cur = target._writer()
        target._begin(cur)
        try:
            for table, (columns, _) in COPIED.items():
                counts[table] = 0
                for chunk in _rows(source, table):
                    target._dialect.insert(cur, table, columns, [list(r) for r in chunk])
                    counts[table] += len(chunk)
            cur.execute("COMMIT")
        except BaseException:
            target._rollback(cur)
            raise
        target._known_head = None
        target._cached.clear()
        return counts


def differences(source, target) -> list[str]:
    """Where `target` differs from `source`, table by table and row by row (empty: the same)."""
    found = []
    for table in COPIED:
        counts = (source._one(f"SELECT count(*) FROM {table}")[0],
                  target._one(f"SELECT count(*) FROM {table}")[0])
        if counts[0] != counts[1]:
            found.append(f"{table}: {counts[0]} rows in the source, {counts[1]} in the destination")
            continue
        pairs = zip(_flat(_rows(source, table)), _flat(_rows(target, table)), strict=True)
        first = next((n for n, (a, b) in enumerate(pairs, 1) if a != b), None)
        if first is not None:
            found.append(f"{table}: row {first} (in {COPIED[table][1] or 'value'} order) differs")
    return found


def _flat(chunks: Iterator[list[tuple]]) -> Iterator[tuple]:
    for chunk in chunks:
        yield from (tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in chunk)
