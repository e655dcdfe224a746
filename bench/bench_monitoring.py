"""Monitoring on a busy store: 1,000,000 predictions and 100,000 review decisions over a year.

Fills a temporary store file with bulk INSERT ... SELECT from DuckDB's range() straight into the
real tables (the append-only triggers refuse only UPDATE and DELETE; the rows are not chained in
the audit log, which no aggregate reads), then:

1. times core.monitoring.dashboard() over the whole year, all model versions: every aggregate on
   its own and dashboard() in total, the median of --runs runs. Target: <= 1 s in total.
2. renders views/monitoring.py in Streamlit's AppTest, signed in as a PI, for the page's default
   dates and for the whole year, and measures what the page sends to the browser: every element
   as serialised (charts' specs and Arrow data, tables, text), and each chart as JSON. Target:
   < 100 KB.

    .venv/bin/python bench/bench_monitoring.py [--predictions 1000000] [--decisions 100000]
                                               [--outcomes 0] [--runs 5]

--outcomes N also records N outcomes (drawn from the predicted risk), so real-world performance
(AUROC with a bootstrap CI, Brier, calibration) is computed too; its time is reported on its own.
Uses a temporary store and a temporary models folder holding copies of the shipped manifest as
versions v1 and v2; nothing else is read or written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 1.0
TARGET_PAYLOAD_BYTES = 100_000
DAYS = 365
V2_FROM = 0.55  # share of the year before version v2 serves
REASONS = ["clinical context not captured by the model", "suspected lab or entry error",
           "recent medication change", "other"]

# Deterministic pseudo-random draws: u(i, k) is uniform on [0, 1) for stream k.
FILL_PREDICTIONS = """
INSERT INTO predictions
SELECT 'bench-p' || i, i + 1, start + to_microseconds(CAST(i * step AS BIGINT)),
       'clinician' || (i % 40), CASE WHEN i % 10 = 0 THEN 'batch' ELSE 'form' END,
       md5('patient' || (i % 400000)), md5('input' || i),
       risk, greatest(risk - 0.05, 0), least(risk + 0.05, 1),
       CASE WHEN risk >= 0.2 THEN 'high' ELSE 'low' END, 0.5 + u4 / 2, routing,
       CAST(to_json(codes) AS TEXT), codes, '[]', version, 'bench'
FROM (SELECT *, CASE WHEN routing = 'auto_finalised' THEN CAST([] AS VARCHAR[])
                     WHEN u3 < 0.4 THEN ['uncertain', 'missing_value']
                     WHEN u3 > 0.92 THEN ['outside_validated_range']
                     WHEN u3 > 0.88 THEN ['unusual_combination'] ELSE ['uncertain'] END AS codes
      FROM (SELECT i, CAST(? AS TIMESTAMP) AS start, CAST(? AS DOUBLE) AS step,
                   power((hash(i, 1) % 1000000) / 1e6, 2.2) * 0.9 AS risk,
                   CASE WHEN (hash(i, 2) % 1000000) / 1e6 < 0.32 THEN 'review'
                        ELSE 'auto_finalised' END AS routing,
                   (hash(i, 3) % 1000000) / 1e6 AS u3, (hash(i, 4) % 1000000) / 1e6 AS u4,
                   CASE WHEN i < ? THEN 'v1' ELSE 'v2' END AS version
            FROM range(?) t(i)))
"""
# Decisions on a random choice of the review predictions; 30% overrides. Decided 30 minutes to
# 3 days after the prediction, never after now.
FILL_DECISIONS = """
INSERT INTO review_decisions
SELECT 'bench-d' || audit_seq, ? + row_number() OVER (ORDER BY audit_seq),
       least(created_at + to_minutes(CAST(30 + hash(audit_seq, 5) % 4300 AS BIGINT)), CAST(? AS TIMESTAMP)),
       'reviewer' || (audit_seq % 6), 'Reviewer ' || (audit_seq % 6), prediction_id,
       CASE WHEN NOT override THEN 'agree' WHEN risk_class = 'low' THEN 'override_high'
            ELSE 'override_low' END,
       risk_class, CASE WHEN NOT override THEN risk_class WHEN risk_class = 'low' THEN 'high'
                        ELSE 'low' END,
       CASE WHEN NOT override THEN 'none' WHEN risk_class = 'low' THEN 'upgrade' ELSE 'downgrade' END,
       list_extract(?, CAST(1 + hash(audit_seq, 6) % 4 AS INTEGER)), 'bench', 'bench', NULL
FROM (SELECT *, hash(audit_seq, 7) % 100 < 30 AS override FROM predictions
      WHERE routing = 'review' ORDER BY hash(audit_seq, 8) LIMIT ?)
