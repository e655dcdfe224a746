"""Keyboard only, in headless Chromium against the real server (`uvicorn serve:app`): a clinician
signs in, fills the score form and submits it; a reviewer signs in and clears the review item.
Nothing is clicked: the focus moves with Tab (the page is read to know where it is), values are
typed, chosen with the arrow keys, Space and Enter. The form's Tab order is its reading order:
the spec's fields, row by row."""

from __future__ import annotations

import re

from browser_support import BROWSER_MARKS, FORM, SPEC, label, launch, new_page, streamlit_server, wait_idle

pytestmark = BROWSER_MARKS

# What has the focus, as a screen reader names it: the control's label, a radio's group label,
# else a button's or link's text.
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return '';
  const group = el.closest('[role="radiogroup"]');
  const byId = id => ((id && document.getElementById(id)) || {}).textContent || '';
  return (el.getAttribute('aria-label')
          || (group && (group.getAttribute('aria-label') || byId(group.getAttribute('aria-labelledby'))))
          || el.textContent || '').trim();
}"""
# The option a combobox has highlighted (its active descendant)
HIGHLIGHTED = """() => {
  const id = document.activeElement && document.activeElement.getAttribute('aria-activedescendant');
  return ((id && document.getElementById(id)) || {}).textContent || '';
}"""


PART_OF_A_FIELD = ("Help for ", "Clear value")  # a field's help icon, a chosen option's clear button

# The focused combobox shows `option` as its value
CHOSEN = "option => !!document.activeElement && document.activeElement.value === option"


def tab_to(page, name: str, limit: int = 80) -> list[str]:
    """Press Tab until `name` has the focus; the controls passed on the way (the parts of a field
    aside)."""
    passed = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = page.evaluate(FOCUSED)
        if now == name:
            return passed
        if now and not now.startswith(PART_OF_A_FIELD):
            passed.append(now)
    raise AssertionError(f"Tab never reached {name!r}; it passed {passed}")


def choose(page, option: str) -> None:
    """In the focused combobox: type the option, move to it with the arrow keys, take it with Enter."""
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).wait_for()  # the list, filtered
    page.wait_for_timeout(200)
    for _ in range(20):
        if page.evaluate(HIGHLIGHTED).strip() == option:
            break
        page.keyboard.press("ArrowDown")
        page.wait_for_timeout(150)  # the list redraws its highlight
    assert page.evaluate(HIGHLIGHTED).strip() == option
    page.keyboard.press("Enter")
    page.wait_for_function(CHOSEN, arg=option)


def sign_in_by_keyboard(page, url: str, username: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Username (required)", exact=True).wait_for()
    wait_idle(page)
    tab_to(page, "Username (required)")
    page.keyboard.type(username)
    tab_to(page, "Password (required)")
    page.keyboard.type(password)
    tab_to(page, "Sign in")
    page.keyboard.press("Enter")


def test_keyboard_only_score_and_review(tmp_path):
    from playwright.sync_api import sync_playwright

    with streamlit_server(tmp_path / "app.duckdb") as url, sync_playwright() as pw:
        browser = launch(pw)
        try:
            clinician = new_page(browser)
            sign_in_by_keyboard(clinician, url, "demo-clinician", "demo-clinician-password")
            clinician.get_by_role("heading", name="Score a patient").wait_for(timeout=20_000)
            wait_idle(clinician)
            values = {**FORM, "patient_ref": "KB-1"}  # LVEF and systolic pressure left empty
            order = ["patient_ref", *SPEC.names]
            for name in order:
                passed = tab_to(clinician, label(name))
                assert passed == [], f"Tab reached {label(name)!r} only after {passed}"
                value = values.get(name)
                if value is None:
                    continue
                feature = None if name == "patient_ref" else SPEC.feature(name)
                if feature is not None and feature.type == "boolean":
                    # the focus is on the group's first option, "no"; the next is "yes"
                    clinician.keyboard.press("Space" if value == "no" else "ArrowRight")
                elif feature is not None and feature.type == "category":
                    choose(clinician, value)
                else:
                    clinician.keyboard.type(value)
            assert tab_to(clinician, "Score") == []
            clinician.keyboard.press("Enter")
            card = clinician.locator(".st-key-score_result_card")
            card.get_by_text("Result for KB-1").wait_for(timeout=20_000)
            wait_idle(clinician)
            # The headline is one alert: risk, class, interval and routing announced together.
            alerts = card.locator('[role="alert"]')
            assert alerts.count() == 1
            headline = alerts.inner_text()
            assert re.search(r"(High|Low) risk of .+: \d+\.\d% \(95% interval \d+\.\d% to \d+\.\d%; "
                             r"action threshold \d+\.\d%\)\. Sent to clinical review", headline), headline

            reviewer = new_page(browser)
            sign_in_by_keyboard(reviewer, url, "demo-reviewer", "demo-reviewer-password")
            item = reviewer.locator(".st-key-review_item")
            item.get_by_role("heading", name="KB-1, model v1").wait_for(timeout=20_000)
            wait_idle(reviewer)
            tab_to(reviewer, "Decision (required)")
            reviewer.keyboard.press("Space")  # the first option: agree with the model's class
            tab_to(reviewer, "Reason (required)")
            choose(reviewer, "recent medication change")
            tab_to(reviewer, "Sign and submit")
            reviewer.keyboard.press("Enter")
            success = reviewer.locator('[data-testid="stAlertContentSuccess"]').filter(has_text="for KB-1:")
            success.wait_for(timeout=20_000)
            assert success.inner_text().startswith("Recorded for KB-1: agreed")
            reviewer.get_by_text("No predictions are waiting for review.").wait_for(timeout=20_000)
        finally:
            browser.close()
