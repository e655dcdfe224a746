"""Outcomes at the horizon: what happened to each scored patient, entered by hand or imported.

Append-only like every record: a correction is a new outcome that supersedes the one in force.
An event can be recorded as soon as it happens; "no event" only once the horizon has passed.
"""

from __future__ import annotations

import functools
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core import artifacts, audit
from core.clock import now_utc
from core.config import get_settings
from core.errors import AlreadyRecorded, InvalidInput, NotFound
from core.spec import WHOLE_ROW, problem
from core.store import Event, Store, open_store
from core.store.records import OutcomeRecord
from core.text import free_text

HYPERKALAEMIA = 5.5  # mmol/L, the outcome's definition in the spec
IMPORT_COLUMNS = ("prediction_id", "patient_ref", "sample_date", "event", "event_date",
                  "max_potassium", "source")


class OutcomeInput(BaseModel):
    """One outcome as entered on the outcomes page or read from an import row."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    prediction_id: str = Field(min_length=1, max_length=64)
    event: bool
    event_date: date | None = None
    max_potassium: float | None = Field(default=None, ge=1.5, le=10.0, allow_inf_nan=False)
    source: free_text(200) = Field(min_length=1)
    supersedes: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OutcomeInput:
        if self.event and self.event_date is None:
            raise ValueError("event_date is required when the event happened")
        if self.max_potassium is not None and (self.max_potassium >= HYPERKALAEMIA) != self.event:
            raise ValueError(f"highest potassium {self.max_potassium:g} mmol/L contradicts "
                             f"event={'yes' if self.event else 'no'} (threshold {HYPERKALAEMIA})")
        return self


def horizon_days(version: str) -> int:
    """The outcome horizon of a model version (from its manifest; versions never change)."""
    return _horizon(str(get_settings().models), version)


@functools.lru_cache(maxsize=32)
def _horizon(models: str, version: str) -> int:
    return int(artifacts.read_manifest(Path(models) / version)["outcome"]["horizon_days"])


def record_outcome(payload: dict, *, user: str, store: Store | None = None,
                   now: datetime | None = None) -> dict:
    """Validate and append one outcome; InvalidInput names every problem."""
    store = store or open_store(get_settings().db)
    now = now or now_utc()
    try:
        o = OutcomeInput.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInput.from_pydantic(exc) from None
    prediction = store.prediction(o.prediction_id)
    if prediction is None:
        raise NotFound(f"prediction {o.prediction_id} does not exist")
    _check_timing(o, prediction, horizon_days(prediction["model_version"]), now)
    record = OutcomeRecord(outcome_id=str(uuid.uuid4()), created_at=now, user_name=user,
                           prediction_id=o.prediction_id, event=o.event, event_date=o.event_date,
                           max_potassium=o.max_potassium, source=o.source, supersedes=o.supersedes)

    def one_in_force() -> None:
        current = store.current_outcome(o.prediction_id)
        if current is not None and current["outcome_id"] != o.supersedes:
            raise AlreadyRecorded(f"an outcome is already recorded for {o.prediction_id} "
                                  f"by {current['user_name']} at {current['created_at']:%Y-%m-%d}")
        if current is None and o.supersedes is not None:
            raise NotFound(f"outcome {o.supersedes} is not the one in force")

    store.append([Event("outcome", user, now, o.prediction_id, record)], precondition=one_in_force)
    return record.row()


def _check_timing(o: OutcomeInput, prediction: dict, horizon: int, now: datetime) -> None:
    start = prediction["created_at"].date()
    end = start + timedelta(days=horizon)
    problems = []
    if o.event_date is not None and not start <= o.event_date <= min(end, now.date()):
        problems.append({"field": "event_date", "value": o.event_date.isoformat(),
                         "message": f"must be between the prediction date {start} and "
                                    f"{min(end, now.date())} (the {horizon}-day horizon)"})
    if not o.event and now.date() < end:
        problems.append({"field": "event", "value": "no",
                         "message": f"'no event' can only be recorded once the {horizon}-day "
                                    f"horizon has passed, on {end}"})
    if problems:
        raise InvalidInput(problems)


def import_outcomes(csv_path: Path, *, user: str, now: datetime | None = None) -> dict:
    """Import a lab-system export; each row is recorded or rejected with its reasons.

    Columns: prediction_id, or patient_ref plus sample_date (matched to that patient's
    prediction whose horizon contains the date); event (yes/no) and/or max_potassium; source.
    """
    settings = get_settings()
    store = open_store(settings.db)
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    unknown = [c for c in frame.columns if c not in IMPORT_COLUMNS]
    if unknown:  # refused whole: an import records outcomes, it never corrects or supersedes one
        raise InvalidInput([problem(str(c), "is not a column of an outcome import (a correction "
                                    "is made on the Outcomes page)" if c == "supersedes" else
                                    "is not a column of an outcome import; the columns are: "
                                    + ", ".join(IMPORT_COLUMNS), "") for c in unknown])
    rows = frame.to_dict("records")
    report = {"rows": len(rows), "recorded": 0, "rejected": []}
    for number, row in enumerate(rows, start=1):
        try:
            record_outcome(_payload(row, store, settings), user=user, store=store, now=now)
            report["recorded"] += 1
        except (InvalidInput, NotFound, AlreadyRecorded) as exc:
            errors = getattr(exc, "errors", None) or [{"field": WHOLE_ROW, "message": str(exc)}]
            report["rejected"].append({"row": number, "errors": errors})
    return report


def _payload(row: dict, store: Store, settings) -> dict:
    data = {k: (v if v != "" else None) for k, v in row.items()}
    sample_date = data.pop("sample_date", None)
    patient_ref = data.pop("patient_ref", None)
    if data.get("max_potassium") is not None and data.get("event") is None:
        try:
            data["event"] = float(data["max_potassium"]) >= HYPERKALAEMIA
        except ValueError:
            pass  # validation reports the bad number
    if not data.get("prediction_id") and patient_ref:
        data["prediction_id"] = _match(patient_ref, sample_date, store, settings)
    if data.get("event_date") is None and str(data.get("event")).lower() in ("true", "yes", "y", "1"):
        data["event_date"] = sample_date
    return data


def _match(patient_ref: str, sample_date: str | None, store: Store, settings) -> str:
    if not sample_date:
        raise InvalidInput([{"field": "sample_date", "value": "None",
                             "message": "is required to match a row by patient_ref"}])
    try:
        when = date.fromisoformat(sample_date)
    except ValueError:
        raise InvalidInput([{"field": "sample_date", "value": repr(sample_date)[:80],
                             "message": "must be a date YYYY-MM-DD"}]) from None
    key = audit.patient_key(patient_ref, settings.patient_key_bytes())
    for p in store.predictions_for_patient(key).itertuples():
        start = p.created_at.date()
        if start <= when <= start + timedelta(days=_horizon(str(settings.models), p.model_version)):
            return p.prediction_id
    raise NotFound(f"no prediction for this patient whose horizon contains {sample_date}")
