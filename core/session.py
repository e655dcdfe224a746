"""Whether a signed-in session may go on, checked on every interaction before anything of it is
acted on: not idle past the timeout, the account still active, its roles unchanged.

A disabled account is signed out at its next interaction, and what that interaction asked for
(a form it submitted, a button) is not done. Roles are compared too: an administrator who takes
a role away takes it away now, not at the next sign-in.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core import lockout, sso
from core.auth import User
from core.config import Settings, get_settings
from core.store import open_store


@dataclass(frozen=True)
class SessionEnd:
    """Why a session ends now: the access event to record and what the person is told."""

    action: str  # "idle_sign_out" or "session_ended"
    detail: str
    notice: str


def check(user: User, *, idle_seconds: float, via_sso: bool,
          claims: Mapping[str, Any] | None = None, settings: Settings | None = None) -> SessionEnd | None:
    """None while the session may go on; else why it ends (nothing of it is to be acted on)."""
    settings = settings or get_settings()
    if idle_seconds > settings.idle_timeout_minutes * 60:
        return SessionEnd("idle_sign_out", "", f"You were signed out after "
                          f"{settings.idle_timeout_minutes:g} minutes without activity. Please "
                          "sign in again.")
    if via_sso:
        roles = sso.roles_from_claims(claims or {}, settings)
        if not roles:
            return SessionEnd("session_ended", f"{sso.SSO_DETAIL}: no role any more",
                              "Your account no longer has a role here. Ask an administrator.")
    else:
        current = open_store(settings.db).user(user.username)
        if current is None or not current["active"]:
            return SessionEnd("session_ended", "account disabled",
                              "Your account has been disabled. Ask an administrator.")
        roles = tuple(json.loads(current["roles_json"]))
    if tuple(sorted(roles)) != tuple(sorted(user.roles)):
        return SessionEnd("session_ended", "roles changed",
                          "Your roles have changed. Please sign in again.")
    return None


def client_source(peer: str | None, forwarded_for: str | None, settings: Settings | None = None) -> str:
    """The client's address for lockout: the connection's peer, or, when the peer is a trusted
    proxy (APP_TRUSTED_PROXIES), the address that proxy saw (the last X-Forwarded-For entry)."""
    settings = settings or get_settings()
    if not peer:
        return lockout.LOCAL
    if forwarded_for and _trusted(peer, settings.trusted_proxies):
        last = forwarded_for.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            return peer
    return peer


def is_trusted_proxy(peer: str, settings: Settings | None = None) -> bool:
    """Whether `peer` is the TLS proxy in front of the service (APP_TRUSTED_PROXIES), whose
    forwarded headers (the client's address, the scheme it called) are believed."""
    return _trusted(peer, (settings or get_settings()).trusted_proxies)


def _trusted(peer: str, networks: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)
