"""Reviewer: the predictions routed to clinical review, oldest first (read-only for now)."""

import json

import pandas as pd
import streamlit as st

from core import auth
from core.config import get_settings
from core.errors import StoreUnavailable
from core.scoring import now_utc
from core.store import open_store

user = st.session_state.get("user")
if not auth.authorise(user, "reviewer", page="review_queue"):
    st.error("You do not have access to this page.")
    st.stop()

st.title("Review queue")
st.caption("Predictions routed to clinical review, oldest first. Read-only: accepting or overriding "
           "a prediction comes with the review workflow.")
try:
    queue = open_store(get_settings().db).review_queue()
except StoreUnavailable as exc:
    st.error(f"The review queue is unavailable: {exc}")
    st.stop()

if queue.empty:
    st.info("No predictions are waiting for review.")
    st.stop()

age = now_utc() - queue["created_at"]
queue["age_hours"] = (age / pd.Timedelta(hours=1)).round(1)
queue["reasons"] = queue["reasons_json"].map(lambda s: "; ".join(json.loads(s)))
st.metric("Waiting for review", len(queue))
st.dataframe(
    queue[["created_at", "age_hours", "patient_ref", "risk", "risk_class", "confidence", "reasons",
           "model_version", "user_name"]],
    hide_index=True, key="review_table",
    column_config={
        "created_at": st.column_config.DatetimeColumn("Recorded (UTC)"),
        "age_hours": st.column_config.NumberColumn("Age (hours)"),
        "patient_ref": "Patient", "risk_class": "Class", "model_version": "Model",
        "user_name": "Scored by",
        "risk": st.column_config.NumberColumn("Risk", format="percent"),
        "confidence": st.column_config.NumberColumn("Confidence", format="percent"),
        "reasons": st.column_config.TextColumn("Why review", width="large"),
    })
