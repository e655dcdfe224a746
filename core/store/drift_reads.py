"""Input drift aggregates (core.drift): counts of the recorded raw inputs per model version, input
and bin, or per week, computed by the database; mixed into both stores.

The raw inputs are phi_inputs.input_json, joined to their prediction for its version and time:
kept for the retention period only, so the counts cover what a purge left. Each row's JSON is
parsed once (the dialect's json_values) and its values are grouped before they are binned or
compared. Inputs, bins and validated ranges come from the versions' artefacts and are bound as
parameters (a VALUES list), never written into the SQL. A value counts as missing when it is
null or absent: missing = predictions - values present."""

from __future__ import annotations

import pandas as pd


class DriftReads:
    """Drift aggregates; `f` = (start, end, model_version or None), [start, end) on the
    prediction's time."""

    _INPUTS = ("SELECT p.model_version, p.created_at, phi.input_json FROM predictions p "
               "JOIN phi_inputs phi USING (prediction_id) WHERE p.created_at >= ? AND "
               "p.created_at < ? AND (CAST(? AS TEXT) IS NULL OR p.model_version = ?)")

    _ROWS = ("SELECT p.model_version, p.created_at FROM predictions p JOIN phi_inputs phi "
             "USING (prediction_id) WHERE p.created_at >= ? AND p.created_at < ? AND "
             "(CAST(? AS TEXT) IS NULL OR p.model_version = ?)")  # _INPUTS without the JSON

    def _drift(self, sql: str, f: tuple, rows: list[tuple], types: tuple[str, ...],
               columns: str, more: list | None = None) -> pd.DataFrame:
        """`sql` (its own parameters `more`) after `base` (the inputs in `f`), `given` (the
        rows, named `columns`) and `vals` (version, created_at, feature, value: the values
        present of the given inputs' names, of any version: join `given` to keep each version's
        own). `base` is read once, so PostgreSQL need not keep every row's JSON aside; `vals`
        is grouped before any join with `given`, whose row estimate is poor (joined first, the
        planner would sort every value instead of hashing them)."""
        start, end, version = f
        one = "(" + ", ".join(f"CAST(? AS {t})" for t in types) + ")"
        keys = sorted({r[1] for r in rows})
        pairs, pair_params = self._dialect.json_values(
            "base b", "b.model_version, b.created_at", "b.input_json", keys)
        return self._frame(
            f"WITH base AS ({self._INPUTS}), given({columns}) AS (VALUES {', '.join([one] * len(rows))}), "
            "vals AS (SELECT v.model_version, v.created_at, v.key AS feature, v.value "
            f"FROM ({pairs}) v WHERE v.value IS NOT NULL) " + sql,
            [start, end, version, version, *(v for r in rows for v in r), *pair_params, *(more or [])])

    def agg_drift_inputs(self, f: tuple) -> pd.DataFrame:
        """(model_version, n): the predictions in `f` whose raw inputs are still kept."""
        start, end, version = f
        return self._frame(f"SELECT model_version, count(*) AS n FROM ({self._INPUTS}) b "
                           "GROUP BY model_version ORDER BY model_version",
                           [start, end, version, version])

    def agg_drift_window(self, f: tuple, bins: list[tuple]) -> pd.DataFrame:
        """(model_version, feature, bin, value, n): the values present in `f` per bin of a
        numeric input, or per value (as JSON text) of a category or yes/no input. `bins`:
        (model_version, feature, bin, lower, upper): for a number, its bins, the lower edge
        excluded and the upper one included, None an open end; for the others, one row with
        None for bin and edges."""
        if not bins:
            return pd.DataFrame(columns=["model_version", "feature", "bin", "value", "n"])
        return self._drift(
            "SELECT s.model_version, s.feature, e.bin, CASE WHEN e.bin IS NULL THEN s.value END "
            "AS value, CAST(sum(s.n) AS BIGINT) AS n FROM "
            "(SELECT model_version, feature, value, count(*) AS n FROM vals GROUP BY 1, 2, 3) s "
            "JOIN given e ON e.model_version = s.model_version AND e.feature = s.feature "
            # in a CASE: a value is read as a number only once it is known to be a number's
            "AND CASE WHEN e.model_version = s.model_version AND e.feature = s.feature "
            "AND e.bin IS NOT NULL THEN (e.lo IS NULL OR CAST(s.value AS FLOAT8) > e.lo) AND "
            "(e.hi IS NULL OR CAST(s.value AS FLOAT8) <= e.hi) ELSE e.bin IS NULL END "
            "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4", f, bins,
            ("TEXT", "TEXT", "INTEGER", "FLOAT8", "FLOAT8"), "model_version, feature, bin, lo, hi")

    def agg_drift_weekly(self, f: tuple, features: list[tuple]) -> pd.DataFrame:
        """(week, model_version, feature, predictions, missing, out_of_range) per week of `f`.
        `features`: (model_version, feature, validated min, validated max); a value below the
        min or above the max is out of range; None for both (a category): none is."""
        if not features:
            return pd.DataFrame(columns=["week", "model_version", "feature", "predictions",
                                         "missing", "out_of_range"])
        start, end, version = f
        week = "CAST(date_trunc('week', created_at) AS DATE)"
        value = "CAST(s.value AS FLOAT8)"
        return self._drift(
            "SELECT w.week, w.model_version, g.feature, w.predictions, "
            "w.predictions - COALESCE(c.present, 0) AS missing, "
            "COALESCE(c.out_of_range, 0) AS out_of_range FROM "
            f"(SELECT {week} AS week, model_version, count(*) AS predictions FROM ({self._ROWS}) r "
            "GROUP BY 1, 2) w JOIN given g ON g.model_version = w.model_version LEFT JOIN "
            "(SELECT s.week, s.model_version, s.feature, CAST(sum(s.n) AS BIGINT) AS present, "
            "CAST(COALESCE(sum(s.n) FILTER (WHERE CASE WHEN g.lo IS NULL THEN false ELSE "
            f"{value} < g.lo OR {value} > g.hi END), 0) AS BIGINT) AS out_of_range FROM "
            f"(SELECT {week} AS week, model_version, feature, value, count(*) AS n FROM vals "
            "GROUP BY 1, 2, 3, 4) s JOIN given g ON g.model_version = s.model_version "
            "AND g.feature = s.feature GROUP BY 1, 2, 3) c ON c.week = w.week "
            "AND c.model_version = w.model_version AND c.feature = g.feature ORDER BY 1, 2, 3",
            f, features, ("TEXT", "TEXT", "FLOAT8", "FLOAT8"), "model_version, feature, lo, hi",
            [start, end, version, version])
