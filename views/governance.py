"""Governance (admin and PI): the architecture diagram of this deployment, the five evaluator
questions from live data, the deployment checklist, sign-offs, the deploy-or-stay assessment, the
stop switch, and the evaluator report (PDF and Markdown)."""

import streamlit as st

from core import artifacts, report
from core.assessment import CRITERIA, record_assessment
from core.config import get_settings
from core.deployment import facts
from core.diagram import svg
from core.display import field_label
from core.errors import CoreError, InvalidInput
from core.governance import SIGNER_ROLES, record_signoff, snapshot
from core.stop_switch import is_suspended, set_suspended
from core.text import md_text
from core.verification import verify_whole
from ui import demo_history, session
from ui import stop_rules as stop_rule_section

user = session.guard("govern")

st.title("Governance")
demo_history.banner()
try:
    settings = get_settings()
    # Only what was added since the last whole verification is checked here (fast at any
    # size); the button below verifies the whole chain, and records that it did.
    snap = snapshot(by=user.username)
except CoreError as exc:
    st.error(f"The governance data cannot be read: {exc}")
    st.stop()

state = snap["service"]
suspended = is_suspended(state)
if suspended:
    st.error(f"Scoring is SUSPENDED since {state.created_at:%Y-%m-%d %H:%M} UTC by "
             f"{md_text(state.user_name)}: {md_text(state.reason)}")
else:
    st.success(f"Scoring is active. Serving model {snap['artefact'].version}.")

st.download_button("Print the evaluator report (PDF)", lambda: report.pdf(snap, by=user.username),
                   file_name="evaluator-report.pdf", mime="application/pdf", key="gov_report_pdf",
                   on_click="ignore", type="primary")

st.header("Architecture of this deployment")
st.caption("Drawn from the live configuration: the settings, the store, the registered API "
           "clients and the serving model.")
diagram = svg(snap["deployment"])
st.image(diagram, width="stretch", alt="Architecture diagram of this deployment; every fact it "
         "draws is listed in words below it")
with st.expander("What the diagram shows, in words"):
    st.table([{"What": what, "This deployment": value} for what, value in facts(snap["deployment"])])
st.download_button("Download the diagram (SVG)", lambda: diagram, file_name="architecture.svg",
                   mime="image/svg+xml", key="gov_diagram_svg", on_click="ignore")

st.header("The five evaluator questions")
for i, (question, answer) in enumerate(snap["questions"], 1):
    st.subheader(f"{i}. {question}")
    st.markdown(answer)

if st.button("Verify the whole audit trail now", key="gov_verify_whole"):
    with st.spinner("Verifying every entry and every record..."):
        problems, (seq, _) = verify_whole(by=user.username)
    (st.error(f"Audit trail FAILED: {md_text(problems[0])}") if problems
     else st.success(f"Audit trail intact: all {seq} entries verified (recorded)."))

st.header("Deployment checklist")
marks = {"done": "✅ done", "not yet": "❌ not yet", "manual": "✍️ manual"}
st.dataframe([{"#": i, "Item": it.text, "Status": marks[it.status], "Evidence": it.evidence}
              for i, it in enumerate(snap["checklist"], 1)], hide_index=True, key="gov_checklist")

st.header("Sign-offs")
signed = st.session_state.pop("gov_signoff_notice", None)  # set with a recorded sign-off, before the rerun
if signed:
    st.success(signed)
if snap["signoffs"].empty:
    st.info("No sign-off recorded yet.")
else:
    st.dataframe(snap["signoffs"], hide_index=True, key="gov_signoffs", column_config={
        "created_at": st.column_config.DatetimeColumn("Recorded (UTC)"), "user_name": "Recorded by",
        "signer_name": "Signer", "signer_role": "Role", "signed_on": "Date signed", "scope": "Scope",
        "model_version": "Model version"})
