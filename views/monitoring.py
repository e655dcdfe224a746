"""Principal investigator: override rates and alerts, routing, input drift, review backlog,
real-world performance.

Every figure comes from core.monitoring.dashboard(), aggregated in SQL, so only chart-sized frames
reach the browser. The aggregates are cached for a minute per choice of filters.
"""

from datetime import date, datetime, time, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from core import artifacts
from core.clock import now_utc
from core.config import get_settings
from core.errors import ArtefactMismatch, StoreUnavailable
from core.monitoring import Dashboard, dashboard, per_period
from core.predict import REASON_CODES
from ui import demo_history, monitoring_alerts, monitoring_drift, session
from ui import monitoring_performance as performance_section
from ui import stop_rules as stop_rule_section
from ui.charts import RULE, chart, direction_colour, download
from ui.charts import share as _share

DEFAULT_WEEKS = 12
ALL_VERSIONS = "All versions"
ROUTING_LABELS = {"auto_finalised": "auto-finalised", "review": "routed to review"}

user = session.guard("monitor")


@st.cache_data(ttl=60, show_spinner="Aggregating the records...")
def _aggregates(store_file: str, first_day: date, last_day: date, version: str | None) -> Dashboard:
    # store_file is only part of the cache key: figures of one store are never served for another.
    return dashboard(start=datetime.combine(first_day, time()),
                     end=datetime.combine(last_day + timedelta(days=1), time()), model_version=version)


def _download(frame: pd.DataFrame, name: str, what: str) -> None:
    download(frame, name, what, f"{first_day}_{last_day}")


def _top_reason(frame: pd.DataFrame, reason: str, count: str, what: str) -> str:
    totals = frame.groupby(reason)[count].sum().sort_values(ascending=False)
    return (f"Most common: {totals.index[0]} ({int(totals.iloc[0])} of {int(totals.sum())} {what})."
            if len(totals) else "")


settings = get_settings()
today = now_utc().date()
st.title("Monitoring")
demo_history.banner()
filters = st.columns([2, 1, 2])
chosen = filters[0].date_input("Dates (UTC, both days included)", key="monitoring_dates",
                               value=(today - timedelta(weeks=DEFAULT_WEEKS) + timedelta(days=1), today),
                               max_value=today)
try:
    versions = artifacts.list_versions(settings.models)
except ArtefactMismatch as exc:  # the models' bucket cannot be read
    st.error(f"The model versions cannot be listed: {exc}")
    st.stop()
version_choice = filters[1].selectbox("Model version", [ALL_VERSIONS, *versions], key="monitoring_version")
if not isinstance(chosen, tuple) or len(chosen) != 2:
    st.info("Choose the last day of the date range.")
    st.stop()
first_day, last_day = chosen
version = None if version_choice == ALL_VERSIONS else version_choice
try:
    d = _aggregates(str(settings.db), first_day, last_day, version)
except (StoreUnavailable, ArtefactMismatch) as exc:
    st.error(f"Monitoring is unavailable: {exc}")
    st.stop()
f = d.frames
filters[2].caption(f"{first_day:%d %b %Y} to {last_day:%d %b %Y}, {version_choice.lower()}. Every "
                   "figure is counted from the records; figures are at most a minute old.")

# ---- alerts and headline figures ----------------------------------------------------------------

for alert in d.alerts:
    st.error(alert.message(), icon=":material/warning:")
if not d.alerts:
    st.caption(f"No override alert: the alert fires when at least {settings.override_alert_share:.0%} "
               f"of the cases reviewed in the last {settings.override_alert_window_days} days (at least "
               f"{settings.override_alert_min_reviewed} reviewed) were overridden in one direction.")
monitoring_alerts.render()

share = f["review_share"]
predictions, routed = int(share["predictions"].sum()), int(share["routed_to_review"].sum())
backlog = f["review_backlog"].iloc[0]
cols = st.columns(4)
cols[0].metric("Predictions", predictions)
cols[1].metric("Routed to review", f"{routed} ({routed / predictions:.0%})" if predictions else "0",
               help="Expected share per model version (held-out patients) in the table below")
cols[2].metric("Reviewed", int(f["override_rate_by_week"]["reviewed"].sum()),
               help="Predictions with a review decision recorded in the date range")
rejected = f["rejected_fields"]
cols[3].metric("Rejected inputs", int(rejected["rejected_inputs"].iloc[0]) if len(rejected) else 0,
               help="Inputs refused by validation in the date range; nothing was scored from them. "
                    "The fields they named are listed under 'Predictions and routing'.")
