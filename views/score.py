"""Clinician: score one patient with the serving model, see the routed result and recent predictions."""

from datetime import datetime

import pandas as pd
import streamlit as st

import core
from core import artifacts
from core.config import get_settings
from core.display import confidence_meaning, confidence_text, field_label, pct
from core.errors import ArtefactMismatch, ScoringSuspended, StoreUnavailable
from core.recent import RecentPrediction, recent_predictions
from core.scoring import ScoreResult
from core.serving import scoring_artefact
from core.spec import PATIENT_REF, Feature
from core.text import md_text
from ui import session

user = session.guard("score")

settings = get_settings()
try:
    artefact = scoring_artefact(settings)
except ScoringSuspended as exc:
    st.title("Score a patient")
    st.error(f"Model suspended: {md_text(exc)}", icon=":material/block:")
    st.stop()
except (StoreUnavailable, ArtefactMismatch) as exc:
    st.error(f"Scoring is unavailable: {exc}. Nothing was recorded; please tell the service owner.")
    st.stop()

spec = artefact.spec
st.title("Score a patient")
st.caption(f"{spec.model_name} - model {artefact.version}. {spec.description}")
if artefact.manifest.get("synthetic_data") and not settings.demo:
    st.warning("This model was trained on a SYNTHETIC cohort: not for clinical use.")


def _help(f: Feature) -> str:
    parts = [f.help] if f.help else []
    if f.numeric:
        parts.append(f"Accepted: {f.hard_min:g}-{f.hard_max:g} {f.unit}.".replace(" .", "."))
    if f.describe_validated():
        parts.append(f"Validated on: {f.describe_validated()}; outside it the prediction goes to review.")
    if not f.required:
        parts.append("Optional: leave empty if unknown.")
    return " ".join(parts)


COLUMNS = 3  # fields per row: the form is read, and tabbed through, row by row


def _widget(f: Feature):
    label = field_label(f.label, required=f.required, unit=f.unit or "")
    key, help_text = f"score_{f.name}", _help(f)
    placeholder = "required" if f.required else "optional"
    if f.numeric and f.type == "integer":
        return st.number_input(label, min_value=int(f.hard_min), max_value=int(f.hard_max), value=None,
                               step=1, help=help_text, key=key, placeholder=placeholder)
    if f.numeric:
        return st.number_input(label, min_value=float(f.hard_min), max_value=float(f.hard_max),
                               value=None, step=0.1, format="%.2f", help=help_text, key=key,
                               placeholder=placeholder)
    if f.type == "category":
        return st.selectbox(label, f.categories, index=None, help=help_text, key=key,
                            placeholder="Choose" if f.required else "Optional")
    answer = st.radio(label, ["no", "yes"], index=None, horizontal=True, help=help_text, key=key)
    return None if answer is None else answer == "yes"


with st.form("score_form"):
    ref = st.text_input(field_label(spec.patient_reference.label, required=True),
                        help=spec.patient_reference.help, max_chars=spec.patient_reference.max_length,
                        key="score_patient_ref")
    slots = {PATIENT_REF: st.empty()}
    values = {}
    features = list(spec.features)
    for start in range(0, len(features), COLUMNS):  # one row of columns at a time
        for col, feature in zip(st.columns(COLUMNS), features[start:start + COLUMNS], strict=False):
            with col:
                values[feature.name] = _widget(feature)
                slots[feature.name] = st.empty()
    summary = st.empty()
    submitted = st.form_submit_button("Score", type="primary")

if submitted:
    payload = {PATIENT_REF: ref, **{k: v for k, v in values.items() if v is not None}}
    try:
        st.session_state["score_result"] = core.score(payload, user=user.username, source="form")
    except core.InvalidInput as exc:
        st.session_state.pop("score_result", None)
        names = {f.name: f.label for f in spec.features} | {PATIENT_REF: spec.patient_reference.label}
        sentences = exc.sentences(names)
        for field, said in sentences.items():
            if field in slots:
                slots[field].error(md_text(" ".join(said)))
        summary.error(md_text(f"Not scored - please correct {len(exc.errors)} problem(s): "
                              + " ".join(s for said in sentences.values() for s in said)))
    except (StoreUnavailable, ArtefactMismatch, ScoringSuspended) as exc:
        st.session_state.pop("score_result", None)
        st.error(f"Not scored: {md_text(exc)}. Nothing was recorded; please try again or tell the "
                 "service owner.")
        st.stop()


