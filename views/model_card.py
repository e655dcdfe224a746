"""Model card of a model version (every signed-in role): generated from its artefact, the same
text as MODEL_CARD.md for the shipped version. Opens on the serving version; each result links
to the card of its own version with ?version=..."""

import re

import streamlit as st

from core import artifacts, figures
from core.config import get_settings
from core.errors import ArtefactMismatch, StoreUnavailable
from core.model_card import render
from core.serving import serving_version
from ui import session

user = session.guard("read_model_card")

st.title("Model card")
settings = get_settings()
try:
    versions = artifacts.list_versions(settings.models)
except ArtefactMismatch as exc:  # the models' bucket cannot be read
    st.error(f"The model versions cannot be listed: {exc}")
    st.stop()
asked = st.query_params.get("version")
try:  # the page opens on the version that serves now (a result's link names its own)
    serving = serving_version(settings)
except StoreUnavailable:
    serving = artifacts.default_version(settings.models)
default = asked if asked in versions else serving
version = st.selectbox("Model version", versions,
                       index=versions.index(default) if default in versions else 0,
                       key="card_version")
try:
    artefact = artifacts.load(settings.models, version)
    card = render(artefact, figures="figure:")
    svgs = figures.svgs(artefact)
    # The page title replaces the card's own heading; the file's "generated" comment is for
    # readers of MODEL_CARD.md, and a page would show it as literal text. Each figure is drawn
    # where the card places it.
    body = re.sub(r"<!--.*?-->\n?", "", card.split("\n", 1)[1], flags=re.DOTALL)
    parts = re.split(r"^!\[([^\]]*)\]\(figure:([\w-]+)\.svg\)$", body, flags=re.MULTILINE)
    st.markdown(parts[0])
    for caption, name, text in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        st.image(svgs[name], caption=caption, width=640, alt=caption)
        if text.strip():
            st.markdown(text)
except ArtefactMismatch as exc:
    st.error(f"This version cannot be shown: {exc}")
