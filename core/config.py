"""Settings and paths: one place, read when called, never at import time."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from core.errors import ConfigError

PROJ_ROOT = Path(__file__).resolve().parent.parent
DEMO_PATIENT_KEY = b"demo-only-key-synthetic-data-not-for-clinical-use"
ROLES = ("clinician", "reviewer", "pi", "admin")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's bucket naming rules
# An e-mail address as alerts are sent to it: local part @ a dotted domain, nothing around it
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?=.{1,253}$)[A-Za-z0-9]"
                      r"(?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                      r"[A-Za-z0-9])?)+$")
HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


class S3Location(BaseModel):
    """APP_MODELS=s3://bucket/prefix: model versions kept in an S3-compatible object store."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    prefix: str = ""  # without leading or trailing "/"; "" is the bucket's top level

    def key(self, name: str = "") -> str:
        """The object key of `name` under the prefix."""
        return "/".join(part for part in (self.prefix, name) if part)

    def uri(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.key(name)}".rstrip("/")

    def __str__(self) -> str:
        return self.uri()


def models_location(value: Any) -> Any:
    """A folder path, or an s3:// address (checked: a valid bucket name, a clean prefix)."""
    if isinstance(value, str) and value.startswith("s3://"):
        bucket, _, prefix = value.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        if not BUCKET_RE.match(bucket) or ".." in bucket:
            raise ValueError(f"{value!r}: {bucket!r} is not a valid S3 bucket name")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise ValueError(f"{value!r}: the prefix has an empty, '.' or '..' part")
        return S3Location(bucket=bucket, prefix=prefix)
    return value


ModelsLocation = Annotated[Path | S3Location, BeforeValidator(models_location),
                           PlainSerializer(str, return_type=str)]


def email_list(value: Any) -> Any:
    """APP_ALERT_EMAIL_TO as a JSON list or as addresses separated by commas."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return TypeAdapter(list[str]).validate_json(text)
            except ValidationError:
                raise ValueError("is not a JSON list of addresses") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _none_when_empty(value: Any) -> Any:
    """An empty line in .env (`APP_X=`) leaves an optional secret unset."""
    return None if value in ("", None) else value


def _default_cache() -> Path:
    """Outside the repository: the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "clinical-risk" / "models"


DATABASE_URL_SCHEMES = ("postgresql://", "postgres://")


