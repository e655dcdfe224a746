"""A real `streamlit run app.py` on a free port, and headless Chromium driving it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app && app.getAttribute('data-test-connection-state') === 'CONNECTED'
    && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid="stSkeleton"]');
}"""
FORM = {"patient_ref": "BROWSER-1", "Age (years)": "70", "Sex": "male", "Weight (kg)": "78",
        "eGFR (mL/min/1.73m2)": "58", "Baseline serum potassium (mmol/L)": "4.4",
        "Diabetes mellitus": "no", "RAAS inhibitor": "acei",
        "Spironolactone starting dose (mg/day)": "25", "NYHA class": "II",
        "Loop diuretic": "yes", "Potassium supplement": "no", "NSAID use": "no"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(db: Path) -> Iterator[str]:
    """Start the app in demo mode on a free port; yield its URL; always terminate it."""
    port = free_port()
    env = {**os.environ, "APP_DB": str(db), "APP_DEMO": "1", "APP_MODELS": str(REPO / "model_artifacts")}
    env.pop("APP_PATIENT_KEY", None)
    log = open(db.parent / "streamlit.log", "wb")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
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
                    raise RuntimeError(f"streamlit did not start: see {log.name}") from None
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


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)


def wait_idle(page, timeout: float = 20_000) -> None:
    page.wait_for_function(IDLE, timeout=timeout)


def sign_in(page, url: str, username: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Username", exact=True).wait_for()
    wait_idle(page)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def fill_form(page, patient_ref: str) -> None:
    for label, value in {**FORM, "patient_ref": patient_ref}.items():
        if label == "patient_ref":
            page.get_by_label("Patient reference (study ID or MRN)", exact=True).fill(value)
        elif value in ("yes", "no"):
            group = page.locator('[data-testid="stRadio"]').filter(
                has=page.get_by_text(label, exact=True))
            group.get_by_text(value, exact=True).click()
        elif not value[0].isdigit():
            page.get_by_role("combobox", name=label, exact=True).click()
            page.get_by_role("option", name=value, exact=True).click()
        else:
            page.get_by_label(label, exact=True).fill(value)
