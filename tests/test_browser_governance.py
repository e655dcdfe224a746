"""End to end in headless Chromium: a clinician scores two patients, a reviewer clears the one
routed to review, and the PI reads the governance page, records a sign-off and suspends scoring;
the clinician then sees the model suspended. The PI answers the deploy-or-stay assessment and
prints the evaluator report, from the page and from the command line while the service runs."""


from pathlib import Path

import store_oracle as oracle
from browser_support import (
    BROWSER_MARKS,
    decide,
    launch,
    new_page,
    score_in_browser,
    sign_in,
    streamlit_server,
    table_rows,
    wait_idle,
)

from core import store as core_store
from core.verification import verify_audit

pytestmark = BROWSER_MARKS
SIGNER = "Dr Ada Example"
SCOPE = "deployment architecture and data flows"
STOP_REASON = "calibration drift under investigation"
QUESTIONS = ("What model is in production", "What does the model do when the input is malformed",
             "When the model is wrong, what is the recovery path?", "How are predictions logged",
             "What is the procedure for retraining the model")
# What the form leaves empty, given: the form's patient is then complete and validated
COMPLETE = {"lvef": "30", "sbp": "118"}


def test_browser_pi_signs_off_and_suspends_scoring(tmp_path):
    from playwright.sync_api import sync_playwright

    db = tmp_path / "app.duckdb"
    with streamlit_server(db) as url, sync_playwright() as pw:
        browser = launch(pw)
        try:
            clinician, reviewer, pi = new_page(browser), new_page(browser), new_page(browser)

            # (1) one prediction (LVEF empty) routed to review, one auto-finalised; in this order,
            # as the form keeps the values of the previous submission
            sign_in(clinician, url, "demo-clinician", "demo-clinician-password")
            clinician.get_by_role("heading", name="Score a patient").wait_for()
            wait_idle(clinician)
            score_in_browser(clinician, "BR-GOV-2", "Sent to clinical review")
            score_in_browser(clinician, "BR-GOV-1", "Auto-finalised", extra=COMPLETE)

            # (2) the reviewer overrides it, with a comment
            sign_in(reviewer, url, "demo-reviewer", "demo-reviewer-password")
            reviewer.get_by_role("heading", name="Review queue").wait_for()
            wait_idle(reviewer)
            item = reviewer.locator(".st-key-review_item")
            item.get_by_role("heading", name="BR-GOV-2, model v1").wait_for()
            target = "high" if "Agree: low risk" in item.inner_text() else "low"
            recorded = decide(reviewer, "BR-GOV-2", f"Override to {target} risk", comment="new ACE inhibitor")
            assert recorded.startswith(f"Recorded for BR-GOV-2: overridden to {target}")
            reviewer.get_by_text("No predictions are waiting for review.").wait_for()

            # (3) the PI reads the governance page
            sign_in(pi, url, "demo-pi", "demo-pi-password")
            pi.get_by_role("heading", name="Monitoring", exact=True).wait_for(timeout=30_000)
            wait_idle(pi, timeout=60_000)
            pi.get_by_role("link", name="Governance").click()
            pi.get_by_role("heading", name="The five evaluator questions").wait_for(timeout=20_000)
            wait_idle(pi)
            assert pi.get_by_text("Scoring is active. Serving model v1.").is_visible()
            for i, question in enumerate(QUESTIONS, 1):
                heading = pi.get_by_role("heading", name=f"{i}. {question}")
                assert heading.count() == 1, question
            recovery = pi.locator('[data-testid="stMarkdownContainer"]').filter(
                has_text="routed to review").inner_text()
            assert "2 predictions, 1 routed to review, 1 reviewed" in recovery
            assert "Audit chain: intact" in recovery
            checklist = table_rows(pi, 0)
            assert [r["#"] for r in checklist] == [str(i) for i in range(1, 10)]
            assert checklist[7]["Evidence"].startswith(
                "sign-offs for v1: none; missing: IRB, Data protection officer, Hospital IT; the "
                "architecture diagram")
            assert pi.get_by_text("No sign-off recorded yet.").is_visible()

            # ... records a sign-off through the form and sees it listed
            form = pi.locator('[data-testid="stForm"]').filter(has_text="Record a sign-off")
            form.get_by_label("Signer's name (required)", exact=True).fill(SIGNER)
            role = form.get_by_role("combobox", name="Signer's role")
            role.click()
            pi.keyboard.type("IRB")
            pi.keyboard.press("Enter")
            form.get_by_label("Scope (what was reviewed, required)", exact=True).fill(SCOPE)
            form.get_by_role("button", name="Record sign-off", exact=True).click()
            pi.get_by_text("No sign-off recorded yet.").wait_for(state="detached", timeout=20_000)
            wait_idle(pi)
            signoffs = table_rows(pi, 1)
            assert [(r["signer_name"], r["signer_role"], r["scope"], r["model_version"], r["user_name"])
                    for r in signoffs] == [(SIGNER, "IRB", SCOPE, "v1", "demo-pi")]
            assert "sign-offs for v1: IRB; missing: Data protection officer, Hospital IT" \
                in table_rows(pi, 0)[7]["Evidence"]

            # ... and suspends scoring with a reason
            stop = pi.locator('[data-testid="stForm"]').filter(has_text="Reason (recorded, required)")
            stop.get_by_label("Reason (recorded, required)", exact=True).fill(STOP_REASON)
            stop.get_by_role("button", name="Suspend scoring", exact=True).click()
            banner = pi.get_by_text("Scoring is SUSPENDED since")
            banner.wait_for(timeout=20_000)
            wait_idle(pi)
            assert banner.inner_text().endswith(f"by demo-pi: {STOP_REASON}")
            assert pi.get_by_role("button", name="Resume scoring", exact=True).is_visible()

            # (4) the clinician, in a new session, sees the model suspended and no form
            clinician.reload()
            sign_in(clinician, url, "demo-clinician", "demo-clinician-password")
            suspended = clinician.get_by_text("Model suspended:")
            suspended.wait_for(timeout=20_000)
            wait_idle(clinician)
            assert STOP_REASON in suspended.inner_text()
            assert clinician.locator('[data-testid="stForm"]').count() == 0
            assert clinician.get_by_role("button", name="Score", exact=True).count() == 0
        finally:
            browser.close()

    store = core_store.open_file(db)  # the server has stopped: the file is free
    try:
        signoffs = store.signoff_records()
        service = oracle.rows(store, "service_events")
        problems, head = verify_audit(store)
    finally:
        store.close()
    assert signoffs[["user_name", "signer_name", "signer_role", "scope", "model_version"]].values.tolist() \
        == [["demo-pi", SIGNER, "IRB", SCOPE, "v1"]]
    assert service[["user_name", "action", "reason"]].values.tolist() == [["demo-pi", "suspend", STOP_REASON]]
    assert problems == [] and head[0] > 0


