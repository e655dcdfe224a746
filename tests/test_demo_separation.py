"""Demo and production cannot mix: demo mode has its own store file, and outside demo mode the
service refuses to start (by every documented way) while a demo account is active or the
published demo key is configured."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from app_support import start, texts
from conftest import MODELS, REPO, TEST_PATIENT_KEY

from core import auth
from core import store as core_store
from core.config import DEMO_PATIENT_KEY, PROJ_ROOT, Settings

REFUSED = "The service cannot start"


def preflight(env: dict[str, str]) -> subprocess.CompletedProcess:
    core_store.close_all()
    return subprocess.run([sys.executable, "deploy/preflight.py"], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)


def test_demo_mode_has_its_own_default_store(monkeypatch):
    monkeypatch.delenv("APP_DB", raising=False)
    assert Settings(demo=True).db == PROJ_ROOT / "data" / "demo.duckdb"
    assert Settings(demo=False).db == PROJ_ROOT / "data" / "app.duckdb"


def test_production_start_on_a_store_used_in_demo_mode_is_refused(demo_app, monkeypatch):
    start()  # demo mode: the demo accounts are created
    assert "demo-admin" in set(auth.list_users()["username"])
    monkeypatch.setenv("APP_DEMO", "0")
    monkeypatch.setenv("APP_PATIENT_KEY", TEST_PATIENT_KEY)
    at = start()
    shown = texts(at)
    assert REFUSED in shown and "demo-admin" in shown
    assert not [w for w in at.text_input if w.key == "signin_username"]  # no way to sign in
    env = {**os.environ}
    proc = preflight(env)
    assert proc.returncode == 78 and "demo account(s)" in proc.stderr
    # disabling them is the documented way out (or a new store)
    for name in auth.DEMO_ACCOUNTS:
        auth.disable_user(name, by="ops")
    assert preflight(env).returncode == 0


def test_production_start_refuses_the_published_demo_key(demo_app, monkeypatch):
    monkeypatch.setenv("APP_DEMO", "0")
    monkeypatch.setenv("APP_PATIENT_KEY", DEMO_PATIENT_KEY.decode())
    assert REFUSED in texts(start())
    proc = preflight({**os.environ})
    assert proc.returncode == 78 and "demo key" in proc.stderr


def test_app_without_patient_key_outside_demo_refuses_at_start(demo_app, monkeypatch):
    """Started with `streamlit run app.py` (not the start script), it still checks first."""
    monkeypatch.setenv("APP_DEMO", "0")
    monkeypatch.delenv("APP_PATIENT_KEY", raising=False)
    at = start()
    assert REFUSED in texts(at) and "APP_PATIENT_KEY" in texts(at)
    assert not at.exception


def test_demo_account_names_are_reserved_outside_demo_mode(demo_app, monkeypatch):
    monkeypatch.setenv("APP_DEMO", "0")
    monkeypatch.setenv("APP_PATIENT_KEY", TEST_PATIENT_KEY)
    with pytest.raises(auth.UserError, match="reserved"):
        auth.add_user("demo-admin", roles=["admin"], password="a-long-password", by="ops")


@pytest.mark.parametrize("demo", ["1", "0"])
def test_the_models_folder_setting_is_kept_by_either_mode(monkeypatch, demo):
    monkeypatch.setenv("APP_DEMO", demo)
    monkeypatch.setenv("APP_MODELS", str(MODELS))
    monkeypatch.setenv("APP_PATIENT_KEY", TEST_PATIENT_KEY)
    assert Settings().models == MODELS
