"""Governance: the five evaluator questions answered from live data, the deployment checklist
with automatic status and evidence, sign-off records, the deployment as configured (for its
architecture diagram) and the latest deploy-or-stay assessment; core.report prints all of it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from core import artifacts, assessment, deployment, stop_rules
from core.clock import now_utc
from core.config import PROJ_ROOT, Settings, get_settings
from core.errors import InvalidInput, problem
from core.model_card import is_current, render
from core.serving import active_artefact
from core.store import Event, Store, open_store
from core.store.records import Signoff
from core.text import clean_text, md_text
from core.verification import TrailStatus, trail_status

SIGNER_ROLES = ("IRB", "Data protection officer", "Hospital IT")
RUNBOOK_SECTIONS = ("Deploy from the repository on a fresh laptop", "Retrain on a new cohort",
                    "Adopt your own model")


@dataclass
class Item:
    text: str
    status: str  # "done", "not yet", or "manual"
    evidence: str


def snapshot(store: Store | None = None, settings: Settings | None = None, *,
             by: str = "governance page") -> dict:
    """Everything the governance page shows, computed now. The audit trail is checked from its
    last whole verification on (see core.verification); `by` is recorded if that has to run."""
    settings = settings or get_settings()
    store = store or open_store(settings.db)
    artefact = active_artefact(store, settings)
    counts = store.governance_counts()
    trail = trail_status(store, by=by)
    signoffs = store.signoff_records()
    checks, recommendations = stop_rules.review(store, settings)  # records a rule newly met or cleared
    return {"artefact": artefact, "signoffs": signoffs, "service": store.service_state(),
            "trail": trail, "questions": _questions(artefact, counts, trail, settings),
            "checklist": _checklist(artefact, counts, signoffs, settings),
            "deployment": deployment.describe(settings, store, artefact),
            "assessment": assessment.latest(store), "counts": counts,
            "stop_rules": checks, "stop_rule_recommendations": recommendations,
            "stop_rule_history": store.stop_rule_records()}


def trail_sentence(t: TrailStatus) -> str:
    """The audit trail's state in one sentence, saying what was checked when."""
    state = "intact" if not t.problems else f"FAILED ({t.problems[0]})"
    return (f"{state}, {t.head[0]} entries: the whole chain was verified through entry "
            f"{t.verified_through} on {t.verified_at:%Y-%m-%d %H:%M} UTC by {md_text(t.verified_by)}, "
            f"and the {t.checked_since} entries since were checked now")


def _questions(artefact, c: dict, trail: TrailStatus, settings) -> list[tuple[str, str]]:
    m = artefact.manifest
    chain = trail_sentence(trail)
    oldest = c["oldest_raw_input"].strftime("%Y-%m-%d") if c["oldest_raw_input"] else "none kept"
    made = ("imported" if m["origin"] == "imported" else "trained") + \
        f" {m['created_at']} by {m['created_by']}"
    data = "with held-out data" if m["origin"] == "imported" else "on"
    warnings = m["routing"]["warnings"]
    return [
        ("What model is in production, and what version of the training data was it trained on?",
         f"Version **{artefact.version}** of {md_text(artefact.spec.model_name)} (model sha256 "
         f"`{artefact.sha256[:16]}...`), {md_text(made)} {data} `{m['data']['file']}` (sha256 "
         f"`{m['data']['sha256'][:16]}...`, {m['data']['patients_included']} patients). Every "
         "prediction records the version and model hash; activations are kept with who and why."),
        ("What does the model do when the input is malformed, missing, or outside the validated "
         "input distribution?",
         f"{m['ood_policy']} So far: {c['rejected_inputs']} inputs rejected with a structured "
         f"error (recorded, no prediction), {c['flagged_out_of_distribution']} predictions "
         "flagged out of distribution and sent to review."),
        ("When the model is wrong, what is the recovery path?",
         f"{m['routing']['description']} "
         + (f"**Routing warning:** {' '.join(warnings)} " if warnings else "")
         + f"{m['confidence']['description']} {m['explanation']['description']} So far: "
         f"{c['predictions']} predictions, "
         f"{c['routed_to_review']} routed to review, {c['reviewed']} reviewed ({c['upgrades']} "
         f"upgraded, {c['downgrades']} downgraded), {c['pending']} pending. The stop switch "
         f"suspends scoring; rollback activates an earlier version with a recorded reason. "
         f"Audit chain: {chain}."),
        ("How are predictions logged, and for how long?",
         "Every prediction is one append-only record with time (UTC), user, keyed hash of the "
         "patient reference, sha256 of the input, output, confidence, routing and reasons, model "
         "version and hash, chained into a tamper-evident audit trail. Raw inputs and patient "
         f"references are kept {settings.retention_days} days, then purged (hashes, outputs and "
         f"decisions stay). Oldest raw input kept: {oldest}. Incompletely logged predictions: "
         f"{c['incompletely_logged']}."),
        ("What is the procedure for retraining the model when the training data changes?",
         "RUNBOOK.md, sections \"Retrain on a new cohort\" and \"Adopt your own model\": a "
         "person who did not write the model writes or adapts the spec, trains a new version "
         "with one command (or imports the team's fitted pipeline), verifies it, reads the "
         "generated model card and activates it with a reason. A test runs those commands as "
         "written on every change."),
    ]


