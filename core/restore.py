"""Restoring a backup. Nothing is replaced until the backup is shown to be a whole store of this
deployment whose audit chain verifies; the store it replaces is kept as a dated copy beside it.

Order: the candidate is inspected read-only (a DuckDB store, of this deployment, of a schema this
version knows) -> copied into a hidden file beside the store -> that copy is opened, migrated and
verified -> the live store is opened, which fails while a service holds it, and stays open (and
so locked) until the swap is done -> the live file gets a dated second name -> the verified copy
takes the store's name in one atomic rename. A failure at any step leaves the live store as it was.

In the running service (a restore run for its admin socket), this process holds the store: it
is released only for the two moments the live file is read and then replaced, while the
service's other requests wait for it (core.store.released); between them, and while the backup's
copy is verified, the service keeps serving, and what it records meanwhile is in the replaced
store's dated copy.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.clock import now_utc
from core.errors import RestoreRefused, StoreLocked, StoreUnavailable
from core.store import Store, open_file, open_store, released
from core.store.files import SCHEMA_VERSION, StoreFile, copy_file, inspect, is_duckdb_file
from core.verification import forget_checked, verify_audit


@dataclass(frozen=True)
class Restored:
    """What a restore did: the entries now in the store and where the replaced store went."""

    entries: int
    head: tuple[int, str]
    replaced_copy: Path | None  # None when there was no store to replace
    entries_replaced: int  # entries of the replaced store (kept in its dated copy)


def restore(backup_file: Path, db: Path, *, shared: bool = False) -> Restored:
    """Put a verified backup in place of the store file; RestoreRefused (nothing changed) when
    the backup is missing, not a store, of another deployment or newer schema, fails its audit
    verification, or when another process holds the store.

    `shared`: this process is the running service, which holds the store and goes on serving
    from the restored one (verified then as its own store, its memory settings left alone)."""
    backup_file, db = Path(backup_file), Path(db)
    candidate = _check_candidate(backup_file, db)
    with released(db):
        live_info = _live_info(db)
    if live_info is not None:
        _same_deployment(candidate, live_info, backup_file, db)
    tmp = _verified_copy(backup_file, db, candidate.deployment_id or (
        live_info.deployment_id if live_info else None))
    try:
        with released(db):
            live = _hold(db) if db.exists() else None
            try:
                entries_replaced = live.last_seq() if live is not None else 0
                replaced = _swap(tmp, db, live)
            finally:
                if live is not None:
                    live.close()
    finally:
        tmp.unlink(missing_ok=True)
    forget_checked(db)
    if shared:
        problems, head = verify_audit(open_store(db))
    else:
        store = open_file(db)
        try:
            problems, head = verify_audit(store, bound_memory=True)
        finally:
            store.close()
    if problems:  # cannot happen unless the file changed under us: say so, keep both files
        raise RestoreRefused(f"the restored store does not verify ({problems[0]}); the replaced "
                             f"store is kept as {replaced}")
    return Restored(head[0], head, replaced, entries_replaced)


def _check_candidate(backup_file: Path, db: Path) -> StoreFile:
    if not backup_file.exists():
        raise RestoreRefused(f"{backup_file} does not exist; nothing was changed")
    if not backup_file.is_file():
        raise RestoreRefused(f"{backup_file} is not a file; name a backup file")
    if backup_file.resolve() in (db.resolve(), db.resolve().with_name(db.name + ".wal")):
        raise RestoreRefused(f"{backup_file} is the live store itself; name a backup file")
    if not is_duckdb_file(backup_file):
        raise RestoreRefused(f"{backup_file} is not a DuckDB store file (a backup is written by "
                             "`python -m core backup`); nothing was changed")
    try:
        info = inspect(backup_file)
    except StoreUnavailable as exc:
        raise RestoreRefused(f"{exc}; nothing was changed") from exc
    if info.schema_version > SCHEMA_VERSION:
        raise RestoreRefused(f"{backup_file} was written by a newer version of this service "
                             f"(schema {info.schema_version}, this one knows {SCHEMA_VERSION}); "
                             "restore it with that version")
    return info


def _live_info(db: Path) -> StoreFile | None:
    if not db.exists():
        return None
    try:
        return inspect(db)
    except StoreLocked as exc:
        raise RestoreRefused(f"{exc}; nothing was changed") from exc
    except StoreUnavailable as exc:
        raise RestoreRefused(
            f"the current store cannot be read ({exc}), so it cannot be checked against the "
            f"backup: move {db} aside (keep it for investigation) and run restore again") from exc


def _same_deployment(candidate: StoreFile, live: StoreFile, backup_file: Path, db: Path) -> None:
    if candidate.deployment_id and live.deployment_id:
        same = candidate.deployment_id == live.deployment_id
    else:  # a backup made before stores recorded their deployment: the chain's first entry
        same = candidate.first_entry_hash is not None and \
            candidate.first_entry_hash == live.first_entry_hash
    if not same:
        raise RestoreRefused(
            f"{backup_file} is a backup of another deployment (deployment "
            f"{candidate.deployment_id or 'unrecorded'}), not of the store at {db} (deployment "
            f"{live.deployment_id or 'unrecorded'}, {live.entries} audit entries). Nothing was "
            f"changed. To replace this store with another deployment's, move {db} aside first")


def _verified_copy(backup_file: Path, db: Path, deployment_id: str | None) -> Path:
    """The backup copied into a hidden file beside the store, migrated and verified."""
    db.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{db.name}.restore-", suffix=".partial", dir=db.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # DuckDB creates the file itself (an empty file is not a database)
    try:
        copy_file(backup_file, tmp, deployment_id=deployment_id)
        store = open_file(tmp)  # applies this version's migrations and guards, as a start would
        try:
            problems, _ = verify_audit(store, bound_memory=True)
            store.checkpoint()
        finally:
            store.close()
    except BaseException:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        raise
    if problems:
        tmp.unlink(missing_ok=True)
        raise RestoreRefused(f"{backup_file}'s audit chain does not verify: {problems[0]}"
                             f"{f' (+{len(problems) - 1} more problems)' if len(problems) > 1 else ''}; "
                             "nothing was changed. Try an older backup, and report this one")
    return tmp


def _hold(db: Path) -> Store:
    """The live store, open (and so locked against a service starting) until the swap is done."""
    try:
        live = open_file(db)
    except StoreLocked as exc:
        raise RestoreRefused(f"{exc}; nothing was changed") from exc
    live.checkpoint()  # its WAL written into the file: the dated copy is then the whole store
    return live


def _swap(tmp: Path, db: Path, live: Store | None) -> Path | None:
    """Give the live file a dated second name, then move the verified copy onto the store's name.
    The store's name always names a whole store: there is no moment without one."""
    replaced = None
    if live is not None:
        base = f"{db.stem}-replaced-{now_utc():%Y%m%dT%H%M%SZ}"
        replaced = db.with_name(base + db.suffix)
        n = 1
        while replaced.exists():
            n += 1
            replaced = db.with_name(f"{base}-{n}{db.suffix}")
        try:
            os.link(db, replaced)
        except OSError:  # a file system without hard links: a consistent copy instead
            live.copy_to(replaced)
    stale_wal = db.with_name(db.name + ".wal")
    if stale_wal.exists() and live is None:
        stale_wal.rename(stale_wal.with_name(f"{stale_wal.name}.orphaned-{now_utc():%Y%m%dT%H%M%SZ}"))
    os.replace(tmp, db)
    with contextlib.suppress(OSError):
        dir_fd = os.open(db.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return replaced
