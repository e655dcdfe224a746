# The service as one container: the Streamlit app over the core package, with the model
# artefacts baked in read-only and the DuckDB store on a volume. compose.yaml puts it behind a
# TLS-terminating proxy; RUNBOOK.md ("Deploy on a VM with Docker") says how to run it.
FROM python:3.11.14-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Dependencies first, so this layer is rebuilt only when the pins change.
COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

# The app runs as an unprivileged user that owns only the data and backup folders (volumes);
# it has no home folder to write to.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin app \
    && mkdir -p /data /backups \
    && chown app:app /data /backups \
    && chmod 0750 /data /backups

# Code and model artefacts belong to root: the app user can read them, never change them.
COPY .streamlit/config.toml .streamlit/config.toml
COPY app.py serve.py ./
COPY api/ api/
COPY core/ core/
COPY ui/ ui/
COPY views/ views/
COPY specs/ specs/
COPY deploy/ deploy/
COPY model_artifacts/ model_artifacts/
RUN chmod -R a-w /app/model_artifacts \
    && python -m compileall -q core api

# Settings come only from the environment (and secret files, see deploy/start.sh); none are
# baked in. APP_PATIENT_KEY has no default: outside demo mode the service refuses to start
# without it.
ENV APP_DB=/data/app.duckdb \
    APP_MODELS=/app/model_artifacts \
    APP_DEMO=0 \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

USER 10001:10001
VOLUME ["/data", "/backups"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py"]

# With no arguments the entry point serves the app; with arguments it runs them with the same
# settings, e.g. `docker compose run --rm app python -m core users list`.
ENTRYPOINT ["/app/deploy/start.sh"]
