"""Paths no command may write over: the store, its write-ahead log, a backup of it, the model
artefacts. One mistyped `--output` must never replace the audit trail or a model version.
"""

from __future__ import annotations

from pathlib import Path

from core.config import Settings, get_settings
from core.store.files import is_duckdb_file

_MODELS = "is inside the model artefact folder (APP_MODELS, or its cache APP_MODELS_CACHE)"


def _inside(path: Path, folder: Path) -> bool:
    folder = folder.resolve()
    return path == folder or path.is_relative_to(folder)


def protected_reason(path: Path, settings: Settings | None = None) -> str | None:
    """Why `path` must not be written by a command, or None when it may be."""
    settings = settings or get_settings()
    target = Path(path).resolve()
    db = Path(settings.db).resolve() if settings.db_is_file() else None
    if target == db:
        return "is the service's store"
    if db is not None and target == db.with_name(db.name + ".wal"):
        return "is the store's write-ahead log"
    if _inside(target, settings.models_folder):
        return _MODELS
    if _inside(target, Path(settings.backup_dir)):
        return "is inside the backup folder (APP_BACKUP_DIR)"
    if target.is_file() and is_duckdb_file(target):
        return "is a DuckDB store file (a store or a backup of one)"
    if target.suffix == ".wal" and is_duckdb_file(target.with_suffix("")):
        return "is a store's write-ahead log"
    return None


def protected_folder_reason(folder: Path, settings: Settings | None = None) -> str | None:
    """Why files must not be written into `folder` (the artefact folder, or a store file)."""
    settings = settings or get_settings()
    target = Path(folder).resolve()
    if _inside(target, settings.models_folder):
        return _MODELS
    if target.exists() and not target.is_dir():
        return "exists and is not a folder; name a folder (it is created if missing)"
    return None