"""
# Corrections: a new decision (agree) superseding an earlier one, an hour later.
FILL_CORRECTIONS = """
INSERT INTO review_decisions
SELECT 'bench-c' || audit_seq, ? + row_number() OVER (ORDER BY audit_seq),
       created_at + INTERVAL 1 HOUR, user_name, reviewer_name, prediction_id, 'agree', model_class,
       model_class, 'none', reason_code, 'correction', 'bench', decision_id
FROM (SELECT * FROM review_decisions ORDER BY audit_seq LIMIT ?)
"""
FILL_OUTCOMES = """
INSERT INTO outcomes
SELECT 'bench-o' || audit_seq, ? + row_number() OVER (ORDER BY audit_seq),
       created_at + INTERVAL 43 DAY, 'bench', prediction_id, event,
       CASE WHEN event THEN CAST(created_at AS DATE) + 10 END, NULL, 'bench', NULL
FROM (SELECT *, (hash(audit_seq, 9) % 1000000) / 1e6 < risk AS event FROM predictions
      WHERE created_at < CAST(? AS TIMESTAMP) - INTERVAL 43 DAY ORDER BY hash(audit_seq, 10) LIMIT ?)
"""


def fill(db: Path, *, predictions: int, decisions: int, outcomes: int, now) -> dict[str, float]:
    """Bulk rows into the real tables of the store file `db` (migrated, and held by no Store):
    on a connection of this benchmark's own, as the product never writes rows this way.
    Returns seconds per table."""
    import duckdb

    start = now - timedelta(days=DAYS)
    step_us = DAYS * 86_400e6 / predictions
    corrections = decisions // 100
    con = duckdb.connect(str(db))
    took = {}
    try:
        for name, sql, params in (
                ("predictions", FILL_PREDICTIONS, [start, step_us, int(predictions * V2_FROM), predictions]),
                ("review_decisions", FILL_DECISIONS, [predictions, now, REASONS, decisions - corrections]),
                ("corrections", FILL_CORRECTIONS, [predictions + decisions, corrections]),
                ("outcomes", FILL_OUTCOMES, [predictions + 2 * decisions, now, outcomes])):
            t = time.perf_counter()
            con.execute(sql, params)
            took[name] = time.perf_counter() - t
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return took


class _TimedStore:
    """The store, recording how long each method dashboard() calls takes and how many rows it
    gives: the pieces are whatever dashboard() asks for, never a list kept here by hand."""

    def __init__(self, store):
        self._store, self.calls = store, {}

    def __getattr__(self, name):
        method = getattr(self._store, name)
        if not callable(method):
            return method

        def timed(*args, **kwargs):
            t = time.perf_counter()
            out = method(*args, **kwargs)
            self.calls.setdefault(name, []).append((time.perf_counter() - t, len(out) if hasattr(out, "__len__") else 1))
            return out
        return timed


def time_aggregates(store, *, start, end, now, runs: int) -> list[tuple[str, float, int]]:
    """Median seconds and result rows of each store call inside dashboard(), of the Python
    performance figures, then of dashboard() itself."""
    from core import monitoring, performance
    from core.config import get_settings

    settings = get_settings()
    timed = _TimedStore(store)
    for _ in range(runs):
        monitoring.dashboard(start=start, end=end, now=now, store=timed)
    results = [(name, statistics.median(t for t, _ in calls), calls[-1][1])
               for name, calls in timed.calls.items()]
    pairs = store.outcome_pairs((start, end, None))
    groups = performance.performance(pairs, settings.min_outcomes_for_metrics)["groups"]
    results.append(("performance (Python: DeLong AUROC CI)", _median_seconds(
        lambda: performance.performance(pairs, settings.min_outcomes_for_metrics), runs), len(groups)))
    total = _median_seconds(lambda: monitoring.dashboard(start=start, end=end, now=now, store=store),
                            runs)
    results.append(("dashboard() total", total, len(monitoring.dashboard(
        start=start, end=end, now=now, store=store).frames)))
    return results


def _median_seconds(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _elements(node):
    children = getattr(node, "children", None)
    if children is None:
        yield node
        return
    for child in children.values():
        yield from _elements(child)


def page_payload(first_day=None) -> dict:
    """Render the monitoring page as a PI; sizes of what it sends, per kind and per chart."""
    import pyarrow as pa
    from streamlit.testing.v1 import AppTest

    from core import auth

    at = AppTest.from_file(str(REPO / "views" / "monitoring.py"), default_timeout=300)
    at.session_state["user"] = auth.User("bench-pi", "Bench PI", ("pi",))
    t = time.perf_counter()
    at.run()
    if first_day is not None:
        dates = at.date_input(key="monitoring_dates")
        dates.set_value((first_day, dates.value[1]))
        t = time.perf_counter()
        at.run()
    seconds = time.perf_counter() - t
    if at.exception:
        raise RuntimeError(f"the page failed: {at.exception[0].value}")
    by_kind: dict[str, int] = {}
    charts = []
    for el in _elements(at._tree):
        size = el.proto.ByteSize()
        by_kind[el.type] = by_kind.get(el.type, 0) + size
        if el.type == "vega_lite_chart":
            frames = [pa.ipc.open_stream(ds.data.data).read_pandas() for ds in el.proto.datasets]
            as_json = json.dumps({"spec": json.loads(el.proto.spec),
                                  "datasets": [json.loads(f.to_json(orient="records", date_format="iso"))
                                               for f in frames]})
            charts.append({"name": json.loads(el.proto.spec).get("name", "?"), "bytes": size,
                           "rows": sum(len(f) for f in frames), "json_bytes": len(as_json)})
    return {"seconds": seconds, "by_kind": by_kind, "charts": charts, "total": sum(by_kind.values()),
            "alerts": len(at.error)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--outcomes", type=int, default=0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        tmp = Path(tmp)
        shipped = Path(os.environ.get("APP_MODELS", REPO / "model_artifacts")) / "v1" / "manifest.json"
        for version in ("v1", "v2"):
            (tmp / "models" / version).mkdir(parents=True)
            shutil.copy(shipped, tmp / "models" / version / "manifest.json")
        os.environ.update(APP_DB=str(tmp / "bench.duckdb"), APP_MODELS=str(tmp / "models"))
        os.environ.setdefault("APP_PATIENT_KEY", "bench-only-patient-key-not-a-secret-0123456789")

        from core import monitoring
        from core import store as core_store
        from core.clock import now_utc

        core_store.open_store(tmp / "bench.duckdb")  # created and migrated, then let go to fill
        core_store.close_all()
        now = now_utc()
        took = fill(tmp / "bench.duckdb", predictions=args.predictions, decisions=args.decisions,
                    outcomes=args.outcomes, now=now)
        store = core_store.open_store(tmp / "bench.duckdb")
        counts = {t: store.count(t) for t in ("predictions", "review_decisions", "outcomes")}
        size_mb = (tmp / "bench.duckdb").stat().st_size / 1e6
        start, end = now - timedelta(days=DAYS + 1), now + timedelta(days=1)
        results = time_aggregates(store, start=start, end=end, now=now, runs=args.runs)
        recent = _median_seconds(lambda: monitoring.dashboard(
            start=now - timedelta(weeks=12), end=end, now=now, store=store), args.runs)
        default_page = page_payload()
        year_page = page_payload(first_day=(now - timedelta(days=DAYS)).date())
        core_store.close_all()

    print(f"store: {counts['predictions']:,} predictions, {counts['review_decisions']:,} review "
          f"decisions, {counts['outcomes']:,} outcomes; {size_mb:.0f} MB; {os.cpu_count()} CPUs")
    print("filled in " + ", ".join(f"{name} {s:.2f} s" for name, s in took.items()))
    print(f"\ndashboard() over {DAYS} days, all versions (median of {args.runs} runs):")
    for name, seconds, rows in results:
        print(f"  {name:<42} {seconds * 1000:8.1f} ms  {rows:>5} rows")
    print(f"  {'dashboard(), last 12 weeks (page default)':<42} {recent * 1000:8.1f} ms")
    total = results[-1][1]
    met_time = total <= TARGET_SECONDS
    print(f"target dashboard() <= {TARGET_SECONDS:g} s: " + ("MET" if met_time else "MISSED"))

    met_size = True
    for label, page in (("default dates (12 weeks)", default_page), (f"{DAYS} days", year_page)):
        print(f"\nmonitoring page, {label}: rendered in {page['seconds']:.2f} s (first run, "
              f"aggregates not cached); {page['alerts']} alert(s) shown")
        for chart in page["charts"]:
            print(f"  chart {chart['name']:<18} {chart['rows']:>5} rows  {chart['bytes']:>7,} B sent  "
                  f"{chart['json_bytes']:>7,} B as JSON")
        print("  per element kind: " + ", ".join(f"{k} {v:,} B" for k, v in sorted(
            page["by_kind"].items(), key=lambda kv: -kv[1])))
        print(f"  total sent: {page['total']:,} B (CSV downloads are fetched only when clicked)")
        met_size &= page["total"] < TARGET_PAYLOAD_BYTES
    print(f"target page payload < {TARGET_PAYLOAD_BYTES // 1000} KB: " + ("MET" if met_size else "MISSED"))
    return 0 if met_time and met_size else 1


if __name__ == "__main__":
    sys.exit(main())
