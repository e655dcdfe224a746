"""The one server process: the Streamlit UI and the REST API (/api/v1) over one store.

Start it with plain uvicorn, one worker (the embedded store is one process's file):

    APP_DEMO=1 .venv/bin/python -m uvicorn serve:app --host 0.0.0.0 --port 8501

(`streamlit run app.py` still serves the UI alone, without the API.)"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import streamlit as st
from starlette.routing import Mount

from api import PREFIX, create_api
from core import admin_channel, alerts


def _config_from_environment() -> None:
    """Streamlit's STREAMLIT_* variables (server port, secrets files, file watcher, ...) into its
    config, parsed by Streamlit's own `run` command as `streamlit run` does: under uvicorn its
    config reads only the config files and the sensitive variables."""
    from streamlit.web import bootstrap, cli

    params = cli.main_run.make_context("run", ["app.py"]).params
    bootstrap.load_config_options(
        flag_options={k: v for k, v in params.items() if k not in ("target", "args")})


@asynccontextmanager
async def lifespan(app):
    # From start to shutdown this process holds the store; `python -m core` commands reach it
    # through the store's admin socket (core.admin_channel).
    # The alert checks (core.alerts) run every APP_ALERT_CHECK_MINUTES in a thread of their own.
    channel = admin_channel.start()
    checks = alerts.start_periodic()
    try:
        yield
    finally:
        await asyncio.to_thread(checks.stop)
        await asyncio.to_thread(channel.stop)  # waits for a running command, off the event loop


_config_from_environment()
app = st.App("app.py", routes=[Mount(PREFIX, app=create_api())], lifespan=lifespan)