def _render(result: ScoreResult) -> None:
    with st.container(border=True, key="score_result_card"):
        st.header(f"Result for {result.patient_ref}")
        cls = "High risk" if result.risk_class == "high" else "Low risk"
        interval = f"{pct(result.risk_interval_95[0])} to {pct(result.risk_interval_95[1])}"
        # The headline in one alert, so that a screen reader announces all of it at once.
        headline = (f"{cls} of {spec.outcome.label}: {pct(result.risk)} (95% interval {interval}; "
                    f"action threshold {pct(result.action_threshold)}). ")
        if result.routing == "auto_finalised":
            st.success(md_text(headline + "Auto-finalised: the model is confident and every input is "
                               "within the range it was validated on."))
        else:
            st.warning(md_text(headline + "Sent to clinical review: a reviewer checks this prediction "
                               "before it is final. Why:") + "\n" + "\n".join(
                                   f"- {md_text(r)}" for r in result.reasons))
        cols = st.columns(3)
        cols[0].metric(f"Risk: {spec.outcome.label}", pct(result.risk),
                       help=f"{spec.outcome.definition} Horizon: {spec.horizon_text()}.")
        cols[0].markdown(f"**{cls}** (action threshold {pct(result.action_threshold)})")
        cols[1].metric("95% interval", f"{pct(result.risk_interval_95[0])} - "
                                        f"{pct(result.risk_interval_95[1])}")
        cols[2].metric("Confidence", confidence_text(result.confidence),
                       help=confidence_meaning(artefact))
        st.subheader("What the threshold means")
        st.markdown(spec.action)
        if result.top_factors:
            st.subheader("Top contributing factors", help=artefact.manifest["explanation"]["description"])
            st.markdown("\n".join(f"- {f.label}: {f.direction}" for f in result.top_factors))
        st.caption(f"Model {result.model_version} (sha256 {result.model_sha256[:12]}...), "
                   f"prediction {result.prediction_id}, recorded {result.created_at:%Y-%m-%d %H:%M} UTC")
        with st.expander(f"Model facts for version {result.model_version}"):
            manifest = artifacts.manifest_of(settings.models, result.model_version)
            m, data = manifest["metrics"], manifest["data"]
            dates = data.get("index_date_range")
            made = "Trained on" if manifest["origin"] == "trained" else "Imported; evaluated on"
            st.markdown(
                f"- {made} **{'SYNTHETIC ' if manifest.get('synthetic_data') else ''}data**: "
                f"{data['patients_included']} patients, {data['events']} events"
                + (f", index dates {dates[0]} to {dates[1]}" if dates else "") + "\n"
                f"- AUROC {m['auroc']:.3f} (95% CI {m['auroc_ci95'][0]:.3f}-{m['auroc_ci95'][1]:.3f}), "
                f"Brier {m['brier']:.3f}, calibration slope {m['calibration_slope']:.2f}\n"
                f"- Expected share sent to review: {manifest['routing']['expected_review_share']:.0%}")
            st.write(manifest["routing"]["description"])
            st.page_link("views/model_card.py", label=f"Full model card for version {result.model_version}",
                         query_params={"version": result.model_version}, icon=":material/description:")


if "score_result" in st.session_state:
    _render(st.session_state["score_result"])

def _when(ts: datetime | None) -> str:
    return "" if ts is None else f"{ts:%Y-%m-%d %H:%M}"


def _recent_row(r: RecentPrediction) -> dict:
    """One row as the clinician reads it: columns named for people, an empty cell blank."""
    return {"Recorded (UTC)": _when(r.created_at), "Patient": r.patient_ref or "", "Risk": r.risk,
            "Class": r.risk_class, "Confidence": confidence_text(r.confidence), "Status": r.status,
            "Review": r.review, "Reviewed by": r.reviewer_name or "",
            "Reviewed (UTC)": _when(r.decided_at), "Model": r.model_version}


st.header("Your recent predictions")
try:
    recent = recent_predictions(user.username)
except StoreUnavailable as exc:
    st.error(f"Your recent predictions cannot be read: {md_text(exc)}")
    st.stop()
if not recent:
    st.caption("None yet.")
else:
    st.dataframe(pd.DataFrame([_recent_row(r) for r in recent]), hide_index=True, key="score_recent",
                 column_config={"Risk": st.column_config.NumberColumn(format="percent")})
