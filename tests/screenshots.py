"""Screenshots of the real app for the README's first screen: a clinician's result and the PI's
monitoring page, taken in headless Chromium from the server process (`uvicorn serve:app`) in
demo mode with the repository's own model, over a store that a run of the demo filled (the
sample patients scored as a batch, the review queue partly cleared).

    make screenshots                       # writes docs/screenshots/*.png
    .venv/bin/python tests/screenshots.py FOLDER

tests/test_screenshots.py runs it too, so the script keeps working as the pages change.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from browser_support import (  # noqa: E402 (the tests folder is put on the path first)
    REPO,
    launch,
    new_page,
    score_in_browser,
    sign_in,
    streamlit_server,
    wait_idle,
)

SHOTS = {"clinician": "clinician-result.png", "pi": "pi-monitoring.png"}
OUT = REPO / "docs" / "screenshots"
MODELS = REPO / "model_artifacts"  # the shipped model, as `make run` serves it
REVIEWED = 12  # review decisions recorded before the pictures are taken


def fill(db: Path) -> None:
    """The demo in use: every sample patient scored as a batch, some of the queue reviewed."""
    settings = {"APP_DB": str(db), "APP_DEMO": "1", "APP_MODELS": str(MODELS)}
    saved = {k: os.environ.get(k) for k in (*settings, "APP_PATIENT_KEY")}
    os.environ.update(settings)
    os.environ.pop("APP_PATIENT_KEY", None)
    try:
        from core import store as core_store
        from core.batch import score_batch
        from core.review import decide
        from core.review_queue import queue

        score_batch(REPO / "data" / "sample_patients.csv", db.parent / "scored.csv",
                    user="demo-clinician", progress=False)
        for i, item in enumerate(queue()[:REVIEWED]):
            agree = i % 3 != 0
            decision = ("agree" if agree else
                        "override_low" if item.risk_class == "high" else "override_high")
            decide({"prediction_id": item.prediction_id, "decision": decision,
                    "reason_code": "recent medication change",
                    "comment": "" if agree else "dose changed since the sample"},
                   user="demo-reviewer", display_name="Demo Reviewer")
        core_store.close_all()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def take(folder: Path) -> dict[str, Path]:
    """Take both screenshots into `folder`; their paths by whose they are."""
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    paths = {who: folder / name for who, name in SHOTS.items()}
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        db = Path(tmp) / "demo.duckdb"
        fill(db)
        with streamlit_server(db, APP_MODELS=str(MODELS)) as url, sync_playwright() as pw:
            browser = launch(pw)
            try:
                clinician = new_page(browser)
                sign_in(clinician, url, "demo-clinician", "demo-clinician-password")
                clinician.get_by_role("heading", name="Score a patient").wait_for(timeout=30_000)
                wait_idle(clinician)
                score_in_browser(clinician, "SYN-DEMO-1", "Auto-finalised",
                                 extra={"lvef": "30", "sbp": "118"})
                card = clinician.locator(".st-key-score_result_card")
                card.scroll_into_view_if_needed()
                card.screenshot(path=str(paths["clinician"]))
                pi = new_page(browser)
                sign_in(pi, url, "demo-pi", "demo-pi-password")
                pi.get_by_role("heading", name="Monitoring", exact=True).wait_for(timeout=30_000)
                wait_idle(pi, timeout=60_000)
                pi.wait_for_timeout(1500)  # the charts draw after the script has run
                pi.screenshot(path=str(paths["pi"]))
            finally:
                browser.close()
    return paths


if __name__ == "__main__":
    for who, path in take(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT).items():
        print(f"{who}: {path}")
