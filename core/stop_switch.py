"""The stop switch: suspend or resume all scoring at once, with who and why (recorded).

While suspended no prediction is made, shown or returned. The prediction write re-reads the
switch inside its own transaction (core.scoring), so a score racing a suspension is either
recorded before it or refused; the pages read it within a second of a change elsewhere.
"""

from __future__ import annotations

import uuid

from core.clock import now_utc
from core.config import get_settings
from core.errors import ScoringSuspended
from core.store import Event, Store, open_store
from core.store.records import ServiceEvent
from core.text import actor, reason_text


def is_suspended(state: ServiceEvent | None) -> bool:
    """Whether a service state (Store.service_state()) has the stop switch on."""
    return state is not None and state.action == "suspend"


def check_not_suspended(store: Store, *, fresh: bool = False) -> None:
    """Raise ScoringSuspended while the stop switch is on (`fresh`: read it from the database
    now, not within its second of caching)."""
    state = store.service_state(fresh=fresh)
    if is_suspended(state):
        raise ScoringSuspended(f"the model is suspended since {state.created_at:%Y-%m-%d %H:%M} UTC "
                               f"by {state.user_name}: {state.reason}. No risk can be shown; use "
                               "usual clinical care.")


def set_suspended(suspended: bool, *, by: str, reason: str) -> None:
    """Suspend or resume scoring, with who and why (recorded)."""
    by = actor(by)
    reason = reason_text(reason, "suspending or resuming")
    at = now_utc()
    action = "suspend" if suspended else "resume"
    open_store(get_settings().db).append([Event(action, by, at, "scoring", ServiceEvent(
        event_id=str(uuid.uuid4()), created_at=at, user_name=by, action=action, reason=reason))])
