"""Reviewer, PI and admin pages: queue, counts, users and model activation."""

import app_support
import pytest
import store_oracle as oracle
from app_support import REPO, signed_in, store, texts
from conftest import MODELS

import core
from core import auth
from core.artifacts import read_manifest

pytestmark = pytest.mark.usefixtures("demo_app")

PATIENT = app_support.PATIENT


def scored(*overrides: dict) -> list:
    return [core.score({**PATIENT, **o}, user="demo-clinician", source="form") for o in overrides]


def test_review_queue_lists_routed_predictions_oldest_first():
    results = scored({"patient_ref": "P-1", "age": 110}, {"patient_ref": "P-2"},
                     {"patient_ref": "P-3", "egfr": 5.0})
    at = signed_in("reviewer")
    table = at.dataframe[0].value
    expected = [r.patient_ref for r in results if r.routing == "review"]
    assert "P-1" in expected and "P-3" in expected
    assert table["patient_ref"].tolist() == expected
    assert "Age" in table["reasons"].iloc[0] and table["model_version"].iloc[0] == "v1"
    assert (table["age_hours"] >= 0).all()
    assert "By submitting you sign" in texts(at)


def test_review_queue_empty_says_so():
    at = signed_in("reviewer")
    assert [i.value for i in at.info] == ["No predictions are waiting for review."]


def test_monitoring_counts_against_expected_share():
    results = scored({"age": 110}, {}, {})
    try:
        core.score({**PATIENT, "potassium": 99}, user="demo-clinician", source="form")
    except core.InvalidInput:
        pass
    at = signed_in("pi")
    metrics = {m.label: m.value for m in at.metric}
    n_review = sum(r.routing == "review" for r in results)
    assert metrics["Predictions"] == "3" and metrics["Rejected inputs"] == "1"
    assert metrics["Routed to review"].startswith(f"{n_review} (")
    row = next(d.value for d in at.dataframe if "expected_review_share" in d.value.columns).iloc[0]
    assert row["model_version"] == "v1" and row["expected_review_share"] == read_manifest(MODELS / "v1")["routing"]["expected_review_share"]
    (fields,) = [d.value for d in at.dataframe if "field" in d.value.columns]
    assert fields[["field", "rejections"]].values.tolist() == [["potassium", 1]]


def test_admin_lists_users_without_hashes():
    at = signed_in("admin")
    users = at.dataframe[0].value
    assert sorted(users["username"]) == sorted(auth.DEMO_ACCOUNTS)
    assert not [c for c in users.columns if "hash" in c or "password" in c]
    assert "$argon2" not in users.to_string()


def test_admin_adds_and_disables_a_user():
    at = signed_in("admin")
    at.text_input(key="admin_new_username").input("dave")
    at.text_input(key="admin_new_display").input("Dr Dave")
    at.multiselect(key="admin_new_roles").set_value(["reviewer"])
    at.text_input(key="admin_new_password").input("dave-long-password")
    at = at.button(key="FormSubmitter:admin_add_user-Add user").click().run()
    assert "Added dave." in [s.value for s in at.success]
    assert auth.sign_in("dave", "dave-long-password").roles == ("reviewer",)
    at.run()
    at.selectbox(key="admin_disable_username").set_value("dave")
    at = at.button(key="FormSubmitter:admin_disable_user-Disable").click().run()
    assert "Disabled dave." in [s.value for s in at.success]
    current = store().user("dave")
    assert not current["active"]
    changes = oracle.rows(store(), "audit_log")
    user_changes = changes[(changes["subject"] == "dave") & changes["kind"].str.startswith("user_")]
    assert user_changes[["kind", "actor"]].values.tolist() == [["user_created", "demo-admin"],
                                                               ["user_disabled", "demo-admin"]]


def test_admin_activates_a_model_with_reason():
    at = signed_in("admin")
    at.selectbox(key="admin_activate_version").set_value("v1")
    at.text_input(key="admin_activate_reason").input("initial go-live")
    at = at.button(key="FormSubmitter:admin_activate-Activate").click().run()
    assert "Model v1 now serves." in [s.value for s in at.success]
    history = store().activations()
    assert history[["version", "user_name", "reason"]].values.tolist() == [
        ["v1", "demo-admin", "initial go-live"]]
    assert (REPO / "model_artifacts" / "v1").is_dir()
