"""Charts for the monitoring page and its sections: readable colours, a text alternative under
every chart and its data one click away, and a CSV download of each figure's table.

Chart marks and their keys are at least 3:1 against the page, their text at least 4.5:1 (WCAG 2.1 AA).
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core.exports import frame_csv

DIRECTION_LABELS = {"upgrade": "upgrade (model low, reviewer high)",
                    "downgrade": "downgrade (model high, reviewer low)", "none": "agreed with the model"}
DIRECTION_COLOURS = {"upgrade": "#c0392b", "downgrade": "#0072b2", "none": "#6b6b6b"}
PALETTE = ["#0072b2", "#d55e00", "#007a5a", "#a8507f", "#6b6b6b", "#7a4fa0"]  # 3.9:1 to 6.1:1
CHART_TEXT = "#0a0a0a"  # the theme's text colour
RULE = "#6b6b6b"


def download(frame: pd.DataFrame, name: str, what: str, suffix: str) -> None:
    """A CSV of `frame`, named `name` and `suffix` (the date range, say)."""
    # Generated on click (deferred): its /media/ address then lives only until the next run, so
    # a copied link does not hand the figures to someone without a session.
    st.download_button(f"Download {what} (CSV)", lambda: frame_csv(frame),
                       file_name=f"{name}_{suffix}.csv", mime="text/csv",
                       key=f"monitoring_csv_{name}", on_click="ignore", icon=":material/download:")


def chart(figure: alt.TopLevelMixin, description: str, name: str, *, key_figure: str,
          data: pd.DataFrame, columns: dict[str, str]) -> None:
    """A chart and its text alternative: a sentence with its key figure under it, and its data
    as a table one click away (`columns`: the data's columns shown, and their headings)."""
    # The spec's name lets a test (or a reader of the page's source) tell the charts apart.
    readable = figure.properties(name=name).configure_axis(
        labelColor=CHART_TEXT, titleColor=CHART_TEXT, domainColor=RULE, tickColor=RULE
    ).configure_legend(labelColor=CHART_TEXT, titleColor=CHART_TEXT).configure_range(category=PALETTE)
    st.altair_chart(readable, width="stretch", key=f"monitoring_chart_{name}", alt=description)
    st.caption(key_figure)
    with st.expander(f"Data table: {description.split(';')[0]}"):
        st.dataframe(data[list(columns)].rename(columns=columns), hide_index=True,
                     key=f"monitoring_table_{name}")


def share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "-"


def direction_colour(field: str, directions: list[str]) -> alt.Color:
    return alt.Color(f"{field}:N", title="Reviewer decision",
                     scale=alt.Scale(domain=directions, range=[DIRECTION_COLOURS[d] for d in directions]),
                     legend=alt.Legend(orient="bottom", labelLimit=320, labelExpr=" : ".join(
                         f"datum.label == '{d}' ? '{DIRECTION_LABELS[d]}'" for d in directions)
                         + " : datum.label"))
