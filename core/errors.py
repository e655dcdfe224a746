"""Every exception that core raises to its callers (pages, CLI, tests, the API): one module, so a
caller can see all it may have to handle; and the one shape of a field error they carry
(`Problem`, made only by `problem()`)."""

from __future__ import annotations

from typing import Any, TypedDict

MAX_ECHO = 80  # characters of a rejected value (or field name) echoed back in an error


class Problem(TypedDict):
    """One entry of InvalidInput.errors, JSON-ready: the field, what is wrong, the value received."""

    field: str
    message: str
    value: str


def safe_repr(value: Any) -> str:
    """A short repr that never raises (huge integers, deep nesting, odd objects)."""
    if isinstance(value, str):
        value = value[:MAX_ECHO]  # repr of a huge string costs time and memory for nothing
    try:
        shown = repr(value)
    except (ValueError, RecursionError, TypeError, AttributeError):
        shown = f"<{type(value).__name__}>"
    return _short(shown)


def _short(text: str) -> str:
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


def problem(field: str, message: str, value: Any, *, shown: str | None = None) -> Problem:
    """The one constructor of a Problem. The value is echoed as a short safe repr, or as `shown`
    when the caller has a better text for it (a date, "(not shown)" for a secret), also kept
    short; the field name is kept short and printable too, as a sender may have typed it."""
    field = str(field).encode("utf-8", "backslashreplace").decode("utf-8")[:MAX_ECHO]
    return Problem(field=field, message=message,
                   value=safe_repr(value) if shown is None else _short(str(shown)))


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


class BucketUnavailable(ArtefactMismatch):
    """The object store holding the model versions (APP_MODELS=s3://...) cannot be used: no such
    bucket, access denied, credentials missing or rejected, or the endpoint unreachable. The
    message names the bucket or key; never a credential."""


class NotCompiled(CoreError):
    """Inside core: a pipeline step, or an input value, that the compiled scoring path
    (core.compiled) does not handle; the model's own pipeline serves instead. Never raised to a
    caller."""


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
        return cls([problem(str(e["loc"][0]) if e["loc"] else "(form)",
                            e["msg"].removeprefix("Value error, "), e.get("input"))
                    for e in exc.errors()])

    MAX_PROBLEMS = 50  # listed and recorded; a hostile payload could otherwise name millions

    def __init__(self, errors: list[Problem]):
        if len(errors) > self.MAX_PROBLEMS:
            more = len(errors) - self.MAX_PROBLEMS + 1
            errors = [*errors[:self.MAX_PROBLEMS - 1],
                      problem("(more)", f"and {more} more problems", None, shown="")]
        self.errors = errors
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"invalid input: {summary}{more}")

    def by_field(self) -> dict[str, list[str]]:
        """The messages of each field, fields in the order they first appear."""
        grouped: dict[str, list[str]] = {}
        for e in self.errors:
            grouped.setdefault(e["field"], []).append(e["message"])
        return grouped


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


class AdminSocketRefused(CoreError):
    """The running service's admin socket is not open to this OS user (only to the service's own
    and root)."""
