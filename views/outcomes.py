"""Clinician: record what happened to scored patients once the outcome horizon has passed.

Append-only like every record: a correction is a new outcome that supersedes the one in force,
and the history of a prediction shows both.
"""

import pandas as pd
import streamlit as st

from core.clock import now_utc
from core.display import field_label
from core.errors import (
    AlreadyRecorded,
    ArtefactMismatch,
    InvalidInput,
    NotFound,
    SpecError,
    StoreUnavailable,
)
from core.followup import due_outcomes, prediction_outcomes
from core.outcomes import MEASURED, outcome_of, record_outcome
from core.text import md_text
from ui import demo_history, session

FIELDS = ("event", "event_date", MEASURED, "source")

user = session.guard("record_outcome")

# After a recorded outcome the choice of prediction and the form start empty again (widget
# values can only be reset before the widgets are drawn).
if "outcomes_notice" in st.session_state:  # set with a recorded outcome: clear the form
    for name in ("prediction", "prediction_id", *FIELDS):
        st.session_state.pop(f"outcomes_{name}", None)

now = now_utc()
try:
    due = due_outcomes(now=now)
except (StoreUnavailable, ArtefactMismatch) as exc:
    st.error(f"Outcomes are unavailable: {exc}")
    st.stop()

st.title("Outcomes")
demo_history.banner()
st.caption("What happened to each scored patient, as the model version that scored them defines "
           "its outcome. Predictions whose horizon has passed with no outcome recorded are listed "
           "here, most overdue first. An event can be recorded as soon as it happens; 'no event' "
           "only once the horizon has passed.")
notice = st.session_state.pop("outcomes_notice", None)
if notice:
    st.success(notice)

st.header(f"Due or overdue ({len(due)})")
if st.toggle("Only predictions I scored", key="outcomes_mine"):
    due = [d for d in due if d.user_name == user.username]
if not due:
    st.info("No outcomes are due.")
else:
    st.dataframe(
        pd.DataFrame([d.model_dump() for d in due])[
            ["patient_ref", "created_at", "horizon_days", "days_overdue", "risk", "risk_class",
             "routing", "model_version", "user_name", "prediction_id"]],
        hide_index=True, key="outcomes_due", column_config={
            "patient_ref": "Patient", "created_at": st.column_config.DatetimeColumn("Scored (UTC)"),
            "horizon_days": st.column_config.NumberColumn("Horizon (days)"),
            "days_overdue": st.column_config.NumberColumn("Days overdue"),
            "risk": st.column_config.NumberColumn("Risk", format="percent"), "risk_class": "Class",
            "routing": "Routing", "model_version": "Model", "user_name": "Scored by",
            "prediction_id": "Prediction ID"})

st.header("Record an outcome")
labels = {row.prediction_id: f"{row.patient_ref} - scored {row.created_at:%Y-%m-%d} by {row.user_name} "
                             f"({row.days_overdue} days overdue)" for row in due}
cols = st.columns(2)
picked = cols[0].selectbox("Due prediction", list(labels), format_func=labels.get, index=None,
                           placeholder="Choose a prediction from the list", key="outcomes_prediction")
typed = cols[1].text_input("Or prediction ID", key="outcomes_prediction_id",
                           help="Any prediction: for an event before the horizon, or to correct an "
                                "outcome already recorded")
prediction_id = typed.strip() or picked
if not prediction_id:
    st.stop()
try:
    record = prediction_outcomes(prediction_id)
except StoreUnavailable as exc:
    st.error(f"Outcomes are unavailable: {exc}")
    st.stop()
if record is None:
    st.error(f"There is no prediction with ID {prediction_id}.")
    st.stop()
prediction, current = record.prediction, record.current
try:
    outcome = outcome_of(prediction.model_version)
except SpecError as exc:
    st.error(f"The outcome of model {prediction.model_version} cannot be read: {exc}")
    st.stop()
measurement = outcome.measurement

st.markdown(f"**{md_text(prediction.patient_ref or '(patient reference purged)')}**: scored "
            f"{prediction.created_at:%Y-%m-%d %H:%M} UTC by {md_text(prediction.user_name)}, risk "
            f"{prediction.risk:.1%} ({prediction.risk_class}), "
            f"{'auto-finalised' if prediction.routing == 'auto_finalised' else 'routed to review'}, "
            f"model {prediction.model_version}.")