if predictions == 0:
    st.info("No predictions recorded in this date range.")

stop_rule_section.render(user, key="monitoring")

# ---- reviewer overrides ---------------------------------------------------------------------------

st.header("Reviewer overrides")
weekly = f["override_rate_by_week"]
if weekly.empty:
    st.caption("No review decisions in this date range.")
else:
    base = alt.Chart(weekly).transform_fold(
        ["upgrade_rate", "downgrade_rate"], as_=["key", "rate"]
    ).transform_calculate(
        direction="replace(datum.key, '_rate', '')",
        overridden="datum.key == 'upgrade_rate' ? datum.upgrades : datum.downgrades")
    rates = base.mark_line(point=True).encode(
        x=alt.X("week:T", timeUnit="yearmonthdate", title="Week starting"),
        y=alt.Y("rate:Q", title="Share overridden", axis=alt.Axis(format="%")),
        color=direction_colour("direction", ["upgrade", "downgrade"]),
        strokeDash=alt.StrokeDash("model_version:N", title="Model version"),
        tooltip=[alt.Tooltip("week:T", title="Week starting"), alt.Tooltip("model_version:N", title="Model"),
                 alt.Tooltip("direction:N", title="Direction"),
                 alt.Tooltip("rate:Q", title="Share overridden", format=".1%"),
                 alt.Tooltip("overridden:Q", title="Overridden"),
                 alt.Tooltip("reviewed:Q", title="Reviewed")])
    limit = alt.Chart(pd.DataFrame({"alert_share": [settings.override_alert_share]})).mark_rule(
        strokeDash=[4, 4], color=RULE).encode(y="alert_share:Q", tooltip=[
            alt.Tooltip("alert_share:Q", title="Alert share", format=".0%")])
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Override rate per week, by direction")
        reviewed_all, ups, downs = (int(weekly[c].sum()) for c in ("reviewed", "upgrades", "downgrades"))
        chart(alt.layer(rates, limit).properties(height=300),
               "Weekly share of reviewed cases upgraded and downgraded by reviewers, per model version; "
               "dashed line: the alert share", "override_rate",
               key_figure=f"Over these weeks reviewers upgraded {ups} of {reviewed_all} reviewed cases "
                          f"({_share(ups, reviewed_all)}) and downgraded {downs} "
                          f"({_share(downs, reviewed_all)}); the alert share is "
                          f"{settings.override_alert_share:.0%}.",
               data=weekly, columns={"week": "Week starting", "model_version": "Model",
                                     "reviewed": "Reviewed", "upgrades": "Upgraded",
                                     "upgrade_rate": "Share upgraded", "downgrades": "Downgraded",
                                     "downgrade_rate": "Share downgraded"})
    with right:
        st.subheader("Reviewed cases per week")
        chart(alt.Chart(weekly).mark_bar().encode(
            x=alt.X("week:O", timeUnit="yearmonthdate", title="Week starting",
                    axis=alt.Axis(format="%d %b", labelAngle=0, labelOverlap=True)),
            y=alt.Y("reviewed:Q", title="Reviewed cases"),
            color=alt.Color("model_version:N", title="Model version", legend=alt.Legend(orient="bottom")),
            tooltip=[alt.Tooltip("week:T", title="Week starting"), alt.Tooltip("model_version:N", title="Model"),
                     alt.Tooltip("reviewed:Q", title="Reviewed"), alt.Tooltip("upgrades:Q", title="Upgraded"),
                     alt.Tooltip("downgrades:Q", title="Downgraded")]).properties(height=300),
            "Number of review decisions per week and model version", "reviewed",
            key_figure=f"{reviewed_all} review decisions in {weekly['week'].nunique()} weeks; the most "
                       f"in one week: {int(weekly.groupby('week')['reviewed'].sum().max())}.",
            data=weekly, columns={"week": "Week starting", "model_version": "Model", "reviewed": "Reviewed"})
    _download(weekly, "override_rate_by_week", "override rates per week")

    st.subheader("Reasons reviewers gave")
    reasons = f["override_reasons"]
    chart(alt.Chart(reasons).mark_bar().encode(
        y=alt.Y("reason_code:N", title=None, sort="-x", axis=alt.Axis(labelLimit=320)),
        x=alt.X("sum(decisions):Q", title="Decisions"),
        color=direction_colour("direction", ["upgrade", "downgrade", "none"]),
        tooltip=[alt.Tooltip("reason_code:N", title="Reason"), alt.Tooltip("direction:N", title="Decision"),
                 alt.Tooltip("decisions:Q", title="Decisions")]).properties(height=200),
        "Reason codes of review decisions, split by override direction", "reasons",
        key_figure=_top_reason(reasons, "reason_code", "decisions", "decisions"),
        data=reasons, columns={"reason_code": "Reason", "direction": "Decision", "decisions": "Decisions"})
    _download(reasons, "override_reasons", "reason codes")

