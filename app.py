"""Entry point and router: sign in first, then only the pages of the actions the signed-in
user's roles hold (core.access, the one table of who may do what).

Pages not handed to st.navigation cannot be opened by URL, and every page guards its action
itself as well, so a deep link to another role's page shows nothing of it.
"""

import time
from collections.abc import Mapping
from pathlib import Path

import streamlit as st

from core import access, auth, preflight, sso
from core.config import get_settings
from core.display import field_label
from core.errors import CoreError
from core.serving import serving_title
from core.text import md_text
from ui import session

st.set_page_config(page_title=serving_title(), layout="wide")

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
        user = sso.sign_in(claims, settings, source=session.source())
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
        username = st.text_input(field_label("Username", required=True), key="signin_username")
        password = st.text_input(field_label("Password", required=True), type="password",
                                 key="signin_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if settings.demo:
        st.caption("Demo accounts (demo only): "
                   + ", ".join(f"`{name}` / `{pw}`" for name, (_, _, pw) in auth.DEMO_ACCOUNTS.items()))
    if not submitted:
        return
    try:
        user = auth.sign_in(username, password, source=session.source())
    except auth.AccountLocked as exc:
        st.error(f"Account locked: {exc}.")
        return
    except auth.SignInFailed:
        st.error("Wrong username or password, or the account is disabled.")
        return
    st.session_state["user"] = user
    st.session_state["app_last_seen"] = time.time()
    st.rerun()


def _idle_watch(limit_s: float) -> None:
    """Clear the screen once the session is idle past its timeout, without waiting for a click:
    a fragment that reruns on a timer (a timer run is not an interaction) and, once the time is
    up, reruns the whole app, which signs the user out."""
    @st.fragment(run_every=max(1.0, min(30.0, limit_s / 10)))
    def watch() -> None:
        if time.time() - st.session_state.get("app_last_seen", time.time()) > limit_s:
            st.rerun(scope="app")

    watch()


def _page_by_url(user: auth.User | None) -> None:
    """Record a page asked for by URL whose action this user does not hold (once per session;
    `user` None: not signed in). st.navigation never runs such a page; without this the attempt
    would leave no trace."""
    asked = (st.context.url or "").rstrip("/").rsplit("/", 1)[-1]
    page = next((p for p in access.PAGES if Path(p.path).stem == asked), None)
    tried = st.session_state.setdefault("app_denied_urls", set())
    if page is None or asked in tried or (user is not None and access.may(user.roles, page.action)):
        return
    tried.add(asked)
    access.authorise(user, page.action, how=f"page {asked} by URL", source=session.source())

try:
    settings = get_settings()
    if settings.demo:
        st.warning(DEMO_BANNER, icon=":material/science:")
    refused = preflight.start(settings, by="app")
    if refused:
        st.error("The service cannot start:\n" + "\n".join(f"- {p}" for p in refused))
        st.stop()
    user = session.live_user() if "user" in st.session_state else _sso_sign_in()
except CoreError as exc:
    st.error(f"The service cannot start: {exc}")
    st.stop()



def _run(page) -> None:
    """Run the page under a browser title of its own (its name first, then the model's)."""
    st.set_page_config(page_title=f"{page.title} - {serving_title()}")
    page.run()


if user is None:
    _page_by_url(None)
    _run(st.navigation([st.Page(_sign_in_page, title="Sign in", icon=":material/login:")]))
    st.stop()

session.touch()
with st.sidebar:
    st.markdown(f"Signed in as **{md_text(user.display_name)}** (`{user.username}`)")
    st.caption(", ".join(auth.ROLE_LABELS[r] for r in user.roles))
    if st.button("Sign out", key="app_sign_out"):
        session.sign_out(user, "sign_out", "You are signed out.")
        st.rerun()
    _idle_watch(settings.idle_timeout_minutes * 60)

_page_by_url(user)
_run(st.navigation([st.Page(p.path, title=p.title, icon=p.icon) for p in access.pages_for(user.roles)]))
