"""Governance page (admin and PI) and the admin's backup action, through AppTest."""

import app_support
import pytest
import store_oracle as oracle
from app_support import REPO, signed_in, store, texts
from streamlit.testing.v1 import AppTest

import core
from core import auth

pytestmark = pytest.mark.usefixtures("demo_app")

PATIENT = {**app_support.PATIENT, "patient_ref": "G-1"}


def governance(role: str):
    return signed_in(role).switch_page("views/governance.py").run()


@pytest.mark.parametrize("role", ["admin", "pi"])
def test_governance_answers_five_questions_with_checklist(role):
    core.score(PATIENT, user="demo-clinician", source="form")
    core.score({**PATIENT, "patient_ref": "G-2", "lvef": None}, user="demo-clinician", source="form")
    at = governance(role)
    assert not at.exception
    questions = [s.value for s in at.subheader if s.value[:1].isdigit()]
    assert len(questions) == 5 and questions[0].startswith("1. What model is in production")
    page = texts(at)
    assert "2 predictions, 1 routed to review" in page
    assert len(at.dataframe[0].value) == 9


@pytest.mark.parametrize("role", ["clinician", "reviewer", None])
def test_governance_is_closed_to_other_roles(role):
    at = AppTest.from_file(str(REPO / "views" / "governance.py"), default_timeout=30)
    if role:
        at.session_state["user"] = auth.User(f"demo-{role}", f"demo-{role}", (role,))
    at.run()
    assert "You do not have access to this page." in texts(at)
    assert not at.subheader
    denials = oracle.rows(store(), "access_events")
    assert denials["action"].iloc[-1] == "access_denied"


def test_signoff_form_appends_a_record():
    at = governance("admin")
    at.text_input(key="gov_signer_name").input("Prof Ada IRB")
    at.text_input(key="gov_scope").input("deployment architecture v1")
    at.button(key="FormSubmitter:gov_signoff-Record sign-off").click().run()
    records = store().signoff_records()
    assert list(records["signer_name"]) == ["Prof Ada IRB"]
    assert list(records["user_name"]) == ["demo-admin"]


def test_signoff_success_is_shown_after_the_rerun_once():
    at = governance("admin")
    at.text_input(key="gov_signer_name").input("Prof Ada IRB")
    at.text_input(key="gov_scope").input("deployment architecture v1")
    at.button(key="FormSubmitter:gov_signoff-Record sign-off").click().run()
    assert "Sign-off by Prof Ada IRB (IRB) recorded." in [s.value for s in at.success]
    assert list(at.dataframe[1].value["signer_name"]) == ["Prof Ada IRB"]  # the rerun shows it listed
    at.run()
    assert not [s.value for s in at.success if s.value.startswith("Sign-off by")]


def test_signoff_problems_are_shown_by_field():
    at = governance("admin")
    at.button(key="FormSubmitter:gov_signoff-Record sign-off").click().run()
    shown = [e.value.replace("\\_", "_") for e in at.error]  # Markdown escapes the underscore
    assert shown == ["Signer's name is required.", "Scope is required."]
    assert store().signoff_records().empty


def test_stop_switch_needs_a_reason_then_suspends_scoring():
    at = governance("pi")
    at.button(key="FormSubmitter:gov_stop_switch-Suspend scoring").click().run()
    assert any("needs a reason" in e.value for e in at.error)
    assert store().service_state() is None
    at.text_input(key="gov_stop_reason").input("override alert under investigation")
    at.button(key="FormSubmitter:gov_stop_switch-Suspend scoring").click().run()
    assert "SUSPENDED" in texts(at)
    with pytest.raises(core.ScoringSuspended):
        core.score(PATIENT, user="demo-clinician", source="form")


def test_admin_backup_while_running(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_BACKUP_DIR", str(tmp_path / "backups"))
    core.score(PATIENT, user="demo-clinician", source="form")
    at = signed_in("admin")
    at.button(key="admin_backup").click().run()
    assert list((tmp_path / "backups").glob("*.duckdb"))
    at.button(key="admin_verify").click().run()
    assert any("Audit chain intact" in s.value for s in at.success)


def test_admin_backup_and_verify_failures_are_told_not_thrown(tmp_path, monkeypatch):
    """A backup folder that cannot be made, and a chain that was tampered with: the page says what
    went wrong in a sentence (no traceback) and nothing recorded changes."""
    from store_oracle import drop_guards, sql

    (tmp_path / "not-a-folder").write_text("a file where the backup folder should be")
    monkeypatch.setenv("APP_BACKUP_DIR", str(tmp_path / "not-a-folder"))
    scored = core.score(PATIENT, user="demo-clinician", source="form")
    at = signed_in("admin")
    at.button(key="admin_backup").click().run()
    assert not at.exception
    assert [e.value for e in at.error if e.value.startswith("No backup was written: ")]
    drop_guards(store())
    sql(store(), "UPDATE predictions SET risk = risk / 2 WHERE prediction_id = ?", [scored.prediction_id])
    at.button(key="admin_verify").click().run()
    assert not at.exception
    failed = [e.value for e in at.error if e.value.startswith("Audit chain FAILED")]
    assert failed and "risk" in failed[0]
    assert not [s.value for s in at.success if "intact" in s.value]


def test_clinician_sees_model_suspended_and_no_form():
    from core.stop_switch import set_suspended

    set_suspended(True, by="demo-pi", reason="investigating overrides")
    at = signed_in("clinician")
    assert any("Model suspended" in e.value and "investigating overrides" in e.value for e in at.error)
    assert not [w for w in at.number_input if w.key.startswith("score_")]


def test_the_page_draws_the_architecture_diagram_from_the_configuration():
    at = governance("admin")
    assert not at.exception
    assert at.get("image"), "the diagram is shown"
    facts = at.table[0].value
    assert "Embedded DuckDB file" in " ".join(map(str, facts["This deployment"]))


def test_the_assessment_is_recorded_with_who_answered_and_its_recommendation():
    from core.assessment import FIELDS, NOT_YET

    at = governance("pi")
    assert "Not assessed yet." in texts(at)
    for field in FIELDS:
        at.radio(key=f"gov_assess_{field}").set_value("no" if field == "capacity_to_run" else "yes")
    at.text_area(key="gov_assess_notes").input("one data manager, part time")
    at.button(key="FormSubmitter:gov_assessment-Record the assessment").click().run()
    assert not at.exception
    rows = store().assessment_records()
    assert list(rows["user_name"]) == ["demo-pi"] and list(rows["recommendation"]) == [NOT_YET]
    assert list(rows["notes"]) == ["one data manager, part time"]
    page = texts(at).replace("\\", "")
    assert f"Assessment recorded: {NOT_YET}." in page and f"Recommendation: {NOT_YET}" in page


def test_an_unanswered_assessment_is_refused_on_the_page():
    at = governance("admin")
    at.button(key="FormSubmitter:gov_assessment-Record the assessment").click().run()
    from core.assessment import CRITERIA
    from core.errors import field_sentence

    shown = [e.value.replace("\\", "") for e in at.error]  # markdown escapes taken out
    assert [f for f, _, _ in CRITERIA] == ["informs_decision", "recurring_use", "non_research_consumer",
                                           "service_requested", "capacity_to_run"]
    assert shown == [field_sentence(question, "answer yes or no") for _, question, _ in CRITERIA]
    assert store().assessment_records().empty
