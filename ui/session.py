"""The signed-in session in the UI: who is signed in, checked again on every interaction.

Streamlit runs a widget's callback before the page script, so a callback that records anything
(a review decision, a sign-off) asks `live_user()` first: an idle, disabled or changed account
is signed out there, and what the callback was asked to do is refused and recorded.
"""

from __future__ import annotations

import time

import streamlit as st

from core import access, auth, session, sso

DENIED = "You do not have access to this page."


def via_sso() -> bool:
    return bool(st.session_state.get("app_sso", False))


def source() -> str:
    """The client's address (lockout is per account and source)."""
    peer, forwarded = st.context.ip_address, st.context.headers.get("X-Forwarded-For")
    return session.client_source(peer if isinstance(peer, str) else None,
                                 forwarded if isinstance(forwarded, str) else None)


def sign_out(user: auth.User, action: str, notice: str, detail: str = "") -> None:
    """Record the end of the session, forget it, and leave a notice for the sign-in page."""
    sso_session = via_sso()
    auth.record_access(user.username, action,
                       "; ".join(d for d in (sso.SSO_DETAIL if sso_session else "", detail) if d),
                       source=source())
    st.session_state.clear()
    st.session_state["app_notice"] = notice
    if sso_session:
        st.logout()  # drops the identity cookie too, else the next run would sign the user in again


def live_user() -> auth.User | None:
    """The session's user if the session may go on now; else the session is ended (recorded)."""
    user = st.session_state.get("user")
    if user is None:
        return None
    idle = time.time() - st.session_state.get("app_last_seen", 0)
    claims = st.user.to_dict() if via_sso() else None
    ended = session.check(user, idle_seconds=idle, via_sso=via_sso(), claims=claims)
    if ended is not None:
        sign_out(user, ended.action, ended.notice, ended.detail)
        return None
    return user


def guard(action: str) -> auth.User:
    """A page's one-line guard: the signed-in user if they hold `action` (core.access); otherwise
    the refusal is recorded (naming the action), the page shows only that it is refused, and stops."""
    user = st.session_state.get("user")
    if not access.authorise(user, action, source=source()):
        st.error(DENIED)
        st.stop()
    return user


def acting_user(action: str) -> auth.User | None:
    """live_user() for a callback that is about to do `action` (core.access): None, recorded, if
    the session has ended or the user does not hold the action."""
    user = st.session_state.get("user")
    live = live_user()
    if live is not None and not access.authorise(live, action, how="in a form", source=source()):
        return None
    if live is None:
        auth.record_access(user.username if user else auth.ANONYMOUS, "access_denied",
                           f"action {action}: not done, the session had ended", source=source())
    return live


def touch() -> None:
    """An interaction: the idle timeout counts from now."""
    st.session_state["app_last_seen"] = time.time()
