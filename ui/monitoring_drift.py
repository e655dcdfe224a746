"""The monitoring page's input drift section: each input's population stability index against the
training distribution of the version that scored it, sorted by drift, with a chart against the
two thresholds; each input's missing and out-of-validated-range rates per week; a warning per
input at or above the alert threshold. Every figure comes from core.drift."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from core import drift
from core.drift import DriftReport
from ui.charts import PALETTE, RULE, chart, download

LEVEL_WORDS = {"alert": "alert", "warn": "warning", "ok": "ok", "too_few": "too few to judge",
               "no_reference": "no training distribution"}
LEVEL_COLOURS = {"ok": "#007a5a", "warn": "#d55e00", "alert": "#c0392b"}  # 3:1 or more on white
RATE_WORDS = {"missing_rate": "missing", "out_of_range_rate": "outside the validated range"}


@st.cache_data(ttl=60, show_spinner="Comparing recent inputs with the training data...")
def report(store_file: str, first_day: date, last_day: date, version: str | None) -> DriftReport:
    """The drift report for the page's filters, cached for a minute (store_file: the cache key)."""
    return drift.report(start=datetime.combine(first_day, time()),
                        end=datetime.combine(last_day + timedelta(days=1), time()),
                        model_version=version)


def _name(frame: pd.DataFrame) -> pd.Series:
    """Each row's input, with its model version when the frame holds several."""
    if frame["model_version"].nunique() > 1:
        return frame["label"] + " (model " + frame["model_version"] + ")"
    return frame["label"]


def render(report: DriftReport, suffix: str) -> None:
    """The section, under its own header; `suffix` names the CSV downloads (the date range)."""
    st.header("Input drift")
    st.caption(
        f"Each input's values in the {report.window_days} days to {report.window_end:%d %b %Y} "
        "against the training distribution shipped with the model version that scored them: the "
        "population stability index (PSI) over its bins (a number: the training data's deciles; "
        "a category or yes/no: each value; missing values are a bin of their own). At or above "
        f"{report.warn:g} is shown as a warning, at or above {report.alert:g} raises the alert. "
        f"Raw inputs are kept for {report.retention_days} days, so drift covers that period at "
        "most: older predictions no longer have their inputs.")
    for version, why in report.versions.items():
        st.info(f"Model {version}: {why}.")
    for condition in report.conditions():
        st.warning(condition.message, icon=":material/trending_up:")
    inputs = report.inputs
    if inputs.empty:
        st.caption("No predictions with their inputs kept in this window.")
    for version, n in inputs.loc[inputs["level"] == "too_few"].groupby("model_version")["n"].first().items():
        st.info(f"Model {version}: {n} predictions with their inputs kept in the window, too few "
                f"to judge drift (at least {report.min_predictions} are needed).")
    if not inputs.empty:
        _table(inputs.assign(input=_name(inputs), level_words=inputs["level"].map(LEVEL_WORDS)),
               report, suffix)
    _rates(report, suffix)