if record.history:
    st.subheader("Outcome history")
    st.markdown("Oldest first; nothing is ever changed or deleted.")
    value_label = (f"{measurement.label} ({measurement.unit})".replace(" ()", "")
                   if measurement else "Measured value")
    st.dataframe(pd.DataFrame([h.model_dump() for h in record.history])[
        ["created_at", "user_name", "event", "event_date", MEASURED, "source", "in_force",
         "supersedes", "outcome_id"]], hide_index=True, key="outcomes_history", column_config={
        "created_at": st.column_config.DatetimeColumn("Recorded (UTC)"), "user_name": "By",
        "event": "Event", "event_date": "Event date", MEASURED: value_label,
        "source": "Source", "in_force": "In force", "supersedes": "Corrects", "outcome_id": "Outcome ID"})
if current:
    st.info(f"An outcome is recorded (event: {'yes' if current.event else 'no'}, by "
            f"{md_text(current.user_name)} on {current.created_at:%Y-%m-%d}). Submitting records a "
            "correction that supersedes it; both stay in the history.")

with st.form("outcomes_form"):
    slots = {}
    event = st.radio(f"{outcome.label} within the {outcome.horizon_days}-day horizon? (required)",
                     ["yes", "no"], index=None, horizontal=True, key="outcomes_event",
                     help=outcome.definition)
    slots["event"] = st.empty()
    event_date = None
    if outcome.event_date != "none":
        event_date = st.date_input(
            "Date of the event (required if it happened)" if outcome.event_date == "required"
            else field_label("Date of the event", required=False), value=None, max_value=now.date(), key="outcomes_event_date",
            help="Required when the event happened" if outcome.event_date == "required"
            else "Optional: the date of the event, when known")
    slots["event_date"] = st.empty()
    measured = None
    if measurement:
        measured = st.number_input(
            field_label(measurement.label, required=False, unit=measurement.unit or ""), value=None, step=0.1, format="%.2f",
            key=f"outcomes_{MEASURED}",
            help=f"Between {measurement.min:g} and {measurement.max:g}; a value "
                 f"{measurement.describe_event()} is the event.")
    slots[MEASURED] = st.empty()
    source = st.text_input(field_label("Source", required=True), key="outcomes_source", max_chars=200,
                           placeholder="e.g. lab system, clinic letter, telephone follow-up")
    slots["source"] = st.empty()
    summary = st.empty()
    submitted = st.form_submit_button("Correct outcome" if current else "Record outcome", type="primary")

if submitted:
    payload = {"prediction_id": prediction_id, "event": None if event is None else event == "yes",
               "event_date": event_date, MEASURED: measured, "source": source,
               "supersedes": current.outcome_id if current else None}
    try:
        record_outcome(payload, user=user.username)
    except InvalidInput as exc:
        names = {"event": "Event", "event_date": "Date of the event", "source": "Source",
                 MEASURED: measurement.label if measurement else "Measured value",
                 "prediction_id": "Prediction ID", "supersedes": "Outcome corrected"}
        sentences = exc.sentences(names)
        for field, said in sentences.items():
            if field in slots:
                slots[field].error(md_text(" ".join(said)))
        unplaced = [m for field, said in sentences.items() if field not in slots for m in said]
        if unplaced:  # a problem of the form as a whole, or of no field shown here
            summary.error(md_text("Not recorded: " + " ".join(unplaced)))
        else:
            summary.error(f"Not recorded - please correct {len(exc.errors)} problem(s) above.")
    except (AlreadyRecorded, NotFound) as exc:
        st.error(f"Not recorded: {md_text(exc)}. Reload the page to see the outcome in force.")
    except StoreUnavailable as exc:
        st.error(f"Not recorded: {exc}. Please try again or tell the service owner.")
        st.stop()
    else:
        st.session_state["outcomes_notice"] = (
            f"{'Correction' if current else 'Outcome'} recorded for "
            f"{prediction.patient_ref or prediction_id}: event {event}.")
        st.rerun()