def _card_check(artefact, settings) -> tuple[bool, str]:
    """Whether the serving version's model card can be generated (the Model card page shows
    it), and, when MODEL_CARD.md describes that very model file, whether it is current."""
    try:
        render(artefact)
    except Exception as exc:  # any failure to describe the serving model fails the item
        return False, f"the card of serving version {artefact.version} cannot be generated: {exc}"
    steps = len(artefact.manifest["data"]["flow"]) - 1
    evidence = (f"card of serving version {artefact.version} generated from its artefact "
                f"({steps} cohort steps), shown on the Model card page")
    card = PROJ_ROOT / "MODEL_CARD.md"
    if not card.is_file() or f"`{artefact.sha256}`" not in card.read_text():
        return True, evidence + "; MODEL_CARD.md describes another version (the shipped default)"
    if is_current(card, artefact):
        return True, evidence + "; MODEL_CARD.md current"
    return False, evidence + "; MODEL_CARD.md STALE: regenerate with `python -m core model-card`"


def _checklist(artefact, c: dict, signoffs, settings) -> list[Item]:
    card_current, card_evidence = _card_check(artefact, settings)
    runbook = (PROJ_ROOT / "RUNBOOK.md").read_text() if (PROJ_ROOT / "RUNBOOK.md").is_file() else ""
    signed = set(signoffs.loc[signoffs["model_version"] == artefact.version, "signer_role"]) \
        if not signoffs.empty else set()
    missing = [r for r in SIGNER_ROLES if r not in signed]
    routing = artefact.manifest["routing"]

    def item(text, ok, evidence, manual=False):
        return Item(text, "manual" if manual else ("done" if ok else "not yet"), evidence)

    return [
        item("The model's training data is described in a model card, including the inclusion "
             "and exclusion criteria for the training cohort.", card_current, card_evidence),
        item("The model file in production has a version identifier that is logged in every "
             "prediction.", c["incompletely_logged"] == 0,
             f"{c['predictions']} predictions, {c['incompletely_logged']} without version or hash"),
        item("The inference service has explicit input and output schemas. Malformed inputs "
             "return a structured error, not a server crash.", True,
             f"input schema built from the spec ({len(artefact.spec.features)} features); "
             f"{c['rejected_inputs']} rejections recorded with field and message"),
        item("There is a documented confidence threshold below which predictions are routed to "
             "human review.", bool(artefact.manifest.get("routing")),
             ("ROUTING WARNING: " + " ".join(routing["warnings"]) + " " if routing["warnings"]
              else "") + f"confidence level {routing['confidence_level']:.1%}, safe-low bound "
             f"{routing['safe_low_bound']:.1%}, expected review share "
             f"{routing['expected_review_share']:.0%} (manifest, model card)"),
        item("Every prediction is logged with input hash, output, confidence, model version, and "
             "timestamp.", c["incompletely_logged"] == 0,
             f"checked over all {c['predictions']} stored predictions"),
        item("There is a runbook describing how to redeploy the model from the source repository "
             "on a fresh laptop.", RUNBOOK_SECTIONS[0] in runbook, "RUNBOOK.md"),
        item("There is a documented retraining procedure that a human can execute without the "
             "original model author.", all(s in runbook for s in RUNBOOK_SECTIONS[1:]),
             "RUNBOOK.md; its commands are executed by the test suite"),
        item("The IRB / data-protection officer / hospital IT department has reviewed the "
             "deployment architecture and signed off.", not missing,
             f"sign-offs for {artefact.version}: " + (", ".join(sorted(signed)) or "none")
             + (f"; missing: {', '.join(missing)}" if missing else "")
             + "; the architecture diagram, drawn from the live configuration, is on this page "
               "and in the evaluator report"),
        item("The team has answered the five evaluator questions in writing.", True,
             "answered on this page from live data; printed in the evaluator report (PDF or "
             "Markdown), with the architecture diagram and the data-flow table"),
    ]


def record_signoff(*, signer_name: str, signer_role: str, signed_on: str, scope: str,
                   model_version: str, by: str, store: Store | None = None) -> dict:
    """Append a sign-off (IRB, data-protection officer, hospital IT) to the audit trail."""
    settings = get_settings()
    store = store or open_store(settings.db)
    problems = []
    texts = {}
    for field, value, limit in (("signer_name", signer_name, 200), ("scope", scope, 1000)):
        try:
            texts[field] = clean_text(value or "", max_length=limit)
        except ValueError as exc:
            problems.append(problem(field, str(exc), None, shown="(not shown)"))
            texts[field] = "(invalid)"
    signer_name, scope = texts["signer_name"], texts["scope"]
    if not signer_name:
        problems.append(problem("signer_name", "is required", ""))
    if signer_role not in SIGNER_ROLES:
        problems.append(problem("signer_role", "must be one of: " + ", ".join(SIGNER_ROLES), signer_role))
    try:
        day = date.fromisoformat(str(signed_on))
        if day > now_utc().date():
            problems.append(problem("signed_on", "cannot be in the future", day, shown=str(day)))
    except ValueError:
        problems.append(problem("signed_on", "must be a date YYYY-MM-DD", signed_on))
    if not scope:
        problems.append(problem("scope", "is required", ""))
    if model_version not in artifacts.list_versions(settings.models):
        problems.append(problem("model_version", "is not a known model version", model_version))
    if problems:
        raise InvalidInput(problems)
    at = now_utc()
    record = Signoff(signoff_id=str(uuid.uuid4()), created_at=at, user_name=by,
                     signer_name=signer_name, signer_role=signer_role, signed_on=day, scope=scope,
                     model_version=model_version)
    store.append([Event("signoff", by, at, model_version, record)])
    return record.row()
