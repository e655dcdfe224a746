"""A monitored condition that may need a person's attention: what the monitoring page shows as a
warning and what an alert sends (core.alerts). A condition carries no patient data: counts,
shares, field names and model versions only, so its text may leave the institution's systems
(an e-mail, a chat webhook)."""

from __future__ import annotations

from dataclasses import dataclass

Kind = str  # "override", "queue_age", "drift", "stop_rule"


@dataclass(frozen=True)
class Condition:
    """One condition in force now. `key` names it stably while it lasts (for example
    "override:upgrade" or "drift:egfr"): an alert is sent once per key until the key clears."""

    key: str
    kind: Kind
    title: str  # one line, for a subject or a chat message's first line
    message: str  # plain sentences: what was seen, against which threshold, what to do

    def __post_init__(self) -> None:
        if not self.key or not self.title or not self.message:
            raise ValueError("a condition needs a key, a title and a message")
