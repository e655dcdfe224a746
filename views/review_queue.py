"""Reviewer: clear the predictions routed to clinical review, oldest first, with signed decisions."""

import pandas as pd
import streamlit as st

from core import artifacts, review
from core.config import get_settings
from core.display import confidence_text, field_label, pct
from core.errors import AlreadyDecided, ArtefactMismatch, InvalidInput, NotFound, StoreUnavailable
from core.predict import REASON_CODES
from core.review_queue import QUEUE_LIMIT, queue, recent_decisions
from core.text import md_text
from ui import demo_history, session

user = session.guard("review")

FLAGGED = "background-color: rgba(255, 189, 69, 0.3)"  # an input missing or outside its range

settings = get_settings()
st.title("Review queue")
demo_history.banner()
st.caption("Predictions routed to clinical review, oldest first. Agree with the model's risk class "
           "or override it. Every decision is signed and kept; a correction is a new decision that "
           "supersedes the one in force.")


def _when(ts) -> str:
    return f"{ts:%Y-%m-%d %H:%M} UTC"


def _outcome(d: dict) -> str:
    """A recorded decision (a row as core returns it on a write) in a few words."""
    return review.label(d["decision"], d["reviewer_class"], d["direction"])


def _ref(ref: str | None) -> str:
    return ref or "(reference purged)"


def _submit(form: str, prediction_id: str, patient: str, supersedes: str | None) -> None:
    """Record the decision before the page reruns, so a submit counts even if the item has just
    left the queue (another reviewer was first: they are named). A callback runs before the
    app's checks: the session is checked here first, and an ended one records nothing."""
    user = session.acting_user("review")
    if user is None:
        return
    state = st.session_state
    payload = {"prediction_id": prediction_id, "decision": state.get(f"{form}_decision"),
               "reason_code": state.get(f"{form}_reason"), "comment": state.get(f"{form}_comment") or "",
               "supersedes": supersedes}
    try:
        d = review.decide(payload, user=user.username, display_name=user.display_name)
    except InvalidInput as exc:
        errors: dict[str, list[str]] = {}
        for field, said in exc.sentences(FIELD_NAMES).items():
            field = "comment" if field == "(form)" else field  # the comment rule is the form's
            errors.setdefault(field, []).extend(said)
        state["review_errors"] = {form: {field: " ".join(m) for field, m in errors.items()}}
    except AlreadyDecided as exc:
        first = exc.decision
        state["review_flash"] = (
            "error", f"Not recorded: {first['reviewer_name']} ({first['user_name']}) "
            f"{'recorded the decision now in force on' if supersedes else 'already decided'} {patient} "
            f"at {_when(first['created_at'])}: {_outcome(first)}. Nothing else was recorded.")
    except (NotFound, StoreUnavailable) as exc:
        state["review_flash"] = ("error", f"Not recorded: {exc}.")
    else:
        state["review_flash"] = (
            "success", f"{'Correction recorded' if supersedes else 'Recorded'} for {patient}: "
            f"{_outcome(d)}, reason '{d['reason_code']}', at {_when(d['created_at'])}. "
            f"Signed: {d['meaning']}")
        if supersedes:
            state["review_correct_pick"] = None  # close the correction form


FIELD_NAMES = {"decision": "Decision", "reason_code": "Reason", "comment": "Comment",
               "prediction_id": "Prediction", "supersedes": "Decision corrected"}


def _decision_form(prediction_id: str, model_class: str, *, form: str, patient: str,
                   supersedes: str | None = None) -> None:
    """One signed decision on one prediction; a correction when `supersedes` is the decision in force."""
    other = "low" if model_class == "high" else "high"
    choices = {"agree": f"Agree: {model_class} risk", f"override_{other}": f"Override to {other} risk"}
    shown = errors.get(form, {})
    with st.form(form):
        st.radio(field_label("Decision", required=True), list(choices), format_func=choices.get, index=None, horizontal=True,
                 key=f"{form}_decision")
        if "decision" in shown:
            st.error(md_text(shown.pop("decision")))
        st.selectbox(field_label("Reason", required=True), settings.review_reason_codes, index=None, placeholder="Choose a reason",
                     key=f"{form}_reason")
        if "reason_code" in shown:
            st.error(md_text(shown.pop("reason_code")))
        st.text_area("Comment (required for an override and for 'other')", max_chars=2000,
                     key=f"{form}_comment")
        if "comment" in shown:
            st.error(md_text(shown.pop("comment")))
        name = user.display_name
        st.markdown(
            "**By submitting you sign**, according to your decision:\n"
            f"- {choices['agree']}: *{md_text(review.meaning(name, 'agree', model_class, model_class))}*\n"
            f"- {choices[f'override_{other}']}: "
            f"*{md_text(review.meaning(name, f'override_{other}', model_class, other))}*")
        st.markdown(f"Recorded with your username ({md_text(user.username)}) and the time.")
        for message in shown.values():
            st.error(md_text(message))
        st.form_submit_button("Correct this decision" if supersedes else "Sign and submit", type="primary",
                              on_click=_submit, args=(form, prediction_id, patient, supersedes))


errors = st.session_state.pop("review_errors", {})
flash = st.session_state.pop("review_flash", None)
if flash:
    (st.success if flash[0] == "success" else st.error)(md_text(flash[1]))

left, right = st.columns(2)
reason = left.selectbox("Reason for review", ["", *REASON_CODES],
                        format_func=lambda c: REASON_CODES.get(c, "All reasons"), key="review_filter_reason")
try:
    versions = artifacts.list_versions(settings.models)
