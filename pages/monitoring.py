"""Principal investigator: how much is scored, how much goes to review, how much is rejected."""

import streamlit as st

from core import artifacts, auth
from core.config import get_settings
from core.errors import ArtefactMismatch, StoreUnavailable
from core.store import open_store

user = st.session_state.get("user")
if not auth.authorise(user, "pi", page="monitoring"):
    st.error("You do not have access to this page.")
    st.stop()

st.title("Monitoring")
st.caption("Counts per model version since the store was created. Outcome-based monitoring "
           "(calibration, override rates) comes with outcome entry.")
settings = get_settings()
try:
    counts = open_store(settings.db).prediction_counts()
except StoreUnavailable as exc:
    st.error(f"Monitoring is unavailable: {exc}")
    st.stop()

if counts.empty:
    st.info("No predictions or rejected inputs recorded yet.")
    st.stop()


def _expected_share(version: str) -> float | None:
    try:
        return artifacts.read_manifest(settings.models / version)["routing"]["expected_review_share"]
    except (ArtefactMismatch, KeyError):
        return None


total = counts[["predictions", "routed_to_review", "rejected_inputs"]].sum()
cols = st.columns(3)
cols[0].metric("Predictions", int(total["predictions"]))
share = total["routed_to_review"] / total["predictions"] if total["predictions"] else 0.0
cols[1].metric("Routed to review", f"{int(total['routed_to_review'])} ({share:.0%})")
cols[2].metric("Rejected inputs", int(total["rejected_inputs"]))

counts["review_share"] = (counts["routed_to_review"] / counts["predictions"]).where(
    counts["predictions"] > 0)
counts["expected_review_share"] = counts["model_version"].map(_expected_share)
st.dataframe(counts, hide_index=True, key="monitoring_counts", column_config={
    "model_version": "Model", "predictions": "Predictions", "routed_to_review": "Routed to review",
    "rejected_inputs": "Rejected inputs",
    "review_share": st.column_config.NumberColumn("Share to review", format="percent"),
    "expected_review_share": st.column_config.NumberColumn(
        "Expected share (held-out)", format="percent",
        help="Share of held-out patients the routing rule sent to review when the model was built"),
})
