"""The monitoring page's real-world performance: by routing group, calibration by decile and by
month, each subgroup the model's spec names, and who was right on overrides
(core.performance computes every figure; a group with too few outcomes shows its counts only)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core.config import Settings
from core.text import md_text
from ui.charts import DIRECTION_LABELS, RULE, chart, download

GROUP_LABELS = {"all": "All predictions", "auto_finalised": "Auto-finalised",
                "reviewed": "Routed to review"}
TOO_FEW = "too few"


def render(performance: dict, *, settings: Settings, suffix: str) -> None:
    st.header("Real-world performance")
    st.caption("Predictions in the date range with an outcome recorded. Predicted risk against the "
               "outcome: discrimination (AUROC), accuracy of the risk (Brier score) and calibration. "
               f"A group needs {settings.min_outcomes_for_metrics} outcomes, with at least 10 events "
               f"and 10 without, before its figures are shown; smaller groups show '{TOO_FEW}'.")
    _groups(performance["groups"], suffix)
    _by_month(performance["by_month"], suffix)
    _subgroups(performance["subgroups"], suffix)
    _overrides(performance["overrides"], suffix)


def _groups(groups: dict, suffix: str) -> None:
    summary = pd.DataFrame([{
        "group": GROUP_LABELS[name], "outcomes": g["n"], "events": g["events"], "auroc": g.get("auroc"),
        "auroc_ci95": (f"{g['auroc_ci95'][0]:.3f} to {g['auroc_ci95'][1]:.3f}" if "auroc_ci95" in g
                       else TOO_FEW), "brier": g.get("brier"),
        "calibration_slope": g.get("calibration_slope")} for name, g in groups.items()])
    st.dataframe(summary, hide_index=True, key="monitoring_performance", column_config={
        "group": "Predictions", "outcomes": "Outcomes", "events": "Events", "auroc": "AUROC",
        "auroc_ci95": "AUROC 95% CI", "brier": st.column_config.NumberColumn("Brier score", format="%.4f"),
        "calibration_slope": st.column_config.NumberColumn("Calibration slope", format="%.2f")})
    for name, g in groups.items():
        if "too_few" in g:
            st.info(f"{GROUP_LABELS[name]}: {g['too_few']}")
    download(summary, "performance", "performance", suffix)
    deciles = pd.DataFrame([{"group": GROUP_LABELS[name], **row} for name, g in groups.items()
                            for row in g.get("calibration", [])])
    if deciles.empty:
        return
    st.subheader("Observed against predicted risk, by decile of predicted risk")
    top = float(max(deciles["mean_predicted"].max(), deciles["observed"].max()))
    diagonal = alt.Chart(pd.DataFrame({"risk": [0.0, top]})).mark_line(
        color=RULE, strokeDash=[4, 4]).encode(x="risk:Q", y="risk:Q")
    points = alt.Chart(deciles).mark_line(point=True).encode(
        x=alt.X("mean_predicted:Q", title="Mean predicted risk", axis=alt.Axis(format="%")),
        y=alt.Y("observed:Q", title="Observed event rate", axis=alt.Axis(format="%")),
        color=alt.Color("group:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("group:N", title="Predictions"), alt.Tooltip("decile:Q", title="Decile"),
                 alt.Tooltip("n:Q", title="Patients"),
                 alt.Tooltip("mean_predicted:Q", title="Predicted", format=".1%"),
                 alt.Tooltip("observed:Q", title="Observed", format=".1%")])
    chart(alt.layer(diagonal, points).properties(height=320),
          "Calibration: observed event rate against mean predicted risk per decile; dashed line: "
          "perfect calibration", "calibration",
          key_figure=" ".join(
              f"{group}, highest decile: {rows['mean_predicted'].iloc[-1]:.0%} predicted, "
              f"{rows['observed'].iloc[-1]:.0%} observed."
              for group, rows in deciles.sort_values("decile").groupby("group", sort=False)),
          data=deciles, columns={"group": "Predictions", "decile": "Decile", "n": "Patients",
                                 "mean_predicted": "Mean predicted risk", "observed": "Observed event rate"})
    download(deciles, "calibration", "calibration by decile", suffix)


def _by_month(months: pd.DataFrame, suffix: str) -> None:
    st.subheader("Calibration in the large, month by month")
    if months.empty:
        st.caption("No outcome is recorded for the predictions in this date range.")
        return
    enough = months[months["too_few"].isna()]
    few = months[months["too_few"].notna()]
    if few.size:
        st.caption(f"{len(few)} of {len(months)} months have too few outcomes to show rates "
                   f"({', '.join(f'{m:%b %Y}' for m in few['month'])}); their counts are in the table.")
    if not enough.empty:
        long = enough.melt(id_vars=["month", "outcomes", "observed_low", "observed_high"],
                           value_vars=["observed", "mean_predicted"], var_name="measure", value_name="rate")
        lines = alt.Chart(long).mark_line(point=True).encode(
            x=alt.X("month:T", timeUnit="yearmonth", title="Month of the prediction"),
            y=alt.Y("rate:Q", title="Event rate", axis=alt.Axis(format="%")),
            color=alt.Color("measure:N", title=None, legend=alt.Legend(orient="bottom", labelExpr=(
                "datum.label == 'observed' ? 'observed (95% interval)' : 'mean predicted risk'"))),
            tooltip=[alt.Tooltip("month:T", title="Month", format="%b %Y"),
                     alt.Tooltip("measure:N", title="Measure"), alt.Tooltip("rate:Q", title="Rate", format=".1%"),
                     alt.Tooltip("outcomes:Q", title="Outcomes")])
        band = alt.Chart(enough).mark_rule(color=RULE).encode(
            x=alt.X("month:T", timeUnit="yearmonth"), y="observed_low:Q", y2="observed_high:Q")
        last = enough.iloc[-1]
        chart(alt.layer(band, lines).properties(height=280),
              "Observed event rate (with its 95% interval) against mean predicted risk, per month of "
              "the prediction", "calibration_by_month",
              key_figure=f"{last['month']:%B %Y}: {last['observed']:.1%} observed against "
                         f"{last['mean_predicted']:.1%} predicted on {int(last['outcomes'])} outcomes "
                         f"(calibration intercept {last['calibration_in_the_large']:+.2f}; 0 is perfect, "
                         "above 0 the model underestimates the risk).",
              data=months.fillna({"too_few": ""}),
              columns={"month": "Month", "outcomes": "Outcomes", "events": "Events",
                       "observed": "Observed rate", "mean_predicted": "Mean predicted risk",
                       "calibration_in_the_large": "Calibration intercept"})
    else:
        st.dataframe(months[["month", "outcomes", "events"]].rename(columns=str.capitalize),
                     hide_index=True, key="monitoring_by_month")
    download(months, "calibration_by_month", "calibration by month", suffix)


def _subgroups(subgroups: dict[str, pd.DataFrame], suffix: str) -> None:
    if not subgroups:
        return
    st.subheader("Performance by subgroup")
    st.caption("The subgroups the model's spec names. A patient whose recorded inputs no longer "
               "hold the value (removed by the retention purge) counts as 'not recorded'.")
    for feature, table in subgroups.items():
        shown = table.assign(
            auroc_ci95=[f"{lo:.3f} to {hi:.3f}" if pd.notna(lo) else TOO_FEW
                        for lo, hi in zip(table["auroc_low"], table["auroc_high"], strict=True)])
        st.markdown(f"**{md_text(table.attrs.get('label', feature))}**")
        st.dataframe(shown[["group", "outcomes", "events", "auroc", "auroc_ci95", "observed",
                            "mean_predicted"]], hide_index=True, key=f"monitoring_subgroup_{feature}",
                     column_config={
                         "group": "Group", "outcomes": "Outcomes", "events": "Events", "auroc": "AUROC",
                         "auroc_ci95": "AUROC 95% CI",
                         "observed": st.column_config.NumberColumn("Observed rate", format="percent"),
                         "mean_predicted": st.column_config.NumberColumn("Mean predicted risk",
                                                                         format="percent")})
        few = table.loc[table["too_few"].notna(), "group"].tolist()
        if few:
            st.caption(f"Too few outcomes for figures: {', '.join(map(str, few))}.")
        download(table, f"subgroup_{feature}", f"performance by {feature}", suffix)


def _overrides(overrides: pd.DataFrame, suffix: str) -> None:
    st.subheader("Overridden predictions: whose risk class matched the outcome")
    if overrides["overrides_with_outcome"].sum() == 0:
        st.caption("No overridden prediction has an outcome recorded yet.")
        return
    n = overrides["overrides_with_outcome"]
    shares = overrides.assign(reviewer_share=(overrides["reviewer_right"] / n.where(n > 0)).round(4),
                              model_share=(overrides["model_right"] / n.where(n > 0)).round(4))

    def _matched(count: int, total: int) -> str:
        return f"{count} ({count / total:.0%})" if total else "-"

    st.dataframe(pd.DataFrame({
        "direction": overrides["direction"].map(DIRECTION_LABELS), "overrides": n,
        "reviewer": [_matched(c, t) for c, t in zip(overrides["reviewer_right"], n, strict=True)],
        "model": [_matched(c, t) for c, t in zip(overrides["model_right"], n, strict=True)]}),
        hide_index=True, key="monitoring_overrides", column_config={
            "direction": "Override", "overrides": "Overrides with an outcome",
            "reviewer": "Reviewer's class matched the outcome", "model": "Model's class matched the outcome"})
    download(shares, "overrides_vs_outcome", "overrides against outcomes", suffix)
