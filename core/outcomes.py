"""Outcomes at the horizon: what happened to each scored patient, entered by hand or imported.

Each prediction's outcome follows the outcome definition of the model version that made it (its
spec): the horizon, whether an event date is recorded, and the optional measured value with its
limits and the threshold that defines the event. Append-only like every record: a correction is
a new outcome that supersedes the one in force. An event can be recorded as soon as it happens;
"no event" only once the horizon has passed.
"""

from __future__ import annotations

import functools
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import artifacts, audit
from core.clock import now_utc
from core.config import get_settings
from core.errors import AlreadyRecorded, InvalidInput, NotFound, SpecError, problem
from core.spec import WHOLE_ROW, Spec
from core.store import Event, Store, open_store
from core.store.records import OutcomeRecord
from core.task import Outcome
from core.text import free_text

MEASURED = "measured_value"  # the page's and the store's name for the measured value
IMPORT_COLUMNS = ("prediction_id", "patient_ref", "sample_date", "event", "event_date", "source")


class OutcomeInput(BaseModel):
    """One outcome as entered on the outcomes page or read from an import row."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    prediction_id: str = Field(min_length=1, max_length=64)
    event: bool
    event_date: date | None = None
    measured_value: float | None = Field(default=None, allow_inf_nan=False)
    source: free_text(200) = Field(min_length=1)
    supersedes: str | None = None


def outcome_of(version: str) -> Outcome:
    """The outcome definition of a model version (from its spec; versions never change)."""
    return _spec(str(get_settings().models), version).outcome


def horizon_days(version: str) -> int:
    """The outcome horizon of a model version."""
    return outcome_of(version).horizon_days


@functools.lru_cache(maxsize=32)
def _spec(models: str, version: str) -> Spec:
    return artifacts.spec_of(models, version)


def record_outcome(payload: dict, *, user: str, store: Store | None = None,
                   now: datetime | None = None) -> dict:
    """Validate and append one outcome; InvalidInput names every problem."""
    store = store or open_store(get_settings().db)
    now = now or now_utc()
    o = checked(payload)
    prediction = store.prediction(o.prediction_id)
    if prediction is None:
        raise NotFound(f"prediction {o.prediction_id} does not exist")
    record = outcome_record(o, prediction, outcome_of(prediction["model_version"]), user=user,
                            now=now)

    def one_in_force() -> None:
        current = store.current_outcome(o.prediction_id)
        if current is not None and current["outcome_id"] != o.supersedes:
            raise AlreadyRecorded(f"an outcome is already recorded for {o.prediction_id} "
                                  f"by {current['user_name']} at {current['created_at']:%Y-%m-%d}")
        if current is None and o.supersedes is not None:
            raise NotFound(f"outcome {o.supersedes} is not the one in force")

    store.append([Event("outcome", user, now, o.prediction_id, record)], precondition=one_in_force)
    return record.row()


def checked(payload: dict) -> OutcomeInput:
    """The outcome a form or an import row states, validated on its own."""
    try:
        return OutcomeInput.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInput.from_pydantic(exc) from None


def outcome_record(o: OutcomeInput, prediction: dict, definition: Outcome, *, user: str,
                   now: datetime) -> OutcomeRecord:
    """The record of outcome `o` of `prediction` (its row, for its created_at), checked against
    its version's outcome `definition` and against the timing as at `now`, when it is recorded
    (now, except in the demo's seeded history, core.demo_history)."""
    _check_definition(o, definition)
    _check_timing(o, prediction, definition.horizon_days, now)
    return OutcomeRecord(outcome_id=str(uuid.uuid4()), created_at=now, user_name=user,
                         prediction_id=o.prediction_id, event=o.event, event_date=o.event_date,
                         measured_value=o.measured_value, source=o.source, supersedes=o.supersedes)


def _check_definition(o: OutcomeInput, definition: Outcome) -> None:
    """The event date and the measured value as this prediction's outcome definition has them."""
    problems = []
    if o.event and o.event_date is None and definition.event_date == "required":
        problems.append(problem("event_date", "is required when the event happened", None))
    if o.event_date is not None and definition.event_date == "none":
        problems.append(problem("event_date", "this model's outcome records no event date; leave it empty",
                                o.event_date, shown=o.event_date.isoformat()))
    m = definition.measurement
    if o.measured_value is not None and m is None:
        problems.append(problem(MEASURED, "this model's outcome has no measured value; leave it empty",
                                o.measured_value, shown=f"{o.measured_value:g}"))
    elif o.measured_value is not None and not m.min <= o.measured_value <= m.max:
        problems.append(problem(MEASURED, f"must be between {m.min:g} and {m.max:g} {m.unit}".rstrip(),
                                o.measured_value, shown=f"{o.measured_value:g}"))
    elif o.measured_value is not None and m.is_event(o.measured_value) != o.event:
        problems.append(problem("(form)", (
            f"{m.label} {o.measured_value:g} {m.unit} contradicts "
            f"event={'yes' if o.event else 'no'} (the event is a value {m.describe_event()})"),
            o.measured_value, shown=f"{o.measured_value:g}"))
    if problems:
        raise InvalidInput(problems)


def _check_timing(o: OutcomeInput, prediction: dict, horizon: int, now: datetime) -> None:
    start = prediction["created_at"].date()
    end = start + timedelta(days=horizon)
    problems = []
    if o.event_date is not None and not start <= o.event_date <= min(end, now.date()):
        problems.append(problem("event_date", f"must be between the prediction date {start} and "
                                              f"{min(end, now.date())} (the {horizon}-day horizon)",
                                o.event_date, shown=o.event_date.isoformat()))
    if not o.event and now.date() < end:
        problems.append(problem("event", f"'no event' can only be recorded once the {horizon}-day "
                                         f"horizon has passed, on {end}", o.event, shown="no"))
    if problems:
        raise InvalidInput(problems)


def import_columns(models: Path) -> list[str]:
    """The columns an outcome import may have: the fixed ones and the measured value of every
    model version on disk, named as its spec names it."""
    names = list(IMPORT_COLUMNS)
    for version in artifacts.list_versions(models):
        try:
            m = _spec(str(models), version).outcome.measurement
        except SpecError:
            continue
        if m and m.name not in names:
            names.append(m.name)
    return names


def import_outcomes(csv_path: Path, *, user: str, now: datetime | None = None) -> dict:
    """Import a lab-system export; each row is recorded or rejected with its reasons.

    Columns (README, "Importing outcomes"): prediction_id, or patient_ref plus sample_date
    (matched to that patient's prediction whose horizon contains the date); event (yes/no) and/or
    the measured value named by the prediction's model spec; event_date; source. A column that is
    none of these refuses the whole file (InvalidInput)."""
    settings = get_settings()
    store = open_store(settings.db)
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    allowed = import_columns(settings.models)
    unknown = [c for c in table.columns if c not in allowed]
    if unknown:  # refused whole: an import records outcomes, it never corrects or supersedes one
        raise InvalidInput([problem(str(c), (
            "is not a column of the outcome import (a correction is made on the Outcomes page)"
            if c == "supersedes" else "is not a column of the outcome import; the columns are "
            + ", ".join(allowed)), c, shown="(column)") for c in unknown])
    report = {"rows": len(table), "recorded": 0, "rejected": []}
    for number, row in enumerate(table.to_dict("records"), start=1):
        try:
            payload, column = _payload(row, store, settings)
            try:
                record_outcome(payload, user=user, store=store, now=now)
            except InvalidInput as exc:  # name the file's column, not the page's field
                raise InvalidInput([problem(column if e["field"] == MEASURED else e["field"],
                                            e["message"], None, shown=e["value"])
                                    for e in exc.errors]) from None
            report["recorded"] += 1
        except (InvalidInput, NotFound, AlreadyRecorded, SpecError) as exc:
            errors = getattr(exc, "errors", None) or [problem(WHOLE_ROW, str(exc), None, shown="")]
            report["rejected"].append({"row": number, "errors": errors})
    return report


def _payload(row: dict, store: Store, settings) -> tuple[dict, str]:
    """The outcome a row stands for, and the name of the measured-value column it used."""
    data = {k: (v if v != "" else None) for k, v in row.items()}
    sample_date = data.pop("sample_date", None)
    patient_ref = data.pop("patient_ref", None)
    if not data.get("prediction_id") and patient_ref:
        data["prediction_id"] = _match(patient_ref, sample_date, store, settings)
    prediction = store.prediction(data["prediction_id"]) if data.get("prediction_id") else None
    definition = outcome_of(prediction["model_version"]) if prediction else None
    m = definition.measurement if definition else None
    column = m.name if m else MEASURED
    given = {c: data.pop(c) for c in list(data) if c not in IMPORT_COLUMNS}
    if m is not None:
        data[MEASURED] = given.pop(m.name, None)
    problems = [problem(c, "is not the measured value of this prediction's model"
                        + (f" (it records {m.name})" if m else ""), v, shown=str(v))
                for c, v in given.items() if v is not None]
    if problems:
        raise InvalidInput(problems)
    if m is not None and data.get(MEASURED) is not None and data.get("event") is None:
        try:
            data["event"] = m.is_event(float(data[MEASURED]))
        except ValueError:
            pass  # validation reports the bad number
    yes = str(data.get("event")).lower() in ("true", "yes", "y", "1")
    if data.get("event_date") is None and yes and (definition is None or definition.event_date != "none"):
        data["event_date"] = sample_date
    return data, column


def _match(patient_ref: str, sample_date: str | None, store: Store, settings) -> str:
    if not sample_date:
        raise InvalidInput([problem("sample_date", "is required to match a row by patient_ref", None)])
    try:
        when = date.fromisoformat(sample_date)
    except ValueError:
        raise InvalidInput([problem("sample_date", "must be a date YYYY-MM-DD", sample_date)]) from None
    key = audit.patient_key(patient_ref, settings.patient_key_bytes())
    for p in store.predictions_for_patient(key).itertuples():
        start = p.created_at.date()
        try:
            horizon = _spec(str(settings.models), p.model_version).outcome.horizon_days
        except SpecError:
            continue
        if start <= when <= start + timedelta(days=horizon):
            return p.prediction_id
    raise NotFound(f"no prediction for this patient whose horizon contains {sample_date}")
