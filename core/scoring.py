"""Scoring: the single path from a payload to a recorded, routed prediction.

validate (spec of the active artefact) -> features (same code as training) -> predict ->
route -> record (one committed event) -> ScoreResult. Fail closed: a result exists only once
its record is committed; a rejected payload is recorded too, then raised as InvalidInput.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from core import artifacts, audit
from core.config import Settings, get_settings
from core.errors import ArtefactMismatch, CoreError, InvalidInput, ScoringSuspended
from core.features import model_frame
from core.predict import Predictions
from core.spec import PATIENT_REF, WHOLE_PAYLOAD, WHOLE_ROW, Spec, safe_repr, validate_payload
from core.store import Event, Store, open_store

UNKNOWN_FIELD = "(unknown field)"  # how a rejected field that the model does not have is recorded
# A probability from a statistical model is never certainty: recorded confidences are capped
# here (so no record, page or file says 1), and pages show anything above 99.9% as "> 99.9%".
CONFIDENCE_CAP = 0.9999


class Factor(BaseModel):
    """One input that moved this patient's risk away from the average training patient."""

    feature: str
    label: str
    direction: Literal["raises risk", "lowers risk"]
    effect: float  # change in log-odds


class ScoreResult(BaseModel):
    """What the model says about one patient, as recorded (schema versioned with the model)."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    prediction_id: str
    patient_ref: str
    risk: float
    risk_interval_95: tuple[float, float]
    risk_class: Literal["high", "low"]
    action_threshold: float
    confidence: float
    routing: Literal["auto_finalised", "review"]
    reasons: list[str]
    reason_codes: list[str]  # one per reason: see core.predict.REASON_CODES
    top_factors: list[Factor]
    model_version: str
    model_sha256: str
    created_at: datetime


def pct(x: float) -> str:
    """A probability as the pages show it: a percentage with one decimal."""
    return f"{x * 100:.1f}%"


def confidence_text(x: float) -> str:
    """A confidence as every page shows it: never 100%, above 99.9% as '> 99.9%'."""
    return "> 99.9%" if x > 0.999 else pct(x)


def confidence_meaning(artefact: artifacts.Artefact) -> str:
    """What a version's confidence means, in the clinician's paragraph from its manifest."""
    return (artefact.manifest["confidence"]["description"] + " Predictions below the "
            "confidence level in the routing rule go to clinical review.")


def now_utc() -> datetime:
    """UTC now, naive (the store keeps TIMESTAMP in UTC; TIMESTAMPTZ would need pytz to read)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def active_artefact(store: Store, settings: Settings) -> artifacts.Artefact:
    """The serving version: the latest activation in the store, else the shipped default."""
    activation = store.active_activation()
    version = artifacts.serving_version(activation, settings.models)
    if not version:
        raise ArtefactMismatch(f"no model is active and {settings.models} names no default version")
    artefact = artifacts.load(settings.models, version)
    if activation and activation[1] != artefact.sha256:
        raise ArtefactMismatch(f"model {version} on disk differs from the one that was activated")
    return artefact


def serving_title(default: str = "Clinical risk") -> str:
    """The serving model's short title (its spec's `title`), for the app's heading and browser
    tab; `default` when no model can be read (the pages then say why)."""
    try:
        settings = get_settings()
        version = artifacts.serving_version(open_store(settings.db).active_activation(),
                                            settings.models)
        return artifacts.read_title(settings.models, version) if version else default
    except CoreError:
        return default


def _context() -> tuple[Settings, Store, artifacts.Artefact]:
    settings = get_settings()
    store = open_store(settings.db)
    check_not_suspended(store)
    return settings, store, active_artefact(store, settings)


def is_suspended(state: tuple | None) -> bool:
    """Whether a service state (Store.service_state()) has the stop switch on."""
    return bool(state) and state[0] == "suspend"


def check_not_suspended(store: Store) -> None:
    """Raise ScoringSuspended while the stop switch is on."""
    state = store.service_state()
    if is_suspended(state):
        _, by, when, reason = state
        raise ScoringSuspended(f"the model is suspended since {when:%Y-%m-%d %H:%M} UTC by {by}: "
                               f"{reason}. No risk can be shown; use usual clinical care.")


def set_suspended(suspended: bool, *, by: str, reason: str) -> None:
    """The stop switch: suspend or resume scoring, with who and why (recorded)."""
    _check_user(by)
    if not reason or not reason.strip():
        raise ValueError("suspending or resuming needs a reason")
    store = open_store(get_settings().db)
    at = now_utc()
    content = {"event_id": str(uuid.uuid4()), "created_at": at, "user_name": by,
               "action": "suspend" if suspended else "resume", "reason": reason.strip()}
    store.append("service_events", [Event(content["action"], by, at, "scoring", content, content)])


def score(payload: Mapping, *, user: str, source: str = "form") -> ScoreResult:
    """Validate, predict, route and record one patient; InvalidInput lists every problem."""
    _check_user(user)
    settings, store, artefact = _context()
    try:
        ref, values = validate_payload(artefact.spec, payload)
    except InvalidInput as exc:
        record_rejections(store, artefact, [(payload, exc.errors)], user=user, source=source)
        raise
    pred = artefact.predictor.predict(model_frame([values], artefact.spec))
    key = settings.patient_key_bytes()
    return record_predictions(store, artefact, [(ref, values)], pred, user=user,
                              source=source, key=key)[0]


