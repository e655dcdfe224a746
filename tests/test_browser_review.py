"""End to end in headless Chromium: a clinician's predictions go to review, a reviewer clears them
in a second session, and the clinician's list shows the decisions."""

import csv
import io
import os
from pathlib import Path

import pytest
from browser_support import CHROMIUM, fill_form, launch, sign_in, streamlit_server, wait_idle

from core import store as core_store

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install chromium)"),
]
SCREENSHOT = os.environ.get("APP_TEST_REVIEW_SCREENSHOT")  # optional: where to save the queue page
REASON = "recent medication change"
# Streamlit saves a table's CSV through the browser's save dialog when it has one; headless
# Chromium has none to answer, so fall back to a plain download.
NO_SAVE_PICKER = "delete window.showSaveFilePicker;"


def new_page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.add_init_script(NO_SAVE_PICKER)
    return context.new_page()


def table_rows(page, index: int = 0) -> list[dict]:
    """A table's rows as the user downloads them (its cells are drawn on a canvas), keyed by the
    frame's column names."""
    frame = page.locator('[data-testid="stDataFrame"]').nth(index)
    frame.scroll_into_view_if_needed()
    frame.hover()  # the toolbar shows while the pointer is over the table
    with page.expect_download() as download:
        # by keyboard: a pointer click may land on the table's canvas, which overlaps the toolbar
        frame.get_by_role("button", name="Download as CSV").focus()
        page.keyboard.press("Enter")
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def score_for_review(page, ref: str) -> None:
    fill_form(page, ref)  # leaves LVEF and systolic pressure empty: the prediction goes to review
    page.get_by_role("button", name="Score", exact=True).click()
    page.locator(".st-key-score_result_card").get_by_text(f"Result for {ref}").wait_for(timeout=20_000)
    wait_idle(page)
    assert "Sent to clinical review" in page.locator(".st-key-score_result_card").inner_text()


def decide(page, ref: str, option: str, comment: str = "") -> str:
    """Decide the open item: mouse for the choice, keyboard for the reason and the comment."""
    item = page.locator(".st-key-review_item")
    item.get_by_role("heading", name=f"{ref}, model v1").wait_for()
    item.get_by_text(option, exact=True).click()
    item.get_by_role("combobox", name="Reason").click()
    page.keyboard.type("recent med")
    page.keyboard.press("Enter")
    if comment:
        item.get_by_label("Comment (required for an override and for 'other')").click()
        page.keyboard.type(comment)
    item.get_by_role("button", name="Sign and submit", exact=True).click()
    success = page.locator('[data-testid="stAlertContentSuccess"]').filter(has_text=f"for {ref}:")
    success.wait_for(timeout=20_000)
    wait_idle(page)
    return success.inner_text()


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
            for ref in ("BR-REV-1", "BR-REV-2"):
                score_for_review(clinician, ref)

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
            listed = {r["patient_ref"]: r for r in table_rows(clinician)}
            assert listed["BR-REV-1"]["review"] == "agreed"
            assert listed["BR-REV-2"]["review"] == f"overridden to {target} ({direction})"
            assert listed["BR-REV-2"]["reviewer_name"] == "Demo reviewer"
        finally:
            browser.close()

    store = core_store.Store(db)  # the server has stopped: the file is free
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
