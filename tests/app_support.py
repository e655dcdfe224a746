"""Helpers for the app tests (the `demo_app` fixture is in conftest): the store, signing in,
filling the form."""

from __future__ import annotations

from pathlib import Path

import store_oracle as oracle
from conftest import TYPICAL_PATIENT
from streamlit.testing.v1 import AppTest

from core import access, auth
from core import store as core_store
from core.config import get_settings
from ui import session as ui_session

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
# Every page of the app and the roles that hold its action, in sidebar order (core.access, the
# one table; a role lands on its first page).
PAGE_OWNERS = {page.path: access.CAPABILITIES[page.action] for page in access.PAGES}
PAGE_TITLE = {page.path: page.title for page in access.PAGES}
PAGE_ACTION = {page.path: page.action for page in access.PAGES}
DENIED = ui_session.DENIED
TIMEOUT = 30

# A typical patient as core.score takes it (tests change patient_ref and single values)
PATIENT = {**TYPICAL_PATIENT, "patient_ref": "P-1"}

# What the clinician enters in the form (widget key suffix -> value as the widget holds it)
FORM_VALUES = {"patient_ref": "TEST-0001", "age": 70, "sex": "male", "weight_kg": 78.0, "egfr": 58.0,
               "potassium": 4.4, "diabetes": "no", "raas_inhibitor": "acei",
               "spironolactone_dose_mg": 25.0, "nyha_class": "II", "lvef": 30.0, "sbp": 118.0,
               "loop_diuretic": "yes", "potassium_supplement": "no", "nsaid": "no"}


def store() -> core_store.Store:
    return core_store.open_store(get_settings().db)


def access_actions(username: str, *, db: Path | None = None,
                   detail: bool = False) -> list[str] | list[tuple[str, str]]:
    """A user's access events, oldest first: their actions, or (action, detail) pairs if `detail`.
    `db`: the store file to read (default: the one the settings name)."""
    events = oracle.rows(store() if db is None else core_store.open_store(db), "access_events",
                         user_name=username)
    if detail:
        return [tuple(row) for row in events[["action", "detail"]].values.tolist()]
    return events["action"].tolist()


def demo_password(username: str) -> str:
    return auth.DEMO_ACCOUNTS[username][2]


def start() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


def sign_in(at: AppTest, username: str, password: str | None = None) -> AppTest:
    at.text_input(key="signin_username").input(username)
    at.text_input(key="signin_password").input(password if password is not None
                                                else demo_password(username))
    return at.button(key="FormSubmitter:signin_form-Sign in").click().run()


def signed_in(role: str) -> AppTest:
    """A fresh session, signed in as the demo account of a role ('anonymous': not signed in)."""
    at = start()
    return at if role == "anonymous" else sign_in(at, f"demo-{role}")


def fill_form(at: AppTest, **overrides) -> AppTest:
    for name, value in {**FORM_VALUES, **overrides}.items():
        key = f"score_{name}"
        for kind in ("number_input", "selectbox", "radio", "text_input"):
            found = [w for w in getattr(at, kind) if w.key == key]
            if found:
                widget = found[0]
                (widget.input(value) if kind == "text_input" else widget.set_value(value))
                break
        else:
            raise KeyError(key)
    return at


def submit_score(at: AppTest) -> AppTest:
    return at.button(key="FormSubmitter:score_form-Score").click().run()


def texts(at: AppTest) -> str:
    """Everything the page shows as text (markdown, alerts, captions, titles, metrics)."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning",
                 "success", "info"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)
