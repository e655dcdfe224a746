"""Local accounts and access events: argon2id passwords, roles, lockout, demo accounts.

Accounts live in the store as append-only user events (created / disabled / password_set); the
latest row per user is its current state. Every sign-in success and failure, sign-out, lockout
and access denial is an access event, so it enters the audit chain with the user and the time.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from core import audit, lockout
from core.config import ROLES, get_settings
from core.errors import AccountLocked, SignInFailed, UserError
from core.store import Event, Store, open_store
from core.store.records import AccessEvent, UserEvent
from core.text import clean_text

ROLE_LABELS = {"clinician": "Clinician", "reviewer": "Reviewer", "pi": "Principal investigator",
               "admin": "Administrator"}
MIN_PASSWORD_LENGTH = 12
# No "@" (a single sign-on user is known by their email) and no ":" (nor by "sso:" and a subject):
# a local account can never share an identity, and so a history, with a single sign-on one.
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
# Demo mode only: one account per role, passwords documented in the README as demo-only.
DEMO_PREFIX = "demo-"  # demo account names; outside demo mode no account may take one
DEMO_ACCOUNTS = {f"{DEMO_PREFIX}{role}": (role, f"Demo {ROLE_LABELS[role].lower()}", f"demo-{role}-password")
                 for role in ROLES}
ANONYMOUS = "(anonymous)"  # who a refusal names when nobody is signed in
ACCESS_ACTIONS = ("sign_in", "sign_in_failed", "sign_in_refused_locked", "locked", "unlocked",
                  "sign_out", "idle_sign_out", "session_ended", "access_denied",
                  # the REST API: a refused bearer token, a throttled address, a read of patient data
                  "api_token_refused", "api_throttled", "api_read",
                  # a command run through the running service's admin socket (core.admin_channel)
                  "admin_command")

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@dataclass(frozen=True)
class User:
    """A signed-in user, as the app keeps it in the session."""

    username: str
    display_name: str
    roles: tuple[str, ...]

    def has(self, role: str) -> bool:
        return role in self.roles


def now_utc() -> datetime:
    """UTC now, naive, to the second (as core.scoring stamps predictions)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the user is unknown, so a wrong name costs as long as a wrong password.
    return _hasher.hash("not-a-real-password-only-for-timing")


def _store() -> Store:
    return open_store(get_settings().db)


# ---- account changes -----------------------------------------------------------------------


