"""End to end in headless Chromium against the real server (`uvicorn serve:app`)."""

import os

import pytest
from browser_support import BROWSER_MARKS, chromium_browser, fill_form, sign_in, streamlit_server, wait_idle

pytestmark = BROWSER_MARKS
SCREENSHOT = os.environ.get("APP_TEST_SCREENSHOT")  # optional: where to save the result page


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("browser") / "app.duckdb") as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    with chromium_browser() as chromium:
        yield chromium


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # a new session
    try:
        yield context.new_page()
    finally:
        context.close()


def test_browser_clinician_scores_a_patient(server, page):
    sign_in(page, server, "demo-clinician", "demo-clinician-password")
    page.get_by_role("heading", name="Score a patient").wait_for()
    wait_idle(page)
    assert page.get_by_text("DEMO - synthetic model, not for clinical use").is_visible()
    fill_form(page, "BROWSER-1")
    page.get_by_role("button", name="Score", exact=True).click()
    card = page.locator(".st-key-score_result_card")
    card.wait_for(timeout=20_000)
    wait_idle(page)
    text = card.inner_text()
    assert "Result for BROWSER-1" in text
    assert "Risk: Hyperkalaemia within 42 days" in text and "%" in text
    assert "Confidence" in text and "95% interval" in text
    assert "Auto-finalised" in text or "Sent to clinical review" in text
    if SCREENSHOT:
        card.screenshot(path=SCREENSHOT)


def test_browser_wrong_password_shows_error(server, page):
    sign_in(page, server, "demo-clinician", "wrong-password")
    error = page.get_by_text("Wrong username or password, or the account is disabled.")
    error.wait_for(timeout=20_000)
    assert page.get_by_role("heading", name="Sign in").is_visible()
    assert not page.get_by_role("heading", name="Score a patient").count()


def test_browser_sign_out_returns_to_sign_in(server, page):
    sign_in(page, server, "demo-reviewer", "demo-reviewer-password")
    page.get_by_role("heading", name="Review queue").wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.get_by_text("You are signed out.").wait_for(timeout=20_000)
    assert page.get_by_role("heading", name="Sign in").is_visible()


def test_browser_deep_link_to_admin_shows_nothing_of_it(server, page):
    sign_in(page, server, "demo-clinician", "demo-clinician-password")
    page.get_by_role("heading", name="Score a patient").wait_for()
    page.goto(f"{server}/admin")  # a new page load: a new, anonymous session
    wait_idle(page)
    page.wait_for_timeout(500)
    wait_idle(page)
    assert not page.get_by_role("heading", name="Admin").count()
    assert not page.get_by_text("Add a user").count()
