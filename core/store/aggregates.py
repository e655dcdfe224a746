"""Monitoring aggregates: chart-sized results computed in SQL; mixed into DuckDBStore."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from core.store.queries import CURRENT_DECISIONS, CURRENT_OUTCOMES


class MonitoringReads:
    """Monitoring aggregates (chart-sized results; filters: [start, end) and model version)."""

    _P = ("SELECT * FROM predictions WHERE created_at >= ? AND created_at < ? "
          "AND (CAST(? AS TEXT) IS NULL OR model_version = ?)")
    _D = (f"SELECT d.*, p.model_version FROM ({CURRENT_DECISIONS}) d "
          "JOIN predictions p USING (prediction_id) WHERE d.created_at >= ? AND d.created_at < ? "
          "AND (CAST(? AS TEXT) IS NULL OR p.model_version = ?)")

    _R = ("SELECT * FROM rejected_inputs WHERE created_at >= ? AND created_at < ? "
          "AND (CAST(? AS TEXT) IS NULL OR model_version = ?)")

    def _agg(self, sql: str, base: str, f: tuple, extra: list | None = None) -> pd.DataFrame:
        start, end, version = f
        return self._frame(f"WITH base AS ({base}) {sql}", [start, end, version, version, *(extra or [])])

    def agg_override_weekly(self, f: tuple) -> pd.DataFrame:
        return self._agg(
            "SELECT CAST(date_trunc('week', created_at) AS DATE) AS week, model_version, "
            "count(*) AS reviewed, count(*) FILTER (WHERE direction = 'upgrade') AS upgrades, "
            "count(*) FILTER (WHERE direction = 'downgrade') AS downgrades "
            "FROM base GROUP BY 1, 2 ORDER BY week, model_version", self._D, f)

    def agg_override_window(self, f: tuple) -> pd.DataFrame:
        """Reviewed count and overrides by direction with their most common reason codes."""
        return self._agg(
            "SELECT direction, count(*) AS n, (SELECT count(*) FROM base) AS reviewed, "
            f"{self._dialect.list_of('reason_code')} AS reasons FROM base GROUP BY direction",
            self._D, f)

    def agg_reason_codes(self, f: tuple) -> pd.DataFrame:
        return self._agg("SELECT reason_code, direction, count(*) AS decisions FROM base "
                         "GROUP BY 1, 2 ORDER BY decisions DESC", self._D, f)

    def agg_predictions_daily(self, f: tuple) -> pd.DataFrame:
        return self._agg("SELECT CAST(created_at AS DATE) AS day, routing, count(*) AS predictions "
                         "FROM base GROUP BY 1, 2 ORDER BY day, routing", self._P, f)

    def agg_review_share(self, f: tuple) -> pd.DataFrame:
        return self._agg("SELECT model_version, count(*) AS predictions, "
                         "count(*) FILTER (WHERE routing = 'review') AS routed_to_review "
                         "FROM base GROUP BY 1 ORDER BY model_version", self._P, f)

    def agg_ood_reasons(self, f: tuple) -> pd.DataFrame:
        return self._agg("SELECT code AS reason_code, count(*) AS predictions FROM "
                         "(SELECT unnest(reason_codes) AS code FROM base) c GROUP BY 1 "
                         "ORDER BY predictions DESC", self._P, f)

    def agg_backlog(self, f: tuple, now: datetime) -> pd.DataFrame:
        return self._agg(
            "SELECT count(*) AS pending, min(created_at) AS oldest, "
            f"{self._dialect.hours_between('min(created_at)', 'CAST(? AS TIMESTAMP)')} AS oldest_age_hours "
            "FROM base b WHERE routing = 'review' AND NOT EXISTS "
            "(SELECT 1 FROM review_decisions d WHERE d.prediction_id = b.prediction_id)",
            self._P, f, [now])

    def agg_time_to_decision(self, f: tuple) -> pd.DataFrame:
        minutes = self._dialect.minutes_between("p.created_at", "d.created_at")
        return self._agg(
            "SELECT CAST(date_trunc('week', d.created_at) AS DATE) AS week, count(*) AS decided, "
            f"{self._dialect.quantile(minutes, 0.5)} / 60.0 AS median_hours, "
            f"{self._dialect.quantile(minutes, 0.9)} / 60.0 AS p90_hours "
            "FROM base d JOIN predictions p USING (prediction_id) WHERE d.supersedes IS NULL "
            "GROUP BY 1 ORDER BY week", self._D, f)

    def agg_reviewer_workload(self, f: tuple) -> pd.DataFrame:
        return self._agg("SELECT reviewer_name, count(*) AS decisions FROM base "
                         "GROUP BY 1 ORDER BY reviewer_name", self._D, f)

    def agg_rejected_fields(self, f: tuple, known: list[str], unknown: str) -> pd.DataFrame:
        """Per field: how many rejected inputs named it; rejected_inputs repeats the total.

        A name outside `known` shows as `unknown` (records made before such names were withheld
        at write time still hold what the sender typed)."""
        return self._agg(
            f"SELECT CASE WHEN {self._dialect.in_list('field', '?')} THEN field ELSE ? END AS field, "
            "count(DISTINCT rejection_id) AS rejections, "
            "(SELECT count(*) FROM base) AS rejected_inputs FROM "
            f"({self._dialect.json_fields('base', 'rejection_id', 'fields_json', 'field')}) r "
            "GROUP BY 1 ORDER BY rejections DESC, field", self._R, f, [known, unknown])

    def outcome_pairs(self, f: tuple, features: tuple[str, ...] = ()) -> pd.DataFrame:
        """Predictions with an outcome in force: when, which version, risk, class, routing,
        review, the event, and the text of each of `features` in the recorded inputs (None once
        a retention purge removed them), as columns 'input.<feature>'."""
        values = "".join(f", {self._dialect.json_text('phi.input_json')} AS x{i}"
                         for i in range(len(features)))
        frame = self._agg(
            f"SELECT b.prediction_id, b.created_at, b.model_version, b.risk, b.risk_class, "
            f"b.routing, o.event, d.direction, d.reviewer_class{values} FROM base b "
            f"JOIN ({CURRENT_OUTCOMES}) o USING (prediction_id) "
            f"LEFT JOIN ({CURRENT_DECISIONS}) d USING (prediction_id) "
            f"LEFT JOIN phi_inputs phi ON phi.prediction_id = b.prediction_id", self._P, f,
            list(features))
        return frame.rename(columns={f"x{i}": f"input.{name}" for i, name in enumerate(features)})
