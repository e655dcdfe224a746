"""Model versions in an S3-compatible object store (APP_MODELS=s3://bucket/prefix), against a
real local endpoint (SeaweedFS, tests/s3_support.py): publishing (models publish, train,
import-model) whole or not at all, listing, verifying and activating, and loading only after
every fetched file matched the manifest read from the bucket; a tampered or missing object, a
bucket without permission, rejected credentials and an unreachable endpoint are refused with a
message saying what is wrong, before anything is unpickled."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
from pathlib import Path

import httpx
import joblib
import pytest
from browser_support import free_port, streamlit_server
from conftest import DEMO_EXTRACT, DEMO_SPEC, MODELS, REPO, SHIPPED, TYPICAL_PATIENT, run_core
from s3_support import AWS_VARIABLES, OUTSIDER, PUBLISHER, seaweedfs

from core import artifacts, preflight
from core import store as core_store
from core.bucket import Bucket
from core.config import S3Location, get_settings
from core.errors import ArtefactMismatch, ConfigError, TrainingDataError

# One object store for the module: with `-n 2` (make test), its tests run on one worker.
pytestmark = pytest.mark.xdist_group("s3")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        yield endpoint


@pytest.fixture
def bucket_env(s3, tmp_path, monkeypatch) -> dict[str, str]:
    """A new bucket, and this process's settings keeping the models there (prefix `models`),
    with the publisher's credentials; the same variables for a command's environment."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env = s3.env(s3.new_prefix(), tmp_path / "cache")
    env.update(APP_DB=str(tmp_path / "store.duckdb"), APP_DEMO="1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("APP_PATIENT_KEY", raising=False)
    yield env
    core_store.close_all()


def where() -> S3Location:
    return get_settings().models


def command_env(env: dict[str, str], **more: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "AWS_"))}
    return {**base, **env, **more}


def published(version: str = "v1", source: Path = MODELS) -> S3Location:
    """The version published from a folder on disk, and made the bucket's default."""
    artifacts.publish_copy(source, where(), version)
    artifacts.set_default(where(), version)
    return where()


def forget_loaded() -> None:
    """As a new process would start: nothing loaded yet (the cache on disk stays)."""
    artifacts._cache.clear()


