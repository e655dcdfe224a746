"""Registry: verify, refuse altered artefacts before unpickling, activation history, CLI."""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MODELS, SHIPPED

from core import artifacts
from core.config import PROJ_ROOT
from core.errors import ArtefactMismatch


@pytest.fixture
def models(tmp_path) -> Path:
    """A writable copy of the suite's models folder (v1, the default)."""
    target = tmp_path / "models"
    shutil.copytree(MODELS, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    return target


def cli(*args, models: Path, db: Path, stdin: str | None = None):
    env = {**os.environ, "APP_MODELS": str(models), "APP_DB": str(db), "APP_DEMO": "1"}
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True,
                          env=env, cwd=PROJ_ROOT, input=stdin, timeout=120)


def test_shipped_versions_verify():
    versions = artifacts.list_versions(SHIPPED)
    assert "v1" in versions and artifacts.default_version(SHIPPED) in versions
    assert {v: artifacts.verify(SHIPPED, v) for v in versions} == {v: [] for v in versions}


def test_flipped_byte_fails_verify_and_load(models):
    path = models / "v1" / "model.skops"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert any("sha256 does not match" in p for p in artifacts.verify(models, "v1"))
    with pytest.raises(ArtefactMismatch, match="model.skops: sha256 does not match"):
        artifacts.load(models, "v1")
    proc = cli("models", "verify", "v1", models=models, db=models / "s.duckdb")
    assert proc.returncode == 1 and "FAILED" in proc.stdout


class _Tripwire:
    """Unpickling this writes a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (Path(self.target).write_text, ("unpickled",))


def test_load_refuses_before_unpickling_a_substituted_file(models, tmp_path):
    sentinel = tmp_path / "sentinel"
    (models / "v1" / "model.skops").write_bytes(pickle.dumps(_Tripwire(str(sentinel))))
    with pytest.raises(ArtefactMismatch):
        artifacts.load(models, "v1")
    assert not sentinel.exists()


def rehash(models: Path, version: str, name: str) -> None:
    """Record a file's new hash in the manifest, as someone who altered both would."""
    path = models / version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"][name] = artifacts.sha256_file(models / version / name)
    path.write_text(json.dumps(manifest))


def test_a_pickle_posing_as_the_trained_model_is_never_unpickled(models, tmp_path):
    """Even with the manifest's hash changed to match, a trained version loads only through
    skops, which refuses a pickle without running it."""
    sentinel = tmp_path / "sentinel"
    (models / "v1" / "model.skops").write_bytes(pickle.dumps(_Tripwire(str(sentinel))))
    rehash(models, "v1", "model.skops")
    with pytest.raises(Exception):  # noqa: B017 (skops's own error for a file that is no zip)
        artifacts.load(models, "v1")
    assert not sentinel.exists()


def test_skops_file_needing_an_untrusted_type_is_refused(models):
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    path = models / "v1" / "model.skops"
    skops.io.dump(FunctionTransformer(func=print), path)  # a callable: not in the trusted list
    rehash(models, "v1", "model.skops")
    with pytest.raises(ArtefactMismatch, match="needs types that are not trusted: builtins.print"):
        artifacts.load(models, "v1")


def test_a_pickle_nobody_vouched_for_is_refused(models, tmp_path):
    sentinel = tmp_path / "sentinel"
    (models / "v1" / "model.pkl").write_bytes(pickle.dumps(_Tripwire(str(sentinel))))
    path = models / "v1" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"].pop("model.skops")
    manifest.update(model_file="model.pkl", model_format="pickle")
    path.write_text(json.dumps(manifest))
    rehash(models, "v1", "model.pkl")
    with pytest.raises(ArtefactMismatch, match="nobody vouched for"):
        artifacts.load(models, "v1")
    assert not sentinel.exists()


def test_an_artefact_of_the_older_format_is_refused_with_a_way_out(models):
    path = models / "v1" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["artefact_format"]
    path.write_text(json.dumps(manifest))
    assert artifacts.verify(models, "v1") == [
        "v1: made by an older release (artefact format 1); train or import it again"]


def test_missing_file_is_reported(models):
    (models / "v1" / "statistics.json").unlink()
    assert artifacts.verify(models, "v1") == ["v1/statistics.json: file is missing"]
    with pytest.raises(ArtefactMismatch, match="statistics.json: file is missing"):
        artifacts.load(models, "v1")


def test_other_sklearn_minor_version_is_refused(models):
    manifest_path = models / "v1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["libraries"]["scikit-learn"] = "1.2.2"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtefactMismatch, match="trained with scikit-learn 1.2.2"):
        artifacts.load(models, "v1")


def test_unknown_version_is_reported(models):
    assert artifacts.verify(models, "v9") == [f"version v9 not found in {models}"]


def test_models_list_marks_default_active(models, tmp_path):
    proc = cli("models", "list", models=models, db=tmp_path / "s.duckdb")
    assert proc.returncode == 0
    line = next(x for x in proc.stdout.splitlines() if x.startswith("v1 "))
    assert line.rstrip().endswith("*") and "0.79" in line and "trained" in line


def test_activation_history_is_kept(models, tmp_path):
    second = models / "v2"
    shutil.copytree(models / "v1", second)
    db = tmp_path / "s.duckdb"
    assert cli("models", "activate", "v2", "--by", "Dr A", "--reason", "trial", models=models, db=db).returncode == 0
    assert cli("models", "activate", "v1", "--by", "Dr B", "--reason", "rollback", models=models, db=db).returncode == 0
    listing = cli("models", "list", models=models, db=db).stdout
    assert next(x for x in listing.splitlines() if x.startswith("v1 ")).rstrip().endswith("*")
    from core.store import open_file

    store = open_file(db)
    try:
        history = store.activations()
    finally:
        store.close()
    assert list(history["version"]) == ["v2", "v1"]
    assert list(history["user_name"]) == ["Dr A", "Dr B"]
    assert list(history["reason"]) == ["trial", "rollback"]


def test_activate_requires_who_and_why(models, tmp_path):
    proc = cli("models", "activate", "v1", models=models, db=tmp_path / "s.duckdb")
    assert proc.returncode != 0 and "--by" in proc.stderr


def test_activate_refuses_an_altered_version(models, tmp_path):
    (models / "v1" / "evaluation.json").write_text("{}")
    proc = cli("models", "activate", "v1", "--by", "A", "--reason", "r", models=models,
               db=tmp_path / "s.duckdb")
    assert proc.returncode == 2 and "evaluation.json: sha256 does not match" in proc.stderr
