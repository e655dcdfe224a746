"""Scoring: the single path from a payload to a recorded, routed prediction.

validate (spec of the active artefact) -> features (same code as training) -> predict ->
route -> record (one committed event) -> ScoreResult. Fail closed: a result exists only once
its record is committed; a rejected payload is recorded too, then raised as InvalidInput.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict

from core import artifacts, audit
from core.clock import now_utc
from core.config import Settings, get_settings
from core.errors import InvalidInput, safe_repr
from core.features import model_frame, model_rows
from core.predict import Predictions
from core.serving import active_artefact
from core.spec import PATIENT_REF, WHOLE_PAYLOAD, WHOLE_ROW, Spec, validate_many, validate_payload
from core.stop_switch import check_not_suspended
from core.store import Event, Store, open_store
from core.store.records import Prediction, RejectedInput
from core.text import actor

Source = Literal["form", "batch", "api"]  # who sent a payload: the scoring page, a batch file, the API
SOURCES: tuple[str, ...] = get_args(Source)
# The source of the synthetic history seeded into a demo-mode store (core.demo_history), and of
# nothing else: no caller can state it (it is not one of SOURCES); only seeded events, which
# carry their own past times, are recorded with it.
SEEDED_SOURCE = "demo_history"
# Sources whose payloads are JSON, validated with JSON's own types (no "70" for 70, no 0 for
# false), as the API's document states them; a form and a file give text, read as text.
STRICT_SOURCES = ("api",)
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


def _context() -> tuple[Settings, Store, artifacts.Artefact]:
    settings = get_settings()
    store = open_store(settings.db)
    check_not_suspended(store)
    return settings, store, active_artefact(store, settings)


def check_source(source: object) -> Source:
    """The source a caller states, refused (ValueError) unless it is one of SOURCES: a record
    says truthfully where each prediction came from."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {safe_repr(source)}: a prediction's source is one of "
                         + ", ".join(SOURCES))
    return source


def score(payload: Mapping, *, user: str, source: Source) -> ScoreResult:
    """Validate, predict, route and record one patient; InvalidInput lists every problem.
    `source` says who sent it (see SOURCES) and is recorded with the prediction or rejection."""
    actor(user)
    check_source(source)
    settings, store, artefact = _context()
    try:
        ref, values = validate_payload(artefact.spec, payload, strict=source in STRICT_SOURCES)
    except InvalidInput as exc:
        record_rejections(store, artefact, [(payload, exc.errors)], user=user, source=source)
        raise
    pred = artefact.predictor.predict(model_rows([values], artefact.spec))  # no DataFrame
    key = settings.patient_key_bytes()
    return record_predictions(store, artefact, [(ref, values)], pred, user=user,
                              source=source, key=key)[0]


class ScoredOne(BaseModel):
    """One payload of a list scored together: its index, and its result or its problems."""

    model_config = ConfigDict(frozen=True)

    index: int
    status: Literal["scored", "rejected"]
    prediction: ScoreResult | None = None
    problems: list[dict] = []


def score_many(payloads: list, *, user: str, source: Source) -> list[ScoredOne]:
    """Score a list of payloads as one batch: one committed transaction for the predictions and
    one for the rejected payloads (each recorded like core.score's); results in input order,
    returned only once both are committed."""
    actor(user)
    check_source(source)
    settings, store, artefact = _context()
    good, bad = validate_many(artefact.spec, payloads, strict=source in STRICT_SOURCES)
    out: dict[int, ScoredOne] = {}
    if good:
        inputs = [(ref, values) for _, ref, values in good]
        pred = artefact.predictor.predict(model_frame([v for _, v in inputs], artefact.spec))
        results = record_predictions(store, artefact, inputs, pred, user=user, source=source,
                                     key=settings.patient_key_bytes())
        out |= {i: ScoredOne(index=i, status="scored", prediction=r)
                for (i, _, _), r in zip(good, results, strict=True)}
    if bad:
        record_rejections(store, artefact, [(payloads[i], errors) for i, errors in bad],
                          user=user, source=source)
        out |= {i: ScoredOne(index=i, status="rejected", problems=errors) for i, errors in bad}
    return [out[i] for i in sorted(out)]


def reject(payload: Any, problems: list[dict], *, user: str, source: Source) -> InvalidInput:
    """Record a payload refused before it could be read as one (a body that is not JSON, say)
    as a rejected input of the serving version, and return the InvalidInput to raise."""
    actor(user)
    check_source(source)
    _, store, artefact = _context()
    record_rejections(store, artefact, [(payload, problems)], user=user, source=source)
    return InvalidInput(problems)


def new_ids(n: int) -> list[str]:
    """n random (version 4) UUIDs as text; one read of the OS's random source for all of them,
    where uuid.uuid4() makes one system call each (a visible cost in batch scoring)."""
    block = os.urandom(16 * n).hex()
    out = []
    for i in range(0, 32 * n, 32):
        h = block[i:i + 32]
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}")
    return out


def event_times(n: int, source: str, seeded_at: Sequence[datetime] | None) -> list[datetime]:
    """The times of n events from `source`: now, for one of SOURCES; with `seeded_at` (the
    demo's seeded history only, core.demo_history), those past times, for SEEDED_SOURCE."""
    if seeded_at is None:
        check_source(source)
        return [now_utc()] * n
    if source != SEEDED_SOURCE or len(seeded_at) != n:
        raise ValueError(f"past times are for the {SEEDED_SOURCE} source only, one per event")
    return list(seeded_at)


