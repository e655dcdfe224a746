"""Shared fixtures: an isolated store, the shipped model and a payload that auto-finalises.

Settings are read from the environment on every call, so each fixture that touches the store
points the APP_ variables at a temporary file first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core import artifacts
from core import store as core_store
from core.config import get_settings

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "model_artifacts"  # read-only: no test writes here
TEST_PATIENT_KEY = "test-only-patient-key-0123456789abcdefghij"  # 40 characters


@pytest.fixture
def fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[core_store.Store]:
    """An empty, migrated store in a temporary file, with the settings pointing at it.

    The shipped model artefacts serve; the DuckDB file is released after the test. A test that
    needs the file free (a subprocess opening it) calls `core.store.close_all()` first and
    re-opens it with `open_store(fresh_store.path)`."""
    monkeypatch.setenv("APP_DB", str(tmp_path / "store.duckdb"))
    monkeypatch.setenv("APP_MODELS", str(MODELS))
    monkeypatch.setenv("APP_PATIENT_KEY", TEST_PATIENT_KEY)
    monkeypatch.setenv("APP_DEMO", "0")
    monkeypatch.delenv("APP_BATCH_CHUNK_ROWS", raising=False)
    try:
        yield core_store.open_store(get_settings().db)
    finally:
        core_store.close_all()


@pytest.fixture(scope="session")
def v1() -> artifacts.Artefact:
    """The shipped model v1, verified and loaded."""
    return artifacts.load(MODELS, "v1")


@pytest.fixture
def valid_payload() -> dict:
    """A typical patient, complete and inside every validated range: scores auto-finalised."""
    return {
        "patient_ref": "TEST-0001",
        "age": 70,
        "sex": "male",
        "weight_kg": 78.0,
        "egfr": 58.0,
        "potassium": 4.4,
        "diabetes": False,
        "raas_inhibitor": "acei",
        "spironolactone_dose_mg": 25.0,
        "nyha_class": "II",
        "lvef": 30.0,
        "sbp": 118.0,
        "loop_diuretic": True,
        "potassium_supplement": False,
        "nsaid": False,
    }