with st.form("gov_signoff", clear_on_submit=True):
    st.subheader("Record a sign-off")
    st.markdown("Appended to the audit trail.")
    name = st.text_input(field_label("Signer's name", required=True), key="gov_signer_name")
    role = st.selectbox(field_label("Signer's role", required=True), SIGNER_ROLES, key="gov_signer_role")
    signed_on = st.date_input(field_label("Date signed", required=True), key="gov_signed_on")
    scope = st.text_input(field_label("Scope (what was reviewed)", required=True), key="gov_scope")
    versions = artifacts.list_versions(settings.models)
    version = st.selectbox(field_label("Model version", required=True), versions,
                           index=versions.index(snap["artefact"].version), key="gov_version")
    if st.form_submit_button("Record sign-off"):
        try:
            record_signoff(signer_name=name, signer_role=role, signed_on=str(signed_on), scope=scope,
                           model_version=version, by=user.username)
            st.session_state["gov_signoff_notice"] = f"Sign-off by {md_text(name)} ({role}) recorded."
            st.rerun()
        except InvalidInput as exc:
            names = {"signer_name": "Signer's name", "signer_role": "Signer's role",
                     "signed_on": "Date signed", "scope": "Scope", "model_version": "Model version"}
            for said in exc.sentences(names).values():
                for sentence in said:
                    st.error(md_text(sentence))

st.header("Deploy, or stay a research artefact in the notebook?")
assessed = st.session_state.pop("gov_assessment_notice", None)
if assessed:
    st.success(assessed)
latest = snap["assessment"]
if latest is None:
    st.info("Not assessed yet.")
else:
    advice = latest["advice"]
    st.markdown(f"**Recommendation: {md_text(advice.verdict)}** (answered by "
                f"{md_text(latest['respondent_name'])} on {latest['created_at']:%Y-%m-%d %H:%M} UTC)")
    for reason in advice.reasons:
        st.markdown(f"- {md_text(reason)}")
with st.form("gov_assessment", clear_on_submit=True):
    st.subheader("Answer the assessment")
    st.markdown("Recorded with your name and the time.")
    answers = {}
    for field, question, _ in CRITERIA:
        choice = st.radio(field_label(question, required=True), ("yes", "no"), index=None,
                          horizontal=True, key=f"gov_assess_{field}")
        answers[field] = None if choice is None else choice == "yes"
    notes = st.text_area(field_label("Notes", required=False), key="gov_assess_notes")
    if st.form_submit_button("Record the assessment"):
        try:
            row = record_assessment(answers, notes=notes, by=user.username,
                                    respondent_name=user.display_name,
                                    model_version=snap["artefact"].version)
            st.session_state["gov_assessment_notice"] = (
                f"Assessment recorded: {row['recommendation']}.")
            st.rerun()
        except InvalidInput as exc:
            questions = {field: question for field, question, _ in CRITERIA} | {"notes": "Notes"}
            for said in exc.sentences(questions).values():
                for sentence in said:
                    st.error(md_text(sentence))

stop_rule_section.render(user, key="gov", reviewed=(snap["stop_rules"], snap["stop_rule_recommendations"]))

st.header("Stop switch")
with st.form("gov_stop_switch"):
    reason = st.text_input(field_label("Reason (recorded)", required=True), key="gov_stop_reason")
    label = "Resume scoring" if suspended else "Suspend scoring"
    if st.form_submit_button(label, type="primary"):
        try:
            set_suspended(not suspended, by=user.username, reason=reason)
            st.rerun()
        except ValueError as exc:
            st.error(str(exc))
st.markdown("Suspending stops all scoring at once: clinicians see 'model suspended' and no risk. "
            "To roll back instead, activate an earlier version on the Admin page.")

# Generated on click (deferred), so its /media/ address expires with the next run; the audit
# head in the report is the chain's head at that moment.
st.download_button("Print the evaluator report (PDF)", lambda: report.pdf(snap, by=user.username),
                   file_name="evaluator-report.pdf", mime="application/pdf", key="gov_report_pdf_end",
                   on_click="ignore")
st.download_button("Export the evaluator report as Markdown", lambda: report.markdown(
                   snap, by=user.username), file_name="evaluator-report.md",
                   mime="text/markdown", key="gov_export", on_click="ignore")
