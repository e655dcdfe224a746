"""Store files seen from outside an open Store: is a file a DuckDB store, whose deployment is it,
and a consistent copy of one file into another (backup and restore use it).

Nothing here changes the file it inspects: a candidate backup is opened read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import StoreUnavailable
from core.store import duckdb_dialect as dialect
from core.store.schema import IDENTITY_TABLE, MIGRATIONS

MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file
SCHEMA_VERSION = max(version for version, _, _ in MIGRATIONS)


def is_duckdb_file(path: Path) -> bool:
    """True for a DuckDB database file (by its header), whatever its name."""
    try:
        with open(path, "rb") as fh:
            return fh.read(12)[8:12] == MAGIC
    except OSError:
        return False


@dataclass(frozen=True)
class StoreFile:
    """What a store file says about itself."""

    deployment_id: str | None  # None: made before stores recorded their deployment
    created_at: str | None
    schema_version: int
    entries: int
    first_entry_hash: str | None  # the chain's first entry: the same in every copy of a store


def inspect(path: Path) -> StoreFile:
    """Read a store file's identity and size without changing it.

    StoreLocked when another process holds it; StoreUnavailable when it is not a store."""
    con = dialect.connect_read_only(Path(path))
    try:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        if not {"audit_log", "schema_migrations"} <= tables:
            raise StoreUnavailable(f"{path} is a DuckDB file but not a store of this service "
                                   "(it has no audit trail)")
        version = con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0
        identity = (con.execute("SELECT deployment_id, CAST(created_at AS TEXT) FROM store_identity "
                                "LIMIT 1").fetchone() if "store_identity" in tables else None)
        entries, first = con.execute(
            "SELECT count(*), min_by(entry_hash, seq) FROM audit_log").fetchone()
    except dialect.Error as exc:
        raise StoreUnavailable(f"{path} cannot be read as a store: {exc}") from exc
    finally:
        con.close()
    return StoreFile(identity[0] if identity else None, identity[1] if identity else None,
                     int(version), int(entries), first)


def copy_file(source: Path, target: Path, *, deployment_id: str | None = None) -> None:
    """A consistent copy of the store file `source` (opened read-only) into the new file `target`.

    `deployment_id`: written into a copy of a store made before stores recorded their deployment
    (a restore carries the identity it checked)."""
    seed = () if not deployment_id else (
        (f"CREATE TABLE IF NOT EXISTS copy_target.{IDENTITY_TABLE}", []),
        ("INSERT INTO copy_target.store_identity SELECT ?, now()::TIMESTAMP "
         "WHERE NOT EXISTS (SELECT 1 FROM copy_target.store_identity)", [deployment_id]))
    dialect.copy_file(Path(source), Path(target), then=seed)
