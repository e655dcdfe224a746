"""Entry point: shows the serving model's facts (the role-based pages build on this)."""

import streamlit as st

from core.config import get_settings
from core.scoring import active_artefact
from core.store import open_store

st.set_page_config(page_title="Hyperkalaemia risk", layout="wide")


@st.cache_resource
def _artefact():
    settings = get_settings()
    return active_artefact(open_store(settings.db), settings)


artefact = _artefact()
if artefact.manifest.get("synthetic_data"):
    st.warning("DEMO - synthetic model, not for clinical use")
st.title(artefact.spec.model_name)
metrics = artefact.manifest["metrics"]
cols = st.columns(4)
cols[0].metric("Model version", artefact.version)
cols[1].metric("AUROC (held-out)", f"{metrics['auroc']:.3f}")
cols[2].metric("Brier score", f"{metrics['brier']:.3f}")
cols[3].metric("Expected review share", f"{artefact.manifest['routing']['expected_review_share']:.0%}")
st.write(artefact.manifest["routing"]["description"])
