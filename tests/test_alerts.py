"""Alerts reach people: a condition in force goes out once by e-mail (a real local SMTP server,
aiosmtpd) and once by webhook (a real local HTTP receiver), with no patient data; nothing new
at the next check; again after it clears and comes back. Queue ageing fires past its hours and
not before. An unreachable relay or webhook is recorded as failed with its error, shown on the
monitoring page, and retried until it goes out. Malformed alert settings stop the start with the
setting named. The records are on both backends; the command runs inside the service that holds
the store; the service's own checks survive a failing one."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import store_oracle as oracle
from admin_support import command
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from app_support import REPO, TIMEOUT
from conftest import TYPICAL_PATIENT, point_settings
from streamlit.testing.v1 import AppTest

import core
from core import admin_channel, alerts, auth, preflight, review, scoring
from core.clock import now_utc
from core.conditions import Condition
from core.config import get_settings
from core.verification import verify_audit

HOOK_PATH = "/hooks/T0001/B0002/s3cr3t-t0ken-value"
WEIGHTS = (81.7, 82.3, 83.9)  # inputs that must never appear in an alert
PASSWORD = "relay-pass-w0rd-9"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """aiosmtpd's handler: every message the relay accepted."""

    def __init__(self):
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def texts(self) -> list[str]:
        """Each message as its headers and decoded body (a long body may be quoted-printable)."""
        out = []
        for _, raw in self.messages:
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            out.append(f"{msg['Subject']}\n{msg['From']}\n{msg['To']}\n{msg.get_content()}\n"
                       + raw.decode())
        return out


@contextmanager
def relay(port: int, **options):
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