def test_browser_pi_answers_the_assessment_and_prints_the_evaluator_report(tmp_path):
    """A fresh demo deployment: the PI sees the architecture diagram, answers the deploy-or-stay
    assessment and prints the evaluator report from the page; the PDF names the assessment and
    the audit head at printing, which the store's chain has at that entry."""
    import io
    import os
    import re

    from conftest import MODELS, run_core
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader

    from core.assessment import CRITERIA, DEPLOY_ONCE_AGREED
    from core.display import field_label

    db = tmp_path / "app.duckdb"
    with streamlit_server(db) as url, sync_playwright() as pw:
        browser = launch(pw)
        try:
            pi = new_page(browser)
            sign_in(pi, url, "demo-pi", "demo-pi-password")
            pi.get_by_role("heading", name="Monitoring", exact=True).wait_for(timeout=30_000)
            wait_idle(pi, timeout=60_000)
            pi.get_by_role("link", name="Governance").click()
            pi.get_by_role("heading", name="Architecture of this deployment").wait_for(timeout=20_000)
            wait_idle(pi)
            assert pi.locator('[data-testid="stImage"] img').count() == 1
            for field, question, _ in CRITERIA:
                group = pi.locator('[data-testid="stRadio"]').filter(
                    has=pi.get_by_text(field_label(question, required=True), exact=True))
                group.get_by_text("no" if field == "service_requested" else "yes", exact=True).click()
            pi.get_by_role("button", name="Record the assessment").click()
            pi.get_by_text(f"Assessment recorded: {DEPLOY_ONCE_AGREED}.").wait_for(timeout=20_000)
            wait_idle(pi)
            with pi.expect_download(timeout=60_000) as download:
                pi.get_by_role("button", name="Print the evaluator report (PDF)").first.click()
            data = Path(download.value.path()).read_bytes()
            # the same report from the command line, printed by the running service
            env = {**os.environ, "APP_DB": str(db), "APP_DEMO": "1", "APP_MODELS": str(MODELS)}
            env.pop("APP_PATIENT_KEY", None)
            printed = run_core("governance", "report", "--pdf", str(tmp_path / "cli.pdf"), env=env)
            assert printed.returncode == 0, printed.stderr
        finally:
            browser.close()
    cli_text = "".join(p.extract_text() for p in PdfReader(tmp_path / "cli.pdf").pages)
    assert re.sub(r"\s+", "", DEPLOY_ONCE_AGREED) in re.sub(r"\s+", "", cli_text)
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    flat = re.sub(r"\s+", "", text)
    assert re.sub(r"\s+", "", f"Recommendation: {DEPLOY_ONCE_AGREED}.") in flat
    assert "demo-pi" in text and "Architecture of this deployment" in text
    seq, digest = re.search(r"Auditheadatprinting:(\d+):([0-9a-f]{64})", flat).groups()
    store = core_store.open_store(db)
    try:
        assert store.entry_hash_at(int(seq)) == digest
        assert list(store.assessment_records()["user_name"]) == ["demo-pi"]
    finally:
        core_store.close_all()
