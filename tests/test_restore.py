"""Restore never destroys before it has verified, and no command writes over the store, its WAL,
a backup or the model artefacts. Driven through `python -m core`, as an operator would."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from conftest import MODELS, REPO, TEST_PATIENT_KEY, TYPICAL_PATIENT, run_core

import core
from core import store as core_store
from core.maintenance import backup


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a production deployment whose store is in tmp_path/data."""
    return {**os.environ, "APP_DB": str(tmp_path / "data" / "app.duckdb"), "APP_MODELS": str(MODELS),
            "APP_PATIENT_KEY": TEST_PATIENT_KEY, "APP_DEMO": "0",
            "APP_BACKUP_DIR": str(tmp_path / "backups")}


def score_file(tmp_path: Path, n: int, name: str = "in.csv") -> Path:
    path = tmp_path / name
    cols = ["patient_ref", *TYPICAL_PATIENT]
    rows = [",".join(cols)] + [",".join([f"R-{name}-{i}"] + [
        ("Y" if v else "N") if isinstance(v, bool) else str(v) for v in TYPICAL_PATIENT.values()])
        for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


def predictions(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM predictions").fetchone()[0]
    finally:
        con.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(root: Path, first: int, later: int) -> tuple[Path, Path]:
    """In this process (quick): a store with `first` predictions, a backup of it, then `later`
    more predictions. Returns (store, backup)."""
    db = root / "data" / "app.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"APP_DB": str(db), "APP_MODELS": str(MODELS), "APP_DEMO": "0",
                            "APP_PATIENT_KEY": TEST_PATIENT_KEY}.items():
            mp.setenv(name, value)
        try:
            for i in range(first + later):
                core.score({**TYPICAL_PATIENT, "patient_ref": f"R-{root.name}-{i}"}, user="dr.a", source="form")
                if i == first - 1:
                    copy = backup(core_store.open_store(db), root / "backups")
        finally:
            core_store.close_all()
    return db, copy


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deployment")
    build(root, 3, 2)
    return root


@pytest.fixture
def deployment(template, tmp_path) -> tuple[Path, Path]:
    """A copy of one deployment (same identity): a store with 3 predictions, a backup of it, then
    2 more predictions: (store, backup)."""
    for folder in ("data", "backups"):
        shutil.copytree(template / folder, tmp_path / folder)
    return tmp_path / "data" / "app.duckdb", next((tmp_path / "backups").glob("*.duckdb"))


def assert_untouched(db: Path, before: str, proc: subprocess.CompletedProcess, env: dict) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert db.is_file() and digest(db) == before
    assert run_core("audit", "verify", env=env).returncode == 0


@pytest.mark.parametrize("which", ["missing", "the store", "the WAL", "not a store", "a folder"])
def test_restore_refuses_a_wrong_path_and_keeps_the_store(deployment, env, tmp_path, which):
    db, _ = deployment
    candidate = {"missing": tmp_path / "backups" / "app-2026.duckdb", "the store": db,
                 "the WAL": db.with_name(db.name + ".wal"), "not a store": tmp_path / "in.csv",
                 "a folder": tmp_path / "backups"}[which]
    if which in ("not a store", "the WAL"):
        candidate.write_text("patient_ref,age\n")
    before = digest(db)
    proc = run_core("restore", str(candidate), env=env)
    assert_untouched(db, before, proc, env)
    assert "nothing was changed" in proc.stderr or "name a backup file" in proc.stderr
    assert predictions(db) == 5


@contextmanager
def service_holding(env: dict) -> Iterator[subprocess.Popen]:
    """Another process holding the store, as the running service does; it says when it holds it."""
    core_store.close_all()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from core.store import open_store; from core.config import "
         "get_settings; s = open_store(get_settings().db); print('holding', flush=True); sys.stdin.read()"],
        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_restore_refuses_while_a_service_holds_the_store(deployment, env):
    db, copy = deployment
    with service_holding(env):
        proc = run_core("restore", str(copy), env=env)
    assert proc.returncode != 0 and "in use by another process" in proc.stderr
    assert predictions(db) == 5


def test_restore_refuses_another_deployments_backup(deployment, env, tmp_path):
    db, _ = deployment
    _, foreign = build(tmp_path / "other", 3, 0)
    before = digest(db)
    proc = run_core("restore", str(foreign), env=env)
    assert_untouched(db, before, proc, env)
    assert "another deployment" in proc.stderr


