"""The API and the UI at once, in the one real server process (`uvicorn serve:app`): threads
scoring through the API while a clinician scores in headless Chromium. Afterwards the store holds
exactly what was sent: every API prediction and rejection under source "api", every form
prediction under "form", none lost or doubled, and the audit chain verifies."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import store_oracle as oracle
from browser_support import (
    BROWSER_MARKS,
    fill_form,
    launch,
    new_page,
    sign_in,
    streamlit_server,
    wait_idle,
)
from conftest import TYPICAL_PATIENT

from api import PREFIX
from core import clients
from core import store as core_store
from core.verification import verify_audit

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]
THREADS = 4
AT_LEAST = 5  # API calls each thread makes, however quick the browser is
AT_MOST = 400  # ... and at most (the browser sets the pace in between)
FORM_PATIENTS = 3
PAUSE_S = 0.02  # between one thread's calls: concurrent, without starving the browser's session
SLOW_MS = 90_000  # the server is busy with the API threads: the browser waits longer than usual


def _api_worker(url: str, token: str, n: int, stop: threading.Event, sent: dict, errors: list) -> None:
    """Score patients one by one until told to stop; every tenth is refused (an unknown field)."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{url}{PREFIX}", headers=headers, timeout=60) as http:
        i = 0
        while i < AT_MOST and (i < AT_LEAST or not stop.is_set()):
            ref = f"API-{n}-{i}"
            refused = i % 10 == 9
            payload = {**TYPICAL_PATIENT, "patient_ref": ref, **({"colour": "blue"} if refused else {})}
            try:
                response = http.post("/predictions", json=payload)
            except httpx.HTTPError as exc:
                errors.append(f"{ref}: {exc!r}")
                return
            expected = 422 if refused else 201
            if response.status_code != expected:
                errors.append(f"{ref}: {response.status_code} {response.text[:200]}")
                return
            if refused:
                sent["rejected"].append(ref)
            else:
                sent["scored"][response.json()["prediction_id"]] = ref
            i += 1
            time.sleep(PAUSE_S)


def _score_in_browser(page, ref: str) -> None:
    fill_form(page, ref)
    page.get_by_role("button", name="Score", exact=True).click()
    card = page.locator(".st-key-score_result_card")
    card.get_by_text(f"Result for {ref}").wait_for(timeout=SLOW_MS)
    wait_idle(page, timeout=SLOW_MS)
    assert "Risk:" in card.inner_text()


def test_api_threads_and_the_browser_at_once_record_exactly_what_was_sent(demo_app):
    db = demo_app / "app.duckdb"
    token = clients.add_client("ehr-feed", roles=["clinician"], by="admin")
    core_store.close_all()  # the server process opens the file itself
    from playwright.sync_api import sync_playwright

    sent = {"scored": {}, "rejected": []}
    errors: list[str] = []
    stop = threading.Event()
    with streamlit_server(db) as url:
        assert httpx.get(f"{url}{PREFIX}/health/ready", timeout=30).status_code == 200
        with sync_playwright() as pw:
            browser = launch(pw)
            try:
                page = new_page(browser)
                page.set_default_timeout(SLOW_MS)
                sign_in(page, url, "demo-clinician", "demo-clinician-password")
                page.get_by_role("heading", name="Score a patient").wait_for()
                wait_idle(page, timeout=SLOW_MS)
                workers = [threading.Thread(target=_api_worker, args=(url, token, n, stop, sent, errors))
                           for n in range(THREADS)]
                for w in workers:
                    w.start()
                started = time.monotonic()
                for i in range(FORM_PATIENTS):
                    _score_in_browser(page, f"UI-{i}")
                busy = time.monotonic() - started
            finally:
                stop.set()
                browser.close()
        for w in workers:
            w.join(timeout=120)
        assert not any(w.is_alive() for w in workers)
        assert errors == []
        # the API kept scoring while the browser did: each thread was still going at the end
        assert len(sent["scored"]) + len(sent["rejected"]) >= THREADS * AT_LEAST, busy

    store = core_store.open_store(db)
    try:
        by_source = dict(oracle.sql(store, "SELECT source, count(*) FROM predictions GROUP BY source"))
        assert by_source == {"api": len(sent["scored"]), "form": FORM_PATIENTS}
        rejected = dict(oracle.sql(store, "SELECT source, count(*) FROM rejected_inputs GROUP BY source"))
        assert rejected == {"api": len(sent["rejected"])}
        api_rows = oracle.frame(store, "SELECT p.prediction_id, p.user_name, phi.patient_ref FROM "
                                       "predictions p JOIN phi_inputs phi USING (prediction_id) "
                                       "WHERE p.source = 'api'")
        assert dict(zip(api_rows["prediction_id"], api_rows["patient_ref"], strict=True)) == sent["scored"]
        assert set(api_rows["user_name"]) == {"client:ehr-feed"}
        form = oracle.sql(store, "SELECT p.user_name, phi.patient_ref FROM predictions p JOIN "
                                 "phi_inputs phi USING (prediction_id) WHERE p.source = 'form' ORDER BY 2")
        assert form == [("demo-clinician", f"UI-{i}") for i in range(FORM_PATIENTS)]
        problems, (seq, _) = verify_audit(store)
        assert problems == []
        assert seq == store.count("audit_log")
    finally:
        core_store.close_all()
