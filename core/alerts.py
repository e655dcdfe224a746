"""Alerts that reach people: each monitored condition in force (core.conditions) is sent once by
every configured channel (core.alert_delivery: e-mail, webhook), and again only after it has
cleared and come back. Every attempt, sent or failed, and every clear is recorded
(alert_notifications, in the audit chain); a failed one is tried again at the next check.

Conditions come from providers, `provider(store, settings, now) -> list[Condition]`, listed in
PROVIDERS: the same-direction override alert (key `override:<direction>`), queue ageing (key
`queue_age`), each drifting input (core.drift, key `drift:<version>:<feature>`), and the stop
rules' recommendations in force (core.stop_rules, key `stop_rule:<rule>:<version>`). To add
one, write the
function in its own module of the oversight layer, import it here and append it to PROVIDERS; a
condition's key must name it stably while it lasts, and its text must carry no patient data
(no prediction ids, patient references or input values). A provider that fails is reported and
skips that check's clears (a condition it could not see is not taken as cleared).

A check runs from `python -m core alerts check` (cron, a systemd timer) and inside the running
service every APP_ALERT_CHECK_MINUTES (`start_periodic`, from serve.py). Within one process,
checks run one at a time, so an alert is never sent twice by two checks at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from core import alert_delivery, artifacts, drift, stop_rules
from core.alert_delivery import LABELS, About
from core.clock import now_utc
from core.conditions import Condition
from core.config import Settings, get_settings
from core.errors import AlertNotDelivered, CoreError
from core.monitoring import override_alerts
from core.store import Event, Store, open_store
from core.store.records import AlertNotification

log = logging.getLogger(__name__)

Provider = Callable[[Store, Settings, datetime], list[Condition]]
SENT, FAILED, CLEARED = "sent", "failed", "cleared"
EPOCH = datetime(1970, 1, 1)
FIRST_CHECK_S = 30.0  # the service's first check, after it has started


def override_conditions(store: Store, settings: Settings, now: datetime) -> list[Condition]:
    """The same-direction override alert over its window, across every model version."""
    end = now + timedelta(seconds=1)  # this second included, as the monitoring page counts it
    window = (end - timedelta(days=settings.override_alert_window_days), end, None)
    words = {"upgrade": "upgraded (model low, reviewer high)",
             "downgrade": "downgraded (model high, reviewer low)"}
    return [Condition(
        key=f"override:{a.direction}", kind="override",
        title=f"Override alert: {a.share:.0%} of reviewed cases {words[a.direction]}",
        message=(f"{a.message()} Threshold: APP_OVERRIDE_ALERT_SHARE {settings.override_alert_share:.0%} "
                 f"of at least {settings.override_alert_min_reviewed} reviewed cases, across all "
                 "model versions. What to do: open the Monitoring page (Reviewer overrides) and "
                 "follow RUNBOOK.md, 'When the same-direction override alert fires'."))
        for a in override_alerts(store.agg_override_window(window), settings)]


def queue_age_conditions(store: Store, settings: Settings, now: datetime) -> list[Condition]:
    """The oldest prediction routed to review with no decision has waited too long."""
    backlog = store.agg_backlog((EPOCH, now + timedelta(seconds=1), None), now)
    if backlog.empty or not int(backlog["pending"].iloc[0]):
        return []
    pending, oldest = int(backlog["pending"].iloc[0]), pd.Timestamp(backlog["oldest"].iloc[0])
    hours = (pd.Timestamp(now) - oldest).total_seconds() / 3600
    limit = settings.alert_queue_age_hours
    if hours <= limit:
        return []
    return [Condition(
        key="queue_age", kind="queue_age",
        title=f"Review queue: the oldest case has waited {hours:.0f} hours",
        message=(f"{pending} prediction{'s are' if pending != 1 else ' is'} waiting for review; "
                 f"the oldest has waited {hours:.1f} hours, longer than APP_ALERT_QUEUE_AGE_HOURS "
                 f"({limit:g} hours). What to do: reviewers work through the Review queue, oldest "
                 "first; the Monitoring page shows the backlog and the time to decision."))]


PROVIDERS: list[Provider] = [override_conditions, queue_age_conditions, drift.conditions,
                              stop_rules.conditions]


@dataclass
class Report:
    """What one check found and did."""

    channels: list[str]
    active: list[Condition] = field(default_factory=list)
    sent: list[tuple[str, str, str]] = field(default_factory=list)  # key, channel, destination
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # key, channel, error
    already_sent: list[tuple[str, str]] = field(default_factory=list)  # key, channel
    cleared: list[str] = field(default_factory=list)
    provider_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.provider_errors


@dataclass(frozen=True)
class Delivery:
    """The state of one condition on one channel since it last cleared."""

    channel: str
    status: str | None  # SENT, FAILED, or None (not tried yet)
    at: datetime | None = None
    destination: str = ""
    error: str = ""


@dataclass
class Overview:
    """What the monitoring page shows of alerts."""

    channels: list[str]
    active: list[tuple[Condition, list[Delivery]]]
    recent: pd.DataFrame
    check_minutes: float
    provider_errors: list[str]


def gather(store: Store, settings: Settings, now: datetime,
           providers: Sequence[Provider] | None = None) -> tuple[list[Condition], list[str]]:
    """The conditions in force (one per key), and the providers that failed."""
    found: dict[str, Condition] = {}
    errors = []
    for provider in PROVIDERS if providers is None else providers:
        try:
            for condition in provider(store, settings, now):
                found.setdefault(condition.key, condition)
        except Exception as exc:  # one provider's fault never stops the others' alerts
            name = getattr(provider, "__name__", repr(provider))
            log.warning("alerts: provider %s failed: %s", name, type(exc).__name__)
            errors.append(f"{name}: {type(exc).__name__}: {alert_delivery.redact(str(exc), settings)}")
    return list(found.values()), errors


def _states(store: Store) -> dict[str, dict[str, dict]]:
    """Per condition key, its latest row per channel since it last cleared ('' holds the clear)."""
    out: dict[str, dict[str, dict]] = {}
    for row in store.alert_states().to_dict("records"):
        out.setdefault(row["condition_key"], {})[row["channel"]] = row
    for rows in out.values():
        clear = rows.get("", {}).get("audit_seq", 0)
        for channel in [c for c, r in rows.items() if c and r["audit_seq"] < clear]:
            del rows[channel]  # before the last clear: history
    return out


_one_check = threading.Lock()


def check(store: Store | None = None, settings: Settings | None = None, now: datetime | None = None,
          *, by: str = "alert check", providers: Sequence[Provider] | None = None) -> Report:
    """Send what is due, record every attempt and every clear; the report of what happened."""
    settings = settings or get_settings()
    store = store or open_store(settings.db)
    now = now or now_utc()
    with _one_check:
        chans = alert_delivery.channels(settings)
        report = Report(channels=[c.name for c in chans])
        report.active, report.provider_errors = gather(store, settings, now, providers)
        states = _states(store)
        target = _about(store, settings) if report.active and chans else None
        for condition in report.active:
            rows = states.get(condition.key, {})
            for channel in chans:
                if rows.get(channel.name, {}).get("status") == SENT:
                    report.already_sent.append((condition.key, channel.name))
                    continue
                try:
                    channel.send(condition, target)
                except AlertNotDelivered as exc:
                    _record(store, by, condition, channel.name, FAILED, channel.destination, str(exc))
                    report.failed.append((condition.key, channel.name, str(exc)))
                    continue
                _record(store, by, condition, channel.name, SENT, channel.destination, "")
                report.sent.append((condition.key, channel.name, channel.destination))
        if report.provider_errors:
            return report  # a condition a failed provider could not see is not taken as cleared
        active = {c.key for c in report.active}
        for key, rows in states.items():
            if key not in active and any(channel for channel in rows):
                last = max((r for c, r in rows.items() if c), key=lambda r: r["audit_seq"])
                _record(store, by, Condition(key, last["kind"], last["title"], "cleared"), "",
                        CLEARED, "", "")
                report.cleared.append(key)
        return report


def _record(store: Store, by: str, condition: Condition, channel: str, status: str,
            destination: str, error: str) -> None:
    at = now_utc()
    message = "" if status == CLEARED else condition.message
    store.append([Event("alert_notification", by, at, condition.key, AlertNotification(
        notification_id=str(uuid.uuid4()), created_at=at, user_name=by,
        condition_key=condition.key, kind=condition.kind, channel=channel, status=status,
        destination=destination, title=condition.title, message=message, error=error))])


def _about(store: Store, settings: Settings) -> About:
    """The serving model's name and version, for the alert's text ('' where unreadable)."""
    version = name = ""
    with contextlib.suppress(CoreError):
        version = artifacts.serving_version(store.active_activation(), settings.models) or ""
        name = artifacts.spec_of(settings.models, version).model_name if version else ""
    return alert_delivery.about(settings, name, version)


def overview(store: Store | None = None, settings: Settings | None = None,
             now: datetime | None = None, *, providers: Sequence[Provider] | None = None) -> Overview:
    """The conditions in force with their delivery on each configured channel, and the latest
    notifications (newest first)."""
    settings = settings or get_settings()
    store = store or open_store(settings.db)
    active, errors = gather(store, settings, now or now_utc(), providers)
    states = _states(store)
    names = [c.name for c in alert_delivery.channels(settings)]
    shown = []
    for condition in active:
        rows = states.get(condition.key, {})
        shown.append((condition, [Delivery(n, rows[n]["status"], rows[n]["created_at"],
                                           rows[n]["destination"], rows[n]["error"])
                                  if n in rows else Delivery(n, None) for n in names]))
    return Overview(names, shown, store.recent_alert_notifications(limit=50),
                    settings.alert_check_minutes, errors)


def describe(report: Report) -> list[str]:
    """The report as lines for a person (the command prints them)."""
    lines = [f"sent {key} by {LABELS[ch]} to {dest}" for key, ch, dest in report.sent]
    lines += [f"FAILED {key} by {LABELS[ch]}: {error} (tried again at the next check)"
              for key, ch, error in report.failed]
    lines += [f"already sent {key} by {LABELS[ch]}" for key, ch in report.already_sent]
    lines += [f"cleared {key}" for key in report.cleared]
    lines += [f"FAILED to check: {error}" for error in report.provider_errors]
    if not report.channels:
        lines.append("no alert channel is configured (APP_ALERT_SMTP_HOST, APP_ALERT_WEBHOOK_URL): "
                     "conditions are shown on the Monitoring page only")
    if not report.active:
        lines.append("no condition in force")
    return lines


class Periodic:
    """The running service's checks: one every `minutes`, in a thread of their own; a failed
    check is logged (its kind and a message without secrets) and the next one runs as planned."""

    def __init__(self, minutes: float, first_after_s: float = FIRST_CHECK_S):
        self._interval = minutes * 60
        self._first = min(first_after_s, self._interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alert-checks", daemon=True)

    def _loop(self) -> None:
        wait = self._first
        while not self._stop.wait(wait):
            wait = self._interval
            settings = None
            try:
                settings = get_settings()
                report = check(settings=settings, by="alert check (service)")
                for line in describe(report)[:20] if report.sent or report.failed else []:
                    log.info("alerts: %s", line)
            except Exception as exc:  # never the server's end
                text = alert_delivery.redact(str(exc), settings) if settings else ""
                log.error("alerts: the check failed: %s: %s", type(exc).__name__, text)

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)


def start_periodic(settings: Settings | None = None) -> Periodic:
    """Start the service's checks every APP_ALERT_CHECK_MINUTES (0: none; `stop()` still works)."""
    minutes = (settings or get_settings()).alert_check_minutes
    periodic = Periodic(minutes)
    if minutes > 0:
        periodic._thread.start()
    return periodic
