"""Checks made before the service serves, by every way of starting it (the container's start
script, `make run`, `streamlit run app.py`), so a misconfigured service stops at once with a
clear reason instead of failing on the first patient.

1. The settings parse; outside demo mode a patient key (32+ characters, not the demo's) is set.
2. The store opens: created and migrated if new; refused if another process holds it. On
   PostgreSQL outside demo mode, the service's role may only read and append (RUNBOOK.md).
3. Demo and production never mix: outside demo mode no demo account may be active in the store,
   and the store may hold no seeded demo history (core.demo_history).
4. The serving model version's files match their recorded sha256 (in a bucket: the models'
   bucket can be read with the environment's credentials, and the files fetched from it match).

Secret values are never part of a message.
"""

from __future__ import annotations

from pydantic import ValidationError

from core import artifacts, audit
from core.auth import DEMO_PREFIX
from core.config import Settings, get_settings
from core.errors import CoreError
from core.store import open_store


def problems(settings: Settings | None = None, *, model: bool = True) -> tuple[list[str], str]:
    """(problems, summary): the problems that must stop the service (empty: it may serve).
    `model` False: the configuration's only, not the serving model's (readiness checks that)."""
    try:
        settings = settings or get_settings()
        settings.patient_key_bytes()
    except ValidationError as exc:
        # Only the messages: the error's own text would echo the offending value (a secret).
        return [f"APP_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}" if err["loc"]
                else err["msg"] for err in exc.errors()], ""
    except CoreError as exc:
        return [str(exc)], ""
    try:
        store = open_store(settings.db)
        active = store.active_activation()
        users = store.users()
        seeded = 0 if settings.demo else store.count("demo_history")
    except CoreError as exc:
        return [str(exc)], ""
    found = []
    if not settings.demo:
        demo = sorted(users.loc[users["active"] & users["username"].str.startswith(DEMO_PREFIX),
                                "username"])
        if demo:
            found.append(
                f"demo account(s) {', '.join(demo)} are active in the store {store.path}, which "
                "was used in demo mode. Production needs its own store: set APP_DB to a new file "
                "(demo mode has its own default, data/demo.duckdb), or disable them with "
                "`python -m core users disable NAME --by YOU`")
        if seeded:
            found.append(
                f"the store {store.path} holds a synthetic demo history (seeded in demo mode): "
                "production needs its own store; set APP_DB to a new file")
    if not settings.demo:
        found += store.privilege_problems()
    if not model:
        return found, ""
    try:
        version = artifacts.serving_version(active, settings.models)
    except CoreError as exc:  # a bucket that cannot be read: no such bucket, access denied...
        return [*found, str(exc)], ""
    if version is None:
        return [*found, f"no model version to serve in {settings.models} (no activation, no "
                        "DEFAULT_VERSION)"], ""
    found += artifacts.verify(settings.models, version)
    mode = "DEMO mode" if settings.demo else "production mode"
    return found, f"{mode}; store {store.path}; serving model {version} from {settings.models}"


_started: set[tuple[str, str]] = set()


def start(settings: Settings, *, by: str) -> list[str]:
    """What a serving process does once per configuration: the checks above; when they pass,
    the demo accounts and, on a store with no predictions, the seeded demo history (demo mode
    only; APP_DEMO_HISTORY), and a record of the configuration if it changed.
    Returns the problems (empty: serve); later calls with the same settings cost nothing."""
    secret = settings.patient_key.get_secret_value() if settings.patient_key else ""
    key = (settings.model_dump_json(), audit.sha256_text(secret))
    if key in _started:
        return []
    found, _ = problems(settings)
    if found:
        return found
    from core.auth import ensure_demo_accounts
    from core.maintenance import record_configuration

    ensure_demo_accounts()
    if settings.demo and settings.demo_history:
        from core.demo_history import seed

        seed(open_store(settings.db), settings)  # once: a store with predictions is left as it is
    record_configuration(open_store(settings.db), settings, by=by)
    _started.add(key)
    return []


def readiness(settings: Settings | None = None) -> dict[str, str]:
    """Whether this process can score and record now: each check's problem ("" when it
    passes): the configuration (the start-up checks: settings, the patient key, no demo account
    outside demo mode), the store answers and its file is writable, the serving model's files
    match their hashes, the stop switch is off."""
    import os

    from core.stop_switch import is_suspended

    checks = {"configuration": "", "store": "", "model": "", "stop_switch": ""}
    try:
        settings = settings or get_settings()
        store = open_store(settings.db)
        store.head()
        if settings.db_is_file() and not os.access(settings.db, os.W_OK):
            checks["store"] = f"the store file {settings.db.name} is not writable"
        state = store.service_state(fresh=True)
        activation = store.active_activation(fresh=True)
    except (CoreError, ValidationError) as exc:
        checks["store"] = str(exc) if isinstance(exc, CoreError) else "the settings are not valid"
        checks["configuration"] = "; ".join(problems(settings, model=False)[0])
        return checks
    if is_suspended(state):
        checks["stop_switch"] = f"scoring is suspended: {state.reason}"
    try:
        version = artifacts.serving_version(activation, settings.models)
        found = (artifacts.verify(settings.models, version) if version
                 else ["no model version to serve"])
    except CoreError as exc:  # a bucket that cannot be read: no such bucket, access denied...
        found = [str(exc)]
    checks["model"] = "; ".join(found)
    checks["configuration"] = "; ".join(problems(settings, model=False)[0])
    return checks
