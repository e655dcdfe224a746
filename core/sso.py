"""Single sign-on: turn an identity provider's claims into a User, or refuse.

The identity provider (OpenID Connect) says who someone is; this module says what they may do.
Roles come from a claim of the identity token (`APP_SSO_ROLE_CLAIM`, e.g. "roles" or "groups",
whose values name roles) and from a configured email-to-role list (`APP_SSO_EMAIL_ROLES`); a
person holds the union of both. Someone with no role is refused, and the refusal is recorded as
an access denial. Sign-ins and refusals go through `core.auth.record_access`, so they enter the
audit chain like local sign-ins.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from core import auth
from core.auth import User
from core.config import Settings, get_settings
from core.errors import NoRole, SignInExpired

SSO_DETAIL = "single sign-on"
NO_ROLE = "no role for this account"


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _email(claims: Mapping[str, Any]) -> str:
    """The email claim, lower-case; empty when absent or marked unverified by the provider."""
    email = claims.get("email")
    if not isinstance(email, str) or claims.get("email_verified") is False:
        return ""
    return email.strip().lower()


def roles_from_claims(claims: Mapping[str, Any], settings: Settings) -> tuple[str, ...]:
    """Roles from the role claim and from the email list, in ROLES order; unknown names ignored."""
    found: set[str] = set()
    if settings.sso_role_claim:
        value = _claim(claims, settings.sso_role_claim)
        names = re.split(r"[\s,]+", value) if isinstance(value, str) else value
        if isinstance(names, list | tuple):
            found |= {n.strip().lower() for n in names if isinstance(n, str)}
    email = _email(claims)
    if email:
        found |= set(settings.sso_email_roles.get(email, []))
    return tuple(r for r in auth.ROLES if r in found)


SUBJECT_PREFIX = "sso:"  # ':' is never in a local username, so a subject cannot pass for one


def _username(claims: Mapping[str, Any]) -> str:
    """The verified email, else the provider's subject marked as such; empty when neither."""
    subject = str(claims.get("sub") or "").strip()
    return _email(claims) or (SUBJECT_PREFIX + subject if subject else "")


def user_from_claims(claims: Mapping[str, Any], settings: Settings | None = None) -> User:
    """The User for these claims (username: email, else 'sso:' and the subject), or NoRole."""
    settings = settings or get_settings()
    username = _username(claims)
    if not username:
        raise NoRole("the identity provider sent neither an email nor a subject")
    roles = roles_from_claims(claims, settings)
    if not roles:
        raise NoRole(NO_ROLE, username)
    name = claims.get("name")
    return User(username, name.strip() if isinstance(name, str) and name.strip() else username, roles)


def sign_in(claims: Mapping[str, Any], settings: Settings | None = None, *,
            now: float | None = None, source: str = "") -> User:
    """Map the claims to a User and record the sign-in; on refusal record an access denial.

    SignInExpired (nothing recorded) when the identity token has expired: the browser still holds
    an old sign-in, and a new session must not start from it without the provider."""
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires <= (time.time() if now is None else now):
        raise SignInExpired("the single sign-on has expired")
    try:
        user = user_from_claims(claims, settings)
    except NoRole as exc:
        who = _username(claims) or "(unknown)"
        auth.record_access(who, "access_denied", f"{SSO_DETAIL}: {exc.reason}", source=source)
        raise
    auth.record_access(user.username, "sign_in", f"{SSO_DETAIL} ({', '.join(user.roles)})",
                       source=source)
    return user

