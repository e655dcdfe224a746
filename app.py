"""Entry point and router: sign in first, then only the pages of the signed-in user's roles.

Pages not handed to st.navigation cannot be opened by URL, and every page re-checks the role
itself as well, so a deep link to another role's page shows nothing of it.
"""

import time

import streamlit as st

from core import auth
from core.config import get_settings
from core.errors import CoreError

st.set_page_config(page_title="Hyperkalaemia risk", layout="wide")

# role -> (page file, title, icon), in the order the sidebar shows them
PAGES = {
    "clinician": ("pages/score.py", "Score a patient", ":material/calculate:"),
    "reviewer": ("pages/review_queue.py", "Review queue", ":material/fact_check:"),
    "pi": ("pages/monitoring.py", "Monitoring", ":material/monitoring:"),
    "admin": ("pages/admin.py", "Admin", ":material/admin_panel_settings:"),
}
DEMO_BANNER = "DEMO - synthetic model, not for clinical use"


def _sign_in_page() -> None:
    st.title("Sign in")
    notice = st.session_state.pop("app_notice", None)
    if notice:
        st.info(notice)
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
    auth.record_access(user.username, action)
    st.session_state.clear()
    st.session_state["app_notice"] = notice


settings = get_settings()
if settings.demo:
    st.warning(DEMO_BANNER, icon=":material/science:")
try:
    auth.ensure_demo_accounts()
    user = st.session_state.get("user")
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

pages = [st.Page(path, title=title, icon=icon)
         for role, (path, title, icon) in PAGES.items() if user.has(role)]
st.navigation(pages).run()
