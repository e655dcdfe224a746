"""What the Streamlit pages share beyond core: the signed-in session."""
