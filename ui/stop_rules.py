"""The stop rules' recommendations on the monitoring and governance pages: each one in force,
what it was judged on, its acknowledgement, and the form to acknowledge it (core.stop_rules)."""

from __future__ import annotations

import streamlit as st

from core import access, stop_rules
from core.display import field_label
from core.errors import CoreError
from core.text import md_text
from ui import session

STATES = {"met": "met: recommendation raised", "not_met": "not met", "too_few": "too few outcomes yet",
          "not_applicable": "not applicable to this version"}


def render(user, *, key: str, reviewed: tuple | None = None) -> None:
    """The section; `key` tells the two pages' widgets apart; `reviewed`: stop_rules.review()'s
    result when the page already has it (the governance snapshot), else it is done here."""
    st.header("Stop rules")
    try:
        checks, recommendations = reviewed if reviewed is not None else stop_rules.review()
    except CoreError as exc:
        st.error(f"The stop rules cannot be checked: {exc}")
        return
    notice = st.session_state.pop(f"{key}_stop_rule_notice", None)
    if notice:
        st.success(notice)
    if not recommendations:
        st.success("No stop rule is met: no recommendation to stop using the model.")
    for r in recommendations:
        ack = r.acknowledged
        text = (f"**{md_text(r.title)}** (model {md_text(r.model_version)}, raised "
                f"{r.raised_at:%Y-%m-%d %H:%M} UTC). {md_text(r.evidence)} Consider suspending scoring "
                "with the stop switch on the governance page.")
        if ack is None:
            st.error(text + " Not acknowledged yet.", icon=":material/front_hand:")
        else:
            st.warning(text + f" Acknowledged by {md_text(ack.user_name)} on "
                       f"{ack.created_at:%Y-%m-%d %H:%M} UTC: {md_text(ack.note)}", icon=":material/front_hand:")
    st.dataframe([{"Rule": stop_rules.TITLES[c.rule], "Model": c.model_version, "State": STATES[c.state],
                   "Rule in words": c.statement, "Judged on": c.evidence} for c in checks],
                 hide_index=True, key=f"{key}_stop_rule_checks")
    if recommendations and access.may(user.roles, "govern"):
        _acknowledge(recommendations, key)
    with st.expander("History of the recommendations"):
        history = stop_rules.history()
        if history.empty:
            st.caption("No recommendation was ever raised.")
        else:
            st.dataframe(history[["created_at", "rule", "model_version", "action", "user_name", "evidence",
                                  "note"]], hide_index=True, key=f"{key}_stop_rule_history")


def _acknowledge(recommendations: list, key: str) -> None:
    with st.form(f"{key}_stop_rule_ack", clear_on_submit=True):
        st.subheader("Acknowledge a recommendation")
        st.markdown("Recorded with your name and the time. Choosing to suspend also turns the stop "
                    "switch on.")
        labels = {f"{r.title} (model {r.model_version})": r for r in recommendations}
        chosen = st.selectbox(field_label("Recommendation", required=True), list(labels), key=f"{key}_stop_rule_which")
        decision = st.radio(field_label("Decision", required=True), list(stop_rules.DECISIONS), index=None,
                            format_func=stop_rules.DECISIONS.get, key=f"{key}_stop_rule_decision")
        note = st.text_input(field_label("Reason (recorded)", required=True), key=f"{key}_stop_rule_note")
        if st.form_submit_button("Record the acknowledgement"):
            live = session.acting_user("govern")
            if live is None:
                st.rerun()
            r = labels[chosen]
            try:
                stop_rules.acknowledge(r.rule, r.model_version, decision=decision or "", note=note,
                                       by=live.username)
            except ValueError as exc:
                st.error(str(exc))
                return
            st.session_state[f"{key}_stop_rule_notice"] = f"Acknowledgement of '{r.title}' recorded."
            st.rerun()
