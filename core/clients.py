"""API clients: the systems that call the REST API (an EHR, a lab system, a batch job).

A client has a name, roles from the same table as people (core.access) and one bearer token,
shown once when the client is added; the store keeps only the token's sha256 (a token is 256
random bits, so a fast hash is enough: no one can guess one to match). Adding and revoking are
append-only client events in the audit chain. A client acts in the records as
"client:<name>", which no local account or single sign-on identity can be (core.auth).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass

from core.auth import USERNAME_PATTERN, checked_roles, now_utc
from core.config import get_settings
from core.errors import UserError
from core.store import Event, Store, open_store
from core.store.records import ClientEvent

PRINCIPAL_PREFIX = "client:"
TOKEN_PREFIX = "crs_"  # makes a leaked token easy to recognise (and to scan for)


@dataclass(frozen=True)
class ApiClient:
    """An authenticated API client."""

    name: str
    roles: tuple[str, ...]

    @property
    def principal(self) -> str:
        """How this client is named in every record it causes."""
        return PRINCIPAL_PREFIX + self.name

    @property
    def username(self) -> str:  # as core.access records a refusal
        return self.principal


@dataclass(frozen=True)
class ClientState:
    """One client as `clients list` shows it (never its token or the token's hash)."""

    name: str
    roles: tuple[str, ...]
    active: bool
    last_change: str
    changed_at: str
    changed_by: str


def _store() -> Store:
    return open_store(get_settings().db)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def add_client(name: str, *, roles: list[str], by: str) -> str:
    """Create a client and return its token (the only time it exists outside the caller)."""
    name = (name or "").strip().lower()
    if not USERNAME_PATTERN.match(name):
        raise UserError("a client name is 2-64 characters: lower-case letters, digits and . _ -")
    roles = checked_roles(roles)
    store = _store()
    if store.client(name):
        raise UserError(f"client {name} already exists (revoked clients keep their name)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    _change(store, name, action="created", roles=roles, active=True, token_sha256=token_hash(token),
            by=by)
    return token


def revoke_client(name: str, *, by: str) -> None:
    """Revoke a client's token: its next call is refused. The history keeps every change."""
    store = _store()
    current = store.client((name or "").strip().lower())
    if not current:
        raise UserError(f"no client {name}")
    if not current["active"]:
        raise UserError(f"client {name} is already revoked")
    _change(store, current["client_name"], action="revoked", roles=json.loads(current["roles_json"]),
            active=False, token_sha256=current["token_sha256"], by=by)
    _cache.clear()


def list_clients(store: Store | None = None) -> list[ClientState]:
    return [ClientState(name=c["client_name"], roles=tuple(json.loads(c["roles_json"])),
                        active=bool(c["active"]), last_change=c["last_change"],
                        changed_at=str(c["changed_at"]), changed_by=c["changed_by"])
            for c in (store or _store()).clients()]


def _change(store: Store, name: str, *, action: str, roles: list[str], active: bool,
            token_sha256: str, by: str) -> None:
    at = now_utc()
    record = ClientEvent(event_id=str(uuid.uuid4()), created_at=at, user_name=by, client_name=name,
                         action=action, roles_json=json.dumps(roles), active=active,
                         token_sha256=token_sha256)
    store.append([Event(f"client_{action}", by, at, PRINCIPAL_PREFIX + name, record)])


# A verified token is trusted for at most this long before the store is asked again, so a
# revocation made by another process takes effect within it (one made here: at once).
CACHE_TTL_S = 1.0
_cache: dict[str, tuple[float, ApiClient]] = {}


def authenticate(token: str) -> ApiClient | None:
    """The active client this bearer token belongs to, or None (unknown, revoked, replaced)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = token_hash(token)
    hit = _cache.get(digest)
    if hit and time.monotonic() - hit[0] < CACHE_TTL_S:
        return hit[1]
    current = _store().client_for_token(digest)
    if not current or not current["active"] or current["token_sha256"] != digest:
        _cache.pop(digest, None)
        return None
    client = ApiClient(current["client_name"], tuple(json.loads(current["roles_json"])))
    _cache[digest] = (time.monotonic(), client)
    return client


class FailureThrottle:
    """Slows a flood of refused tokens: after `limit` refusals from one address within
    `window_s` seconds, that address is refused outright (429) until the window has passed."""

    def __init__(self, limit: int = 20, window_s: float = 60.0):
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, list[float]] = {}
        self._reported: dict[str, float] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(address, []) if now - t < self.window_s]
        if times:
            self._failures[address] = times
        else:
            self._failures.pop(address, None)
        return times

    def retry_after(self, address: str) -> int:
        """Seconds until this address may try again (0: it may now)."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(address, now)
            if len(times) < self.limit:
                return 0
            return max(1, int(self.window_s - (now - times[-self.limit])) + 1)

    def first_refusal(self, address: str) -> bool:
        """True once per window for a throttled address: record the throttling, not each call."""
        now = time.monotonic()
        with self._lock:
            if now - self._reported.get(address, -self.window_s) < self.window_s:
                return False
            self._reported[address] = now
            if len(self._reported) > 10_000:
                self._reported = {a: t for a, t in self._reported.items() if now - t < self.window_s}
            return True

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(address, now)
            self._failures.setdefault(address, []).append(now)
            if len(self._failures) > 10_000:  # many addresses: forget the oldest
                oldest = min(self._failures, key=lambda a: self._failures[a][-1])
                self._failures.pop(oldest)