# ---- predictions and routing ----------------------------------------------------------------------

st.header("Predictions and routing")
table = share
st.dataframe(table, hide_index=True, key="monitoring_review_share", column_config={
    "model_version": "Model", "predictions": "Predictions", "routed_to_review": "Routed to review",
    "observed_share": st.column_config.NumberColumn("Share to review", format="percent"),
    "expected_review_share": st.column_config.NumberColumn(
        "Expected share (held-out)", format="percent",
        help="Share of held-out patients the routing rule sent to review when the model was built"),
})
_download(table, "review_share", "share routed to review")
daily = f["predictions_per_day"]
if not daily.empty:
    shown, unit = per_period(daily)
    when = "Day (UTC)" if unit == "day" else "Week starting (UTC)"
    left, right = st.columns([3, 2])
    with left:
        st.subheader(f"Predictions per {unit}")
        chart(alt.Chart(shown).mark_bar().encode(
            x=alt.X("day:T", timeUnit="yearmonthdate", title=when),
            y=alt.Y("sum(predictions):Q", title="Predictions"),
            color=alt.Color("routing:N", title="Routing", legend=alt.Legend(orient="bottom", labelExpr=(
                "datum.label == 'review' ? 'routed to review' : 'auto-finalised'"))),
            tooltip=[alt.Tooltip("day:T", title=when), alt.Tooltip("routing:N", title="Routing"),
                     alt.Tooltip("predictions:Q", title="Predictions")]).properties(height=280),
            f"Predictions recorded per {unit}, split into auto-finalised and routed to review", "daily",
            key_figure=f"{predictions} predictions on {daily['day'].nunique()} days, {routed} "
                       f"({_share(routed, predictions)}) routed to review.",
            data=shown, columns={"day": when, "routing": "Routing", "predictions": "Predictions"})
        _download(daily, "predictions_per_day", "predictions per day")
    with right:
        st.subheader("Share routed to review")
        observed = alt.Chart(table).mark_bar(size=36).encode(
            x=alt.X("model_version:N", title="Model version"),
            y=alt.Y("observed_share:Q", title="Share routed to review", axis=alt.Axis(format="%")),
            tooltip=[alt.Tooltip("model_version:N", title="Model"),
                     alt.Tooltip("observed_share:Q", title="Observed", format=".1%"),
                     alt.Tooltip("expected_review_share:Q", title="Expected", format=".1%"),
                     alt.Tooltip("predictions:Q", title="Predictions")])
        expected = alt.Chart(table).mark_tick(color="black", thickness=3, size=56).encode(
            x="model_version:N", y="expected_review_share:Q")
        st.markdown("Bars: observed. Black ticks: expected from the held-out patients.")
        chart(alt.layer(observed, expected).properties(height=280),
               "Observed share of predictions routed to review per model version (bars) against the "
               "share expected from held-out patients (black ticks)", "review_share",
               key_figure=" ".join(
                   f"Model {r.model_version}: {r.observed_share:.0%} routed to review, "
                   f"{r.expected_review_share:.0%} expected." for r in table.itertuples()),
               data=table, columns={"model_version": "Model", "predictions": "Predictions",
                                    "observed_share": "Share to review",
                                    "expected_review_share": "Expected share (held-out)"})

st.subheader("Why predictions went to review")
review_reasons = f["review_reasons"].assign(
    reason=lambda t: t["reason_code"].map(REASON_CODES).fillna(t["reason_code"]))
if review_reasons.empty:
    st.caption("No predictions were routed to review in this date range.")
else:
    chart(alt.Chart(review_reasons).mark_bar().encode(
        y=alt.Y("reason:N", title=None, sort="-x", axis=alt.Axis(labelLimit=320)),
        x=alt.X("predictions:Q", title="Predictions with this reason"),
        tooltip=[alt.Tooltip("reason:N", title="Reason"), alt.Tooltip("reason_code:N", title="Code"),
                 alt.Tooltip("predictions:Q", title="Predictions")]).properties(height=180),
        "Reasons predictions were routed to review, including out-of-distribution inputs", "review_reasons",
        key_figure=_top_reason(review_reasons, "reason", "predictions", "predictions")
        + " A prediction can have several reasons.",
        data=review_reasons, columns={"reason": "Reason", "reason_code": "Code", "predictions": "Predictions"})
    _download(review_reasons, "review_reasons", "review reasons")

