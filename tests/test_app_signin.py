"""Sign-in, sign-out, idle timeout, lockout and the demo banner, through the app."""

import time

import pytest
import store_oracle as oracle
from app_support import APP, TIMEOUT, access_actions, sign_in, start, store, texts
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.usefixtures("demo_app")

BANNER = "DEMO - synthetic model, not for clinical use"


def test_sign_in_shows_banner_and_records_success():
    at = start()
    assert [w.value for w in at.warning] == [BANNER]
    assert [t.value for t in at.title] == ["Sign in"]
    at = sign_in(at, "demo-clinician")
    assert [t.value for t in at.title] == ["Score a patient"]
    assert BANNER in [w.value for w in at.warning]
    assert "Demo clinician" in texts(at)
    assert access_actions("demo-clinician") == ["sign_in"]


def test_sign_in_wrong_password_shows_error_and_records_failure():
    at = sign_in(start(), "demo-clinician", "not-the-password")
    assert [e.value for e in at.error] == ["Wrong username or password, or the account is disabled."]
    assert [t.value for t in at.title] == ["Sign in"]
    assert access_actions("demo-clinician") == ["sign_in_failed"]
    kinds = oracle.rows(store(), "audit_log")["kind"].tolist()
    assert kinds[-1] == "access_sign_in_failed"


def test_sign_in_locks_after_five_failures():
    at = start()
    for _ in range(5):
        at = sign_in(at, "demo-pi", "wrong-password")
    assert at.error[0].value.startswith("Account locked")
    at = sign_in(at, "demo-pi")  # the right password no longer helps
    assert at.error[0].value.startswith("Account locked")
    assert [t.value for t in at.title] == ["Sign in"]
    assert access_actions("demo-pi") == ["sign_in_failed"] * 5 + ["locked", "sign_in_refused_locked"]


def resumed(username: str, idle_seconds: float) -> AppTest:
    """A session signed in as `username` whose last interaction was `idle_seconds` ago.

    (A fresh AppTest: after its first run AppTest executes the page file itself rather than
    app.py when a pages/ folder exists, so the router's checks need a first run.)"""
    signed = sign_in(start(), username)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["user"] = signed.session_state["user"]
    at.session_state["app_last_seen"] = time.time() - idle_seconds
    return at.run()


def test_idle_session_is_signed_out(monkeypatch):
    monkeypatch.setenv("APP_IDLE_TIMEOUT_MINUTES", "2")
    at = resumed("demo-admin", idle_seconds=150)
    assert [t.value for t in at.title] == ["Sign in"]
    assert any("2 minutes without activity" in i.value for i in at.info)
    assert access_actions("demo-admin") == ["sign_in", "idle_sign_out"]


def test_active_session_stays_signed_in():
    at = resumed("demo-admin", idle_seconds=14 * 60)  # default timeout: 15 minutes
    assert [t.value for t in at.title] == ["Admin"]
    assert "app_sign_out" in [b.key for b in at.sidebar.button]
    assert access_actions("demo-admin") == ["sign_in"]


def test_outside_demo_no_banner_and_no_demo_accounts(monkeypatch):
    monkeypatch.setenv("APP_DEMO", "0")
    monkeypatch.setenv("APP_PATIENT_KEY", "test-only-patient-key-0123456789abcdefghij")
    at = start()
    assert BANNER not in texts(at)
    at = sign_in(at, "demo-clinician", "demo-clinician-password")
    assert [e.value for e in at.error] == ["Wrong username or password, or the account is disabled."]
    assert store().users().empty
