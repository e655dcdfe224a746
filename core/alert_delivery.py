"""How an alert reaches people: an e-mail through the institution's SMTP relay, and a JSON POST
to an incoming webhook that chat tools accept (Slack, Mattermost, Rocket.Chat, Microsoft Teams:
each reads the top-level "text"). Which channels there are comes from the settings (none, one or
both); core.alerts decides when to send.

What is sent is the condition (core.conditions: counts, shares, thresholds, model versions and
field names, never patient data), where to look, and which deployment and model it is about. A
failure is an AlertNotDelivered whose message names what went wrong and never a secret: the relay's
password and the webhook's address (its credential) are taken out of any text a library gives.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from core.conditions import Condition
from core.config import Settings
from core.errors import AlertNotDelivered

MAX_ERROR = 500  # characters of a failure's message that are recorded
EMAIL, WEBHOOK = "email", "webhook"
LABELS = {EMAIL: "e-mail", WEBHOOK: "webhook"}


@dataclass(frozen=True)
class About:
    """Which deployment an alert is about: its model's name and the serving version."""

    deployment: str  # where it runs (APP_RUNS_ON, else the host's name)
    model: str  # the serving model's name ('' when it cannot be read)
    model_version: str  # '' when none serves


class Channel(Protocol):
    name: str  # EMAIL or WEBHOOK
    destination: str  # what the record names: the recipients, or the webhook's host

    def send(self, condition: Condition, about: About) -> None:
        """Deliver the alert; AlertNotDelivered when it did not go out."""


def channels(settings: Settings) -> list[Channel]:
    """The configured channels, e-mail first."""
    found: list[Channel] = []
    if settings.alert_smtp_host:
        found.append(Email(settings))
    if settings.alert_webhook_url is not None:
        found.append(Webhook(settings))
    return found


def about(settings: Settings, model: str, model_version: str) -> About:
    return About(settings.runs_on or socket.gethostname(), model, model_version)


def body(condition: Condition, about: About) -> str:
    """The alert's text: what was seen and what to do, where to look, and what it carries."""
    model = f"{about.model} (model version {about.model_version})" if about.model else (
        f"model version {about.model_version}" if about.model_version else "the prediction service")
    return (f"{condition.message}\n\n"
            f"Where to look: the Monitoring page of {model}, running on {about.deployment}. "
            "This alert is sent once; it is sent again only after the condition has cleared and "
            "come back. It carries counts, shares, thresholds, model versions and field names "
            "only, never patient data.")


def redact(text: str, settings: Settings) -> str:
    """`text` without the relay's password or the webhook's address (nor its path, which holds
    the token), cut to MAX_ERROR characters."""
    secrets = []
    if settings.alert_smtp_password is not None:
        secrets.append(settings.alert_smtp_password.get_secret_value())
    if settings.alert_webhook_url is not None:
        url = settings.alert_webhook_url.get_secret_value()
        parts = urlsplit(url)
        secrets += [url, url.rstrip("/"), parts.path + (f"?{parts.query}" if parts.query else ""),
                    parts.query]
    for secret in sorted({s for s in secrets if len(s) > 1}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text[:MAX_ERROR]


def _failure(exc: BaseException, settings: Settings, what: str) -> AlertNotDelivered:
    detail = str(exc) or "no detail given"
    return AlertNotDelivered(redact(f"{what}: {type(exc).__name__}: {detail}", settings))


class Email:
    """The institution's SMTP relay: STARTTLS, implicit TLS or a plain connection inside the
    network; a login when it needs one. Certificates are checked against the system's
    authorities (SSL_CERT_FILE names another bundle, e.g. the institution's own)."""

    name = EMAIL

    def __init__(self, settings: Settings):
        self._s = settings
        self.destination = ", ".join(settings.alert_email_to)

    def message(self, condition: Condition, about: About) -> EmailMessage:
        s = self._s
        msg = EmailMessage()
        msg["Subject"] = f"[{about.model or 'Prediction service'}] {condition.title}"
        msg["From"] = s.alert_email_from
        msg["To"] = self.destination
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=s.alert_email_from.rsplit("@", 1)[-1])
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
        msg.set_content(body(condition, about))
        return msg

    def send(self, condition: Condition, about: About) -> None:
        s = self._s
        where = f"the SMTP relay {s.alert_smtp_host}:{s.alert_smtp_port}"
        try:
            if s.alert_smtp_tls == "tls":
                smtp = smtplib.SMTP_SSL(s.alert_smtp_host, s.alert_smtp_port,
                                        timeout=s.alert_timeout_seconds,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(s.alert_smtp_host, s.alert_smtp_port,
                                    timeout=s.alert_timeout_seconds)
            with smtp:
                if s.alert_smtp_tls == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if s.alert_smtp_user and s.alert_smtp_password is not None:
                    smtp.login(s.alert_smtp_user, s.alert_smtp_password.get_secret_value())
                refused = smtp.send_message(self.message(condition, about))
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            raise _failure(exc, s, where) from None
        if refused:
            raise AlertNotDelivered(redact(f"{where} refused {', '.join(sorted(refused))}; the "
                                           "other recipients got it", s))


class Webhook:
    """An incoming webhook: one JSON POST, any 2xx answer is delivery; redirects are not
    followed (a moved webhook is a failure to fix, not a place to send to)."""

    name = WEBHOOK

    def __init__(self, settings: Settings):
        self._s = settings
        parts = urlsplit(settings.alert_webhook_url.get_secret_value())
        self.destination = parts.netloc

    def payload(self, condition: Condition, about: About) -> dict:
        text = f"{condition.title}\n{body(condition, about)}"
        return {"text": text, "key": condition.key, "kind": condition.kind,
                "title": condition.title, "message": condition.message,
                "deployment": about.deployment, "model": about.model,
                "model_version": about.model_version}

    def send(self, condition: Condition, about: About) -> None:
        s = self._s
        where = f"the webhook at {self.destination}"
        try:
            answer = httpx.post(s.alert_webhook_url.get_secret_value(),
                                json=self.payload(condition, about),
                                timeout=s.alert_timeout_seconds, follow_redirects=False)
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            raise _failure(exc, s, where) from None
        if not 200 <= answer.status_code < 300:
            raise AlertNotDelivered(redact(f"{where} answered HTTP {answer.status_code} "
                                           f"{answer.reason_phrase}".rstrip(), s))
