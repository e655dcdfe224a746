"""The real server process (`uvicorn serve:app`: the UI and the API) on a free port, and
headless Chromium driving it."""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import DEMO_SPEC, MODELS

from core.display import field_label
from core.spec import load_spec

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
NEEDS_CHROMIUM = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="needs Chromium (apt-get install chromium)")
BROWSER_MARKS = [pytest.mark.browser, NEEDS_CHROMIUM]  # a browser test module's pytestmark
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app && app.getAttribute('data-test-connection-state') === 'CONNECTED'
    && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid="stSkeleton"]');
}"""
# The demonstration's form by field name; the page's labels come from the spec (label(name)).
FORM = {"patient_ref": "BROWSER-1", "age": "70", "sex": "male", "weight_kg": "78", "egfr": "58",
        "potassium": "4.4", "diabetes": "no", "raas_inhibitor": "acei", "spironolactone_dose_mg": "25",
        "nyha_class": "II", "loop_diuretic": "yes", "potassium_supplement": "no", "nsaid": "no"}
SPEC = load_spec(DEMO_SPEC)


def label(name: str) -> str:
    """The score form's label of a field, as the page builds it from the spec."""
    if name == "patient_ref":
        return field_label(SPEC.patient_reference.label, required=True)
    feature = SPEC.feature(name)
    return field_label(feature.label, required=feature.required, unit=feature.unit or "")
# Streamlit saves a table's CSV through the browser's save dialog when it has one; headless
# Chromium has none to answer, so fall back to a plain download.
NO_SAVE_PICKER = "delete window.showSaveFilePicker;"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(db: Path, **settings: str) -> Iterator[str]:
    """Start the app in demo mode on a free port; yield its URL; always terminate it.
    `settings`: more APP_ variables, e.g. APP_IDLE_TIMEOUT_MINUTES="0.1" (the seeded demo
    history is off unless they set APP_DEMO_HISTORY)."""
    port = free_port()
    # STREAMLIT_SERVER_PORT: under uvicorn, Streamlit knows its port from its config only (the
    # {port} of an SSO redirect_uri), as deploy/start.sh and `make run` set it.
    env = {**os.environ, "APP_DB": str(db), "APP_DEMO": "1", "APP_MODELS": str(MODELS),
           "APP_DEMO_HISTORY": "0", "STREAMLIT_SERVER_PORT": str(port), **settings}
    env.pop("APP_PATIENT_KEY", None)
    log = open(db.parent / "streamlit.log", "wb")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "serve:app", "--port", str(port), "--host", "127.0.0.1"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: see {log.name}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def chromium_browser() -> Iterator:
    """Headless Chromium for a module's pages; always closed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def seeded_server(tmp_path: Path, **seed) -> Iterator[str]:
    """The app in demo mode over a store with a few weeks of activity (monitoring_support's
    seed_activity, `seed` its options): a review queue, outcomes due, charts."""
    from monitoring_support import seed_activity

    from core import store as core_store

    db = tmp_path / "app.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APP_DB", str(db))
        mp.setenv("APP_MODELS", str(MODELS))
        mp.setenv("APP_DEMO", "1")
        mp.delenv("APP_PATIENT_KEY", raising=False)
        seed_activity(tmp_path, **seed)
        core_store.close_all()  # the server process owns the file from here
    with streamlit_server(db) as url:
        yield url


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)


def wait_idle(page, timeout: float = 20_000) -> None:
    page.wait_for_function(IDLE, timeout=timeout)


def sign_in(page, url: str, username: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Username (required)", exact=True).wait_for()
    wait_idle(page)
    page.get_by_label("Username (required)", exact=True).fill(username)
    page.get_by_label("Password (required)", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def fill_form(page, patient_ref: str) -> None:
    for name, value in {**FORM, "patient_ref": patient_ref}.items():
        if name == "patient_ref":
            page.get_by_label(label(name), exact=True).fill(value)
        elif value in ("yes", "no"):
            group = page.locator('[data-testid="stRadio"]').filter(
                has=page.get_by_text(label(name), exact=True))
            group.get_by_text(value, exact=True).click()
        elif not value[0].isdigit():
            page.get_by_role("combobox", name=label(name), exact=True).click()
            page.get_by_role("option", name=value, exact=True).click()
        else:
            page.get_by_label(label(name), exact=True).fill(value)


def new_page(browser):
    """A page in a new session (browser context) that can download a table's CSV."""
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


def score_in_browser(page, ref: str, expect: str, extra: dict[str, str] | None = None) -> None:
    """Fill the form for `ref` (then the fields named in `extra`), score it, and check that the
    result card says `expect`. The form alone leaves LVEF and systolic pressure empty."""
    fill_form(page, ref)
    for name, value in (extra or {}).items():
        page.get_by_label(label(name), exact=True).fill(value)
    page.get_by_role("button", name="Score", exact=True).click()
    card = page.locator(".st-key-score_result_card")
    card.get_by_text(f"Result for {ref}").wait_for(timeout=20_000)
    wait_idle(page)
    assert expect in card.inner_text()


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
