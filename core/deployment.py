"""This deployment as it is configured now: where it runs, its store, its model artefacts, who
signs people in, which systems call its API, the serving model, where patient data is kept and
for how long, what is published outside, and the network boundary. Read from the live settings,
the store and the serving artefact, never written by hand; the architecture diagram
(core.diagram) and the evaluator report draw it.

Nothing secret enters it: a PostgreSQL URL is shown as its host and database (never its user
or password), an identity provider as its host, an API client as its name and roles.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from core.artifacts import Artefact
from core.clients import list_clients
from core.config import PROJ_ROOT, S3Location, Settings
from core.store import Store, is_database_url

CONTAINER_MARKERS = (("/.dockerenv", "Docker"), ("/run/.containerenv", "Podman"))


@dataclass(frozen=True)
class StoreFacts:
    kind: str  # "embedded" or "postgresql"
    label: str  # e.g. "Embedded DuckDB file" / "The institution's PostgreSQL"
    where: str  # a path, or host/database (never credentials)


@dataclass(frozen=True)
class Deployment:
    runtime: str  # "container (Podman)", "host or VM", or the configured description
    runtime_detail: str
    store: StoreFacts
    artefacts: str
    artefacts_read_only: bool
    identity: list[str]  # sign-in routes: local accounts, each identity provider
    api_clients: list[tuple[str, tuple[str, ...]]]  # active clients: name, roles
    serving_version: str
    serving_sha256: str
    model_title: str
    synthetic: bool
    retention_days: int
    backups: str
    audit_head: tuple[int, str]
    proxy: str  # the TLS proxy in front, or that none is configured
    proxy_networks: list[str] = field(default_factory=list)


def _shown(path: Path) -> str:
    """A path as an operator reads it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(PROJ_ROOT))
    except ValueError:
        return str(path)


def store_facts(db: Path | str) -> StoreFacts:
    """The store APP_DB names: a file path is the embedded DuckDB file; a postgresql:// URL the
    institution's PostgreSQL, shown as host and database only."""
    if is_database_url(db):  # the settings keep a database URL as text (core.config)
        url = urlsplit(db)
        host = url.hostname or "(host not given)"
        port = f":{url.port}" if url.port else ""
        database = url.path.lstrip("/") or "(database not given)"
        return StoreFacts("postgresql", "The institution's PostgreSQL", f"{host}{port}/{database}")
    return StoreFacts("embedded", "Embedded DuckDB file", _shown(Path(db)))


def runtime(settings: Settings) -> tuple[str, str]:
    """Where the process runs: (kind, detail). A container is recognised by its runtime's marker
    file or the `container` variable Podman and systemd set; APP_RUNS_ON describes it in words."""
    kind = "host or VM"
    for marker, engine in CONTAINER_MARKERS:
        if Path(marker).exists():
            kind = f"container ({engine})"
            break
    else:
        if os.environ.get("container"):
            kind = f"container ({os.environ['container']})"
    return kind, settings.runs_on or ("set APP_RUNS_ON to name the machine" if kind == "host or VM"
                                      else "detected from the container runtime")


def secrets_files() -> list[Path]:
    """The secrets files Streamlit reads the [auth] section from, in its order."""
    configured = os.environ.get("STREAMLIT_SECRETS_FILES")
    if configured:
        return [Path(p.strip()) for p in configured.split(",") if p.strip()]
    return [Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml",
            PROJ_ROOT / ".streamlit" / "secrets.toml"]


def identity_providers() -> list[str]:
    """Each configured OpenID Connect provider as 'name (host)'; never a secret."""
    section: dict = {}
    for path in secrets_files():
        try:
            section.update(tomllib.loads(path.read_text()).get("auth", {}) or {})
        except (OSError, tomllib.TOMLDecodeError, AttributeError):
            continue
    providers = []
    candidates = [("single sign-on", section)] + [(name, value) for name, value in section.items()
                                                  if isinstance(value, dict)]
    for name, value in candidates:
        if isinstance(value, dict) and "client_id" in value:
            host = urlsplit(str(value.get("server_metadata_url", ""))).hostname or "host not given"
            providers.append(f"{name} ({host})")
    return providers


def describe(settings: Settings, store: Store, artefact: Artefact) -> Deployment:
    kind, detail = runtime(settings)
    identity = (["local accounts (argon2id hashes in the store)"] if settings.local_accounts else [])
    providers = identity_providers()
    identity += [f"OpenID Connect: {p}" for p in providers]
    if providers:
        how = ([f"the identity token's {settings.sso_role_claim} claim"] if settings.sso_role_claim
               else []) + ([f"{len(settings.sso_email_roles)} email(s) in APP_SSO_EMAIL_ROLES"]
                           if settings.sso_email_roles else [])
        identity.append("roles from " + (" and ".join(how) if how else "nowhere yet: set "
                                         "APP_SSO_ROLE_CLAIM or APP_SSO_EMAIL_ROLES"))
    in_bucket = isinstance(settings.models, S3Location)
    return Deployment(
        runtime=kind, runtime_detail=detail, store=store_facts(settings.db),
        artefacts=f"{settings.models} (object storage)" if in_bucket else _shown(Path(settings.models)),
        # a bucket's versions are never rewritten: published whole, once (core.bucket)
        artefacts_read_only=in_bucket or not os.access(settings.models, os.W_OK),
        identity=identity or ["nobody can sign in: local accounts are off and no identity "
                              "provider is configured"],
        api_clients=[(c.name, c.roles) for c in list_clients(store) if c.active],
        serving_version=artefact.version, serving_sha256=artefact.sha256,
        model_title=artefact.spec.model_name, synthetic=bool(artefact.manifest.get("synthetic_data")),
        retention_days=settings.retention_days, backups=_shown(Path(settings.backup_dir)),
        audit_head=store.head(),
        proxy=("TLS proxy in front (trusted: " + ", ".join(settings.trusted_proxies) + ")"
               if settings.trusted_proxies else
               "no TLS proxy configured (APP_TRUSTED_PROXIES is empty): clients reach the "
               "server's port directly"),
        proxy_networks=list(settings.trusted_proxies))


def facts(d: Deployment) -> list[tuple[str, str]]:
    """The diagram's content as (what, this deployment) rows, for a table beside it."""
    clients = ", ".join(f"{n} ({', '.join(r)})" for n, r in d.api_clients) or "none registered"
    return [
        ("Runs in", f"{d.runtime}: {d.runtime_detail}"),
        ("Network boundary", d.proxy),
        ("Server process", "one process (uvicorn serve:app): the Streamlit UI and the REST API "
                           "/api/v1"),
        ("Store", f"{d.store.label}: {d.store.where}"),
        ("Model artefacts", f"{d.artefacts} ({'read-only' if d.artefacts_read_only else 'writable'}"
                            " for the service; every file's sha256 checked at load)"),
        ("Serving model", f"{d.model_title}, version {d.serving_version}, model sha256 "
                          f"{d.serving_sha256}" + (" (SYNTHETIC, not for clinical use)"
                                                   if d.synthetic else "")),
        ("Sign-in", "; ".join(d.identity)),
        ("API clients", clients),
        ("Patient data (PHI)", f"raw inputs and patient references in the store's phi_inputs table, "
                               f"kept {d.retention_days} days, then purged; backups in {d.backups} "
                               "hold copies until they are deleted"),
        ("Published outside", f"the audit chain's head {d.audit_head[0]}:{d.audit_head[1]} "
                              "(python -m core audit head), for an outside record"),
    ]