class Receiver:
    """A local HTTP receiver of webhook POSTs: (path, content type, body) of each."""

    def __init__(self, port: int, status: int = 200):
        self.posts: list[tuple[str, str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                outer.posts.append((self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def payloads(self) -> list[dict]:
        return [json.loads(body) for _, _, body in self.posts]


def channels_env(mp: pytest.MonkeyPatch, *, smtp: int | None = None, hook: int | None = None) -> None:
    """Alert channels at local ports, short timeouts."""
    if smtp is not None:
        for name, value in {"HOST": "127.0.0.1", "PORT": str(smtp), "TLS": "none"}.items():
            mp.setenv(f"APP_ALERT_SMTP_{name}", value)
        mp.setenv("APP_ALERT_EMAIL_FROM", "risk-service@hospital.example")
        mp.setenv("APP_ALERT_EMAIL_TO", "pi@hospital.example, reviewer@hospital.example")
    if hook is not None:
        mp.setenv("APP_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{hook}{HOOK_PATH}")
    mp.setenv("APP_ALERT_TIMEOUT_SECONDS", "2")


def waiting_case(ref: str, *, hours_ago: float, **values) -> str:
    """A prediction routed to review (an input missing), made `hours_ago`; its id."""
    at = now_utc() - timedelta(hours=hours_ago)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scoring, "now_utc", lambda: at)
        result = core.score({**TYPICAL_PATIENT, "patient_ref": ref, "lvef": None, **values},
                            user="dr", source="form")
    assert result.routing == "review"
    return result.prediction_id


def notifications(store) -> list[tuple[str, str, str]]:
    rows = oracle.rows(store, "alert_notifications")
    return list(zip(rows["condition_key"], rows["channel"], rows["status"], strict=True))


def test_an_override_alert_goes_out_once_each_way_without_patient_data(fresh_store, monkeypatch):
    monkeypatch.setenv("APP_OVERRIDE_ALERT_MIN_REVIEWED", "3")
    monkeypatch.setenv("APP_OVERRIDE_ALERT_SHARE", "0.5")
    ids = [waiting_case(f"ALERT-REF-{i}", hours_ago=1, weight_kg=w) for i, w in enumerate(WEIGHTS)]
    directions = []
    for pid in ids:
        low = fresh_store.prediction(pid)["risk_class"] == "low"
        review.decide({"prediction_id": pid, "decision": "override_high" if low else "override_low",
                       "reason_code": "recent medication change", "comment": "seen"},
                      user="rev", display_name="Dr Rev")
        directions.append("upgrade" if low else "downgrade")
    key = f"override:{max(set(directions), key=directions.count)}"
    smtp, hook = free_port(), free_port()
    channels_env(monkeypatch, smtp=smtp, hook=hook)
    with relay(smtp) as box, Receiver(hook) as receiver:
        report = alerts.check(by="tester")
        assert [c.key for c in report.active] == [key]
        assert sorted(report.sent) == [(key, "email", "pi@hospital.example, reviewer@hospital.example"),
                                       (key, "webhook", f"127.0.0.1:{hook}")]
        assert len(box.messages) == 1 and len(receiver.posts) == 1
        assert box.messages[0][0] == ["pi@hospital.example", "reviewer@hospital.example"]
        path, content_type, _ = receiver.posts[0]
        assert path == HOOK_PATH and content_type == "application/json"
        [payload] = receiver.payloads()
        assert payload["key"] == key and payload["kind"] == "override" and payload["model_version"] == "v1"
        assert payload["text"].startswith(payload["title"]) and "Monitoring page" in payload["text"]
        assert "reviewed" in payload["message"] and "APP_OVERRIDE_ALERT_SHARE" in payload["message"]
        [mail] = box.texts()
        assert payload["title"] in mail and "Monitoring page" in mail
        # No patient data: no prediction id, patient reference, hash or input value of any case.
        for pid in ids:
            row = fresh_store.prediction(pid)
            for secret in (pid, row["patient_ref"], row["patient_key"], row["input_sha256"],
                           row["input_json"], *(f"{w}" for w in WEIGHTS)):
                assert secret not in mail and secret not in receiver.posts[0][2], secret

        again = alerts.check(by="tester")  # already sent: nothing new
        assert again.sent == [] and sorted(again.already_sent) == [(key, "email"), (key, "webhook")]
        assert len(box.messages) == 1 and len(receiver.posts) == 1

        later = alerts.check(by="tester", now=now_utc() + timedelta(days=90))  # out of the window
        assert later.active == [] and later.cleared == [key] and len(receiver.posts) == 1
        assert alerts.check(by="tester", now=now_utc() + timedelta(days=90)).cleared == []

        back = alerts.check(by="tester")  # in force again: sent again
        assert sorted(ch for _, ch, _ in back.sent) == ["email", "webhook"]
        assert len(box.messages) == 2 and len(receiver.posts) == 2
    assert notifications(fresh_store) == [(key, "email", "sent"), (key, "webhook", "sent"),
                                          (key, "", "cleared"), (key, "email", "sent"),
                                          (key, "webhook", "sent")]
    assert set(oracle.rows(fresh_store, "alert_notifications")["user_name"]) == {"tester"}


def test_queue_ageing_fires_past_its_hours_and_not_before(fresh_store, monkeypatch):
    monkeypatch.setenv("APP_ALERT_QUEUE_AGE_HOURS", "24")
    hook = free_port()
    channels_env(monkeypatch, hook=hook)
    made = now_utc()
    waiting_case("QUEUE-1", hours_ago=0)
    with Receiver(hook) as receiver:
        assert alerts.check(now=made + timedelta(hours=23, minutes=59)).active == []
        assert receiver.posts == []
        report = alerts.check(now=made + timedelta(hours=24, minutes=1))
        assert [c.key for c in report.active] == ["queue_age"] and len(receiver.posts) == 1
    [payload] = receiver.payloads()
    assert payload["kind"] == "queue_age" and "1 prediction is waiting" in payload["message"]
    assert "APP_ALERT_QUEUE_AGE_HOURS (24 hours)" in payload["message"]
    assert "QUEUE-1" not in receiver.posts[0][2]


def test_an_unreachable_relay_and_webhook_are_recorded_shown_and_retried(fresh_store, monkeypatch):
    monkeypatch.setenv("APP_ALERT_QUEUE_AGE_HOURS", "24")
    smtp, hook = free_port(), free_port()  # nothing listens there yet
    channels_env(monkeypatch, smtp=smtp, hook=hook)
    waiting_case("LATE-1", hours_ago=30)
    started = time.monotonic()
    first = alerts.check(by="tester")
    assert time.monotonic() - started < 10
    errors = {channel: error for _, channel, error in first.failed}
    assert set(errors) == {"email", "webhook"} and first.sent == [] and not first.ok
    assert "ConnectionRefusedError" in errors["email"] and f"127.0.0.1:{smtp}" in errors["email"]
    assert "ConnectError" in errors["webhook"]
    rows = oracle.rows(fresh_store, "alert_notifications")
    assert rows["error"].tolist() == [errors["email"], errors["webhook"]]
    assert not any("s3cr3t" in str(v) for v in rows.to_numpy().ravel())  # the webhook's token

    # The monitoring page shows that nobody was told, naming the channel and the error.
    at = AppTest.from_file(str(REPO / "views" / "monitoring.py"), default_timeout=TIMEOUT)
    at.session_state["user"] = auth.User("pi", "Dr PI", ("pi",))
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("did not go out by e-mail" in w and "ConnectionRefusedError" in w for w in warnings), warnings
    assert any("did not go out by webhook" in w and "ConnectError" in w for w in warnings), warnings
    assert any(w.startswith("1 prediction is waiting for review") for w in warnings), warnings
    assert any(c.value.startswith("Alert \"Review queue") and "e-mail FAILED" in c.value for c in at.caption)

    assert len(alerts.check(by="tester").failed) == 2  # retried at the next check, failed again
    with relay(smtp) as box, Receiver(hook) as receiver:
        sent = alerts.check(by="tester")
        assert sorted(ch for _, ch, _ in sent.sent) == ["email", "webhook"] and sent.ok
        assert len(box.messages) == 1 and len(receiver.posts) == 1
        assert alerts.check(by="tester").sent == []
    assert [s for _, _, s in notifications(fresh_store)] == ["failed"] * 4 + ["sent"] * 2


def test_a_relay_login_over_starttls_and_a_refusing_webhook(fresh_store, monkeypatch, tmp_path):
    cert, key = _self_signed(tmp_path)
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the institution's own authority
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append(auth_data.login)
        return AuthResult(success=auth_data.password == PASSWORD.encode(), handled=False)

    smtp, hook = free_port(), free_port()
    channels_env(monkeypatch, smtp=smtp, hook=hook)
    monkeypatch.setenv("APP_ALERT_SMTP_TLS", "starttls")
    monkeypatch.setenv("APP_ALERT_SMTP_USER", "risk-service")
    monkeypatch.setenv("APP_ALERT_SMTP_PASSWORD", "a-wrong-password")
    condition = Condition("test:login", "test", "A test condition", "2 of 3 reviewed.")
    with relay(smtp, tls_context=context, require_starttls=True, authenticator=authenticator,
               auth_require_tls=True) as box, Receiver(hook, status=404) as receiver:
        report = alerts.check(providers=[lambda *_: [condition]])
        errors = {channel: error for _, channel, error in report.failed}
        assert "SMTPAuthenticationError" in errors["email"] and "a-wrong-password" not in errors["email"]
        assert errors["webhook"] == f"the webhook at 127.0.0.1:{hook} answered HTTP 404 Not Found"
        assert len(receiver.posts) == 1 and box.messages == []
        monkeypatch.setenv("APP_ALERT_SMTP_PASSWORD", PASSWORD)
        report = alerts.check(providers=[lambda *_: [condition]])
        assert [ch for _, ch, _ in report.sent] == ["email"] and len(box.messages) == 1
    assert set(logins) == {b"risk-service"} and len(logins) >= 2  # refused (each mechanism), then in


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "relay.pem", folder / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_sent_failed_and_cleared_are_recorded_on_both_backends(any_store, monkeypatch):
    in_force = [Condition("drift:egfr", "drift", "Drift in egfr", "The mean moved by 0.4 SD.")]
    provider = lambda *_: list(in_force)  # noqa: E731
    assert alerts.check(providers=[provider]).channels == []  # none configured: nothing recorded
    assert any_store.alert_states().empty
    hook = free_port()
    channels_env(monkeypatch, hook=hook)
    with Receiver(hook) as receiver:
        assert [k for k, _, _ in alerts.check(providers=[provider]).sent] == ["drift:egfr"]
        states = any_store.alert_states()
        assert states[["condition_key", "channel", "status"]].values.tolist() == [
            ["drift:egfr", "webhook", "sent"]]
        in_force.clear()
        assert alerts.check(providers=[provider]).cleared == ["drift:egfr"]
        in_force.append(Condition("drift:egfr", "drift", "Drift in egfr", "The mean moved by 0.5 SD."))
        assert len(alerts.check(providers=[provider]).sent) == 1 and len(receiver.posts) == 2
    recent = any_store.recent_alert_notifications(limit=10)
    assert recent["status"].tolist() == ["sent", "cleared", "sent"]  # newest first
    assert recent["destination"].tolist() == [f"127.0.0.1:{hook}", "", f"127.0.0.1:{hook}"]
    states = any_store.alert_states()
    assert states[["condition_key", "channel", "status"]].values.tolist() == [
        ["drift:egfr", "", "cleared"], ["drift:egfr", "webhook", "sent"]]
    assert verify_audit(any_store)[0] == []
    view = alerts.overview(providers=[provider])
    assert [(c.key, [d.status for d in ds]) for c, ds in view.active] == [("drift:egfr", ["sent"])]


BAD_SETTINGS = [
    ({"APP_ALERT_SMTP_PORT": "0"}, "APP_ALERT_SMTP_PORT"),
    ({"APP_ALERT_SMTP_PORT": "70000"}, "APP_ALERT_SMTP_PORT"),
    ({"APP_ALERT_SMTP_PORT": "smtp"}, "APP_ALERT_SMTP_PORT"),
    ({"APP_ALERT_QUEUE_AGE_HOURS": "0"}, "APP_ALERT_QUEUE_AGE_HOURS"),
    ({"APP_ALERT_QUEUE_AGE_HOURS": "-3"}, "APP_ALERT_QUEUE_AGE_HOURS"),
    ({"APP_ALERT_CHECK_MINUTES": "-1"}, "APP_ALERT_CHECK_MINUTES"),
    ({"APP_ALERT_CHECK_MINUTES": "0.1"}, "APP_ALERT_CHECK_MINUTES"),
    ({"APP_ALERT_TIMEOUT_SECONDS": "0"}, "APP_ALERT_TIMEOUT_SECONDS"),
    ({"APP_ALERT_SMTP_TLS": "ssl"}, "APP_ALERT_SMTP_TLS"),
    ({"APP_ALERT_SMTP_HOST": "smtp://relay.example"}, "APP_ALERT_SMTP_HOST"),
    ({"APP_ALERT_SMTP_HOST": "relay.example", "APP_ALERT_EMAIL_FROM": "not-an-address",
      "APP_ALERT_EMAIL_TO": "pi@hospital.example"}, "APP_ALERT_EMAIL_FROM"),
    ({"APP_ALERT_SMTP_HOST": "relay.example", "APP_ALERT_EMAIL_FROM": "a@hospital.example",
      "APP_ALERT_EMAIL_TO": "pi@hospital.example, pi at hospital"}, "APP_ALERT_EMAIL_TO"),
    ({"APP_ALERT_SMTP_HOST": "relay.example", "APP_ALERT_EMAIL_FROM": "a@hospital.example"},
     "APP_ALERT_EMAIL_TO"),
    ({"APP_ALERT_EMAIL_TO": "[\"pi@hospital.example\""}, "APP_ALERT_EMAIL_TO"),
    ({"APP_ALERT_SMTP_PASSWORD": "s3cret-pass"}, "APP_ALERT_SMTP_PASSWORD"),
    ({"APP_ALERT_SMTP_HOST": "relay.example", "APP_ALERT_EMAIL_FROM": "a@hospital.example",
      "APP_ALERT_EMAIL_TO": "pi@hospital.example", "APP_ALERT_SMTP_USER": "svc"}, "APP_ALERT_SMTP_PASSWORD"),
    ({"APP_ALERT_SMTP_HOST": "relay.example", "APP_ALERT_EMAIL_FROM": "a@hospital.example",
      "APP_ALERT_EMAIL_TO": "pi@hospital.example", "APP_ALERT_SMTP_USER": "svc",
      "APP_ALERT_SMTP_PASSWORD": "s3cret-pass", "APP_ALERT_SMTP_TLS": "none"}, "APP_ALERT_SMTP_TLS"),
    ({"APP_ALERT_WEBHOOK_URL": "ftp://hooks.example/s3cret-pass"}, "APP_ALERT_WEBHOOK_URL"),
    ({"APP_ALERT_WEBHOOK_URL": "hooks.example/s3cret-pass"}, "APP_ALERT_WEBHOOK_URL"),
]


@pytest.mark.parametrize("env, named", BAD_SETTINGS, ids=[f"{n}-{i}" for i, (_, n) in enumerate(BAD_SETTINGS)])
def test_malformed_alert_settings_refuse_the_start_naming_the_setting(tmp_path, monkeypatch, env, named):
    point_settings(monkeypatch, str(tmp_path / "store.duckdb"))  # refused before the store opens
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found, _ = preflight.problems()
    assert len(found) == 1 and named in found[0], found
    assert "s3cret-pass" not in found[0]  # a secret is never repeated


def test_the_command_runs_in_the_service_that_holds_the_store(fresh_store, monkeypatch):
    waiting_case("CLI-1", hours_ago=30)
    monkeypatch.setenv("APP_ALERT_QUEUE_AGE_HOURS", "24")
    hook = free_port()
    channels_env(monkeypatch, hook=hook)
    channel = admin_channel.start(get_settings())  # this process holds the store, as the service
    try:
        down = command("alerts", "check", "--by", "cron", env=dict(os.environ))
        assert down.returncode == 1, down.stderr
        assert "FAILED queue_age by webhook" in down.stdout and "ConnectError" in down.stdout
        with Receiver(hook) as receiver:
            up = command("alerts", "check", "--by", "cron", env=dict(os.environ))
            assert up.returncode == 0, up.stderr
            assert up.stdout == f"sent queue_age by webhook to 127.0.0.1:{hook}\n"
        assert len(receiver.posts) == 1
    finally:
        channel.stop()
    rows = oracle.rows(fresh_store, "alert_notifications")
    assert rows["status"].tolist() == ["failed", "sent"] and set(rows["user_name"]) == {"cron"}
    commands = oracle.rows(fresh_store, "access_events", action="admin_command")["detail"].tolist()
    assert commands == ["python -m core alerts check (exit 1)", "python -m core alerts check (exit 0)"]
    # The webhook's address is its credential: in no record, no audit entry, no configuration.
    recorded = oracle.sql(fresh_store, "SELECT content_json FROM audit_log")
    assert recorded and not [c for (c,) in recorded if "s3cr3t" in c]


def test_the_services_checks_go_on_after_one_fails(fresh_store, monkeypatch, caplog):
    hook = free_port()
    channels_env(monkeypatch, hook=hook)
    condition = Condition("test:periodic", "test", "A test condition", "1 of 1.")
    monkeypatch.setattr(alerts, "PROVIDERS", [lambda *_: [condition]])
    monkeypatch.setenv("APP_ALERT_SMTP_PORT", "0")  # the settings break: the check fails
    caplog.set_level(logging.ERROR, logger="core.alerts")
    periodic = alerts.Periodic(minutes=0.002, first_after_s=0)
    with Receiver(hook) as receiver:
        periodic._thread.start()
        try:
            _until(lambda: any("the check failed: ConfigError" in r.getMessage() for r in caplog.records))
            monkeypatch.delenv("APP_ALERT_SMTP_PORT")
            _until(lambda: receiver.posts)
        finally:
            periodic.stop()
    assert not periodic._thread.is_alive() and len(receiver.posts) == 1
    assert not any(HOOK_PATH in r.getMessage() for r in caplog.records)
    assert alerts.start_periodic(get_settings().model_copy(update={"alert_check_minutes": 0})) \
        ._thread.is_alive() is False


def _until(done, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)

