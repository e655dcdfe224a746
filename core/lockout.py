"""Lockout after repeated failed sign-ins, per account AND source (the client's address).

Per source, so a stranger who types wrong passwords for the admin's name locks out only their
own address, never the admin at the ward PC. A lockout ends when its window has passed, or
earlier when an administrator unlocks the account (recorded). Counting starts again after a
successful sign-in, a lockout or an unlock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.config import get_settings
from core.store import Store

LOCAL = "local"  # the source of a sign-in with no client address (a command, localhost)


def _window() -> timedelta:
    return timedelta(minutes=get_settings().lockout_minutes)


def _latest(store: Store, username: str, actions: tuple[tuple[str, str | None], ...]) -> datetime | None:
    found = [store.last_access(username=username, action=a, source=s) for a, s in actions]
    found = [f for f in found if f is not None]
    return max(found) if found else None


def is_locked(store: Store, username: str, source: str, now: datetime) -> bool:
    """True while a lockout of this account from this source has neither expired nor been lifted."""
    locked = store.last_access(username=username, action="locked", source=source)
    if locked is None or now >= locked + _window():
        return False
    unlocked = store.last_access(username=username, action="unlocked")
    return unlocked is None or unlocked < locked


def failures(store: Store, username: str, source: str, now: datetime) -> int:
    """Failed sign-ins from this source inside the window, none from before the last success
    (from anywhere), the last lockout from this source, or the last unlock."""
    since = now - _window()
    reset = _latest(store, username, (("sign_in", None), ("locked", source), ("unlocked", None)))
    if reset is not None and reset >= since:
        since = reset + timedelta(microseconds=1)
    return store.count_access(username=username, action="sign_in_failed", since=since, source=source)
