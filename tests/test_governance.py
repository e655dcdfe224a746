"""Governance: five questions from live data, checklist status, sign-offs, stop switch."""

import re

import duckdb
import pytest
import store_oracle as oracle

import core
from core.errors import InvalidInput, ScoringSuspended
from core.governance import SIGNER_ROLES, record_signoff, snapshot
from core.report import markdown as report_markdown
from core.review import decide
from core.stop_switch import set_suspended


@pytest.fixture
def journeys(fresh_store, valid_payload):
    """A store filled by the other journeys: auto and review predictions, a rejection, a decision."""
    core.score(valid_payload, user="dr.clin", source="form")
    queued = core.score({**valid_payload, "patient_ref": "T-2", "lvef": None}, user="dr.clin", source="form")
    with pytest.raises(core.InvalidInput):
        core.score({**valid_payload, "potassium": 12}, user="dr.clin", source="form")
    decide({"prediction_id": queued.prediction_id, "decision": "override_high"
            if queued.risk_class == "low" else "override_low",
            "reason_code": "recent medication change", "comment": "new ACEi"},
           user="rev", display_name="Dr Rev")
    return fresh_store


def test_five_questions_answer_from_live_data(journeys):
    snap = snapshot()
    answers = [a for _, a in snap["questions"]]
    assert len(answers) == 5
    assert "Version **v1**" in answers[0]
    assert "1 inputs rejected" in answers[1] and "1 predictions flagged" in answers[1]
    assert "2 predictions, 1 routed to review, 1 reviewed" in answers[2]
    # the first view verifies the whole chain (4 entries) and records it (entry 5)
    assert "Audit chain: intact, 5 entries: the whole chain was verified through entry 4" in answers[2]
    # Routing, confidence and explanations, each in the clinician's paragraph from the manifest
    m = snap["artefact"].manifest
    for paragraph in (m["routing"]["description"], m["confidence"]["description"],
                      m["explanation"]["description"]):
        assert paragraph in answers[2]
    assert "180 days" in answers[3] and "Incompletely logged predictions: 0" in answers[3]


def test_checklist_signoff_item_follows_records(journeys):
    def signoff_item():
        return snapshot()["checklist"][7]

    assert signoff_item().status == "not yet"
    for role in SIGNER_ROLES:
        record_signoff(signer_name=f"{role} chair", signer_role=role, signed_on="2026-11-01",
                       scope="deployment architecture", model_version="v1", by="admin")
    item = signoff_item()
    assert item.status == "done" and "missing" not in item.evidence
    kinds = list(oracle.rows(journeys, "audit_log")["kind"])
    assert kinds.count("signoff") == 3


def test_checklist_statuses_have_evidence(journeys):
    items = snapshot()["checklist"]
    assert len(items) == 9
    assert all(i.evidence for i in items)
    assert [i.status for i in items][:5] == ["done"] * 5


@pytest.mark.parametrize("field,kwargs", [
    ("signer_role", {"signer_role": "Caretaker"}),
    ("signed_on", {"signed_on": "2999-01-01"}),
    ("signed_on", {"signed_on": "yesterday"}),
    ("model_version", {"model_version": "v9"}),
    ("scope", {"scope": " "}),
])
def test_signoff_rejects_bad_fields(journeys, field, kwargs):
    base = dict(signer_name="A", signer_role="IRB", signed_on="2026-11-01", scope="s",
                model_version="v1", by="admin")
    with pytest.raises(InvalidInput) as exc:
        record_signoff(**{**base, **kwargs})
    assert [e["field"] for e in exc.value.errors] == [field]
    assert journeys.signoff_records().empty


def test_stop_switch_suspends_and_resumes(journeys, valid_payload, tmp_path):
    before = journeys.count("predictions")
    set_suspended(True, by="pi", reason="override alert under investigation")
    with pytest.raises(ScoringSuspended, match="suspended since .* by pi: override alert"):
        core.score(valid_payload, user="dr.clin", source="form")
    assert journeys.count("predictions") == before
    set_suspended(False, by="pi", reason="investigated: entry error")
    state = journeys.service_state(fresh=True)  # a typed record, read by name
    assert (state.action, state.user_name, state.reason) == ("resume", "pi", "investigated: entry error")
    assert core.score(valid_payload, user="dr.clin", source="form").routing == "auto_finalised"
    history = oracle.rows(journeys, "service_events")
    assert list(history["action"]) == ["suspend", "resume"]
    with pytest.raises(ValueError):
        set_suspended(True, by="pi", reason=" ")


def test_report_export_contains_everything(journeys):
    record_signoff(signer_name="Prof IRB", signer_role="IRB", signed_on="2026-11-01",
                   scope="architecture", model_version="v1", by="admin")
    md = report_markdown(snapshot(), by="pi")
    assert [line for line in md.splitlines() if re.match(r"### \d\. ", line)] == \
        [f"### {i}. {q}" for i, (q, _) in enumerate(snapshot()["questions"], 1)]
    assert "| 9 |" in md and "Prof IRB" in md
    assert "NOT FOR CLINICAL USE" in md


def test_the_page_checks_only_what_was_added_since_the_last_whole_verification(journeys, valid_payload):
    from core.verification import trail_status

    first = snapshot(by="pi")["trail"]
    assert (first.verified_through, first.verified_by, first.problems) == (4, "pi", [])
    for i in range(3):
        core.score({**valid_payload, "patient_ref": f"T-NEW-{i}"}, user="dr.clin", source="form")
    again = trail_status(journeys, by="pi")
    assert (again.verified_through, again.checked_since, again.head[0]) == (4, 4, 8)
    assert journeys.count("audit_verifications") == 1  # no new whole verification was needed


def test_the_incremental_check_finds_an_edit_to_a_new_record(journeys, valid_payload, tmp_path):
    from core import store as store_mod
    from core.verification import trail_status

    snapshot(by="pi")
    late = core.score({**valid_payload, "patient_ref": "T-LATE"}, user="dr.clin", source="form")
    path = journeys.path
    store_mod.close_all()
    con = duckdb.connect(str(path))
    for name, table in con.execute("SELECT trigger_name, table_name FROM duckdb_triggers()").fetchall():
        con.execute(f"DROP TRIGGER {name} ON {table}")
    con.execute("UPDATE predictions SET risk = 0.99 WHERE prediction_id = ?", [late.prediction_id])
    con.close()
    status = trail_status(store_mod.open_store(path), by="pi")
    assert status.problems and "predictions.risk differs" in status.problems[0]


def test_governance_report_table_survives_a_pipe_in_a_name(journeys):
    record_signoff(signer_name="Dr A | B [x](http://evil.example)", signer_role="IRB",
                   signed_on="2026-11-01", scope="architecture | data flow", model_version="v1",
                   by="admin")
    report = report_markdown(snapshot(), by="pi")
    row = next(line for line in report.splitlines() if line.startswith("| IRB |"))
    cells = [c for c in re.split(r"(?<!\\)\|", row)][1:-1]
    assert len(cells) == 6
    assert "[x](http" not in row
