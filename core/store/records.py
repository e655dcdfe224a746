"""One typed record per event table: the single source of the table row AND of what enters the
audit chain for it, so the two can never drift apart.

An entry's content is the whole row (every column but its audit seq, which the chain itself
gives), in canonical JSON, with secrets as their sha256 (a password hash never enters the chain;
its fingerprint does, so a replaced hash is caught). `audit verify` then checks every column of
every row. Entries written before records existed (content without "_format") recorded only
some columns; they are verified with the rules they were written with (core.audit).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, ClassVar

CONTENT_FORMAT = 2  # content = the whole row; absent in entries written before (format 1)
SECRET_PREFIX = "sha256:"


@dataclass(frozen=True, slots=True)
class Record:
    """Base of the event records: `table` names its table, the first field is its key."""

    table: ClassVar[str]
    secret: ClassVar[tuple[str, ...]] = ()  # columns that enter the chain as their sha256

    @classmethod
    def columns(cls) -> list[str]:
        """The table's columns in insert order: the key, the audit seq, then the rest."""
        names = [f.name for f in fields(cls)]
        return [names[0], "audit_seq", *names[1:]]

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def content(self) -> dict[str, Any]:
        """What the chain records: the whole row, secrets as their sha256."""
        return chain_content(type(self), self.row())


@dataclass(slots=True)
class Event:
    """One record for an event table, with the envelope of its audit entry (no raw PHI).

    `phi` (optional) is a row for phi_inputs: kept only for the retention period, outside the
    chain, so purging it leaves every hash intact."""

    kind: str
    actor: str
    at: datetime
    subject: str
    record: Record
    phi: dict | None = None


def chain_content(record: type[Record], row: dict[str, Any]) -> dict[str, Any]:
    """The content of a row of `record`'s table, as the chain records it: the record's columns
    (the audit seq, and any other key of `row`, left out)."""
    out = {name: row[name] for name in record.__slots__}
    for name in record.secret:
        if out.get(name) is not None:
            out[name] = SECRET_PREFIX + hashlib.sha256(str(out[name]).encode()).hexdigest()
    out["_format"] = CONTENT_FORMAT
    return out


@dataclass(frozen=True, slots=True)
class Prediction(Record):
    table: ClassVar[str] = "predictions"
    prediction_id: str
    created_at: datetime
    user_name: str
    source: str
    patient_key: str
    input_sha256: str
    risk: float
    risk_low: float
    risk_high: float
    risk_class: str
    confidence: float
    routing: str
    reasons_json: str
    reason_codes: list[str]
    factors_json: str
    model_version: str
    model_sha256: str


@dataclass(frozen=True, slots=True)
class RejectedInput(Record):
    table: ClassVar[str] = "rejected_inputs"
    rejection_id: str
    created_at: datetime
    user_name: str
    source: str
    fields_json: str
    payload_sha256: str
    model_version: str | None


@dataclass(frozen=True, slots=True)
class ModelActivation(Record):
    table: ClassVar[str] = "model_activations"
    activation_id: str
    created_at: datetime
    user_name: str
    version: str
    model_sha256: str
    reason: str


@dataclass(frozen=True, slots=True)
class UserEvent(Record):
    """A user change carries the account's whole new state; the latest row per user is current."""

    table: ClassVar[str] = "user_events"
    secret: ClassVar[tuple[str, ...]] = ("password_hash",)
    event_id: str
    created_at: datetime
    user_name: str  # who made the change
    username: str  # whose account
    action: str
    display_name: str
    roles_json: str
    active: bool
    password_hash: str


@dataclass(frozen=True, slots=True)
class AccessEvent(Record):
    table: ClassVar[str] = "access_events"
    event_id: str
    created_at: datetime
    user_name: str
    action: str
    detail: str
    source: str


@dataclass(frozen=True, slots=True)
class RetentionPurge(Record):
    table: ClassVar[str] = "retention_purges"
    purge_id: str
    created_at: datetime
    user_name: str
    cutoff: datetime
    retention_days: int
    rows_removed: int


@dataclass(frozen=True, slots=True)
class ConfigEvent(Record):
    table: ClassVar[str] = "config_events"
    event_id: str
    created_at: datetime
    user_name: str
    settings_json: str


@dataclass(frozen=True, slots=True)
class ReviewDecisionRecord(Record):
    """direction: 'upgrade' (model low -> reviewer high), 'downgrade' (high -> low), 'none'."""

    table: ClassVar[str] = "review_decisions"
    decision_id: str
    created_at: datetime
    user_name: str
    reviewer_name: str
    prediction_id: str
    decision: str
    model_class: str
    reviewer_class: str
    direction: str
    reason_code: str
    comment: str
    meaning: str
    supersedes: str | None


@dataclass(frozen=True, slots=True)
class ServiceEvent(Record):
    table: ClassVar[str] = "service_events"
    event_id: str
    created_at: datetime
    user_name: str
    action: str  # 'suspend' or 'resume'
    reason: str


@dataclass(frozen=True, slots=True)
class Signoff(Record):
    table: ClassVar[str] = "signoffs"
    signoff_id: str
    created_at: datetime
    user_name: str
    signer_name: str
    signer_role: str
    signed_on: date
    scope: str
    model_version: str