st.subheader("Fields named by rejected inputs")
if rejected.empty:
    st.caption("No input was rejected in this date range.")
else:
    st.dataframe(rejected[["field", "rejections"]], hide_index=True, key="monitoring_rejected_fields",
                 column_config={"field": "Field", "rejections": "Rejected inputs naming it"})
    st.caption("A rejected input can name several fields. Many rejections on one field point to a "
               "form or export problem; a name the model does not have is shown as '(unknown field)'.")
    _download(rejected, "rejected_fields", "fields named by rejected inputs")

monitoring_drift.render(monitoring_drift.report(str(settings.db), first_day, last_day, version), f"{first_day}_{last_day}")

# ---- review backlog, time to decision, workload -------------------------------------------------

st.header("Review backlog and time to decision")
cols = st.columns(3)
cols[0].metric("Waiting for a decision", int(backlog["pending"]),
               help="Predictions in the date range routed to review with no decision yet")
hours = None if pd.isna(backlog["oldest"]) else int(backlog["oldest_age_hours"])
cols[1].metric("Oldest waiting", "-" if hours is None else f"{hours} hours" if hours < 48
               else f"{hours // 24} days", help="Since the prediction was recorded")
_download(f["review_backlog"], "review_backlog", "backlog")
speed = f["time_to_decision"]
left, right = st.columns([3, 2])
with left:
    st.subheader("Hours from prediction to decision, per week")
    if speed.empty:
        st.caption("No review decisions in this date range.")
    else:
        chart(alt.Chart(speed).transform_fold(
            ["median_hours", "p90_hours"], as_=["statistic", "hours"]).mark_line(point=True).encode(
            x=alt.X("week:T", timeUnit="yearmonthdate", title="Week starting"),
            y=alt.Y("hours:Q", title="Hours"),
            color=alt.Color("statistic:N", title=None, legend=alt.Legend(orient="bottom", labelExpr=(
                "datum.label == 'median_hours' ? 'median' : '90th percentile'"))),
            tooltip=[alt.Tooltip("week:T", title="Week starting"), alt.Tooltip("decided:Q", title="Decided"),
                     alt.Tooltip("median_hours:Q", title="Median hours", format=".1f"),
                     alt.Tooltip("p90_hours:Q", title="90th percentile hours", format=".1f")]
        ).properties(height=260), "Median and 90th percentile hours from prediction to first decision, "
           "per week", "time_to_decision",
           key_figure=(f"Week starting {speed['week'].iloc[-1]:%d %b %Y}: median {speed['median_hours'].iloc[-1]:.1f} "
                       f"hours, 90th percentile {speed['p90_hours'].iloc[-1]:.1f} hours, "
                       f"{int(speed['decided'].iloc[-1])} decided."),
           data=speed, columns={"week": "Week starting", "decided": "Decided", "median_hours": "Median hours",
                                "p90_hours": "90th percentile hours"})
        _download(speed, "time_to_decision", "time to decision")
with right:
    st.subheader("Reviewer workload")
    workload = f["decisions_per_reviewer"]
    if workload.empty:
        st.caption("No review decisions in this date range.")
    else:
        chart(alt.Chart(workload).mark_bar().encode(
            y=alt.Y("reviewer_name:N", title=None, sort=None),
            x=alt.X("decisions:Q", title="Decisions recorded"),
            tooltip=[alt.Tooltip("reviewer_name:N", title="Reviewer"),
                     alt.Tooltip("decisions:Q", title="Decisions")]).properties(height=220),
            "Review decisions recorded per reviewer, in alphabetical order", "workload",
            key_figure=f"{len(workload)} reviewers recorded {int(workload['decisions'].sum())} decisions. "
                       "Alphabetical: a view of workload to share it fairly, not a ranking of reviewers.",
            data=workload, columns={"reviewer_name": "Reviewer", "decisions": "Decisions"})
        _download(workload, "decisions_per_reviewer", "workload")

# ---- real-world performance --------------------------------------------------------------------

performance_section.render(d.performance, settings=settings, suffix=f"{first_day}_{last_day}")
