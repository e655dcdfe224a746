"""Accessibility: axe-core (pinned in package.json, installed by `make test`) on every page for
every role, in the states people meet (empty form, form with errors, result, queue with a selected
item, each admin tab), against the real server (`uvicorn serve:app`) in headless Chromium.

No critical or serious violation of WCAG 2.1 A/AA may be found in what the app controls; the
few that belong to Streamlit's own components are in ALLOWED (rule, element, why), so a new
finding, or one of these on another element, fails. The page's own structure is checked too:
one title per page, headings in order."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import pytest
from browser_support import (
    BROWSER_MARKS,
    REPO,
    chromium_browser,
    fill_form,
    new_page,
    seeded_server,
    sign_in,
    wait_idle,
)

pytestmark = BROWSER_MARKS
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
REPORT = os.environ.get("APP_TEST_AXE_REPORT")  # optional: a folder for each state's axe results
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# Best-practice rules about the page's structure, which the app controls through its headings
# and titles; gated like the WCAG rules whatever their impact.
STRUCTURE = ["heading-order", "page-has-heading-one", "empty-heading", "empty-table-header"]
GATED = ("critical", "serious")


@dataclass(frozen=True)
class Allowed:
    """A finding in a component of Streamlit's own, which the app cannot change."""

    rule: str
    target: str  # a regular expression, searched in the element's CSS selector and its HTML
    why: str


ALLOWED: tuple[Allowed, ...] = (
    # Streamlit draws these icons as Material Symbols ligatures: the icon's name is text inside the
    # button ("keyboard_double_arrow_left", "visibility") that its aria-label rightly leaves out.
    Allowed("label-content-name-mismatch", r'data-testid="stBaseButton-headerNoPadding"',
            "Streamlit's button that collapses the sidebar (shown while the pointer is over it): "
            "aria-label 'Collapse sidebar', icon ligature as its text"),
    Allowed("label-content-name-mismatch", r'aria-label="(Show|Hide) password"',
            "Streamlit's show-password button of a password field: icon ligature as its text"),
)


def _allowed(rule: str, node: dict) -> Allowed | None:
    where = " ".join(json.dumps(t) for t in node["target"]) + " " + node.get("html", "")
    return next((a for a in ALLOWED if a.rule == rule and re.search(a.target, where)), None)


def axe_findings(page, state: str) -> list[str]:
    """The violations of this state that no ALLOWED entry covers, one line each."""
    wait_idle(page)
    page.wait_for_timeout(300)  # charts draw after the script run ends
    wait_idle(page)
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    results = page.evaluate(
        """async ([wcag, structure]) => {
             const wcagRun = await axe.run(document, {runOnly: {type: 'tag', values: wcag},
                                                     resultTypes: ['violations']});
             const structureRun = await axe.run(document, {runOnly: {type: 'rule', values: structure},
                                                          resultTypes: ['violations']});
             return {version: axe.version, wcag: wcagRun.violations,
                     structure: structureRun.violations};
           }""", [WCAG, STRUCTURE])
    if REPORT:
        os.makedirs(REPORT, exist_ok=True)
        with open(os.path.join(REPORT, f"{state}.json"), "w", encoding="utf-8") as out:
            json.dump(results, out, indent=1)
    found = []
    for violation in results["wcag"] + results["structure"]:
        gated = violation["id"] in STRUCTURE or violation["impact"] in GATED
        for node in violation["nodes"]:
            if gated and _allowed(violation["id"], node) is None:
                found.append(f"{state}: {violation['id']} ({violation['impact']}) at "
                             f"{node['target']}: {node.get('failureSummary', '')[:300]} | "
                             f"{node.get('html', '')[:200]}")
    return found


def page_structure(page) -> dict:
    """The document's title and the main area's headings (level, text), in document order."""
    return page.evaluate("""() => ({
        title: document.title,
        headings: [...document.querySelectorAll('[data-testid="stMain"] h1, [data-testid="stMain"] h2,'
                                                + '[data-testid="stMain"] h3, [data-testid="stMain"] h4,'
                                                + '[data-testid="stMain"] h5, [data-testid="stMain"] h6')]
                    .filter(h => h.offsetParent !== null && h.textContent.trim())
                    .map(h => [Number(h.tagName[1]), h.textContent.trim()])})""")


