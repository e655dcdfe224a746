"""The evaluator report: one document someone can sign and file, as Markdown and as a printable
PDF, generated from the governance snapshot at the moment it is printed.

It holds the architecture diagram of this deployment with its facts, the five evaluator
questions with their live answers, the nine-item checklist with evidence and status, the
sign-offs, the deploy-or-stay assessment with its recommendation and reasons, a data-flow and
retention table of the kind a data-protection impact assessment asks for (the legal basis left
for the institution to fill in), the model card of the serving version with its figures, and the
audit chain's head at printing. Nothing secret and no patient data enters it: counts, settings
without secrets, hashes, names of accounts and systems.
"""

from __future__ import annotations

import re

from core import access, assessment, deployment, diagram, figures
from core.clock import now_utc
from core.config import get_settings
from core.model_card import render
from core.pdf import Document
from core.stop_rules import TITLES
from core.stop_switch import is_suspended
from core.store import open_store
from core.text import md_cell, md_text

LEGAL_BASIS = "(for the institution to fill in)"


def _roles(action: str) -> str:
    return ", ".join(access.CAPABILITIES[action])


def data_flows(snap: dict) -> list[list[str]]:
    """What data, where, for how long, who can see it, legal basis: one row per kind of data."""
    d: deployment.Deployment = snap["deployment"]
    where = f"{d.store.label.lower()} ({d.store.where})"
    days = d.retention_days
    return [
        ["Model inputs as entered and the patient reference (PHI)", f"{where}, table phi_inputs",
         f"{days} days (APP_RETENTION_DAYS), then removed by `retention purge`",
         f"the clinician who scored ({_roles('score')}); reviewers for queued cases "
         f"({_roles('review')}); API clients holding read_prediction ({_roles('read_prediction')})",
         LEGAL_BASIS],
        ["Prediction record: keyed hash of the patient reference, sha256 of the input, risk, "
         "class, confidence, routing, reasons, model version and hash, who and when",
         f"{where}, table predictions, chained into the audit trail",
         "the life of the store (append-only; no raw input)",
         f"clinicians (their own), reviewers, the PI in aggregates ({_roles('monitor')})",
         LEGAL_BASIS],
        ["Review decisions: reviewer's name, decision, reason code, comment", where,
         "the life of the store (append-only)", f"reviewers, the PI ({_roles('monitor')})",
         LEGAL_BASIS],
        ["Outcomes: event yes/no, its date, the measured value, source; CDS feedback", where,
         "the life of the store (append-only)", "clinicians recording them; the PI in aggregates",
         LEGAL_BASIS],
        ["Rejected inputs: field names and messages, keyed hash of the payload", where,
         "the life of the store (append-only)", f"the PI in aggregates; admins ({_roles('administer')})",
         LEGAL_BASIS],
        ["Accounts, API clients and access events: usernames, printed names, roles, sign-ins, "
         "client addresses; password and token hashes only", where,
         "the life of the store (append-only)", f"admins ({_roles('administer')})", LEGAL_BASIS],
        ["Backups: complete copies of the store, PHI included", d.backups,
         "until the operator deletes them (the institution's backup schedule)",
         "the service's OS user; whoever holds the copies", LEGAL_BASIS],
        ["Model artefacts: the model, its spec, training-data hash and summary statistics "
         "(no patient rows)", d.artefacts, "as long as the version is kept",
         "every signed-in role reads its model card", LEGAL_BASIS],
        ["Audit chain head (a sequence number and a hash; no data)", "published outside the "
         "service (e.g. the study's log book)", "as the record it is published in",
         "anyone it is published to", LEGAL_BASIS],
    ]


def current_head() -> tuple[int, str]:
    """The audit chain's head now."""
    return open_store(get_settings().db).head()


def _card(artefact) -> str:
    """The serving version's model card, one heading level down, with its figures."""
    card = render(artefact, figures="figure:")
    card = re.sub(r"<!--.*?-->\n?", "", card, flags=re.DOTALL)
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", card, flags=re.MULTILINE)