def redacted_url(url: str) -> str:
    """A database URL without its password (`user:***@host`), to name it in messages and records."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class Settings(BaseSettings):
    """Configuration from the environment (prefix APP_), or a .env file beside the repo."""

    # hide_input_in_errors: a refused value may be a secret (the patient key, the webhook's
    # address), so no error's text ever repeats what was given.
    model_config = SettingsConfigDict(env_prefix="APP_", env_file=".env", extra="ignore",
                                      frozen=True, hide_input_in_errors=True)

    db: Path | str = Field(
        default=PROJ_ROOT / "data" / "app.duckdb",
        description="the store: an embedded DuckDB file (demo mode: data/demo.duckdb), or the "
                    "institution's PostgreSQL database as a postgresql:// URL")
    models: ModelsLocation = Field(
        default=PROJ_ROOT / "model_artifacts",
        description="the artefact folder, or s3://bucket/prefix in an S3-compatible object store")
    models_cache: Path = Field(
        default_factory=_default_cache, description="with APP_MODELS=s3://...: the private local "
        "folder the versions' files are fetched into (each checked against its manifest)")
    s3_endpoint_url: str = Field(
        default="", description="with APP_MODELS=s3://...: the object store's address, e.g. "
        "http://minio.internal:9000 (default: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS)")
    batch_chunk_rows: int = Field(default=5000, ge=1, description="rows per batch transaction")
    backup_dir: Path = Field(default=PROJ_ROOT / "data" / "backups",
                             description="where the Admin page's backup action writes")
    retention_days: int = Field(
        default=180, ge=1, description="days raw inputs and patient references are kept")
    review_reason_codes: list[str] = Field(
        default=["clinical context not captured by the model", "suspected lab or entry error",
                 "recent medication change", "other"],
        description="reason codes a reviewer chooses from (JSON list); 'other' needs a comment")
    override_alert_share: float = Field(
        default=0.30, gt=0, le=1, description="share of reviewed cases overridden in one "
        "direction that raises the alert")
    override_alert_min_reviewed: int = Field(
        default=20, ge=1, description="reviewed cases needed in the window before the alert can fire")
    override_alert_window_days: int = Field(
        default=28, ge=1, description="days the override alert looks back over")
    min_outcomes_for_metrics: int = Field(
        default=100, ge=10, description="outcomes (with at least 10 events) before AUROC and "
        "calibration are shown")
    # The stop rules (core.stop_rules; RUNBOOK "When to stop using the model"): read on the
    # serving version's predictions of the last stop_rule_window_days that have an outcome.
    stop_rule_window_days: int = Field(
        default=180, ge=7, le=3650, description="days of predictions (with outcomes) the stop rules read")
    stop_rule_min_outcomes: int = Field(
        default=200, ge=20, description="outcomes (with at least 10 events) before the calibration-"
        "slope and discrimination rules can raise a recommendation")
    stop_rule_slope_min: float = Field(
        default=0.7, gt=0, le=1, description="calibration slope below which the model's risks are "
        "too extreme to keep using it")
    stop_rule_slope_max: float = Field(
        default=1.3, ge=1, le=10, description="calibration slope above which the model's risks are "
        "too modest to keep using it")
    stop_rule_min_low_risk_outcomes: int = Field(
        default=100, ge=10, description="outcomes among auto-finalised low-risk predictions before "
        "their event rate can raise a recommendation")
    demo: bool = Field(default=False, description="demo mode: synthetic model, demo accounts")
    idle_timeout_minutes: float = Field(
        default=15, gt=0, description="minutes without interaction after which a user is signed out")
    lockout_failures: int = Field(
        default=5, ge=1, description="failed sign-ins within the lockout window that lock an account")
    lockout_minutes: float = Field(
        default=15, gt=0, description="the lockout window, and how long a locked account stays locked")
    local_accounts: bool = Field(
        default=True, description="offer local accounts (username and password) on the sign-in page")
    sso_role_claim: str = Field(
        default="", description="identity-token claim whose values name roles (e.g. roles, groups); "
        "a dotted name reaches into a nested claim; empty: not used")
    sso_email_roles: dict[str, list[str]] = Field(
        default={}, description="JSON object: email -> list of roles, for single sign-on")
    trusted_proxies: list[str] = Field(
        default=[], description="JSON list of addresses or networks of the TLS proxy in front of "
        "the service, e.g. [\"172.30.0.0/24\"]: from these, the client's address is read from "
        "X-Forwarded-For (lockout is per account and client address)")
    runs_on: str = Field(
        default="", max_length=200, description="where the service runs, in words, for the "
        "architecture diagram (e.g. \"VM risk-01 in the hospital data centre\"); empty: "
        "detected (a container, else a host or VM)")
    patient_key: SecretStr | None = Field(
        default=None, description="secret for keyed hashes of patient references (required "
        "outside demo mode; at least 32 characters)")
    # ---- alerts (core.alerts): e-mail through the institution's relay and/or a webhook --------
    alert_queue_age_hours: float = Field(
        default=24, gt=0, le=24 * 366, description="hours the oldest prediction routed to review "
        "may wait without a decision before the queue-ageing alert fires")
    alert_check_minutes: float = Field(
        default=15, ge=0, le=24 * 60, description="minutes between the running service's alert "
        "checks; 0: none in the service (run `python -m core alerts check` from cron instead)")
    alert_timeout_seconds: float = Field(
        default=10, gt=0, le=120, description="seconds an alert waits for the relay or the webhook")
    alert_smtp_host: str = Field(
        default="", max_length=253, description="the institution's SMTP relay (host name or "
        "address); empty: no e-mail alerts")
    alert_smtp_port: int = Field(default=587, ge=1, le=65535, description="the relay's port")
    alert_smtp_tls: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (upgrade the connection, usually port 587), tls "
        "(implicit TLS, usually port 465) or none (a relay inside the network, usually port 25)")
    alert_smtp_user: str = Field(
        default="", max_length=320, description="the relay's user name, when it needs a login")
    alert_smtp_password: SecretStr | None = Field(
        default=None, description="the relay's password (with APP_ALERT_SMTP_USER); never "
        "logged or recorded")
    alert_email_from: str = Field(default="", max_length=320,
                                  description="the alerts' sender address")
    alert_email_to: Annotated[list[str], NoDecode, BeforeValidator(email_list)] = Field(
        default=[], description="who gets the alert e-mails: a JSON list or addresses separated "
        "by commas")
    alert_webhook_url: SecretStr | None = Field(
        default=None, description="an incoming webhook (Slack, Mattermost, Rocket.Chat, Teams) "
        "that alerts are posted to as JSON; kept secret, as its address is its credential")

    @field_validator("alert_smtp_password", "alert_webhook_url", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: Any) -> Any:
        return _none_when_empty(value)

    @field_validator("alert_check_minutes")
    @classmethod
    def _check_interval(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("must be 0 (no checks in the service) or at least 1 minute")
        return value

    @field_validator("alert_smtp_host")
    @classmethod
    def _relay_host(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
        if "://" in value or not HOST_RE.match(value):
            raise ValueError("give the relay's host name or address only, e.g. smtp.hospital.example "
                             "(its port is APP_ALERT_SMTP_PORT)")
        return value

    @field_validator("alert_email_from")
    @classmethod
    def _sender(cls, value: str) -> str:
        value = value.strip()
        if value and not EMAIL_RE.match(value):
            raise ValueError(f"{value[:80]!r} is not an e-mail address (name@example.org)")
        return value

    @field_validator("alert_email_to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        cleaned = [address.strip() for address in value]
        bad = [address for address in cleaned if not EMAIL_RE.match(address)]
        if bad:
            raise ValueError(f"{', '.join(repr(a[:80]) for a in bad[:5])} "
                             f"{'is not an e-mail address' if len(bad) == 1 else 'are not e-mail addresses'}"
                             " (name@example.org)")
        return list(dict.fromkeys(cleaned))

    @model_validator(mode="after")
    def _alert_settings_agree(self) -> Settings:
        # Checked here, not in a field validator, so that no error ever echoes the webhook's
        # address: it is its credential.
        hook = self.alert_webhook_url.get_secret_value() if self.alert_webhook_url else ""
        parts = urlsplit(hook)
        if hook and (parts.scheme not in ("http", "https") or not parts.hostname
                     or any(c.isspace() for c in hook) or parts.username or parts.password):
            raise ValueError("APP_ALERT_WEBHOOK_URL must be an http:// or https:// address "
                             "without spaces or a user name (not shown here: it is a secret)")
        mail = bool(self.alert_smtp_host)
        if not mail:
            for name, given in (("APP_ALERT_SMTP_USER", self.alert_smtp_user),
                                ("APP_ALERT_SMTP_PASSWORD", self.alert_smtp_password),
                                ("APP_ALERT_EMAIL_FROM", self.alert_email_from),
                                ("APP_ALERT_EMAIL_TO", self.alert_email_to)):
                if given:
                    raise ValueError(f"{name} is set but APP_ALERT_SMTP_HOST is not: e-mail alerts "
                                     "need the institution's relay (or leave both unset)")
            return self
        if not self.alert_email_from:
            raise ValueError("APP_ALERT_EMAIL_FROM is needed with APP_ALERT_SMTP_HOST: the "
                             "alerts' sender address")
        if not self.alert_email_to:
            raise ValueError("APP_ALERT_EMAIL_TO is needed with APP_ALERT_SMTP_HOST: who gets "
                             "the alert e-mails")
        if bool(self.alert_smtp_user) != bool(self.alert_smtp_password):
            raise ValueError("APP_ALERT_SMTP_USER and APP_ALERT_SMTP_PASSWORD go together: set "
                             "both for a relay that needs a login, or neither")
        if self.alert_smtp_password and self.alert_smtp_tls == "none":
            raise ValueError("APP_ALERT_SMTP_PASSWORD would be sent unencrypted with "
                             "APP_ALERT_SMTP_TLS=none: use starttls or tls")
        return self
    # ---- the demo's seeded history (core.demo_history) ----------------------------------------
    demo_history: bool = Field(
        default=True, description="demo mode only: at start, seed a store that has no "
        "predictions with a synthetic history of about 12 weeks, marked as demo data (never "
        "outside demo mode)")
    # Input drift (core.drift): each input's recent values against the version's training data
    drift_window_days: int = Field(
        default=30, ge=1, le=3650, description="days of recent predictions the input drift "
        "compares with the training distribution")
    drift_psi_warn: float = Field(
        default=0.1, gt=0, le=10, description="population stability index at or above which an "
        "input's drift is shown as a warning")
    drift_psi_alert: float = Field(
        default=0.25, gt=0, le=10, description="population stability index at or above which an "
        "input's drift raises the alert (above APP_DRIFT_PSI_WARN)")
    drift_min_predictions: int = Field(
        default=100, ge=1, description="predictions with their inputs kept in the window before "
        "an input's drift is judged")

    @model_validator(mode="after")
    def _drift_alert_above_warn(self) -> Settings:
        if self.drift_psi_alert <= self.drift_psi_warn:
            raise ValueError(f"APP_DRIFT_PSI_ALERT ({self.drift_psi_alert:g}) must be above "
                             f"APP_DRIFT_PSI_WARN ({self.drift_psi_warn:g})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _demo_has_its_own_store(cls, data: Any) -> Any:
        # Demo mode creates demo accounts with published passwords: it never shares the default
        # store file with production (an explicit APP_DB is the operator's choice, and the
        # start checks refuse a production start on a store with active demo accounts).
        if isinstance(data, dict) and data.get("db") in (None, "") and _truthy(data.get("demo")):
            data = {**data, "db": PROJ_ROOT / "data" / "demo.duckdb"}
        return data

    @field_validator("db", mode="before")
    @classmethod
    def _file_or_url(cls, value: Any) -> Path | str:
        """A postgresql:// (or postgres://) URL stays text; anything else is a file path."""
        if isinstance(value, str) and value.startswith(DATABASE_URL_SCHEMES):
            return value
        return Path(value)

    def db_is_file(self) -> bool:
        """Whether the store is an embedded file (not a database server)."""
        return isinstance(self.db, Path)

    @field_validator("models_cache", mode="before")
    @classmethod
    def _cache_default(cls, value: Any) -> Any:
        return _default_cache() if value in (None, "") else value  # an empty line in .env

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} must be an http:// or https:// address")
        if parts.username or parts.password:  # credentials come from the environment only
            raise ValueError("must not contain credentials; set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY in the environment instead")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError(f"{value!r} must be the store's address only (no path or query)")
        return value

    @property
    def models_folder(self) -> Path:
        """The local folder that holds model files: the models folder, or the S3 cache."""
        return self.models_cache if isinstance(self.models, S3Location) else Path(self.models)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an address or network") from None
        return value

    @field_validator("sso_email_roles")
    @classmethod
    def _known_roles(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        cleaned: dict[str, list[str]] = {}
        for email, roles in value.items():
            unknown = sorted(set(roles) - set(ROLES))
            if unknown:
                raise ValueError(f"unknown role(s) {', '.join(unknown)} for {email}; roles are "
                                 f"{', '.join(ROLES)}")
            key = email.strip().lower()
            cleaned[key] = sorted(set(cleaned.get(key, [])) | set(roles))
        return cleaned

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        key = self.patient_key.get_secret_value() if self.patient_key else ""
        if key and not self.demo and (len(key) < 32 or "change-me" in key
                                      or key.encode() == DEMO_PATIENT_KEY):
            raise ValueError("APP_PATIENT_KEY must be at least 32 characters, not a placeholder "
                             "and not the published demo key")
        return self

    def patient_key_bytes(self) -> bytes:
        """The key for patient-reference hashes; a fixed, public key only in demo mode."""
        if self.patient_key:
            return self.patient_key.get_secret_value().encode()
        if self.demo:
            return DEMO_PATIENT_KEY
        raise ConfigError("APP_PATIENT_KEY is not set; it is required outside demo mode "
                          "(see .env.example)")


def _truthy(value: Any) -> bool:
    """A boolean setting as pydantic reads it (the raw environment text, or a bool)."""
    try:
        return TypeAdapter(bool).validate_python(value) if value is not None else False
    except ValidationError:
        return False  # the field's own validation reports it


_cache: dict[tuple, Settings] = {}


def get_settings() -> Settings:
    """Settings from the current environment, re-read whenever an APP_ variable or the .env file
    changes (tests change them between calls); ConfigError names every malformed APP_ variable.

    Reading them costs ~0.5 ms, a visible share of one scoring call, hence the cache."""
    try:
        stamp = os.stat(".env").st_mtime_ns
    except OSError:
        stamp = None
    key = (tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("APP_"))),
           os.getcwd(), stamp)
    if key not in _cache:
        _cache.clear()
        _cache[key] = _read_settings()
    return _cache[key]


def _read_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join((f"APP_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
                             + e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(f"settings are invalid: {problems}") from exc
    except SettingsError as exc:  # a list or object setting whose text is not JSON
        name = re.search(r'field "(\w+)"', str(exc))
        which = f"APP_{name.group(1).upper()}" if name else "a list or object setting"
        raise ConfigError(f"settings are invalid: {which}: is not valid JSON (a list is written "
                          '["a", "b"], an object {"key": ["value"]})') from exc
