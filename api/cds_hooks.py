"""CDS Hooks 2.0 (https://cds-hooks.hl7.org/2.0/): the serving model as one CDS service that a
hospital system (the CDS client: an EHR) calls when a clinician opens a patient's record.

- `GET /cds-services`: discovery. One service, on the `patient-view` hook: the model estimates a
  patient's risk at a point of care, not about an order being written, and patient-view's
  context (the user, the patient, the encounter) is all it reads. Its id comes from the serving
  spec's title, so a client registered for one prediction task is never answered by another.
- `POST /cds-services/{id}`: the model's inputs come prefetched under the key `inputs`: a JSON
  object of the spec's feature values (and optionally `patient_ref`), or a FHIR Parameters
  resource of them (what a FHIR operation returns); `context.patientId` is the patient
  reference when the inputs give none. The call is scored by core.score, so the prediction is
  validated, routed and recorded, and answered with one card, whose uuid is the prediction id.
  Inputs that fail validation are a 422 problem naming each field (recorded as a rejected
  input), not a card: a card saying "incomplete" at every chart opening would train clinicians
  to ignore the service and hide a broken integration from the people who can fix it; no card
  is never a low-risk card. No `inputs` at all is 412, as the specification says.
- `POST /cds-services/{id}/feedback`: each item (accepted, or overridden with a reason) is
  recorded in the audit chain by core.cds_feedback.

The envelope is read leniently (a client may send fields of a later version, or `extension`);
the model's inputs strictly. `fhirAuthorization` is never used, echoed or recorded: the service
reads nothing from the client's FHIR server."""

from __future__ import annotations

import re
import unicodedata
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import models_json_schema

from api.body import Unreadable, read_json
from api.problems import ApiProblem, responses
from api.security import caller
from core import access, artifacts
from core.cds_feedback import (
    CODE_MAX,
    DISPLAY_MAX,
    MAX_ITEMS,
    OVERRIDE_REASONS,
    OVERRIDE_SYSTEM,
    SYSTEM_MAX,
    record_feedback,
)
from core.clients import ApiClient
from core.config import get_settings
from core.display import pct
from core.errors import ArtefactMismatch, InvalidInput, Problem, problem
from core.scoring import ScoreResult, reject, score
from core.serving import scoring_artefact, serving_version
from core.session import is_trusted_proxy
from core.spec import PATIENT_REF, WHOLE_PAYLOAD, Spec
from core.text import md_text

router = APIRouter(tags=["cds-hooks"])
HOOK = "patient-view"
INPUTS = "inputs"  # the prefetch key of the model's inputs
EXTENSION = "clinical-risk-service.inputs"  # discovery: the inputs `inputs` must hold
SUMMARY_MAX = 139  # the specification: "<140-character summary"
PARAMETER_VALUES = ("valueInteger", "valueDecimal", "valueBoolean", "valueString", "valueCode")


# ---- the specification's shapes (its field names, camelCase as it has them) ---------------


