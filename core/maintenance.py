"""Operations on the store: retention purge, configuration records and backup.

They run inside the process that owns the DuckDB file (DuckDB allows one writer): the running
service (its Admin page, or a `python -m core ...` command through its admin socket), or a
command that opened the store itself while no service runs.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from core import audit
from core.clock import now_utc
from core.config import Settings, get_settings, redacted_url
from core.errors import ConfigError, ProtectedPath
from core.file_guard import protected_folder_reason
from core.store import Event, Store, open_store
from core.store.records import ConfigEvent, RetentionPurge


def parse_head(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise ValueError("a head is SEQ:HASH, as printed by `python -m core audit head`")
    return int(seq), digest


def purge_expired(store: Store, *, days: int, by: str) -> int:
    """Remove raw inputs and patient references older than `days`; record the purge."""
    cutoff = now_utc() - timedelta(days=days)
    at = now_utc()
    purge_id = str(uuid.uuid4())

    def event(rows_removed: int) -> Event:
        return Event("retention_purge", by, at, purge_id, RetentionPurge(
            purge_id=purge_id, created_at=at, user_name=by, cutoff=cutoff, retention_days=days,
            rows_removed=rows_removed))

    return store.purge_phi(before=cutoff, event=event)


def configuration_snapshot(settings: Settings) -> dict:
    """The effective settings, secrets replaced by a fingerprint (changes show, values do not)."""
    snapshot = settings.model_dump(mode="json", exclude={"patient_key"})
    if not settings.db_is_file():
        snapshot["db"] = redacted_url(settings.db)  # a password in the URL is never recorded
    try:
        key = settings.patient_key_bytes()
        fingerprint = audit.patient_key("configuration-fingerprint", key)[:16]
    except ConfigError:
        fingerprint = "not set"  # scoring refuses until it is; the change will be recorded then
    snapshot["patient_key_fingerprint"] = fingerprint
    return snapshot


def record_configuration(store: Store, settings: Settings, *, by: str = "system") -> bool:
    """Append a configuration event when the effective settings differ from the last recorded."""
    settings_json = audit.canonical_json(configuration_snapshot(settings))
    if store.last_configuration() == settings_json:
        return False
    at = now_utc()
    store.append([Event("configuration_change", by, at, "settings", ConfigEvent(
        event_id=str(uuid.uuid4()), created_at=at, user_name=by, settings_json=settings_json))])
    return True


def backup(store: Store, directory: Path) -> Path:
    """A consistent copy of the store in `directory` (writes are held while it is taken).

    ProtectedPath when `directory` is a file or inside the model artefacts; an existing backup
    is never overwritten. The folder is created readable by this user only."""
    directory = Path(directory)
    reason = protected_folder_reason(directory)
    if reason:
        raise ProtectedPath(f"backup folder {directory} {reason}")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ProtectedPath(f"backup folder {directory} cannot be created: {exc.strerror}") from exc
    stamp = f"{store.path.stem}-{now_utc():%Y%m%dT%H%M%SZ}"
    target, n = directory / f"{stamp}.duckdb", 1
    while target.exists():  # two backups within a second: never overwrite the first
        n += 1
        target = directory / f"{stamp}-{n}.duckdb"
    tmp = target.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    try:
        store.copy_to(tmp)
        tmp.rename(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def backup_now(settings: Settings | None = None) -> Path:
    """A backup of the settings' store into their backup folder, while the app keeps running."""
    settings = settings or get_settings()
    return backup(open_store(settings.db), settings.backup_dir)
