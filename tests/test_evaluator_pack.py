"""The evaluator pack: the architecture diagram drawn from the live configuration, the
deploy-or-stay assessment recorded in the audit chain, and the evaluator report printed as a PDF
(read back with pypdf) and as Markdown, from core and from `python -m core governance report`."""

from __future__ import annotations

import io
import os
import re
from xml.sax.saxutils import unescape

import pytest
from conftest import run_core
from pypdf import PdfReader

import core
from core import assessment, clients, deployment, diagram, report
from core.config import get_settings
from core.errors import InvalidInput
from core.governance import record_signoff, snapshot
from core.serving import active_artefact
from core.store import open_store
from core.verification import verify_audit


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def squeezed(text: str) -> str:
    """Text without whitespace: a hash wrapped across lines is found whole."""
    return re.sub(r"\s+", "", text)


class Drawn(str):
    """A diagram's SVG; `in` finds a phrase in its text even where the drawing wrapped it."""

    def __contains__(self, phrase: str) -> bool:
        words = "".join(re.findall(r"<text [^>]*>([^<]*)</text>", self))
        return squeezed(unescape(phrase)) in squeezed(unescape(words)) or str.__contains__(self, phrase)


def drawn(store) -> Drawn:
    settings = get_settings()
    return Drawn(diagram.svg(deployment.describe(settings, store, active_artefact(store, settings))))


def test_the_diagram_follows_the_configuration(fresh_store, monkeypatch, tmp_path):
    before = drawn(fresh_store)
    artefact = active_artefact(fresh_store, get_settings())
    assert "Embedded DuckDB file" in before and "store.duckdb" in before
    assert "No TLS proxy" in before and "kept 180 days" in before
    assert f"serving model {artefact.version}, sha256 {artefact.sha256[:16]}" in before
    assert "none registered" in before and "OpenID Connect" not in before
    head = fresh_store.head()
    assert f">{head[0]}:{head[1][:16]}...<" in before

    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "https://risk.example/oauth2callback"\n'
                       'cookie_secret = "cookie-secret-never-shown"\nclient_id = "risk"\n'
                       'client_secret = "client-secret-never-shown"\n'
                       'server_metadata_url = "https://login.hospital.example/.well-known/openid-configuration"\n')
    monkeypatch.setenv("STREAMLIT_SECRETS_FILES", str(secrets))
    monkeypatch.setenv("APP_TRUSTED_PROXIES", '["172.30.57.0/24"]')
    monkeypatch.setenv("APP_RETENTION_DAYS", "30")
    monkeypatch.setenv("APP_RUNS_ON", "VM risk-01 in the hospital data centre")
    monkeypatch.setenv("APP_SSO_ROLE_CLAIM", "groups")
    token = clients.add_client("ehr", roles=["clinician"], by="admin")
    after = drawn(fresh_store)
    assert after != before
    assert "TLS proxy" in after and "172.30.57.0/24" in after and "No TLS proxy" not in after
    assert "kept 30 days" in after and "VM risk-01" in after
    assert "ehr (clinician)" in after
    assert "login.hospital.example" in after and "roles from the identity token's groups claim" in after
    for secret in ("cookie-secret-never-shown", "client-secret-never-shown", token):
        assert secret not in after
    head = fresh_store.head()
    assert f">{head[0]}:{head[1][:16]}...<" in after  # the client's creation moved it

    monkeypatch.setenv("APP_DB", "postgresql://svc_user:pw-never-shown@db.hospital.example:5432/risk")
    postgres = drawn(fresh_store)  # the clients and head still read from the open store
    assert "The institution's PostgreSQL" in postgres and "db.hospital.example:5432/risk" in postgres
    assert "pw-never-shown" not in postgres and "svc_user" not in postgres
    assert "Embedded DuckDB file" not in postgres


def test_store_facts_never_show_credentials():
    facts = deployment.store_facts("postgresql://u:secret@pg.example/db")
    assert (facts.kind, facts.where) == ("postgresql", "pg.example/db")
    assert deployment.store_facts("data/app.duckdb").kind == "embedded"


