"""Deploy, or stay a research artefact in a notebook: the five criteria as a short recorded
questionnaire, and the recommendation that follows from the answers, with its reasons.

A validated model does not by itself need a service. A service earns its running costs (sign-
offs, an on-call person, upgrades, an audit trail) only when its prediction informs a decision a
person makes today, again and again, for someone who is not the research team; when someone with
a say (the funder, the IRB, the institution) has asked for it; and when the team can run it.
Each answer set is an append-only event in the audit chain, kept with who answered and when;
the latest one is the deployment's current assessment.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from core.clock import now_utc
from core.config import get_settings
from core.errors import InvalidInput, problem
from core.store import Event, Store, open_store
from core.store.records import DeploymentAssessment
from core.text import actor, clean_text

# (field, question, what a "no" means for the recommendation)
CRITERIA: tuple[tuple[str, str, str], ...] = (
    ("informs_decision", "Does the prediction inform a decision a person makes today (in care, "
     "not in a study)?",
     "the prediction informs no decision a person makes today: a service would answer a question "
     "nobody is asking at the bedside"),
    ("recurring_use", "Is the use recurring (patients scored week after week, not one analysis)?",
     "the use is not recurring: a one-off analysis is better run, and reproduced, in the notebook"),
    ("non_research_consumer", "Is the consumer of the prediction someone outside the research "
     "team (a clinician, a hospital system)?",
     "only the research team uses the predictions: the notebook already serves them"),
    ("service_requested", "Has the funder, the IRB or the institution asked for a running service?",
     "nobody with a say (funder, IRB, institution) has asked for a service: agree it with them "
     "first, since running one brings sign-offs and obligations"),
    ("capacity_to_run", "Does the team have the capacity to run it (someone to operate, upgrade, "
     "watch the monitoring and answer the on-call)?",
     "the team cannot yet run a service: an unattended service with stale monitoring is worse than "
     "none"),
)
FIELDS = tuple(field for field, _, _ in CRITERIA)
NEED = ("informs_decision", "recurring_use", "non_research_consumer")

DEPLOY = "Deploy as a service"
DEPLOY_ONCE_AGREED = "Deploy once the funder, IRB or institution has agreed"
NOT_YET = "Not yet: stay in the notebook until the team can run the service"
STAY = "Stay a research artefact in the notebook"


@dataclass(frozen=True)
class Recommendation:
    verdict: str
    reasons: list[str]


def recommend(answers: dict[str, bool]) -> Recommendation:
    """The recommendation for a set of answers (every criterion yes or no), with its reasons."""
    no = [reason for field, _, reason in CRITERIA if not answers[field]]
    if not all(answers[f] for f in NEED):
        return Recommendation(STAY, [r for f, _, r in CRITERIA if f in NEED and not answers[f]])
    if not answers["capacity_to_run"]:
        return Recommendation(NOT_YET, no)
    if not answers["service_requested"]:
        return Recommendation(DEPLOY_ONCE_AGREED, no)
    return Recommendation(DEPLOY, ["the prediction informs a decision made today, for someone "
                                   "outside the research team, again and again; the service was "
                                   "asked for, and the team can run it"])


def record_assessment(answers: dict, *, notes: str = "", by: str, respondent_name: str = "",
                      model_version: str, store: Store | None = None) -> dict:
    """Record one answer set (each criterion True or False); the recorded row, with the
    recommendation it gave. InvalidInput names every unanswered or malformed field."""
    actor(by)
    store = store or open_store(get_settings().db)
    problems = []
    for field in FIELDS:
        if not isinstance(answers.get(field), bool):
            problems.append(problem(field, "answer yes or no", answers.get(field)))
    unknown = sorted(set(answers) - set(FIELDS))
    problems += [problem(name, "is not a criterion of the assessment", None, shown="(not shown)")
                 for name in unknown]
    texts = {}
    for field, value, limit in (("notes", notes, 2000), ("respondent_name", respondent_name, 200)):
        try:
            texts[field] = clean_text(value or "", max_length=limit, multiline=field == "notes")
        except ValueError as exc:
            problems.append(problem(field, str(exc), None, shown="(not shown)"))
    if problems:
        raise InvalidInput(problems)
    verdict = recommend(answers).verdict
    at = now_utc()
    record = DeploymentAssessment(
        assessment_id=str(uuid.uuid4()), created_at=at, user_name=by,
        respondent_name=texts["respondent_name"] or by, model_version=model_version,
        **{f: answers[f] for f in FIELDS}, notes=texts["notes"], recommendation=verdict)
    store.append([Event("deployment_assessment", by, at, model_version, record)])
    return record.row()


def latest(store: Store) -> dict | None:
    """The latest answer set (a row of deployment_assessments) with its recommendation worked
    out again from the answers, or None when nobody has answered yet."""
    rows = store.assessment_records()
    if rows.empty:
        return None
    row = rows.iloc[-1].to_dict()
    answers = {f: bool(row[f]) for f in FIELDS}
    return {**row, **answers, "advice": recommend(answers)}