def markdown(snap: dict, *, by: str, head: tuple[int, str] | None = None,
             for_pdf: bool = False) -> str:
    """The report as Markdown. Figures are `![caption](figure:NAME)` for the PDF; in the
    Markdown export they are named (the PDF and the governance page draw them)."""
    a, d = snap["artefact"], snap["deployment"]
    seq, digest = head or current_head()
    state = snap["service"]
    lines = [f"# Evaluator report: {md_text(a.spec.model_name)}", "",
             f"Printed {now_utc():%Y-%m-%d %H:%M} UTC from the live store by {md_text(by)}. "
             f"Serving model **{a.version}**, model sha256 `{a.sha256}`. Audit head at printing: "
             f"`{seq}:{digest}`.", ""]
    if a.manifest.get("synthetic_data"):
        lines += ["**SYNTHETIC MODEL - NOT FOR CLINICAL USE.**", ""]
    lines += [f"Scoring status: {'SUSPENDED' if is_suspended(state) else 'active'}"
              + (f" (last change {state.created_at:%Y-%m-%d %H:%M} by {md_text(state.user_name)}: "
                 f"{md_text(state.reason)})" if state else ""), ""]
    lines += ["## Architecture of this deployment", "",
              "![Architecture of this deployment, drawn from its live configuration](figure:architecture)",
              "", "| What | This deployment |", "|---|---|"]
    lines += [f"| {what} | {md_cell(value)} |" for what, value in deployment.facts(d)]
    lines += ["", "## The five evaluator questions", ""]
    for i, (q, answer) in enumerate(snap["questions"], 1):
        lines += [f"### {i}. {q}", "", answer, ""]
    lines += ["## Deployment checklist", "", "| # | Item | Status | Evidence |", "|---|---|---|---|"]
    # The checklist's own text keeps its Markdown (code spans); only a table's `|` is escaped.
    lines += [f"| {i} | {it.text} | {it.status} | {it.evidence.replace('|', chr(92) + '|')} |"
              for i, it in enumerate(snap["checklist"], 1)]
    lines += ["", "## Sign-offs", ""]
    s = snap["signoffs"]
    if s.empty:
        lines += ["None recorded.", ""]
    else:
        lines += ["| Role | Name | Date | Scope | Model version | Recorded by |", "|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(md_cell(v) for v in (r.signer_role, r.signer_name, r.signed_on,
                                                          r.scope, r.model_version, r.user_name))
                  + " |" for r in s.itertuples()]
        lines += [""]
    lines += _assessment(snap["assessment"])
    lines += _stop_rules(snap)
    lines += ["## Data flow and retention", "",
              "What data the service keeps, where, for how long and who can see it. The legal "
              "basis is the institution's to state.", "",
              "| Data | Where | Kept for | Who can see it | Legal basis |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in data_flows(snap)]
    lines += ["", "## Model card of the serving version", "", _card(a), "",
              "## Audit head at printing", "",
              f"`{seq}:{digest}`: publish it outside the service; `python -m core audit verify "
              f"--head {seq}:{digest}` later proves that nothing recorded up to here was changed "
              "or removed.", ""]
    text = "\n".join(lines)
    if not for_pdf:
        text = re.sub(r"^!\[([^\]]*)\]\(figure:[\w.-]+\)$",
                      r"*Figure: \1 (drawn in the PDF report, and in the app).*",
                      text, flags=re.MULTILINE)
    return text


def _stop_rules(snap: dict) -> list[str]:
    """The stop rules as checked at printing, and every recommendation raised, acknowledged or
    cleared (RUNBOOK.md "When to stop using the model")."""
    lines = ["## Stop rules", "", "Checked at printing on the serving version's recent outcomes.", "",
             "| Rule | State | Rule in words | Judged on |", "|---|---|---|---|"]
    lines += [f"| {TITLES[c.rule]} | {c.state.replace('_', ' ')} | {md_cell(c.statement)} | "
              f"{md_cell(c.evidence)} |" for c in snap["stop_rules"]]
    history = snap["stop_rule_history"]
    lines += ["", "Recommendations recorded:" if len(history) else "No recommendation was ever raised.", ""]
    if len(history):
        lines += ["| When (UTC) | Rule | Model | Action | By | Figures or decision |", "|---|---|---|---|---|---|"]
        lines += [f"| {r.created_at:%Y-%m-%d %H:%M} | {TITLES.get(r.rule, md_cell(r.rule))} | "
                  f"{md_cell(r.model_version)} | {r.action} | {md_cell(r.user_name)} | "
                  f"{md_cell(r.note or r.evidence)} |" for r in history.itertuples()]
        lines += [""]
    return lines


def _assessment(latest: dict | None) -> list[str]:
    lines = ["## Deploy, or stay a research artefact?", ""]
    if latest is None:
        return lines + ["Not assessed yet: answer the five questions on the governance page.", ""]
    advice = latest["advice"]
    lines += [f"Answered by {md_text(latest['respondent_name'])} ({md_text(latest['user_name'])}) "
              f"on {latest['created_at']:%Y-%m-%d %H:%M} UTC, model version "
              f"{md_text(latest['model_version'])}.", "",
              "| Criterion | Answer |", "|---|---|"]
    lines += [f"| {question} | {'yes' if latest[field] else 'no'} |"
              for field, question, _ in assessment.CRITERIA]
    lines += ["", f"**Recommendation: {advice.verdict}.**", ""]
    lines += [f"- {reason}" for reason in advice.reasons]
    if latest["notes"]:
        lines += ["", f"Notes: {md_text(' '.join(latest['notes'].split()))}"]
    return lines + [""]


def figure_svgs(snap: dict) -> dict[str, str]:
    """Every figure the report draws, by name."""
    return {"architecture": diagram.svg(snap["deployment"]),
            **figures.svgs(snap["artefact"])}


def pdf(snap: dict, *, by: str, head: tuple[int, str] | None = None) -> bytes:
    """The report as a printable PDF."""
    head = head or current_head()
    a = snap["artefact"]
    svgs = figure_svgs(snap)
    doc = Document(f"Evaluator report: {a.spec.model_name}",
                   footer=f"{a.spec.model_name}, version {a.version}; audit head {head[0]}:"
                          f"{head[1][:16]}...; printed {now_utc():%Y-%m-%d %H:%M} UTC")
    doc.markdown(markdown(snap, by=by, head=head, for_pdf=True), figures=svgs.get)
    return doc.output()