def add_user(username: str, *, roles: list[str], password: str, display_name: str = "",
             by: str) -> None:
    """Create an account (refused if the name exists, a role is unknown or the password is weak)."""
    username = (username or "").strip().lower()
    if not USERNAME_PATTERN.match(username):
        raise UserError("a username is 2-64 characters: lower-case letters, digits and . _ - "
                        "(no @: an email is a single sign-on identity)")
    if username.startswith(DEMO_PREFIX) and not get_settings().demo:
        raise UserError(f"names starting with '{DEMO_PREFIX}' are reserved for demo accounts")
    roles = sorted(set(roles or []))
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        raise UserError(f"roles must be one or more of {', '.join(ROLES)}"
                        + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    try:
        display_name = clean_text(display_name or "", max_length=200) or username
    except ValueError as exc:
        raise UserError(f"the printed name {exc}") from None
    store = _store()
    if store.user(username):
        raise UserError(f"user {username} already exists")
    _change(store, username, action="created", display_name=display_name,
            roles=roles, active=True, password_hash=_hasher.hash(password), by=by)


def disable_user(username: str, *, by: str) -> None:
    """Disable an account: it can no longer sign in. The history keeps every change."""
    store = _store()
    current = store.user(username)
    if not current:
        raise UserError(f"no user {username}")
    if username == by:
        raise UserError("you cannot disable your own account")
    _change(store, username, action="disabled", display_name=current["display_name"],
            roles=json.loads(current["roles_json"]), active=False,
            password_hash=current["password_hash"], by=by)


def list_users() -> pd.DataFrame:
    """Current state of every account (no password hashes)."""
    return _store().users()


def ensure_demo_accounts() -> list[str]:
    """In demo mode only, create any missing demo account; return the names created."""
    if not get_settings().demo:
        return []
    store = _store()
    created = []
    for username, (role, name, password) in DEMO_ACCOUNTS.items():
        if store.user(username) is None:
            add_user(username, roles=[role], password=password, display_name=name, by="demo-setup")
            created.append(username)
    return created


def _change(store: Store, username: str, *, action: str, display_name: str, roles: list[str],
            active: bool, password_hash: str, by: str) -> None:
    at = now_utc()
    record = UserEvent(event_id=str(uuid.uuid4()), created_at=at, user_name=by, username=username,
                       action=action, display_name=display_name, roles_json=json.dumps(roles),
                       active=active, password_hash=password_hash)
    store.append([Event(f"user_{action}", by, at, username, record)])


# ---- signing in and out --------------------------------------------------------------------


def sign_in(username: str, password: str, *, source: str = lockout.LOCAL) -> User:
    """Check a password; record the outcome. SignInFailed / AccountLocked on refusal.

    `source`: where the attempt comes from (the client's address): lockout is per account and
    source. A name that is not an account is recorded only as a keyed pseudonym: what people type
    into the username box is sometimes a patient's number."""
    settings = get_settings()
    store = _store()
    typed = (username or "").strip().lower()[:64]
    current = store.user(typed) if typed else None
    who = typed if current else unknown_name(typed)
    now = now_utc()
    if lockout.is_locked(store, who, source, now):
        record_access(who, "sign_in_refused_locked", "account locked", source=source)
        raise AccountLocked(f"too many failed sign-ins: try again in {settings.lockout_minutes:g} "
                            "minutes or ask an administrator")
    try:
        _hasher.verify(current["password_hash"] if current else _dummy_hash(), password or "")
        ok = current is not None and bool(current["active"])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok:
        why = "unknown user" if current is None else ("disabled" if not current["active"]
                                                       else "wrong password")
        record_access(who, "sign_in_failed", why, source=source)
        if lockout.failures(store, who, source, now) >= settings.lockout_failures:
            record_access(who, "locked", f"{settings.lockout_failures} failed sign-ins; locked for "
                          f"{settings.lockout_minutes:g} minutes", source=source)
            raise AccountLocked(f"too many failed sign-ins: the account is locked for "
                                f"{settings.lockout_minutes:g} minutes")
        raise SignInFailed("wrong username or password, or the account is disabled")
    record_access(who, "sign_in", "password", source=source)
    return User(who, current["display_name"], tuple(json.loads(current["roles_json"])))


def unknown_name(typed: str) -> str:
    """How a typed name that is no account is recorded: a keyed pseudonym, never the text."""
    if not typed:
        return "(blank)"
    key = get_settings().patient_key_bytes()
    return f"(unknown user {audit.patient_key('username:' + typed, key)[:16]})"


def is_locked(username: str, source: str = lockout.LOCAL) -> bool:
    """True while this account is locked for sign-ins from `source`."""
    return lockout.is_locked(_store(), username, source, now_utc())


def unlock_user(username: str, *, by: str) -> None:
    """Lift every lockout of an account at once (an administrator's action, recorded)."""
    username = (username or "").strip().lower()
    if not _store().user(username):
        raise UserError(f"no user {username}")
    record_access(username, "unlocked", f"by {by}")


def record_access(username: str, action: str, detail: str = "", *, source: str = "") -> None:
    """Record one access event (sign-in, sign-out, denial...) in the audit chain."""
    if action not in ACCESS_ACTIONS:
        raise ValueError(f"unknown access action {action}")
    at = now_utc()
    record = AccessEvent(event_id=str(uuid.uuid4()), created_at=at, user_name=username,
                         action=action, detail=detail, source=source)
    _store().append([Event(f"access_{action}", username, at, username, record)])

