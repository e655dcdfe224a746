"""End to end in headless Chromium: a clinician's predictions go to review, a reviewer clears them
in a second session, and the clinician's list shows the decisions."""

import os

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

pytestmark = BROWSER_MARKS
SCREENSHOT = os.environ.get("APP_TEST_REVIEW_SCREENSHOT")  # optional: where to save the queue page
REASON = "recent medication change"


def test_browser_reviewer_clears_the_queue_and_clinician_sees_it(tmp_path):
    from playwright.sync_api import sync_playwright

    db = tmp_path / "app.duckdb"
    with streamlit_server(db) as url, sync_playwright() as pw:
        browser = launch(pw)
        try:
            clinician, reviewer = new_page(browser), new_page(browser)  # two sessions
            sign_in(clinician, url, "demo-clinician", "demo-clinician-password")
            clinician.get_by_role("heading", name="Score a patient").wait_for()
            wait_idle(clinician)
            for ref in ("BR-REV-1", "BR-REV-2"):  # LVEF and systolic pressure empty: to review
                score_in_browser(clinician, ref, "Sent to clinical review")

            sign_in(reviewer, url, "demo-reviewer", "demo-reviewer-password")
            reviewer.get_by_role("heading", name="Review queue").wait_for()
            wait_idle(reviewer)
            waiting = reviewer.locator('[data-testid="stMetric"]').filter(has_text="Waiting for review")
            assert waiting.inner_text().split()[-1] == "2"
            item = reviewer.locator(".st-key-review_item")
            assert "I, Demo reviewer, reviewed this prediction and agree" in item.inner_text()
            if SCREENSHOT:
                reviewer.screenshot(path=SCREENSHOT)

            model_class = "low" if "Agree: low risk" in item.inner_text() else "high"
            target = "high" if model_class == "low" else "low"
            first = decide(reviewer, "BR-REV-1", f"Agree: {model_class} risk")
            assert first.startswith("Recorded for BR-REV-1: agreed")
            second = decide(reviewer, "BR-REV-2", f"Override to {target} risk", comment="new ACE inhibitor")
            direction = "upgrade" if target == "high" else "downgrade"
            assert second.startswith(f"Recorded for BR-REV-2: overridden to {target} ({direction})")
            reviewer.get_by_text("No predictions are waiting for review.").wait_for()
            recent = table_rows(reviewer)
            assert [(r["patient"], r["reviewer_name"], r["status"]) for r in recent] == [
                ("BR-REV-2", "Demo reviewer", "in force"), ("BR-REV-1", "Demo reviewer", "in force")]

            clinician.reload()  # a new session: sign in again and read the list
            sign_in(clinician, url, "demo-clinician", "demo-clinician-password")
            clinician.get_by_role("heading", name="Your recent predictions").wait_for()
            wait_idle(clinician)
            listed = {r["Patient"]: r for r in table_rows(clinician)}  # columns named for people
            assert listed["BR-REV-1"]["Review"] == "agreed"
            assert listed["BR-REV-2"]["Review"] == f"overridden to {target} ({direction})"
            assert listed["BR-REV-2"]["Reviewed by"] == "Demo reviewer"
        finally:
            browser.close()

    store = core_store.open_file(db)  # the server has stopped: the file is free
    try:
        rows = store.recent_decisions().sort_values("audit_seq")
    finally:
        store.close()
    assert rows[["patient_ref", "user_name", "reviewer_name", "decision", "direction",
                 "reason_code"]].values.tolist() == [
        ["BR-REV-1", "demo-reviewer", "Demo reviewer", "agree", "none", REASON],
        ["BR-REV-2", "demo-reviewer", "Demo reviewer", f"override_{target}", direction, REASON]]
    assert rows["meaning"].str.startswith("I, Demo reviewer, reviewed this prediction").all()
    assert rows["created_at"].notna().all() and rows["comment"].tolist() == ["", "new ACE inhibitor"]