class Inbound(BaseModel):
    """What a CDS client sends: fields this service does not read are ignored."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class Coding(Inbound):
    code: str = Field(min_length=1, max_length=CODE_MAX)
    system: str = Field(min_length=1, max_length=SYSTEM_MAX)
    display: str | None = Field(default=None, max_length=DISPLAY_MAX)


class Source(BaseModel):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Link(BaseModel):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Action(BaseModel):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict | None = None
    resourceId: str | None = None


class Suggestion(BaseModel):
    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Card(BaseModel):
    uuid: str | None = None
    summary: str = Field(max_length=SUMMARY_MAX)
    detail: str | None = None  # GitHub-flavoured Markdown
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None


class CdsResponse(BaseModel):
    cards: list[Card]
    systemActions: list[Action] | None = None


class CdsService(BaseModel):
    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None
    extension: dict[str, Any] | None = None


class Discovery(BaseModel):
    services: list[CdsService]


class FhirAuthorization(Inbound):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str
    subject: str


class PatientViewContext(Inbound):
    userId: str = Field(min_length=1, max_length=200)
    patientId: str = Field(min_length=1, max_length=200)
    encounterId: str | None = Field(default=None, max_length=200)


class CdsRequest(Inbound):
    hook: Literal["patient-view"]  # HOOK: the one hook this service is invoked on
    hookInstance: uuid.UUID
    fhirServer: str | None = Field(default=None, max_length=2000)
    fhirAuthorization: FhirAuthorization | None = None
    context: PatientViewContext
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _server_with_token(self) -> CdsRequest:
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirServer: is required with fhirAuthorization")
        return self


class OverrideReason(Inbound):
    reason: Coding | None = None
    userComment: str | None = None


class AcceptedSuggestion(Inbound):
    id: str = Field(min_length=1, max_length=100)


class FeedbackItem(Inbound):
    card: str = Field(min_length=1, max_length=64)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: AwareDatetime

    @model_validator(mode="after")
    def _outcome_fits(self) -> FeedbackItem:
        if self.outcome == "accepted" and self.overrideReason is not None:
            raise ValueError("overrideReason: only an overridden card has one")
        expected = suggestion_id(self.card)
        wrong = [s.id for s in self.acceptedSuggestions or [] if s.id != expected]
        if self.outcome == "overridden" and self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions: an overridden card has none")
        if wrong:
            raise ValueError(f"acceptedSuggestions: {wrong[0][:40]!r} is not a suggestion of this card")
        return self


class FeedbackRequest(Inbound):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=MAX_ITEMS)


class FeedbackAck(BaseModel):
    """Not defined by the specification (which asks only for 200): how many items were recorded."""

    recorded: int


def request_schemas() -> dict[str, Any]:
    """The request bodies' schemas (and those they name), for the OpenAPI components."""
    _, defs = models_json_schema([(CdsRequest, "validation"), (FeedbackRequest, "validation")],
                                 ref_template="#/components/schemas/{model}")
    return defs["$defs"]


def describe(doc: dict, spec: Spec) -> None:
    """The OpenAPI document of a serving version: `{service}` is that version's service id."""
    for path, item in doc["paths"].items():
        for operation in item.values() if "{service}" in path else ():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "service":
                    parameter["schema"] = {"type": "string", "enum": [service_id(spec)],
                                           "title": "Service"}


def request_body(name: str) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{name}"}}}}}


# ---- the service -------------------------------------------------------------------------