def new_ids(n: int) -> list[str]:
    """n random (version 4) UUIDs as text; one read of the OS's random source for all of them,
    where uuid.uuid4() makes one system call each (a visible cost in batch scoring)."""
    block = os.urandom(16 * n).hex()
    out = []
    for i in range(0, 32 * n, 32):
        h = block[i:i + 32]
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}")
    return out


def prediction_events(artefact: artifacts.Artefact, inputs: list[tuple[str, dict]],
                      pred: Predictions, *, user: str, source: str, key: bytes) -> list[Event]:
    """One prediction event per input (vectorised enough for batch: no per-row model objects)."""
    at = now_utc()
    risk, low, high = pred.risk.round(4).tolist(), pred.risk_low.round(4).tolist(), pred.risk_high.round(4).tolist()
    conf = np.minimum(pred.confidence.round(4), CONFIDENCE_CAP).tolist()
    classes = pred.risk_class.tolist()
    routing = np.where(pred.review, "review", "auto_finalised").tolist()
    version, sha = artefact.version, artefact.sha256
    events = []
    for i, ((ref, values), prediction_id) in enumerate(zip(inputs, new_ids(len(inputs)), strict=True)):
        input_json = audit.canonical_json(values)
        content = {
            "prediction_id": prediction_id, "created_at": at, "user_name": user,
            "source": source, "patient_key": audit.patient_key(ref, key),
            "input_sha256": audit.sha256_text(input_json), "risk": risk[i],
            "risk_class": classes[i], "confidence": conf[i], "routing": routing[i],
            "reasons": pred.reasons[i], "reason_codes": pred.reason_codes[i],
            "model_version": version, "model_sha256": sha,
        }
        row = {**content, "risk_low": low[i], "risk_high": high[i],
               "reasons_json": audit.canonical_json(pred.reasons[i]),
               "factors_json": audit.canonical_json(pred.factors[i])}
        phi = {"prediction_id": prediction_id, "created_at": at, "patient_ref": ref,
               "input_json": input_json}
        events.append(Event("prediction", user, at, prediction_id, content, row, phi))
    return events


def result_of(event: Event, artefact: artifacts.Artefact, factors: list[dict]) -> ScoreResult:
    """The ScoreResult that a recorded prediction event stands for."""
    r, phi = event.row, event.phi
    return ScoreResult(
        prediction_id=r["prediction_id"], patient_ref=phi["patient_ref"], risk=r["risk"],
        risk_interval_95=(r["risk_low"], r["risk_high"]), risk_class=r["risk_class"],
        action_threshold=artefact.predictor.rule.action_threshold, confidence=r["confidence"],
        routing=r["routing"], reasons=r["reasons"], reason_codes=r["reason_codes"],
        top_factors=factors, model_version=r["model_version"], model_sha256=r["model_sha256"],
        created_at=r["created_at"].replace(tzinfo=UTC),
    )


def record_predictions(store: Store, artefact: artifacts.Artefact,
                       inputs: list[tuple[str, dict]], pred: Predictions, *, user: str,
                       source: str, key: bytes) -> list[ScoreResult]:
    """Commit one prediction event per input; return results only after the commit."""
    events = prediction_events(artefact, inputs, pred, user=user, source=source, key=key)
    store.append("predictions", events)
    return [result_of(ev, artefact, pred.factors[i]) for i, ev in enumerate(events)]


def known_fields(spec: Spec) -> set[str]:
    """The field names a rejection records as sent: the model's inputs, the patient reference,
    and the markers for a whole payload or row. Any other name is recorded as UNKNOWN_FIELD."""
    return {PATIENT_REF, WHOLE_PAYLOAD, WHOLE_ROW, *spec.names}


def record_rejections(store: Store, artefact: artifacts.Artefact,
                      rejected: list[tuple[Any, list[dict]]], *, user: str, source: str) -> None:
    """Record rejected payloads: field names and messages and a payload hash, never the values.

    A name that is not one of the model's fields is recorded as UNKNOWN_FIELD: a key or a column
    heading is whatever the sender typed, and could itself identify a patient."""
    at = now_utc()
    known = known_fields(artefact.spec)
    events = []
    for payload, errors in rejected:
        fields = [{"field": e["field"] if e["field"] in known else UNKNOWN_FIELD,
                   "message": e["message"]} for e in errors]
        content = {"rejection_id": str(uuid.uuid4()), "created_at": at, "user_name": user,
                   "source": source, "fields": fields, "payload_sha256": _payload_hash(payload),
                   "model_version": artefact.version}
        row = {**content, "fields_json": json.dumps(fields)}
        events.append(Event("rejected_input", user, at, content["rejection_id"], content, row))
    store.append("rejected_inputs", events)


def activate(version: str, *, by: str, reason: str) -> artifacts.Artefact:
    """Make a verified version the serving one; the history keeps every activation."""
    _check_user(by)
    if not reason or not reason.strip():
        raise ValueError("an activation needs a reason")
    settings = get_settings()
    artefact = artifacts.load(settings.models, version)
    at = now_utc()
    content = {"activation_id": str(uuid.uuid4()), "created_at": at, "user_name": by,
               "version": version, "model_sha256": artefact.sha256, "reason": reason.strip()}
    open_store(settings.db).append("model_activations", [Event(
        "model_activation", by, at, version, content, content)])
    return artefact


def _payload_hash(payload: Any) -> str:
    """Hash of what was sent, for matching a rejection to its source; never raises."""
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=safe_repr,
                          ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):  # mixed-type keys, huge ints, deep nesting
        text = safe_repr(payload)
    return audit.sha256_text(text)


def _check_user(user: str) -> None:
    if not isinstance(user, str) or not user.strip():
        raise ValueError("every scoring call needs the signed-in user's name")