def test_the_shipped_version_is_published_listed_verified_and_activated_by_the_commands(bucket_env):
    env = command_env(bucket_env)
    version = artifacts.default_version(SHIPPED)
    done = run_core("models", "publish", version, "--from", str(SHIPPED), "--default", env=env)
    assert done.returncode == 0, done.stderr
    assert f"published {version} to {bucket_env['APP_MODELS']}" in done.stdout
    listed = run_core("models", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert version in listed.stdout and listed.stdout.rstrip().endswith("*")  # the default serves
    checked = run_core("models", "verify", env=env)
    assert checked.returncode == 0 and f"{version}: OK" in checked.stdout, checked.stdout
    activated = run_core("models", "activate", version, "--by", "it", "--reason", "from the bucket",
                         env=env)
    assert activated.returncode == 0, activated.stderr
    shipped = artifacts.read_manifest(SHIPPED / version)["files"]
    assert f"active: {version} (sha256 {shipped['model.skops'][:12]}" in activated.stdout
    again = run_core("models", "publish", version, "--from", str(SHIPPED), env=env)
    assert again.returncode == 2 and "already exists in s3://" in again.stderr
    for text in (done, listed, checked, activated, again):  # no credential is ever printed
        assert PUBLISHER["AWS_SECRET_ACCESS_KEY"] not in text.stdout + text.stderr
    # ...nor recorded: the configuration the activation recorded names the bucket, not the keys
    recorded = core_store.open_store(get_settings().db).last_configuration()
    assert bucket_env["APP_MODELS"] in recorded
    assert not any(v in recorded for v in PUBLISHER.values())


def test_the_runbook_commands_run_as_written_against_a_bucket(bucket_env):
    from test_runbook import commands

    env = command_env(bucket_env)
    version = artifacts.default_version(SHIPPED)
    outputs = []
    for command in commands("s3-commands"):
        done = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    assert f"default version in {bucket_env['APP_MODELS']}: {version}" in outputs[0]
    assert f"{version}: OK" in outputs[1]
    assert f"active: {version}" in outputs[3]
    listed = next(line for line in outputs[2].splitlines() if line.startswith(f"{version} "))
    assert listed.rstrip().endswith("*")
    assert artifacts.list_versions(where()) == [version]


def test_a_version_is_loaded_from_the_cache_only_after_every_file_matched_the_bucket(bucket_env):
    models = published()
    local = artifacts.load(MODELS, "v1")
    artefact = artifacts.load(models, "v1")
    assert artefact.sha256 == local.sha256 and artefact.spec == local.spec
    assert artefact.path == Bucket(models).cache / "v1"
    assert artefact.path.is_relative_to(Path(bucket_env["APP_MODELS_CACHE"]))
    for folder in [artefact.path, *artefact.path.parents]:  # the cache is private
        if folder == Path(bucket_env["APP_MODELS_CACHE"]).parent:
            break
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert {stat.S_IMODE(p.stat().st_mode) for p in artefact.path.iterdir()} == {0o600}
    assert artifacts.list_versions(models) == ["v1"] and artifacts.default_version(models) == "v1"
    assert artifacts.verify(models, "v1") == []
    # A cached file altered on disk is never used: it is fetched again, then checked again.
    cached = artefact.path / "model.skops"
    cached.write_bytes(cached.read_bytes()[:-10])
    forget_loaded()
    assert artifacts.load(models, "v1").sha256 == local.sha256
    assert artifacts.sha256_file(cached) == local.sha256


def test_a_tampered_object_is_refused_before_it_is_unpickled(bucket_env, tmp_path):
    models = published()
    artifacts.load(models, "v1")  # a good copy is in the cache
    sentinel = tmp_path / "sentinel"
    Bucket(models).write("v1/model.skops", pickle.dumps(_Tripwire(str(sentinel))))
    forget_loaded()
    message = f"{models.uri('v1')}/model.skops: sha256 does not match the manifest"
    with pytest.raises(ArtefactMismatch, match=message):
        artifacts.load(models, "v1")
    assert any(message in p for p in artifacts.verify(models, "v1"))
    assert not sentinel.exists()
    done = run_core("models", "verify", "v1", env=command_env(bucket_env))
    assert done.returncode == 1 and message in done.stdout


@pytest.mark.slow
def test_an_imported_pickle_is_published_and_a_substituted_one_never_unpickled(bucket_env, tmp_path):
    from import_support import DIABETES_SPEC, diabetes_files, team_pipeline

    files = diabetes_files(tmp_path)
    pipeline = tmp_path / "team_model.joblib"
    joblib.dump(team_pipeline(files["training"]), pipeline)
    done = run_core("import-model", "--pipeline", str(pipeline), "--data", str(files["heldout"]),
                    "--spec", str(DIABETES_SPEC), "--version", "team-1", "--by", "Dr Team",
                    env=command_env(bucket_env), timeout=300)
    assert done.returncode == 0, done.stderr
    models = where()
    assert artifacts.list_versions(models) == ["team-1"] and artifacts.verify(models, "team-1") == []
    manifest = artifacts.manifest_of(models, "team-1")
    assert manifest["provenance"]["vouched_for_by"] == "Dr Team"
    assert Bucket(models).read("team-1/model.pkl") == pipeline.read_bytes()
    assert artifacts.load(models, "team-1").manifest["model_format"] == "pickle"
    sentinel = tmp_path / "sentinel"
    Bucket(models).write("team-1/model.pkl", pickle.dumps(_Tripwire(str(sentinel))))
    forget_loaded()
    with pytest.raises(ArtefactMismatch, match="team-1/model.pkl: sha256 does not match"):
        artifacts.load(models, "team-1")
    assert not sentinel.exists()


def test_train_publishes_a_version_to_the_bucket(bucket_env):
    from core.train import train

    models = where()
    path = train(data=DEMO_EXTRACT, spec_path=DEMO_SPEC, version="t1", models_dir=models,
                 trained_by="it")
    assert path == Bucket(models).cache / "t1"
    assert artifacts.list_versions(models) == ["t1"] and artifacts.verify(models, "t1") == []
    assert set(Bucket(models).objects("t1")) == {f"t1/{n}" for n in (
        "model.skops", "spec.json", "statistics.json", "evaluation.json", "manifest.json")}
    with pytest.raises(TrainingDataError, match="already exists in s3://"):
        train(data=DEMO_EXTRACT, spec_path=DEMO_SPEC, version="t1", models_dir=models,
              trained_by="it")


def test_an_interrupted_publish_leaves_no_version_and_its_leftovers_are_ignored(bucket_env, monkeypatch):
    models = where()
    real_upload = Bucket.upload
    calls = []

    def interrupted(self, source, name):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the upload
        real_upload(self, source, name)

    monkeypatch.setattr(Bucket, "upload", interrupted)
    with pytest.raises(KeyboardInterrupt):
        artifacts.publish_copy(MODELS, models, "v1")
    assert calls[-1] != "v1/manifest.json"  # the manifest goes last: it was never uploaded
    assert artifacts.list_versions(models) == [] and Bucket(models).objects() == {}
    monkeypatch.setattr(Bucket, "upload", real_upload)
    # A publisher killed outright cleans nothing up: files without a manifest are no version...
    for name in ("model.skops", "spec.json"):
        Bucket(models).upload(MODELS / "v1" / name, f"v1/{name}")
    assert artifacts.list_versions(models) == []
    assert artifacts.verify(models, "v1") == [
        f"version v1 not found in {models} (no {models.uri('v1')}/manifest.json)"]
    with pytest.raises(ArtefactMismatch, match="not found"):
        artifacts.load(models, "v1")
    # ...and the next publish of that version replaces them.
    artifacts.publish_copy(MODELS, models, "v1")
    assert artifacts.list_versions(models) == ["v1"] and artifacts.verify(models, "v1") == []


def test_a_missing_object_is_reported_and_refused(bucket_env):
    models = published()
    artifacts.load(models, "v1")  # even with a good copy in the cache
    Bucket(models).delete(["v1/statistics.json"])
    forget_loaded()
    message = f"{models.uri('v1')}/statistics.json: object is missing from the bucket"
    assert artifacts.verify(models, "v1") == [message]
    with pytest.raises(ArtefactMismatch, match=message):
        artifacts.load(models, "v1")
    assert not (Bucket(models).cache / "v1" / "statistics.json").exists()


def test_a_bucket_without_permission_is_refused_with_the_reason(bucket_env, monkeypatch):
    published()
    forget_loaded()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", OUTSIDER["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", OUTSIDER["AWS_SECRET_ACCESS_KEY"])
    models = where()
    denied = f"{models.uri('v1')}/manifest.json: access denied"
    assert artifacts.verify(models, "v1")[0].startswith(denied)
    with pytest.raises(ArtefactMismatch, match=denied):
        artifacts.load(models, "v1")
    with pytest.raises(ArtefactMismatch, match="access denied"):
        artifacts.list_versions(models)
    # The start-up checks and readiness name it too.
    found, _ = preflight.problems(get_settings())
    assert any("access denied" in p and models.bucket in p for p in found), found
    assert "access denied" in preflight.readiness()["model"]
    done = run_core("models", "list", env=command_env(bucket_env, **OUTSIDER))
    assert done.returncode == 2 and "access denied" in done.stderr
    assert OUTSIDER["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr


def test_rejected_credentials_no_bucket_and_an_unreachable_endpoint_are_named(bucket_env, monkeypatch):
    published()
    forget_loaded()
    models = where()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-0000000000000000")
    problems = artifacts.verify(models, "v1")
    assert len(problems) == 1 and "rejected the credentials in the environment" in problems[0]
    assert "not-the-secret" not in problems[0]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PUBLISHER["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("APP_MODELS", "s3://no-such-bucket-here/models")
    assert artifacts.verify(where(), "v1") == [
        f"s3://no-such-bucket-here/models: the bucket no-such-bucket-here does not exist at "
        f"{bucket_env['APP_S3_ENDPOINT_URL']}"]
    monkeypatch.setenv("APP_MODELS", bucket_env["APP_MODELS"])
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("APP_S3_ENDPOINT_URL", closed)
    problems = artifacts.verify(where(), "v1")
    assert len(problems) == 1 and f"cannot reach the object store at {closed}" in problems[0]
    with pytest.raises(ArtefactMismatch, match="cannot reach the object store"):
        artifacts.load(where(), "v1")
    assert "cannot reach the object store" in preflight.readiness()["model"]


def test_no_credentials_in_the_environment_is_named(bucket_env, monkeypatch, tmp_path):
    published()
    forget_loaded()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no shared credentials file
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role
    problems = artifacts.verify(where(), "v1")
    assert len(problems) == 1 and "no credentials: set AWS_ACCESS_KEY_ID" in problems[0]


def test_an_endpoint_from_the_aws_variables_is_checked_too(monkeypatch, tmp_path):
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("APP_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("APP_MODELS", "s3://models/clinical-risk")
    monkeypatch.setenv("APP_MODELS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "minio.internal:9000")  # no scheme
    assert artifacts.verify(where(), "v1") == [
        "AWS_ENDPOINT_URL is not an http:// or https:// address of an object store"]


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("APP_MODELS", "s3://Not_A_Bucket/x", "is not a valid S3 bucket name"),
    ("APP_MODELS", "s3://models/a/../b", "the prefix has an empty, '.' or '..' part"),
    ("APP_S3_ENDPOINT_URL", "http://key:secret@127.0.0.1:9000", "must not contain credentials"),
    ("APP_S3_ENDPOINT_URL", "ftp://127.0.0.1", "must be an http:// or https:// address")])
def test_a_malformed_location_or_endpoint_is_refused(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message) as refused:
        get_settings()
    assert "secret" not in str(refused.value)


@pytest.mark.slow
def test_the_server_scores_with_a_version_from_the_bucket(bucket_env, tmp_path):
    published()
    with streamlit_server(Path(bucket_env["APP_DB"]), **bucket_env) as url:
        made = run_core("clients", "add", "ehr", "--role", "clinician", "--by", "it",
                        env=command_env(bucket_env))
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip().splitlines()[-1]
        with httpx.Client(base_url=f"{url}/api/v1", timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            assert http.get("/health/ready").status_code == 200
            model = http.get("/model").json()
            assert model["version"] == "v1"
            assert model["model_sha256"] == artifacts.load(MODELS, "v1").sha256
            scored = http.post("/predictions", json={"patient_ref": "S3-1", **TYPICAL_PATIENT})
            assert scored.status_code == 201, scored.text
            assert scored.json()["model_version"] == "v1"
    log = (tmp_path / "streamlit.log").read_text()
    assert PUBLISHER["AWS_SECRET_ACCESS_KEY"] not in log


@pytest.mark.slow
def test_the_server_is_not_ready_when_its_credentials_may_not_read_the_bucket(bucket_env, tmp_path):
    published()
    with streamlit_server(Path(bucket_env["APP_DB"]), **{**bucket_env, **OUTSIDER}) as url:
        ready = httpx.get(f"{url}/api/v1/health/ready", timeout=60)
    assert ready.status_code == 503
    model = ready.json()["checks"]["model"]
    assert f"{where().uri('DEFAULT_VERSION')}: access denied" in model
    assert OUTSIDER["AWS_SECRET_ACCESS_KEY"] not in (tmp_path / "streamlit.log").read_text()


class _Tripwire:
    """Unpickling this writes a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (Path(self.target).write_text, ("unpickled",))
