"""Who may do what: one table of actions and the roles that hold them.

The app's navigation offers the pages of the actions a user holds, each page guards its action
in one line, each API route (and each API client's scope) names its action, and the tests read
the same table. A refusal is recorded with the action, not with a page's file name.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import auth
from core.config import ROLES

# action -> roles that hold it
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "score": ("clinician",),  # score a patient, see one's own recent predictions
    "record_outcome": ("clinician",),  # record or correct an outcome at the horizon
    "review": ("reviewer",),  # clear the review queue with signed decisions
    "monitor": ("pi",),  # the monitoring figures and alerts
    "govern": ("pi", "admin"),  # governance: the evaluator questions, sign-offs, the stop switch
    "administer": ("admin",),  # accounts, model activation, backups, audit verification
    "read_model_card": ROLES,  # every signed-in role (and the serving model's facts)
    "read_prediction": ("clinician", "reviewer", "pi"),  # a prediction's state, by its id (API)
}


@dataclass(frozen=True)
class Page:
    """A page of the app and the action it is for."""

    path: str
    title: str
    icon: str
    action: str


# In the order the sidebar shows them; a user sees the pages of the actions they hold.
PAGES = (
    Page("views/score.py", "Score a patient", ":material/calculate:", "score"),
    Page("views/outcomes.py", "Outcomes", ":material/event_available:", "record_outcome"),
    Page("views/review_queue.py", "Review queue", ":material/fact_check:", "review"),
    Page("views/monitoring.py", "Monitoring", ":material/monitoring:", "monitor"),
    Page("views/admin.py", "Admin", ":material/admin_panel_settings:", "administer"),
    Page("views/governance.py", "Governance", ":material/gavel:", "govern"),
    Page("views/model_card.py", "Model card", ":material/description:", "read_model_card"),
)


def may(roles: tuple[str, ...], action: str) -> bool:
    """Whether any of these roles holds the action (KeyError for an action not in the table)."""
    return any(role in CAPABILITIES[action] for role in roles)


def authorise(user: auth.User | None, action: str, *, how: str = "", source: str = "") -> bool:
    """True if the signed-in user holds the action; otherwise the refusal is recorded as an access
    denial naming the action (and `how` it was asked for, e.g. "by URL"); `user` None: nobody is
    signed in."""
    if user is not None and may(user.roles, action):
        return True
    detail = f"action {action}" + (f", {how}" if how else "")
    auth.record_access(user.username if user else auth.ANONYMOUS, "access_denied", detail, source=source)
    return False


def pages_for(roles: tuple[str, ...]) -> list[Page]:
    """The pages a user with these roles is offered, in sidebar order."""
    return [page for page in PAGES if may(roles, page.action)]


def actions_for(roles: tuple[str, ...]) -> list[str]:
    """Every action these roles hold (an API client's scopes, for instance)."""
    return [action for action in CAPABILITIES if may(roles, action)]
