"""Shared fixtures: an isolated store, the app in demo mode, the demonstration model and a
payload that auto-finalises; and `run_core`, the `python -m core` command in a subprocess.

The suite never serves the repository's model_artifacts/: whichever version DEFAULT_VERSION
there names, MODELS is a folder of the suite's own, where the demonstration model v1 is trained
from the shipped synthetic extract and spec once per run (a few seconds) and is the default.
Tests about the shipped artefact itself (it verifies, retraining reproduces it, MODEL_CARD.md is
current) read model_artifacts/ on purpose.

Settings are read from the environment on every call, so each fixture that touches the store
points the APP_ variables at a temporary file first.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from core import artifacts, auth
from core import store as core_store
from core.config import get_settings

# Helper modules that assert: rewrite them so that a failure shows the values, as in a test module
pytest.register_assert_rewrite("browser_support")

REPO = Path(__file__).resolve().parent.parent
DEMO_SPEC = REPO / "specs" / "hyperkalaemia.json"
DEMO_EXTRACT = REPO / "data" / "cohort_extract.csv.gz"
SHIPPED = REPO / "model_artifacts"  # the repository's versions: only tests about them read it


def _demo_models() -> Path:
    """A models folder of the suite's own: v1 trained on the demo cohort, and the default."""
    from core.train import train

    root = Path(tempfile.mkdtemp(prefix="suite-models-"))
    atexit.register(shutil.rmtree, root, True)
    models = root / "models"
    train(data=DEMO_EXTRACT, spec_path=DEMO_SPEC, version="v1", models_dir=models,
          trained_by="test suite")
    (models / "DEFAULT_VERSION").write_text("v1\n")
    for path in [models, *models.rglob("*")]:  # read-only, as in the container
        path.chmod(path.stat().st_mode & ~0o222)
    atexit.register(lambda: [p.chmod(p.stat().st_mode | 0o200) for p in [models, *models.rglob("*")]])
    return models


MODELS = _demo_models()  # read-only: no test writes here
# Whatever a test (or a command it runs) does not set itself serves the suite's own models.
os.environ["APP_MODELS"] = str(MODELS)
TEST_PATIENT_KEY = "test-only-patient-key-0123456789abcdefghij"  # 40 characters

# A typical patient as core.score takes it, without patient_ref: complete and inside every
# validated range, so its score is auto-finalised (tests change single values)
TYPICAL_PATIENT = {"age": 70, "sex": "male", "weight_kg": 78.0, "egfr": 58.0, "potassium": 4.4,
                   "diabetes": False, "raas_inhibitor": "acei", "spironolactone_dose_mg": 25.0,
                   "nyha_class": "II", "lvef": 30.0, "sbp": 118.0, "loop_diuretic": True,
                   "potassium_supplement": False, "nsaid": False}


def run_core(*args: str, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m core ARGS` from the repository, output captured as text. The store files this
    process holds are closed first, as the command opens the store file itself. `env`: the
    command's whole environment (default: this process's)."""
    core_store.close_all()
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO,
                          env=os.environ.copy() if env is None else env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[core_store.Store]:
    """An empty, migrated store in a temporary file, with the settings pointing at it.

    The shipped model artefacts serve; the DuckDB file is released after the test. A test that
    needs the file free (a subprocess opening it) calls `core.store.close_all()` first and
    re-opens it with `open_store(get_settings().db)`."""
    point_settings(monkeypatch, str(tmp_path / "store.duckdb"))
    try:
        yield core_store.open_store(get_settings().db)
    finally:
        core_store.close_all()


def point_settings(monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    """Production settings over the store `db` (a file or a database URL) and the suite's models."""
    monkeypatch.setenv("APP_DB", db)
    monkeypatch.setenv("APP_MODELS", str(MODELS))
    monkeypatch.setenv("APP_PATIENT_KEY", TEST_PATIENT_KEY)
    monkeypatch.setenv("APP_DEMO", "0")
    monkeypatch.delenv("APP_BATCH_CHUNK_ROWS", raising=False)


@pytest.fixture
def demo_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Demo mode over an empty store in a temporary file (demo accounts are created on first run;
    the seeded demo history is not: tests/test_demo_history.py has it)."""
    monkeypatch.setenv("APP_DB", str(tmp_path / "app.duckdb"))
    monkeypatch.setenv("APP_MODELS", str(MODELS))
    monkeypatch.setenv("APP_DEMO", "1")
    monkeypatch.setenv("APP_DEMO_HISTORY", "0")
    monkeypatch.delenv("APP_PATIENT_KEY", raising=False)
    # Cheaper argon2id parameters: the app's behaviour is the same, the suite is faster.
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    for name in ("IDLE_TIMEOUT_MINUTES", "LOCKOUT_FAILURES", "LOCKOUT_MINUTES"):
        monkeypatch.delenv(f"APP_{name}", raising=False)
    try:
        yield tmp_path
    finally:
        core_store.close_all()


@pytest.fixture(scope="session")
def v1() -> artifacts.Artefact:
    """The demonstration model v1 (the suite's own copy), verified and loaded."""
    return artifacts.load(MODELS, "v1")


@pytest.fixture
def valid_payload() -> dict:
    """A typical patient, complete and inside every validated range: scores auto-finalised."""
    return {**TYPICAL_PATIENT, "patient_ref": "TEST-0001"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With `-n 2` (make test), every test that starts a browser or a container runs in one
    worker, one after another: two at once on two cores would starve both servers."""
    for item in items:
        if item.get_closest_marker("browser") or item.get_closest_marker("container"):
            item.add_marker(pytest.mark.xdist_group("browser"))


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server of this test process (tests/pg_support.py), stopped at the end."""
    import pg_support
    from browser_support import free_port

    if pg_support.pg_bin() is None:
        raise RuntimeError("PostgreSQL is not installed: install the Debian package postgresql "
                           "(.ci/run does)")
    server = pg_support.start(free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["duckdb", "postgresql"])
def any_store(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[core_store.Store]:
    """`fresh_store` on each backend: an embedded file, and a new PostgreSQL database migrated
    by its owner and opened as the service's least-privileged role."""
    import pg_support

    if request.param == "duckdb":
        db = str(tmp_path / "store.duckdb")
    else:
        server = request.getfixturevalue("pg_server")
        name = server.new_database()
        core_store.open_store(server.url(name, role=pg_support.OWNER))  # migrates
        core_store.close_all()
        server.grant_purge(name)
        db = server.url(name)
    point_settings(monkeypatch, db)
    try:
        yield core_store.open_store(get_settings().db)
    finally:
        core_store.close_all()
