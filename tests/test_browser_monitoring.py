"""The PI signs in through the real server (`uvicorn serve:app`) in headless Chromium and sees the
monitoring charts and the override alert banner."""

import os

import pytest
from browser_support import BROWSER_MARKS, launch, seeded_server, sign_in, wait_idle

pytestmark = BROWSER_MARKS
SCREENSHOT = os.environ.get("APP_TEST_MONITORING_SCREENSHOT")  # optional: where to save the page


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app over a store seeded with reviews that mostly upgrade (the alert fires)."""
    with seeded_server(tmp_path_factory.mktemp("browser-monitoring")) as url:
        yield url


def test_browser_pi_sees_charts_and_alert(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        try:
            page = chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            sign_in(page, server, "demo-pi", "demo-pi-password")
            page.get_by_role("heading", name="Monitoring", exact=True).wait_for(timeout=30_000)
            wait_idle(page, timeout=60_000)
            alert = page.get_by_text("were upgraded from low to high risk by reviewers")
            alert.wait_for(timeout=20_000)
            assert "Most common reasons:" in alert.inner_text()
            charts = page.locator('[data-testid="stVegaLiteChart"]')
            charts.first.wait_for(timeout=20_000)
            assert charts.count() == 11
            # Vega drew them: each chart holds a rendered canvas or svg with a size.
            page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
                .every(c => { const g = c.querySelector('canvas, svg');
                              return g && g.getBoundingClientRect().width > 100; })""", timeout=20_000)
            for heading in ("Override rate per week, by direction", "Reviewer workload",
                            "Observed against predicted risk, by decile of predicted risk"):
                assert page.get_by_role("heading", name=heading, exact=True).count() == 1
            if SCREENSHOT:
                page.set_viewport_size({"width": 1400, "height": 4400})
                wait_idle(page)
                page.screenshot(path=SCREENSHOT, full_page=True)
        finally:
            chromium.close()
