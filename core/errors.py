"""Every exception that core raises to its callers (pages, CLI, tests, the API): one module, so a
caller can see all it may have to handle."""

from __future__ import annotations


class CoreError(Exception):
    """Base class: every error core raises on purpose."""


class ConfigError(CoreError):
    """A required setting is missing or unsafe."""


class SpecError(CoreError):
    """The feature spec is malformed (unknown field, bad limits, duplicate names)."""


class TrainingDataError(CoreError):
    """The training extract cannot be used (missing columns, wrong types, no events)."""


class ArtefactMismatch(CoreError):
    """A model artefact is missing, altered, or built with an incompatible library."""


class StoreUnavailable(CoreError):
    """The store cannot be opened or written; nothing was recorded."""


class StoreLocked(StoreUnavailable):
    """Another process (the running service, or a command) holds the store file."""


class RestoreRefused(CoreError):
    """A restore was refused before anything was changed; the message says why."""


class ProtectedPath(CoreError):
    """A command was asked to write over the store, its WAL, a backup or the model artefacts."""


class InvalidInput(CoreError):
    """The payload failed validation; `.errors` lists every problem at once."""

    @classmethod
    def from_pydantic(cls, exc) -> InvalidInput:
        """Translate a pydantic ValidationError of a form model (field, message, value)."""
        return cls([{"field": str(e["loc"][0]) if e["loc"] else "(form)",
                     "message": e["msg"].removeprefix("Value error, "),
                     "value": repr(e.get("input"))[:80]} for e in exc.errors()])

    MAX_PROBLEMS = 50  # listed and recorded; a hostile payload could otherwise name millions

    def __init__(self, errors: list[dict]):
        if len(errors) > self.MAX_PROBLEMS:
            more = len(errors) - self.MAX_PROBLEMS + 1
            errors = [*errors[:self.MAX_PROBLEMS - 1],
                      {"field": "(more)", "message": f"and {more} more problems", "value": ""}]
        self.errors = errors
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"invalid input: {summary}{more}")


class AlreadyDecided(CoreError):
    """Another reviewer decided this prediction first; `.decision` says who and when."""

    def __init__(self, decision: dict):
        self.decision = decision
        super().__init__(
            f"already decided by {decision['reviewer_name']} ({decision['user_name']}) at "
            f"{decision['created_at']:%Y-%m-%d %H:%M} UTC: {decision['decision'].replace('_', ' ')}"
        )


class NotFound(CoreError):
    """The record asked for does not exist."""


class AlreadyRecorded(CoreError):
    """An outcome is already in force for this prediction; correct it instead."""


class ScoringSuspended(CoreError):
    """Scoring is suspended by the stop switch; no prediction is made or shown."""


class BatchStopped(CoreError):
    """Ctrl-C or a stop signal ended a batch between two chunks; `.signum` names the signal."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}: the chunks committed before "
                         "it stay recorded (the audit trail shows them); no output was written")


class ModelImportError(CoreError):
    """A supplied model cannot be imported (not a classifier, wrong columns, bad probabilities)."""


class SignInFailed(CoreError):
    """Wrong username or password, or the account is disabled (deliberately not told apart)."""


class AccountLocked(SignInFailed):
    """Too many failed sign-ins: the account is locked for a while."""


class UserError(CoreError):
    """An account change was refused (unknown role, weak password, existing or unknown user)."""


class NoRole(SignInFailed):
    """The identity provider knows the person, but no role is mapped to them here."""

    def __init__(self, reason: str, who: str = "") -> None:
        super().__init__(f"{reason} ({who})" if who else reason)
        self.reason = reason


class SignInExpired(SignInFailed):
    """The identity token behind this sign-in has expired: sign in with the provider again."""
