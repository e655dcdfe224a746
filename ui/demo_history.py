"""The label of the demo's seeded history (core.demo_history): a banner on the pages that show
its records, saying that they include a synthetic history and how to tell its rows."""

import streamlit as st

from core.demo_history import DEMO_USER, SEEDED_SOURCE, seeded
from core.errors import CoreError


def banner() -> None:
    """An info box when the store holds a seeded demo history; nothing otherwise (or when the
    store cannot be read: the page then says why)."""
    try:
        history = seeded()
    except CoreError:
        return
    if history is None:
        return
    st.info(
        f"This page includes a **synthetic demo history**, seeded when this demo store was first "
        f"started: {history['predictions']:,} predictions of synthetic patients from "
        f"{history['first_at']:%d %b %Y} to {history['last_at']:%d %b %Y}, with "
        f"{history['review_decisions']:,} review decisions and {history['outcomes']:,} outcomes. "
        f"Nothing in it is real. Its records are marked as demo data: recorded by `{DEMO_USER}`, "
        f"source `{SEEDED_SOURCE}`.", icon=":material/science:")
