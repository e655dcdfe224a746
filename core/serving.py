"""Which model version serves: the latest activation in the store, else the shipped default;
and activating a version (recorded, with who and why)."""

from __future__ import annotations

import uuid

from core import artifacts
from core.clock import now_utc
from core.config import Settings, get_settings
from core.errors import ArtefactMismatch, CoreError
from core.stop_switch import check_not_suspended
from core.store import Event, Store, open_store
from core.store.records import ModelActivation
from core.text import actor, reason_text


def active_artefact(store: Store, settings: Settings) -> artifacts.Artefact:
    """The serving version, verified and loaded."""
    activation = store.active_activation()
    version = artifacts.serving_version(activation, settings.models)
    if not version:
        raise ArtefactMismatch(f"no model is active and {settings.models} names no default version")
    artefact = artifacts.load(settings.models, version)
    if activation and activation[1] != artefact.sha256:
        raise ArtefactMismatch(f"model {version} on disk differs from the one that was activated")
    return artefact


def serving_version(settings: Settings | None = None) -> str | None:
    """The version that serves now: the latest activation, else the shipped default (None
    when there is neither). StoreUnavailable when the store cannot be read."""
    settings = settings or get_settings()
    return artifacts.serving_version(open_store(settings.db).active_activation(), settings.models)


def serving_artefact(settings: Settings | None = None) -> artifacts.Artefact:
    """The serving version, verified and loaded, whether or not scoring is suspended (its
    facts, its card): ArtefactMismatch or StoreUnavailable when it cannot be read."""
    settings = settings or get_settings()
    return active_artefact(open_store(settings.db), settings)


def scoring_artefact(settings: Settings | None = None) -> artifacts.Artefact:
    """The serving version, verified and loaded, for a page about to score: ScoringSuspended
    while the stop switch is on, ArtefactMismatch or StoreUnavailable when it cannot serve."""
    settings = settings or get_settings()
    check_not_suspended(open_store(settings.db))
    return serving_artefact(settings)


def serving_title(default: str = "Clinical risk") -> str:
    """The serving model's short title (its spec's `title`), for the app's heading and browser
    tab; `default` when no model can be read (the pages then say why)."""
    try:
        settings = get_settings()
        version = serving_version(settings)
        return artifacts.read_title(settings.models, version) if version else default
    except CoreError:
        return default


def activate(version: str, *, by: str, reason: str) -> artifacts.Artefact:
    """Make a verified version the serving one; the history keeps every activation."""
    by = actor(by)
    reason = reason_text(reason, "an activation")
    settings = get_settings()
    artefact = artifacts.load(settings.models, version)
    at = now_utc()
    open_store(settings.db).append([Event("model_activation", by, at, version, ModelActivation(
        activation_id=str(uuid.uuid4()), created_at=at, user_name=by, version=version,
        model_sha256=artefact.sha256, reason=reason))])
    return artefact