except ArtefactMismatch as exc:  # the models' bucket cannot be read
    st.error(f"The model versions cannot be listed: {exc}")
    st.stop()
version = right.selectbox("Model version", ["", *versions],
                          format_func=lambda v: v or "All versions", key="review_filter_version")
try:
    items = queue(reason=reason or None, model_version=version or None, limit=QUEUE_LIMIT)
    decided = recent_decisions(limit=50)
except StoreUnavailable as exc:
    st.error(f"The review queue is unavailable: {exc}")
    st.stop()

left, right = st.columns(2)
left.metric("Waiting for review", len(items))
right.metric("Oldest waiting", items[0].age_text if items else "-")

if not items:
    st.info("No predictions are waiting for review."
            + (" (with these filters)" if reason or version else ""))
else:
    if len(items) == QUEUE_LIMIT:
        st.caption(f"Showing the oldest {QUEUE_LIMIT}; clear these or narrow the filters to see more.")
    table = pd.DataFrame([i.model_dump() for i in items])
    table["interval"] = [f"{pct(lo)} - {pct(hi)}" for lo, hi in zip(table["risk_low"], table["risk_high"],
                                                                        strict=True)]
    table["reasons"] = table["reasons"].map(" ".join)
    table["confidence"] = table["confidence"].map(confidence_text)
    st.dataframe(
        table[["created_at", "age_hours", "patient_ref", "risk", "interval", "risk_class", "confidence",
               "reasons", "model_version", "scored_by"]],
        hide_index=True, key="review_table",
        column_config={
            "created_at": st.column_config.DatetimeColumn("Recorded (UTC)"),
            "age_hours": st.column_config.NumberColumn("Waiting (hours)"),
            "patient_ref": "Patient", "risk_class": "Class", "model_version": "Model",
            "scored_by": "Scored by", "interval": "95% interval",
            "risk": st.column_config.NumberColumn("Risk", format="percent"),
            "confidence": "Confidence",
            "reasons": st.column_config.TextColumn("Why review", width="large"),
        })

    by_id = {item.prediction_id: item for item in items}
    if st.session_state.get("review_pick") not in by_id:
        st.session_state["review_pick"] = items[0].prediction_id  # the oldest, after each decision
    pick = st.selectbox(
        "Prediction to review", list(by_id), key="review_pick",
        format_func=lambda pid: (f"{_ref(by_id[pid].patient_ref)} - waiting {by_id[pid].age_text}"
                                 f" - {pct(by_id[pid].risk)} {by_id[pid].risk_class} - model "
                                 f"{by_id[pid].model_version}"))
    item = by_id[pick]
    patient = _ref(item.patient_ref)
    with st.container(border=True, key="review_item"):
        st.header(f"{md_text(patient)}, model {md_text(item.model_version)}")
        cols = st.columns(4)
        cols[0].metric("Risk", pct(item.risk))
        cols[0].markdown(f"**{item.risk_class.capitalize()} risk** by the model")
        cols[1].metric("95% interval", f"{pct(item.risk_low)} - {pct(item.risk_high)}")
        cols[2].metric("Confidence", confidence_text(item.confidence), help=item.confidence_meaning)
        cols[3].metric("Waiting", item.age_text)
        st.subheader("Why review")
        st.markdown("\n".join(f"- {md_text(r)}" for r in item.reasons))
        st.caption(f"Scored by {item.scored_by} at {_when(item.created_at)}.")
        if item.inputs is None:
            st.warning(f"Input values are not shown: {item.inputs_note}.")
        else:
            inputs = pd.DataFrame([c.model_dump() for c in item.inputs]).style.apply(
                lambda row: [FLAGGED if row["check"] else ""] * len(row), axis=1)  # flagged stand out
            st.dataframe(inputs, hide_index=True, height="content", key="review_inputs",
                         column_config={"feature": "Input", "value": "Value",
                                        "validated": f"Validated range ({item.model_version})",
                                        "check": "Check"})
        _decision_form(pick, item.risk_class, form=f"review_form_{pick}", patient=patient)

st.header("Recent decisions")
if not decided:
    st.caption("No decisions yet.")
else:
    history = pd.DataFrame([{**row.model_dump(), "patient": _ref(d.patient_ref), "outcome": row.summary,
                             "status": "in force" if row.in_force else "superseded",
                             "model_version": d.model_version}
                            for d in decided for row in d.history])
    st.dataframe(
        history[["patient", "created_at", "reviewer_name", "outcome", "reason_code", "comment",
                 "status", "meaning", "model_version"]],
        hide_index=True, key="review_recent",
        column_config={"patient": "Patient", "created_at": st.column_config.DatetimeColumn("Decided (UTC)"),
                       "reviewer_name": "Reviewer", "outcome": "Decision", "reason_code": "Reason",
                       "comment": "Comment", "status": "Status", "meaning": "Signed meaning",
                       "model_version": "Model"})
    by_prediction = {d.prediction_id: d for d in decided}
    fix = st.selectbox(
        "Decision to correct", list(by_prediction), index=None, placeholder="Choose a decided prediction",
        key="review_correct_pick",
        format_func=lambda pid: (f"{_ref(by_prediction[pid].patient_ref)} - "
                                 f"{by_prediction[pid].current.summary} by "
                                 f"{by_prediction[pid].current.reviewer_name}, "
                                 f"{_when(by_prediction[pid].current.created_at)}"))
    if fix:
        st.caption("A correction is a new decision that supersedes the one in force; both stay visible.")
        current = by_prediction[fix].current
        _decision_form(fix, current.model_class, form=f"review_fix_{current.decision_id}",
                       patient=_ref(by_prediction[fix].patient_ref), supersedes=current.decision_id)