def _table(inputs: pd.DataFrame, report: DriftReport, suffix: str) -> None:
    st.dataframe(inputs[["input", "model_version", "level_words", "psi", "n"]], hide_index=True,
                 key="monitoring_drift_inputs", column_config={
                     "input": "Input", "model_version": "Model", "level_words": "Drift",
                     "psi": st.column_config.NumberColumn("PSI", format="%.3f"),
                     "n": "Predictions in the window"})
    download(inputs.drop(columns=["input", "level_words"]), "input_drift", "input drift", suffix)
    download(report.bins, "input_drift_bins", "training and window shares per bin", suffix)
    judged = inputs[inputs["psi"].notna()]
    if judged.empty:
        return
    st.subheader("Population stability index per input")
    levels = [level for level in LEVEL_COLOURS if level in set(judged["level"])]
    bars = alt.Chart(judged).mark_bar().encode(
        y=alt.Y("input:N", title=None, sort="-x", axis=alt.Axis(labelLimit=320)),
        x=alt.X("psi:Q", title="Population stability index"),
        color=alt.Color("level:N", title="Drift", scale=alt.Scale(
            domain=levels, range=[LEVEL_COLOURS[level] for level in levels]),
            legend=alt.Legend(orient="bottom", labelExpr=" : ".join(
                f"datum.label == '{level}' ? '{LEVEL_WORDS[level]}'" for level in levels)
                + " : datum.label")),
        tooltip=[alt.Tooltip("input:N", title="Input"), alt.Tooltip("psi:Q", title="PSI", format=".3f"),
                 alt.Tooltip("level_words:N", title="Drift"),
                 alt.Tooltip("n:Q", title="Predictions in the window")])
    limits = alt.Chart(pd.DataFrame({"threshold": ["warning", "alert"],
                                     "psi": [report.warn, report.alert]})).mark_rule(
        color=RULE, strokeDash=[4, 4]).encode(x="psi:Q", tooltip=[
            alt.Tooltip("threshold:N", title="Threshold"), alt.Tooltip("psi:Q", title="PSI")])
    top = judged.iloc[0]
    over = int((judged["psi"] >= report.warn).sum())
    chart(alt.layer(bars, limits).properties(height=alt.Step(22)),
          "Population stability index of each input against its training distribution, largest "
          "first; dashed lines: the warning and alert thresholds", "drift_psi",
          key_figure=f"Largest: {top['input']}, {top['psi']:.3f} ({LEVEL_WORDS[top['level']]}). "
                     f"{over} of {len(judged)} inputs at or above the warning threshold "
                     f"{report.warn:g}; the alert threshold is {report.alert:g}.",
          data=judged, columns={"input": "Input", "model_version": "Model", "psi": "PSI",
                                "level_words": "Drift", "n": "Predictions in the window"})


def _rates(report: DriftReport, suffix: str) -> None:
    weekly = report.weekly
    st.subheader("Missing and out-of-range values per week")
    if weekly.empty:
        st.caption("No predictions with their inputs kept in this date range.")
        return
    weekly = weekly.assign(input=_name(weekly))
    peak = weekly.groupby("input")[["missing_rate", "out_of_range_rate"]].max().max(axis=1)
    shown = peak[peak > 0].sort_values(ascending=False).index[:len(PALETTE)]
    if len(shown) == 0:
        st.caption("No input was missing or outside its validated range in these weeks.")
    else:
        data = weekly[weekly["input"].isin(shown)]
        lines = alt.Chart(data).transform_fold(
            list(RATE_WORDS), as_=["rate_of", "rate"]).transform_filter(
            "isValid(datum.rate)").mark_line(point=True).encode(
            x=alt.X("week:T", timeUnit="yearmonthdate", title="Week starting"),
            y=alt.Y("rate:Q", title="Share of predictions", axis=alt.Axis(format="%")),
            color=alt.Color("input:N", title="Input", legend=alt.Legend(orient="right", labelLimit=280)),
            strokeDash=alt.StrokeDash("rate_of:N", title="Share", legend=alt.Legend(
                orient="right", symbolType="stroke", symbolStrokeWidth=2, labelExpr=(
                    "datum.label == 'missing_rate' ? 'missing' : 'outside the validated range'"))),
            shape=alt.Shape("rate_of:N", title="Share"),
            tooltip=[alt.Tooltip("week:T", title="Week starting"), alt.Tooltip("input:N", title="Input"),
                     alt.Tooltip("predictions:Q", title="Predictions"),
                     alt.Tooltip("missing:Q", title="Missing"),
                     alt.Tooltip("out_of_range:Q", title="Outside the validated range")])
        worst = data.loc[data[["missing_rate", "out_of_range_rate"]].max(axis=1).idxmax()]
        chart(lines.properties(height=300),
              "Weekly share of predictions with each input missing and outside its validated "
              "range, for the inputs with the highest shares", "drift_rates",
              key_figure=f"Highest: {worst['input']} in the week starting {worst['week']:%d %b %Y}, "
                         f"{worst['missing_rate']:.0%} missing, "
                         + ("no validated range" if pd.isna(worst["out_of_range_rate"]) else
                            f"{worst['out_of_range_rate']:.0%} outside the validated range")
                         + f". {len(shown)} of {weekly['input'].nunique()} inputs shown; every "
                         "input is in the data table and the download.",
              data=weekly, columns={"week": "Week starting", "input": "Input",
                                    "predictions": "Predictions", "missing": "Missing",
                                    "missing_rate": "Share missing",
                                    "out_of_range": "Outside the validated range",
                                    "out_of_range_rate": "Share outside the validated range"})
    download(weekly.drop(columns="input"), "input_drift_weekly",
             "missing and out-of-range values per week", suffix)