@dataclass(frozen=True, slots=True)
class OutcomeRecord(Record):
    table: ClassVar[str] = "outcomes"
    outcome_id: str
    created_at: datetime
    user_name: str
    prediction_id: str
    event: bool
    event_date: date | None
    measured_value: float | None  # the spec's measurement that defines the event, if it has one
    source: str
    supersedes: str | None


@dataclass(frozen=True, slots=True)
class AuditVerification(Record):
    """A verification of the whole chain through entry `through_seq` (whose hash it names)."""

    table: ClassVar[str] = "audit_verifications"
    verification_id: str
    created_at: datetime
    user_name: str
    through_seq: int
    through_hash: str
    intact: bool
    problems: int
    first_problem: str


@dataclass(frozen=True, slots=True)
class ClientEvent(Record):
    """An API client created or revoked; the latest row per client is its current state. The
    token itself is never stored: only its sha256, which enters the chain as its own sha256."""

    table: ClassVar[str] = "client_events"
    secret: ClassVar[tuple[str, ...]] = ("token_sha256",)
    event_id: str
    created_at: datetime
    user_name: str  # who made the change
    client_name: str
    action: str  # 'created' or 'revoked'
    roles_json: str
    active: bool
    token_sha256: str


@dataclass(frozen=True, slots=True)
class CdsFeedback(Record):
    """What a clinician did with a card a hospital system showed them (CDS Hooks feedback):
    'accepted' or 'overridden', with the override reason's coding and comment when given ('' when
    not), and when they did it (UTC, as the client said)."""

    table: ClassVar[str] = "cds_feedback"
    feedback_id: str
    created_at: datetime
    user_name: str  # the API client that reported it
    prediction_id: str  # the card's uuid
    outcome: str
    override_reason_system: str
    override_reason_code: str
    override_reason_display: str
    user_comment: str
    outcome_timestamp: datetime


@dataclass(frozen=True, slots=True)
class DeploymentAssessment(Record):
    """One answer set of the deploy-or-stay-a-research-artefact questionnaire (core.assessment):
    the five criteria, the respondent's notes, and the recommendation they gave at the time."""

    table: ClassVar[str] = "deployment_assessments"
    assessment_id: str
    created_at: datetime
    user_name: str  # who answered (signed in)
    respondent_name: str  # their printed name
    model_version: str  # the version serving when they answered
    informs_decision: bool
    recurring_use: bool
    non_research_consumer: bool
    service_requested: bool
    capacity_to_run: bool
    notes: str
    recommendation: str


@dataclass(frozen=True, slots=True)
class AlertNotification(Record):
    """One alert sent, or one that failed to go out, on one channel; or a condition cleared
    (core.alerts). No patient data: the condition's title and message carry counts, shares,
    thresholds, model versions and field names only."""

    table: ClassVar[str] = "alert_notifications"
    notification_id: str
    created_at: datetime
    user_name: str  # who ran the check (the service's own check, or a command's user)
    condition_key: str  # e.g. "override:upgrade", "queue_age"
    kind: str
    channel: str  # 'email' or 'webhook'; '' for a clear (of every channel)
    status: str  # 'sent', 'failed' or 'cleared'
    destination: str  # the recipients, or the webhook's host; '' for a clear
    title: str
    message: str
    error: str  # why it failed ('' when sent or cleared); never a secret


@dataclass(frozen=True, slots=True)
class StopRuleEvent(Record):
    """A stop rule's recommendation for one model version (core.stop_rules): raised when the
    rule's condition is met, acknowledged by the PI (with what they decided), cleared when the
    condition no longer holds."""

    table: ClassVar[str] = "stop_rule_events"
    event_id: str
    created_at: datetime
    user_name: str  # "monitoring" for raised and cleared; the PI for an acknowledgement
    rule: str
    model_version: str
    action: str  # 'raised', 'acknowledged' or 'cleared'
    evidence: str  # the figures that met (or no longer meet) the rule, in words
    note: str  # the acknowledgement's decision and reason; '' otherwise


@dataclass(frozen=True, slots=True)
class DemoHistorySeeded(Record):
    """A synthetic history seeded into a demo-mode store (core.demo_history): the range its
    records' times cover and how many of each it added. Its rows are marked too: user_name
    'demo-history', and source 'demo_history' on predictions, rejected inputs and outcomes."""

    table: ClassVar[str] = "demo_history"
    seeding_id: str
    created_at: datetime
    user_name: str
    first_at: datetime  # the earliest seeded record's time
    last_at: datetime  # the latest
    predictions: int
    rejected_inputs: int
    review_decisions: int
    outcomes: int
    description: str


RECORDS: dict[str, type[Record]] = {r.table: r for r in (
    Prediction, RejectedInput, ModelActivation, UserEvent, AccessEvent, RetentionPurge,
    ConfigEvent, ReviewDecisionRecord, ServiceEvent, Signoff, OutcomeRecord, AuditVerification,
    ClientEvent, CdsFeedback, DeploymentAssessment, AlertNotification, StopRuleEvent,
    DemoHistorySeeded)}