def structure_problems(page, state: str, title: str) -> list[str]:
    shown = page_structure(page)
    problems = []
    if not shown["title"].startswith(title):
        problems.append(f"{state}: the browser title is {shown['title']!r}, not {title!r} first")
    levels = [level for level, _ in shown["headings"]]
    if levels[:1] != [1] or levels.count(1) != 1:
        problems.append(f"{state}: not exactly one h1, first: {shown['headings']}")
    for (before, _), (level, text) in zip(shown["headings"], shown["headings"][1:], strict=False):
        if level > before + 1:
            problems.append(f"{state}: heading {text!r} is h{level} after an h{before}")
    return problems


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app over a store with a few weeks of activity: a review queue, outcomes due, charts."""
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed ({AXE.relative_to(REPO)}): run `make browser-deps`")
    with seeded_server(tmp_path_factory.mktemp("browser-a11y"), patients=160) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    with chromium_browser() as chromium:
        yield chromium


@pytest.fixture
def page(browser):
    page = new_page(browser)
    try:
        yield page
    finally:
        page.context.close()


def _open(page, server: str, role: str, heading: str) -> None:
    sign_in(page, server, f"demo-{role}", f"demo-{role}-password")
    page.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=20_000)
    wait_idle(page)


def _go(page, title: str) -> None:
    page.get_by_role("link", name=title, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=20_000)
    wait_idle(page)


def _check(page, state: str, title: str) -> list[str]:
    shown = page.locator('[data-testid="stMain"]').inner_text()
    literal = [f"{state}: shows a literal HTML comment"] if "<!--" in shown else []
    return literal + structure_problems(page, state, title) + axe_findings(page, state)


def test_sign_in_page(server, page):
    page.goto(server)
    page.get_by_label("Username (required)", exact=True).wait_for()
    found = _check(page, "sign-in", "Sign in")
    sign_in(page, server, "demo-clinician", "wrong-password")
    page.get_by_text("Wrong username or password").wait_for(timeout=20_000)
    found += _check(page, "sign-in-error", "Sign in")
    assert not found, "\n".join(found)


def test_clinician_pages(server, page):
    _open(page, server, "clinician", "Score a patient")
    found = _check(page, "score-empty", "Score a patient")
    page.get_by_role("button", name="Score", exact=True).click()
    page.locator('[data-testid="stAlertContentError"]').first.wait_for(timeout=20_000)
    found += _check(page, "score-errors", "Score a patient")
    fill_form(page, "A11Y-1")
    page.get_by_role("button", name="Score", exact=True).click()
    card = page.locator(".st-key-score_result_card")
    card.wait_for(timeout=20_000)
    found += _check(page, "score-result", "Score a patient")
    prediction_id = re.search(r"prediction ([0-9a-f-]{36})", card.inner_text()).group(1)

    _go(page, "Outcomes")
    found += _check(page, "outcomes", "Outcomes")
    page.get_by_label("Or prediction ID", exact=True).fill(prediction_id)
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Record outcome", exact=True).click()
    page.locator('[data-testid="stAlertContentError"]').first.wait_for(timeout=20_000)
    found += _check(page, "outcomes-errors", "Outcomes")
    _go(page, "Model card")
    found += _check(page, "model-card-clinician", "Model card")
    assert not found, "\n".join(found)


def test_reviewer_pages(server, page):
    _open(page, server, "reviewer", "Review queue")
    page.locator(".st-key-review_item").wait_for(timeout=20_000)
    found = _check(page, "review-item", "Review queue")
    page.locator(".st-key-review_item").get_by_role("button", name="Sign and submit").click()
    page.locator('[data-testid="stAlertContentError"]').first.wait_for(timeout=20_000)
    found += _check(page, "review-errors", "Review queue")
    _go(page, "Model card")
    found += _check(page, "model-card-reviewer", "Model card")
    assert not found, "\n".join(found)


def test_pi_pages(server, page):
    _open(page, server, "pi", "Monitoring")
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=20_000)
    found = _check(page, "monitoring", "Monitoring")
    _go(page, "Governance")
    found += _check(page, "governance-pi", "Governance")
    _go(page, "Model card")
    found += _check(page, "model-card-pi", "Model card")
    assert not found, "\n".join(found)


def test_admin_pages(server, page):
    _open(page, server, "admin", "Admin")
    found = _check(page, "admin-users", "Admin")
    for tab in ("Models", "Backup and audit"):
        page.get_by_role("tab", name=tab).click()
        wait_idle(page)
        found += _check(page, f"admin-{tab.split()[0].lower()}", "Admin")
    _go(page, "Governance")
    found += _check(page, "governance-admin", "Governance")
    _go(page, "Model card")
    found += _check(page, "model-card-admin", "Model card")
    assert not found, "\n".join(found)
