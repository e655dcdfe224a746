"""A session is checked again at every interaction, before anything it asks for is done: a
disabled account, a changed role or an idle session is signed out, and what it submitted is
not recorded (the refusal is)."""

import time

import pytest
from app_support import PATIENT, access_actions, fill_form, signed_in, store, submit_score, texts

import core
from core import auth

pytestmark = pytest.mark.usefixtures("demo_app")
REASON = "clinical context not captured by the model"


def test_a_disabled_account_is_signed_out_and_its_submit_not_recorded():
    at = fill_form(signed_in("clinician"))
    auth.disable_user("demo-clinician", by="demo-admin")  # the admin, in another session
    at = submit_score(at)
    assert [t.value for t in at.title] == ["Sign in"]
    assert "disabled" in texts(at)
    assert store().count("predictions") == 0
    assert access_actions("demo-clinician", detail=True)[-1] == ("session_ended", "account disabled")


def test_a_removed_role_ends_the_session():
    at = signed_in("reviewer")
    at.session_state["user"] = auth.User("demo-reviewer", "Demo reviewer", ("admin", "reviewer"))
    at.run()  # the account itself says reviewer only: the session's extra role is not honoured
    assert [t.value for t in at.title] == ["Sign in"]
    assert access_actions("demo-reviewer", detail=True)[-1] == ("session_ended", "roles changed")


def test_a_review_submitted_after_the_idle_timeout_is_not_recorded(monkeypatch):
    queued = core.score({**PATIENT, "patient_ref": "R-IDLE", "lvef": None}, user="demo-clinician", source="form")
    monkeypatch.setenv("APP_IDLE_TIMEOUT_MINUTES", "2")
    at = signed_in("reviewer")
    form = f"review_form_{queued.prediction_id}"
    at.radio(key=f"{form}_decision").set_value("agree")
    at.selectbox(key=f"{form}_reason").set_value(REASON)
    at.session_state["app_last_seen"] = time.time() - 150  # the reviewer walked away
    at = at.button(key=f"FormSubmitter:{form}-Sign and submit").click().run()
    assert store().count("review_decisions") == 0  # the decision's callback ran first: refused
    assert [t.value for t in at.title] == ["Sign in"]
    actions = access_actions("demo-reviewer", detail=True)
    assert ("idle_sign_out", "") in actions
    assert actions[-1] == ("access_denied", "action review: not done, the session had ended")


def test_an_active_session_still_records_its_review():
    queued = core.score({**PATIENT, "patient_ref": "R-LIVE", "lvef": None}, user="demo-clinician", source="form")
    at = signed_in("reviewer")
    form = f"review_form_{queued.prediction_id}"
    at.radio(key=f"{form}_decision").set_value("agree")
    at.selectbox(key=f"{form}_reason").set_value(REASON)
    at.button(key=f"FormSubmitter:{form}-Sign and submit").click().run()
    assert store().count("review_decisions") == 1


def test_an_admin_unlocks_an_account_on_the_admin_page():
    at = signed_in("admin")
    for _ in range(5):
        with pytest.raises(auth.SignInFailed):
            auth.sign_in("demo-pi", "wrong password")
    assert auth.is_locked("demo-pi")
    at.selectbox(key="admin_unlock_username").set_value("demo-pi")
    at = at.button(key="FormSubmitter:admin_unlock_user-Unlock").click().run()
    assert not at.exception and not auth.is_locked("demo-pi")
    assert access_actions("demo-pi", detail=True)[-1] == ("unlocked", "by demo-admin")
