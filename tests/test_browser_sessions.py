"""Sessions in a real browser: an idle screen is cleared without a click, a page asked for by
URL is refused and recorded, and a download's address does not outlive the page's next runs
(it exists only once clicked, and Streamlit drops a downloaded file two runs later)."""

from __future__ import annotations

import urllib.error
import urllib.request

import duckdb
from browser_support import BROWSER_MARKS, launch, new_page, sign_in, streamlit_server, wait_idle

pytestmark = BROWSER_MARKS


def access(db) -> list[tuple[str, str, str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT user_name, action, detail FROM access_events ORDER BY audit_seq").fetchall()
    finally:
        con.close()


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # no cookie: no session
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_idle_screen_is_cleared_without_a_click_and_urls_are_refused(tmp_path):
    from playwright.sync_api import sync_playwright

    db = tmp_path / "app.duckdb"
    with streamlit_server(db, APP_IDLE_TIMEOUT_MINUTES="0.1") as url, sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = new_page(browser)
            sign_in(page, url, "demo-clinician", "demo-clinician-password")
            page.get_by_role("heading", name="Score a patient").wait_for()
            # nobody touches the page: within the timeout (6 s) and one timer tick it is cleared
            # (a loaded machine can take far longer to draw it). Waiting for the notice, not the
            # heading: the sign-in heading of the run before can still be on screen, stale.
            page.get_by_text("without activity").wait_for(timeout=90_000)
            page.get_by_role("heading", name="Score a patient").wait_for(state="detached")
            assert page.get_by_role("heading", name="Sign in").count() == 1

            other = new_page(browser)
            other.goto(f"{url}/admin")
            other.get_by_text("Page not found").wait_for()
        finally:
            browser.close()
    events = access(db)
    assert ("demo-clinician", "idle_sign_out", "") in events
    assert ("(anonymous)", "access_denied", "action administer, page admin by URL") in events


def test_a_download_address_expires_with_the_next_run(tmp_path):
    from playwright.sync_api import sync_playwright

    db = tmp_path / "app.duckdb"
    with streamlit_server(db) as url, sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = new_page(browser)
            sign_in(page, url, "demo-admin", "demo-admin-password")
            page.get_by_role("link", name="Governance").click()
            page.get_by_role("heading", name="Governance").wait_for()
            wait_idle(page)
            assert "/media/" not in page.content().replace("/static/media/", "")  # none before a click
            with page.expect_download() as download:
                page.get_by_role("button", name="Export the evaluator report as Markdown").click()
            address = download.value.url
            assert "evaluator-report" in download.value.suggested_filename
            assert status(address) == 200
            # A downloaded file is marked at the next run and dropped at the one after. Each
            # verification is recorded, so each run's message names one entry more.
            verify = page.get_by_role("button", name="Verify the whole audit trail now")
            verify.click()
            first = page.get_by_text("Audit trail intact")
            first.wait_for()
            entries = int(first.inner_text().split("all ")[1].split(" ")[0])
            verify.click()
            page.get_by_text(f"all {entries + 1} entries verified").wait_for()
            wait_idle(page)
            assert status(address) == 404
        finally:
            browser.close()