@pytest.mark.parametrize("no, verdict", [
    ((), assessment.DEPLOY),
    (("service_requested",), assessment.DEPLOY_ONCE_AGREED),
    (("capacity_to_run",), assessment.NOT_YET),
    (("capacity_to_run", "service_requested"), assessment.NOT_YET),
    (("informs_decision",), assessment.STAY),
    (("recurring_use", "capacity_to_run"), assessment.STAY),
    (("non_research_consumer",), assessment.STAY),
])
def test_the_recommendation_follows_the_answers(no, verdict):
    advice = assessment.recommend({f: f not in no for f in assessment.FIELDS})
    assert advice.verdict == verdict and advice.reasons
    if verdict == assessment.STAY:  # only the missing need is the reason
        assert len(advice.reasons) == len([f for f in no if f in assessment.NEED])


def test_an_assessment_is_kept_with_who_and_when_in_the_audit_chain(fresh_store):
    assert assessment.latest(fresh_store) is None
    answers = {f: True for f in assessment.FIELDS} | {"capacity_to_run": False}
    row = assessment.record_assessment(answers, notes="one data manager, part time", by="pi",
                                       respondent_name="Dr Pat Investigator", model_version="v1")
    assert row["recommendation"] == assessment.NOT_YET
    latest = assessment.latest(fresh_store)
    assert (latest["user_name"], latest["respondent_name"], latest["capacity_to_run"]) == \
        ("pi", "Dr Pat Investigator", False)
    assert latest["created_at"] == row["created_at"]
    kinds = [k for (k,) in fresh_store._all("SELECT kind FROM audit_log ORDER BY seq")]
    assert kinds[-1] == "deployment_assessment"
    assert verify_audit(fresh_store)[0] == []
    assessment.record_assessment({f: True for f in assessment.FIELDS}, by="admin",
                                 model_version="v1")
    assert assessment.latest(fresh_store)["advice"].verdict == assessment.DEPLOY
    assert len(fresh_store.assessment_records()) == 2  # both kept


def test_an_unanswered_assessment_is_refused_by_field(fresh_store):
    with pytest.raises(InvalidInput) as exc:
        assessment.record_assessment({"informs_decision": True, "recurring_use": "yes",
                                      "weather": True}, by="pi", model_version="v1")
    fields = [e["field"] for e in exc.value.errors]
    assert fields == ["recurring_use", "non_research_consumer", "service_requested",
                      "capacity_to_run", "weather"]
    assert fresh_store.assessment_records().empty


@pytest.fixture
def filed(fresh_store, valid_payload):
    core.score(valid_payload, user="dr.clin", source="form")
    record_signoff(signer_name="Prof Ada Lovelace", signer_role="IRB", signed_on="2026-11-01",
                   scope="deployment architecture", model_version="v1", by="admin")
    assessment.record_assessment({f: True for f in assessment.FIELDS} | {"service_requested": False},
                                 notes="funder meeting in January", by="pi",
                                 respondent_name="Dr Pat Investigator", model_version="v1")
    return fresh_store


def test_the_pdf_report_reads_back_with_the_live_values(filed):
    snap = snapshot(by="pi")
    head = filed.head()
    text = pdf_text(report.pdf(snap, by="Dr Printer"))
    flat = squeezed(text)
    a = snap["artefact"]
    assert squeezed(a.sha256) in flat
    assert f"{head[0]}:{head[1]}" in flat  # the head at printing, whole
    assert "Architecture of this deployment" in text and "Embedded DuckDB file" in text
    for i, (question, _) in enumerate(snap["questions"], 1):
        assert squeezed(f"{i}. {question}") in flat
    assert "Deployment checklist" in text and squeezed(snap["checklist"][7].text) in flat
    assert "Prof Ada Lovelace" in text
    assert squeezed(f"Recommendation: {assessment.DEPLOY_ONCE_AGREED}.") in flat
    assert "Dr Pat Investigator" in text and "funder meeting in January" in text
    assert "Data flow and retention" in text and squeezed(report.LEGAL_BASIS) in flat
    assert squeezed(f"Model card: {a.spec.model_name}, version {a.version}") in flat
    for title in ("Calibration on the held-out split", "ROC curve on the held-out split",
                  "Decision curve on the held-out split"):
        assert title in text
    assert "Dr Printer" in text
    assert "valid_payload" not in text and "TEST-0001" not in text  # no patient reference


