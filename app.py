"""Entry point and router: sign in first, then only the pages of the signed-in user's roles.

Pages not handed to st.navigation cannot be opened by URL, and every page re-checks the role
itself as well, so a deep link to another role's page shows nothing of it.
"""

import time
from collections.abc import Mapping

import streamlit as st

from core import auth, scoring, sso
from core.config import get_settings
from core.errors import CoreError
from core.maintenance import record_configuration
from core.store import open_store

st.set_page_config(page_title=scoring.serving_title(), layout="wide")

# role -> its pages as (page file, title, icon), in the order the sidebar shows them; a page
# listed under several roles is offered once
PAGES = {
    "clinician": [("pages/score.py", "Score a patient", ":material/calculate:"),
                  ("pages/outcomes.py", "Outcomes", ":material/event_available:")],
    "reviewer": [("pages/review_queue.py", "Review queue", ":material/fact_check:")],
    "pi": [("pages/monitoring.py", "Monitoring", ":material/monitoring:"),
           ("pages/governance.py", "Governance", ":material/gavel:")],
    "admin": [("pages/admin.py", "Admin", ":material/admin_panel_settings:"),
              ("pages/governance.py", "Governance", ":material/gavel:")],
}
DEMO_BANNER = "DEMO - synthetic model, not for clinical use"


def _sso_providers() -> list[tuple[str | None, str]]:
    """(name for st.login, button label) of each identity provider in the [auth] secrets section."""
    try:
        section = st.secrets["auth"] if "auth" in st.secrets else None
    except FileNotFoundError:  # no secrets file: single sign-on is not configured
        return []
    if not isinstance(section, Mapping):
        return []
    providers: list[tuple[str | None, str]] = [(None, "single sign-on")] if "client_id" in section else []
    return providers + [(name, name.replace("-", " ").title()) for name, value in section.items()
                        if isinstance(value, Mapping) and "client_id" in value]


def _sso_sign_in() -> auth.User | None:
    """The user an identity-provider sign-in (st.user) carries, once per session; None if refused."""
    if not st.user.get("is_logged_in"):
        return None
    claims = st.user.to_dict()
    identity = f"{claims.get('iss')} {claims.get('sub')}"
    if st.session_state.get("app_sso_refused_for") == identity:
        return None  # refused (and recorded) already in this session
    try:
        user = sso.sign_in(claims, settings)
    except sso.SignInExpired:
        st.session_state["app_notice"] = "Your single sign-on has expired. Please sign in again."
        return None
    except sso.NoRole as exc:
        st.session_state["app_sso_refused"] = f"Access refused: {exc}. Ask an administrator for a role."
        st.session_state["app_sso_refused_for"] = identity
        return None
    st.session_state.update(user=user, app_sso=True, app_last_seen=time.time())
    return user


def _sign_in_page() -> None:
    st.title("Sign in")
    notice = st.session_state.pop("app_notice", None)
    if notice:
        st.info(notice)
    refused = st.session_state.get("app_sso_refused")
    if refused and st.user.get("is_logged_in"):
        st.error(refused)
        if st.button("Sign out of single sign-on", key="signin_sso_sign_out"):
            st.logout()
    providers = _sso_providers()
    for provider, label in providers:
        if st.button(f"Sign in with {label}", key=f"signin_sso_{provider or 'default'}", type="primary"):
            st.login(provider)
    if not settings.local_accounts:
        if not providers:
            st.error("No way to sign in is configured: local accounts are switched off "
                     "(APP_LOCAL_ACCOUNTS) and no identity provider is set up.")
        return
    with st.form("signin_form"):
        username = st.text_input("Username", key="signin_username")
        password = st.text_input("Password", type="password", key="signin_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if settings.demo:
        st.caption("Demo accounts (demo only): "
                   + ", ".join(f"`{name}` / `{pw}`" for name, (_, _, pw) in auth.DEMO_ACCOUNTS.items()))
    if not submitted:
        return
    try:
        user = auth.sign_in(username, password)
    except auth.AccountLocked as exc:
        st.error(f"Account locked: {exc}.")
        return
    except auth.SignInFailed:
        st.error("Wrong username or password, or the account is disabled.")
        return
    st.session_state["user"] = user
    st.session_state["app_last_seen"] = time.time()
    st.rerun()


def _sign_out(user: auth.User, action: str, notice: str) -> None:
    via_sso = st.session_state.get("app_sso", False)
    auth.record_access(user.username, action, sso.SSO_DETAIL if via_sso else "")
    st.session_state.clear()
    st.session_state["app_notice"] = notice
    if via_sso:
        st.logout()  # drops the identity cookie too, else the next run would sign the user in again


settings = get_settings()
if settings.demo:
    st.warning(DEMO_BANNER, icon=":material/science:")
try:
    auth.ensure_demo_accounts()
    record_configuration(open_store(settings.db), settings, by="app")
    user = st.session_state.get("user") or _sso_sign_in()
    idle_limit = settings.idle_timeout_minutes * 60
    if user is not None and time.time() - st.session_state.get("app_last_seen", 0) > idle_limit:
        _sign_out(user, "idle_sign_out", f"You were signed out after {settings.idle_timeout_minutes:g} "
                  "minutes without activity. Please sign in again.")
        user = None
except CoreError as exc:
    st.error(f"The service cannot start: {exc}")
    st.stop()

if user is None:
    st.navigation([st.Page(_sign_in_page, title="Sign in", icon=":material/login:")]).run()
    st.stop()

st.session_state["app_last_seen"] = time.time()
with st.sidebar:
    st.markdown(f"Signed in as **{user.display_name}** (`{user.username}`)")
    st.caption(", ".join(auth.ROLE_LABELS[r] for r in user.roles))
    if st.button("Sign out", key="app_sign_out"):
        _sign_out(user, "sign_out", "You are signed out.")
        st.rerun()

offered = {path: (title, icon) for role, role_pages in PAGES.items() if user.has(role)
           for path, title, icon in role_pages}
offered["pages/model_card.py"] = ("Model card", ":material/description:")  # every role
st.navigation([st.Page(path, title=title, icon=icon) for path, (title, icon) in offered.items()]).run()