def service_id(spec: Spec) -> str:
    """The service's id: the spec's title in lower-case ASCII, words joined by '-'."""
    ascii_title = unicodedata.normalize("NFKD", spec.title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-") or "risk"


def suggestion_id(prediction_id: str) -> str:
    """The id of a card's one suggestion (accept the estimate), derived from its prediction."""
    try:
        return str(uuid.uuid5(uuid.UUID(prediction_id), "accept"))
    except ValueError:
        return ""


def _service(spec: Spec, version: str) -> CdsService:
    sid = service_id(spec)
    inputs = [{k: v for k, v in {
        "name": f.name, "label": f.label, "type": f.type, "unit": f.unit or None,
        "required": f.required, "min": f.hard_min, "max": f.hard_max,
        "categories": f.categories}.items() if v is not None} for f in spec.features]
    return CdsService(
        hook=HOOK, id=sid, title=spec.title, description=spec.description,
        prefetch={INPUTS: f"Patient/{{{{context.patientId}}}}/${sid}-inputs"},
        usageRequirements=(
            f"Prefetch `{INPUTS}`: the model's inputs (extension `{EXTENSION}`), as a JSON object "
            f"of name: value (with `{PATIENT_REF}`, or context.patientId is the patient "
            "reference) or a FHIR Parameters resource. Authenticate with an API client's bearer "
            f"token. Intended use: {spec.intended_use}"),
        extension={EXTENSION: inputs, "clinical-risk-service.model-version": version})


def _serving_spec() -> tuple[Spec, str]:
    settings = get_settings()
    version = serving_version(settings)
    if version is None:
        raise ArtefactMismatch(f"no model is active and {settings.models} names no default version")
    return artifacts.load(settings.models, version).spec, version


@router.get("/cds-services", response_model=Discovery, response_model_exclude_none=True,
            responses=responses(401, 403, 429, 503),
            summary="CDS Hooks discovery: the serving model as one patient-view service")
async def discovery(client: Annotated[ApiClient, Depends(caller("read_model_card"))]) -> Discovery:
    spec, version = await run_in_threadpool(_serving_spec)
    return Discovery(services=[_service(spec, version)])


def _errors(exc: ValidationError) -> tuple[list[Problem], list[str]]:
    """The field problems of a request that does not fit its shape (answered), and each as
    recorded: the field and the kind of problem, never a value."""
    out, notes = [], []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        field, _, rest = message.partition(": ")
        if e["type"] == "value_error" and rest and re.fullmatch(r"[A-Za-z]+", field):
            loc, message = f"{loc}.{field}" if loc else field, rest  # a check naming its field
        secret = loc.startswith("fhirAuthorization")
        out.append(problem(loc or WHOLE_PAYLOAD, message, e.get("input"),
                           shown="(not shown)" if secret else None))
        kind = message if e["type"] == "value_error" else e["type"].replace("_", " ")
        notes.append(f"{loc or WHOLE_PAYLOAD}: {kind}")
    return out, notes


def _hashed(body: Any) -> Any:
    """What a refused call's record hashes: the body without its FHIR access token."""
    return {k: v for k, v in body.items() if k != "fhirAuthorization"} if isinstance(body, dict) else body


def _refuse(client: ApiClient, body: Any, errors: list[Problem], notes: list[str] | None = None,
            *, status: int = 422, detail: str = "the CDS Hooks request does not fit this service"
            ) -> ApiProblem:
    """Record a call refused before scoring as a rejected input (each problem naming its field
    in the message, never a value: `notes`, else the problems' own words), and the problem to
    answer with."""
    notes = notes or [f"{e['field']}: {e['message']}" for e in errors]
    recorded = [problem(WHOLE_PAYLOAD, note, None, shown="") for note in notes]
    reject(_hashed(body), recorded, user=client.principal, source="api")
    return ApiProblem(status, detail, errors=errors)


def _from_parameters(resource: dict) -> tuple[dict, list[Problem]]:
    """A FHIR Parameters resource's name/value pairs as a payload, and any problems."""
    where = f"prefetch.{INPUTS}.parameter"
    parameters = resource.get("parameter", [])
    if not isinstance(parameters, list):
        return {}, [problem(where, "must be a list of parameters", parameters)]
    payload: dict = {}
    problems: list[Problem] = []
    for i, p in enumerate(parameters):
        name = p.get("name") if isinstance(p, dict) else None
        values = [k for k in p if k.startswith("value")] if isinstance(p, dict) else []
        if not isinstance(name, str) or not name:
            problems.append(problem(f"{where}.{i}.name", "each parameter needs a name", name))
        elif len(values) != 1 or values[0] not in PARAMETER_VALUES:
            problems.append(problem(f"{where}.{i}", "needs exactly one of " + ", ".join(PARAMETER_VALUES),
                                    None, shown=", ".join(values)))
        elif name in payload:
            problems.append(problem(f"{where}.{i}.name", "is given twice", name))
        else:
            payload[name] = p[values[0]]
    return payload, problems


def _payload(inputs: Any, context: PatientViewContext) -> tuple[dict, list[Problem]]:
    """The core.score payload the prefetched inputs stand for, and any problems reading them."""
    if not isinstance(inputs, dict):
        return {}, [problem(f"prefetch.{INPUTS}", "must be a JSON object of the model's inputs "
                            "or a FHIR Parameters resource", inputs)]
    if "resourceType" in inputs:
        if inputs["resourceType"] != "Parameters":
            return {}, [problem(f"prefetch.{INPUTS}.resourceType", "the only FHIR resource read "
                                "here is Parameters", inputs["resourceType"])]
        payload, problems = _from_parameters(inputs)
    else:
        payload, problems = dict(inputs), []
    payload.setdefault(PATIENT_REF, context.patientId)
    return payload, problems


def _origin(request: Request) -> str:
    """The scheme and host the client called, as a browser opening a card's link needs them
    (the scheme a trusted TLS proxy says it was called on)."""
    scheme = request.url.scheme
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    peer = request.client.host if request.client else None
    if forwarded in ("http", "https") and peer and is_trusted_proxy(peer):
        scheme = forwarded
    return f"{scheme}://{request.url.netloc}"


def model_card_page() -> str:
    """The UI page with the model's facts (its path, from the capability table's pages)."""
    page = next(p for p in access.PAGES if p.action == "read_model_card")
    return Path(page.path).stem


def card(result: ScoreResult, artefact: artifacts.Artefact, origin: str) -> Card:
    """The card of one recorded prediction: the risk with its interval, the class, whether it is
    final or waiting for a reviewer (and why), and where the model's facts are."""
    spec = artefact.spec
    risk, (low, high) = pct(result.risk), (pct(b) for b in result.risk_interval_95)
    routed = result.routing == "review"
    status = "sent to a reviewer" if routed else "finalised automatically"
    summary = f"{spec.title}: {risk} (95% interval {low} to {high}), {result.risk_class} risk, {status}"
    if len(summary) > SUMMARY_MAX:
        summary = f"{risk} (95% interval {low} to {high}), {result.risk_class} risk, {status}"
    where = ("at or above" if result.risk_class == "high" else "below")
    lines = []
    if artefact.manifest.get("synthetic_data"):
        lines += ["**NOT FOR CLINICAL USE: this model was trained on synthetic data.**", ""]
    lines += [f"**{md_text(spec.outcome.label)}**: risk **{risk}** (95% interval {low} to {high}), "
              f"**{result.risk_class} risk**: {where} the action threshold of "
              f"{pct(result.action_threshold)}.", ""]
    if routed:
        lines += ["**Sent to a reviewer** before it is final, because:",
                  *[f"- {md_text(r)}" for r in result.reasons]]
    else:
        lines.append("**Finalised automatically**: the model is confident and every input is "
                     "within the range it was validated on.")
    lines += ["", f"**What the threshold means:** {md_text(spec.action)}"]
    if result.top_factors:
        lines += ["", "Inputs that moved this risk most:",
                  *[f"- {md_text(f.label)}: {f.direction}" for f in result.top_factors[:3]]]
    lines += ["", f"Patient {md_text(result.patient_ref)}; model {md_text(result.model_version)} "
              f"({md_text(spec.model_name)}); prediction {result.prediction_id}."]
    return Card(
        uuid=result.prediction_id, summary=summary, detail="\n".join(lines),
        indicator="warning" if result.risk_class == "high" else "info",
        source=Source(label=f"{spec.title}, model {result.model_version}",
                      url=f"{origin}/{model_card_page()}"),
        suggestions=[Suggestion(label="Accept the risk estimate",
                                uuid=suggestion_id(result.prediction_id))],
        selectionBehavior="at-most-one",
        overrideReasons=[Coding(system=OVERRIDE_SYSTEM, code=code, display=display)
                         for code, display in OVERRIDE_REASONS.items()],
        links=[Link(label="Model facts: intended use, validation, limits",
                    url=f"{origin}/{model_card_page()}", type="absolute")])


async def _body(request: Request, client: ApiClient) -> Any:
    try:
        return await read_json(request)
    except Unreadable as exc:
        raise await run_in_threadpool(_refuse, client, {"body": str(exc)},
                                      [problem(WHOLE_PAYLOAD, str(exc), None, shown="")]) from None
    except ApiProblem as exc:
        await run_in_threadpool(_refuse, client, {"body": exc.detail},
                                [problem(WHOLE_PAYLOAD, exc.detail, None, shown="")])
        raise


def _check_service(service: str) -> artifacts.Artefact:
    artefact = scoring_artefact()
    if service != service_id(artefact.spec):
        raise ApiProblem(404, f"no CDS service {service[:60]!r} here; the serving model's is "
                              f"{service_id(artefact.spec)!r} (GET /cds-services)")
    return artefact


def _score(payload: dict, client: ApiClient) -> ScoreResult:
    try:
        return score(payload, user=client.principal, source="api")
    except InvalidInput as exc:  # recorded by core.score; the fields as the request names them
        errors = [{**e, "field": f"prefetch.{INPUTS}.{e['field']}"} for e in exc.errors]
        raise ApiProblem(422, f"the prefetched `{INPUTS}` are not valid inputs of the model: "
                              "nothing was scored", errors=errors) from None


@router.post("/cds-services/{service}", response_model=CdsResponse,
             response_model_exclude_none=True,
             responses=responses(401, 403, 404, 412, 413, 415, 422, 429, 503),
             openapi_extra=request_body("CdsRequest"),
             summary="CDS Hooks call (patient-view): score the prefetched inputs, answer one card")
async def call(service: str, request: Request,
               client: Annotated[ApiClient, Depends(caller("score"))]) -> CdsResponse:
    await run_in_threadpool(_check_service, service)
    body = await _body(request, client)
    try:
        hook = CdsRequest.model_validate(body)
    except ValidationError as exc:
        raise await run_in_threadpool(_refuse, client, body, *_errors(exc)) from None
    inputs = (hook.prefetch or {}).get(INPUTS)
    if inputs is None:
        raise await run_in_threadpool(
            _refuse, client, body, [problem(f"prefetch.{INPUTS}", "was not sent", None, shown="")],
            status=412, detail=f"the model's inputs were not prefetched: send prefetch.{INPUTS}")
    payload, problems = _payload(inputs, hook.context)
    if problems:
        raise await run_in_threadpool(_refuse, client, body, problems)
    result = await run_in_threadpool(_score, payload, client)
    served = await run_in_threadpool(artifacts.load, get_settings().models, result.model_version)
    return CdsResponse(cards=[card(result, served, _origin(request))])


@router.post("/cds-services/{service}/feedback", response_model=FeedbackAck,
             responses=responses(401, 403, 404, 413, 415, 422, 429, 503),
             openapi_extra=request_body("FeedbackRequest"),
             summary="CDS Hooks feedback: record what the clinician did with each card")
async def feedback(service: str, request: Request,
                   client: Annotated[ApiClient, Depends(caller("score"))]) -> FeedbackAck:
    spec, _ = await run_in_threadpool(_serving_spec)
    if service != service_id(spec):
        raise ApiProblem(404, f"no CDS service {service[:60]!r} here; the serving model's is "
                              f"{service_id(spec)!r} (GET /cds-services)")
    try:
        body = await read_json(request)
    except Unreadable as exc:
        raise InvalidInput([problem(WHOLE_PAYLOAD, str(exc), None, shown="")]) from None
    try:
        report = FeedbackRequest.model_validate(body)
    except ValidationError as exc:
        raise ApiProblem(422, "the feedback does not fit the CDS Hooks feedback shape",
                         errors=_errors(exc)[0]) from None
    items = [{"prediction_id": f.card, "outcome": f.outcome,
              "outcome_timestamp": f.outcomeTimestamp,
              **(_reason(f.overrideReason) if f.overrideReason else {})} for f in report.feedback]
    try:
        rows = await run_in_threadpool(record_feedback, items, user=client.principal)
    except InvalidInput as exc:
        raise ApiProblem(422, "the feedback could not be recorded as sent", errors=[
            {**e, "field": _feedback_field(e["field"])} for e in exc.errors]) from None
    return FeedbackAck(recorded=len(rows))


def _reason(reason: OverrideReason) -> dict:
    coding = reason.reason
    return {"override_reason_system": coding.system if coding else "",
            "override_reason_code": coding.code if coding else "",
            "override_reason_display": (coding.display or "") if coding else "",
            "user_comment": reason.userComment or ""}


FEEDBACK_FIELDS = {"prediction_id": "card", "outcome": "outcome",
                   "override_reason_system": "overrideReason.reason.system",
                   "override_reason_code": "overrideReason.reason.code",
                   "override_reason_display": "overrideReason.reason.display",
                   "user_comment": "overrideReason.userComment",
                   "outcome_timestamp": "outcomeTimestamp", "(form)": "overrideReason"}


def _feedback_field(field: str) -> str:
    """core.cds_feedback's field ('0.user_comment') as the request names it."""
    index, _, name = field.partition(".")
    return f"feedback.{index}.{FEEDBACK_FIELDS.get(name, name)}" if index.isdigit() else field