def test_the_markdown_report_names_the_figures_and_holds_the_same_answers(filed):
    snap = snapshot(by="pi")
    md = report.markdown(snap, by="pi", head=filed.head())
    assert "figure:" not in md and "*Figure: Architecture of this deployment" in md
    assert f"`{filed.head()[0]}:{filed.head()[1]}`" in md
    assert "| Has the funder, the IRB or the institution asked for a running service? | no |" in md
    rows = [line for line in md.split("## Data flow and retention", 1)[1].splitlines()
            if line.startswith("| ") and "Data |" not in line][:len(report.data_flows(snap))]
    assert all(line.rstrip().endswith(f"| {report.LEGAL_BASIS} |") for line in rows)


def test_the_report_prints_from_the_command_line(filed, tmp_path):
    out, md = tmp_path / "report.pdf", tmp_path / "report.md"
    proc = run_core("governance", "report", "--pdf", str(out), "--markdown", str(md), "--by", "dpo")
    assert proc.returncode == 0, proc.stderr
    store = open_store(get_settings().db)
    seq, digest = store.head()
    assert f"audit head {seq}:{digest}" in proc.stdout
    assert f"{seq}:{digest}" in squeezed(pdf_text(out.read_bytes()))
    assert f"Audit head at printing: `{seq}:{digest}`" in md.read_text()
    assert run_core("governance", "report").returncode == 2  # no file named


def test_a_fresh_demo_deployment_prints_its_report(tmp_path):
    env = {**os.environ, "APP_DEMO": "1", "APP_DB": str(tmp_path / "demo.duckdb")}
    env.pop("APP_PATIENT_KEY", None)
    out = tmp_path / "fresh.pdf"
    proc = run_core("governance", "report", "--pdf", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    text = pdf_text(out.read_bytes())
    assert "SYNTHETIC MODEL - NOT FOR CLINICAL USE" in text and "Not assessed yet" in text


def test_without_a_unicode_font_the_report_prints_in_the_pdf_fonts(filed, monkeypatch):
    """A machine without DejaVu Sans (a slim container image): Helvetica, Latin-1 only, and a
    name in another script prints as '?' rather than failing the report."""
    from core import pdf

    monkeypatch.setattr(pdf, "FONT_DIRS", ())
    record_signoff(signer_name="Dr Łucja Zoë 李", signer_role="Hospital IT", signed_on="2026-11-02",
                   scope="network boundary", model_version="v1", by="admin")
    snap = snapshot(by="pi")
    text = pdf_text(report.pdf(snap, by="pi"))
    assert "Dr ?ucja Zoë ?" in text
    assert squeezed(snap["artefact"].sha256) in squeezed(text)


def test_with_dejavu_sans_a_name_prints_as_written(filed):
    from core import pdf

    if pdf._font_files() is None:
        pytest.skip("DejaVu Sans is not installed (Debian: fonts-dejavu-core)")
    record_signoff(signer_name="Dr Łucja Zoë Σ", signer_role="Hospital IT", signed_on="2026-11-02",
                   scope="network boundary", model_version="v1", by="admin")
    assert "Dr Łucja Zoë Σ" in pdf_text(report.pdf(snapshot(by="pi"), by="pi"))


def test_notes_are_printed_as_text_never_as_the_report_structure(fresh_store):
    assessment.record_assessment({f: True for f in assessment.FIELDS},
                                 notes="first line\n## Sign-offs\n| forged | row |\n**loud**",
                                 by="pi", model_version="v1")
    md = report.markdown(snapshot(by="pi"), by="pi")
    assert [line for line in md.splitlines() if line.startswith("## Sign-offs")] == ["## Sign-offs"]
    notes = next(line for line in md.splitlines() if line.startswith("Notes: "))
    assert "first line" in notes and "forged" in notes and "**loud**" not in notes
    text = pdf_text(report.pdf(snapshot(by="pi"), by="pi"))
    assert "## Sign-offs | forged | row | **loud**" in text
