"""The monitoring page's alerts: each condition in force with whether its alert went out on each
configured channel, a failed alert as a warning naming the channel and the error (so the PI sees
that nobody was told), and the latest alerts sent, failed and cleared."""

from __future__ import annotations

import streamlit as st

from core import alerts
from core.alert_delivery import LABELS
from core.errors import ArtefactMismatch, StoreUnavailable

SHOWN_ABOVE = {"override", "stop_rule", "drift"}  # kinds whose condition the page shows in a block of its own
COLUMNS = {"created_at": "When (UTC)", "condition_key": "Condition", "channel": "Channel",
           "status": "Status", "destination": "To", "title": "Alert", "error": "Error",
           "user_name": "Checked by"}


def _when(at) -> str:
    return f"{at:%d %b %Y %H:%M} UTC"


def _state(delivery: alerts.Delivery, minutes: float) -> str:
    label = LABELS[delivery.channel]
    if delivery.status == alerts.SENT:
        return f"sent by {label} to {delivery.destination} on {_when(delivery.at)}"
    if delivery.status == alerts.FAILED:
        return f"{label} FAILED on {_when(delivery.at)}, tried again at the next check"
    nxt = (f"the service checks every {minutes:g} minutes" if minutes else
           "run `python -m core alerts check`")
    return f"not sent by {label} yet ({nxt})"


def render() -> None:
    """The alerts section, under the page's override alert."""
    try:
        view = alerts.overview()
    except (StoreUnavailable, ArtefactMismatch) as exc:
        st.warning(f"The alerts cannot be read: {exc}")
        return
    for condition, deliveries in view.active:
        if condition.kind not in SHOWN_ABOVE:
            st.warning(condition.message, icon=":material/warning:")
        for d in deliveries:
            if d.status == alerts.FAILED:
                st.warning(f"The alert \"{condition.title}\" did not go out by {LABELS[d.channel]} "
                           f"({d.destination}) on {_when(d.at)}: {d.error}. It is tried again at "
                           "the next check; until it goes out, tell the people concerned yourself.",
                           icon=":material/notifications_off:")
        states = "; ".join(_state(d, view.check_minutes) for d in deliveries)
        st.caption(f"Alert \"{condition.title}\": {states or 'not sent (no alert channel is configured)'}.")
    for error in view.provider_errors:
        st.warning(f"A monitored condition could not be checked: {error}")
    if not view.channels:
        st.caption("Alerts are shown here only: no e-mail relay or webhook is configured "
                   "(RUNBOOK.md, 'Send alerts by e-mail or webhook').")
    if not view.recent.empty:
        with st.expander(f"Alerts sent, failed and cleared (latest {len(view.recent)})"):
            recent = view.recent.assign(channel=view.recent["channel"].map(LABELS).fillna(""))
            st.dataframe(recent[list(COLUMNS)].rename(columns=COLUMNS), hide_index=True,
                         key="monitoring_alerts_table")