@pytest.mark.parametrize("change, message", [
    ("UPDATE predictions SET risk = 0.01", "does not verify: entry 1 (prediction): predictions.risk"),
    ("INSERT INTO schema_migrations VALUES (999, 'm999_future', now()::TIMESTAMP)", "newer version"),
], ids=["chain fails", "newer schema"])
def test_restore_refuses_a_backup_that_fails_a_check(deployment, env, change, message):
    db, copy = deployment
    con = duckdb.connect(str(copy))
    con.execute(change)  # a backup file carries no triggers
    con.close()
    before = digest(db)
    proc = run_core("restore", str(copy), env=env)
    assert_untouched(db, before, proc, env)
    assert message in proc.stderr


def test_restore_keeps_the_replaced_store_and_verifies(deployment, env):
    db, copy = deployment
    proc = run_core("restore", str(copy), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "audit chain intact" in proc.stdout
    assert predictions(db) == 3
    kept = [p for p in db.parent.glob("app-replaced-*.duckdb")]
    assert len(kept) == 1 and predictions(kept[0]) == 5  # what was recorded after the backup
    assert run_core("audit", "verify", env=env).returncode == 0
    # the restored store is this deployment's: its own backup restores again
    assert run_core("restore", str(copy), env=env).returncode == 0


def test_restore_onto_a_machine_without_a_store(deployment, env, tmp_path):
    _, copy = deployment
    fresh = {**env, "APP_DB": str(tmp_path / "new-vm" / "app.duckdb")}
    proc = run_core("restore", str(copy), env=fresh)
    assert proc.returncode == 0, proc.stderr
    assert predictions(Path(fresh["APP_DB"])) == 3


def as_made_before_identities(backup_file: Path) -> None:
    con = duckdb.connect(str(backup_file))
    con.execute("DROP TABLE store_identity")
    con.execute("DELETE FROM schema_migrations WHERE version = 7")
    con.close()


def test_restore_accepts_an_old_backup_of_the_same_chain_only(deployment, env, tmp_path):
    db, copy = deployment
    _, foreign = build(tmp_path / "other", 3, 0)
    as_made_before_identities(foreign)
    before = digest(db)
    proc = run_core("restore", str(foreign), env=env)
    assert_untouched(db, before, proc, env)
    assert "another deployment" in proc.stderr
    as_made_before_identities(copy)
    proc = run_core("restore", str(copy), env=env)
    assert proc.returncode == 0, proc.stderr
    # the restored store kept the deployment it was checked against
    proc = run_core("backup", str(tmp_path / "backups"), env=env)
    assert run_core("restore", proc.stdout.strip().rsplit(" ", 1)[1], env=env).returncode == 0


@pytest.mark.parametrize("target", ["store", "wal", "backup", "artefacts"])
def test_score_batch_never_writes_over_the_store_a_backup_or_the_models(deployment, env, tmp_path,
                                                                         target):
    db, copy = deployment
    wal = db.with_name(db.name + ".wal")
    out = {"store": db, "wal": wal, "backup": copy, "artefacts": MODELS / "v1" / "scored.csv"}[target]
    if target == "wal":
        wal.write_bytes(b"")
    before = digest(copy)
    proc = run_core("score-batch", "--input", str(score_file(tmp_path, 2)), "--output", str(out),
                    "--quiet", env=env)
    assert proc.returncode != 0 and "output file" in proc.stderr
    assert digest(copy) == before
    assert run_core("audit", "verify", env=env).returncode == 0
    assert not (MODELS / "v1" / "scored.csv").exists()
    assert predictions(db) == 5


def test_model_card_output_never_replaces_the_store(deployment, env):
    db, _ = deployment
    before = digest(db)
    proc = run_core("model-card", "--output", str(db), env=env)
    assert proc.returncode != 0 and "is the service's store" in proc.stderr
    assert digest(db) == before


@pytest.mark.parametrize("where", ["a file", "the artefacts"])
def test_backup_refuses_a_file_or_the_artefact_folder(deployment, env, tmp_path, where):
    target = {"a file": tmp_path / "in.csv", "the artefacts": MODELS / "v1"}[where]
    if where == "a file":
        score_file(tmp_path, 1)
    proc = run_core("backup", str(target), env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert ("not a folder" if where == "a file" else "artefact folder") in proc.stderr
    assert not list(MODELS.glob("**/*.duckdb"))


def test_store_wal_and_backups_are_readable_by_their_owner_only(deployment, env, tmp_path):
    db, copy = deployment
    for path in (db, copy, *db.parent.glob("*.wal")):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert stat.S_IMODE((tmp_path / "backups").stat().st_mode) & 0o077 == 0