def prediction_events(artefact: artifacts.Artefact, inputs: list[tuple[str, dict]],
                      pred: Predictions, *, user: str, source: str, key: bytes,
                      seeded_at: Sequence[datetime] | None = None) -> list[Event]:
    """One prediction event per input (vectorised enough for batch: no per-row model objects).
    `seeded_at`: see event_times (never given by a page, a command or the API)."""
    times = event_times(len(inputs), source, seeded_at)
    risk, low, high = pred.risk.round(4).tolist(), pred.risk_low.round(4).tolist(), pred.risk_high.round(4).tolist()
    conf = np.minimum(pred.confidence.round(4), CONFIDENCE_CAP).tolist()
    classes = pred.risk_class.tolist()
    routing = np.where(pred.review, "review", "auto_finalised").tolist()
    version, sha = artefact.version, artefact.sha256
    events = []
    for i, ((ref, values), prediction_id) in enumerate(zip(inputs, new_ids(len(inputs)), strict=True)):
        at = times[i]
        input_json = audit.canonical_json(values)
        record = Prediction(
            prediction_id=prediction_id, created_at=at, user_name=user, source=source,
            patient_key=audit.patient_key(ref, key), input_sha256=audit.sha256_text(input_json),
            risk=risk[i], risk_low=low[i], risk_high=high[i], risk_class=classes[i],
            confidence=conf[i], routing=routing[i],
            reasons_json=audit.canonical_json(pred.reasons[i]), reason_codes=pred.reason_codes[i],
            factors_json=audit.canonical_json(pred.factors[i]), model_version=version,
            model_sha256=sha)
        phi = {"prediction_id": prediction_id, "created_at": at, "patient_ref": ref,
               "input_json": input_json}
        events.append(Event("prediction", user, at, prediction_id, record, phi))
    return events


def result_of(event: Event, artefact: artifacts.Artefact, reasons: list[str],
              factors: list[dict]) -> ScoreResult:
    """The ScoreResult that a recorded prediction event stands for."""
    r, phi = event.record, event.phi
    return ScoreResult(
        prediction_id=r.prediction_id, patient_ref=phi["patient_ref"], risk=r.risk,
        risk_interval_95=(r.risk_low, r.risk_high), risk_class=r.risk_class,
        action_threshold=artefact.predictor.rule.action_threshold, confidence=r.confidence,
        routing=r.routing, reasons=reasons, reason_codes=r.reason_codes, top_factors=factors,
        model_version=r.model_version, model_sha256=r.model_sha256,
        created_at=r.created_at.replace(tzinfo=UTC),
    )


def record_predictions(store: Store, artefact: artifacts.Artefact,
                       inputs: list[tuple[str, dict]], pred: Predictions, *, user: str,
                       source: str, key: bytes) -> list[ScoreResult]:
    """Commit one prediction event per input; return results only after the commit."""
    events = prediction_events(artefact, inputs, pred, user=user, source=source, key=key)
    store.append(events, precondition=lambda: check_not_suspended(store, fresh=True))
    return [result_of(ev, artefact, pred.reasons[i], pred.factors[i]) for i, ev in enumerate(events)]


def known_fields(spec: Spec) -> set[str]:
    """The field names a rejection records as sent: the model's inputs, the patient reference,
    and the markers for a whole payload or row. Any other name is recorded as UNKNOWN_FIELD."""
    return {PATIENT_REF, WHOLE_PAYLOAD, WHOLE_ROW, *spec.names}


def record_rejections(store: Store, artefact: artifacts.Artefact,
                      rejected: list[tuple[Any, list[dict]]], *, user: str, source: str,
                      seeded_at: Sequence[datetime] | None = None) -> None:
    """Record rejected payloads: field names and messages and a payload hash, never the values.

    A name that is not one of the model's fields is recorded as UNKNOWN_FIELD: a key or a column
    heading is whatever the sender typed, and could itself identify a patient.
    `seeded_at`: see event_times (never given by a page, a command or the API)."""
    times = event_times(len(rejected), source, seeded_at)
    known = known_fields(artefact.spec)
    key = get_settings().patient_key_bytes()
    events = []
    for (payload, errors), at in zip(rejected, times, strict=True):
        fields = [{"field": e["field"] if e["field"] in known else UNKNOWN_FIELD,
                   "message": e["message"]} for e in errors]
        record = RejectedInput(rejection_id=str(uuid.uuid4()), created_at=at, user_name=user,
                               source=source, fields_json=json.dumps(fields),
                               payload_sha256=_payload_hash(payload, key),
                               model_version=artefact.version)
        events.append(Event("rejected_input", user, at, record.rejection_id, record))
    store.append(events)


def _payload_hash(payload: Any, key: bytes) -> str:
    """Keyed hash (HMAC with the deployment's key) of what was sent, for matching a rejection to
    its source; never raises. Keyed, because a payload can be as small as one patient number,
    which a plain hash would give back to anyone who tries the possible numbers."""
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=safe_repr,
                          ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):  # mixed-type keys, huge ints, deep nesting
        text = safe_repr(payload)
    return audit.patient_key("payload:" + text.encode("utf-8", "surrogatepass").decode(
        "utf-8", "replace"), key)


