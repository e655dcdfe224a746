"""The model registry as the Admin page shows it: every version on disk with its headline
facts, which one serves, and the activation history (who made which version serve, and why)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from core import artifacts
from core.config import Settings, get_settings
from core.errors import ArtefactMismatch
from core.frames import UtcDatetime, plain_rows
from core.store import open_store


class ModelVersion(BaseModel):
    """A version in the models folder; `problem` says why its manifest cannot be read."""

    model_config = ConfigDict(frozen=True)

    version: str
    created: str | None = None
    synthetic: bool | None = None
    auroc: float | None = None
    serving: bool = False
    problem: str | None = None


class Activation(BaseModel):
    """One activation: from then on, this version served."""

    model_config = ConfigDict(frozen=True)

    created_at: UtcDatetime
    version: str
    model_sha256: str
    user_name: str
    reason: str


class Registry(BaseModel):
    """Every version, the serving one, and every activation (oldest first)."""

    model_config = ConfigDict(frozen=True)

    versions: list[ModelVersion]
    serving: str | None
    activations: list[Activation]


def model_registry(settings: Settings | None = None) -> Registry:
    """The registry as the store and the models folder have it now."""
    settings = settings or get_settings()
    store = open_store(settings.db)
    serving = artifacts.serving_version(store.active_activation(), settings.models)
    versions = []
    for version in artifacts.list_versions(settings.models):
        try:
            mf = artifacts.manifest_of(settings.models, version)
        except ArtefactMismatch as exc:
            versions.append(ModelVersion(version=version, problem=str(exc)))
            continue
        versions.append(ModelVersion(version=version, created=mf["created_at"],
                                     synthetic=mf["synthetic_data"], auroc=mf["metrics"]["auroc"],
                                     serving=version == serving))
    return Registry(versions=versions, serving=serving,
                    activations=[Activation(**row) for row in plain_rows(store.activations())])


class ScoringPath(BaseModel):
    """How this process computes the serving version's risks (core.compiled): the pipeline
    compiled to array code, checked against the pipeline's own predict_proba at load, or the
    pipeline itself; `detail` says which check was made, or why not."""

    model_config = ConfigDict(frozen=True)

    compiled: bool
    detail: str


class ServingModel(BaseModel):
    """The version that serves now, as an integration asks for it: its spec (every input, the
    outcome), the routing rule that sends a prediction to review, and its evaluation."""

    model_config = ConfigDict(frozen=True)

    version: str
    model_sha256: str
    title: str
    created_at: str
    synthetic_data: bool
    suspended: bool  # the stop switch: while on, nothing is scored
    spec: dict
    routing_rule: dict
    metrics: dict
    evaluation: dict
    scoring_path: ScoringPath


def serving_model(settings: Settings | None = None) -> ServingModel:
    """The serving version, verified and loaded (ArtefactMismatch when it cannot serve)."""
    from core.serving import serving_artefact
    from core.stop_switch import is_suspended

    settings = settings or get_settings()
    artefact = serving_artefact(settings)
    store = open_store(settings.db)
    mf = artefact.manifest
    return ServingModel(
        version=artefact.version, model_sha256=artefact.sha256, title=artefact.spec.title,
        created_at=mf["created_at"], synthetic_data=mf["synthetic_data"],
        suspended=is_suspended(store.service_state()), spec=artefact.spec.model_dump(mode="json"),
        routing_rule=artefact.predictor.rule.model_dump(mode="json"), metrics=mf["metrics"],
        evaluation=artefact.evaluation,
        scoring_path=ScoringPath(compiled=artefact.predictor.scoring_path.compiled,
                                 detail=artefact.predictor.scoring_path.detail))
