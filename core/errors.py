"""Every exception that core raises to its callers (pages, CLI, tests, the API): one module, so a
caller can see all it may have to handle; and the one shape of a field error they carry
(`Problem`, made only by `problem()`)."""

from __future__ import annotations

from collections.abc import Mapping
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


# A message that goes on from the field's name ("is required", "must be a number"); any other
# is a sentence of its own, shown after the field's name and a colon.
_PREDICATES = ("is ", "are ", "must ", "may ", "can ", "cannot ", "has ", "needs ", "should ")
_WHOLE = ("(form)", "(payload)", "(row)", "(more)", "(feedback)")  # no field: the input as a whole


def field_sentence(label: str, message: str) -> str:
    """One problem as a sentence a person reads, naming its field in words:
    ("Age", "is required") -> "Age is required."; ("", ...) for the form as a whole."""
    message = message.strip().rstrip(".")
    if not label:
        text = message
    elif message.startswith(_PREDICATES):
        text = f"{label} {message}"
    else:
        text = f"{label}: {message}"
    return text[:1].upper() + text[1:] + "."


def plain_message(err: Mapping[str, Any]) -> str:
    """A pydantic error (of a form model: a review, an outcome, CDS feedback) in plain words,
    never the validator's own text; the messages of the model's own validators are kept."""
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    # A null is refused only where a value is required (an optional field accepts it)
    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length") == 1) or (
            "input" in err and err["input"] is None and not kind.startswith("value_error")):
        return "is required"
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_type":
        return "must be text"
    if kind == "string_pattern_mismatch":
        return "contains characters that are not allowed"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        return "must be a whole number" if kind == "int_from_float" else "must be a number"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}"
    if kind in ("bool_parsing", "bool_type"):
        return "must be yes or no"
    if kind in ("literal_error", "enum"):
        return "must be one of: " + str(ctx.get("expected", "the listed options")).replace("'", "")
    if kind.startswith(("date_", "datetime_")):
        return "must be a date (YYYY-MM-DD)"
    if kind == "extra_forbidden":
        return "is not a field of this form (unknown field)"
    if kind in ("value_error", "assertion_error"):
        return str(err.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return "is not a valid value"


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


class AlertNotDelivered(CoreError):
    """An alert did not reach its channel (the SMTP relay or the webhook refused it or could not
    be reached): recorded as failed, with this message, and tried again at the next check. The
    message never holds a password or the webhook's address."""


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
        return cls([problem(str(e["loc"][0]) if e["loc"] else "(form)", plain_message(e), e.get("input"))
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

    def sentences(self, labels: Mapping[str, str]) -> dict[str, list[str]]:
        """by_field() for people: each message a sentence naming its field by its label in
        `labels` (a field of no label by its name; the input as a whole by none)."""
        return {field: [field_sentence("" if field in _WHOLE else labels.get(field, f"'{field}'"), m)
                        for m in messages] for field, messages in self.by_field().items()}


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


class AlreadySeeded(CoreError):
    """The store holds predictions or a seeded demo history: it is never seeded (again)."""


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
