"""The store on PostgreSQL against the embedded file, in one run on one machine.

Starts a PostgreSQL server of its own (initdb and pg_ctl of the installed PostgreSQL, in a
temporary folder: tests/pg_support.py, the same server the tests use; as root it runs as the
`postgres` user), with the two roles RUNBOOK.md sets up, then:

1. one score with a durable commit (`core.score`: validate, predict, route, record one event
   and its chain entry): p50/p99 of --calls calls on a fresh embedded store and on a fresh
   PostgreSQL database (as the service's role), the two taking turns in blocks. Target: the
   PostgreSQL p50 within 1.5x of the embedded store's.
2. the monitoring aggregates (`core.monitoring.dashboard()`, a year, all versions) at
   --predictions predictions and a tenth as many review decisions: the rows made as
   bench_monitoring.py makes them (in a DuckDB file), copied into PostgreSQL with COPY; the
   median of --runs runs. Target: <= 1 s.
3. 4 writer processes scoring at once into one PostgreSQL database, --per-writer each: the
   combined scores/s, next to one process alone.

    .venv/bin/python bench/bench_store_pg.py [--calls 500] [--predictions 1000000] [--runs 3]
                                             [--per-writer 300]

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

SCORE_RATIO_TARGET = 1.5
DASHBOARD_TARGET_S = 1.0
PATIENTS = REPO / "data" / "sample_patients.csv"  # the serving model's sample patients, in turn
WRITER = """
import json, sys, time
from core import scoring
patients, n = json.loads(open(sys.argv[1]).read()), int(sys.argv[2])
scoring.score(patients[0], user="bench", source="api")
t = time.perf_counter()
for i in range(n):
    scoring.score(patients[i % len(patients)], user="bench", source="api")
print(time.perf_counter() - t)
"""


def payloads(csv_path: Path) -> list[dict]:
    """The sample patients as the API takes them (JSON's own types), for the serving version."""
    from bench_api import load_patients

    from core import artifacts
    from core.config import get_settings

    models = get_settings().models
    return [p.payload for p in load_patients(artifacts.load(models, artifacts.default_version(models)),
                                             csv_path)]


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def new_database(server, owner: str) -> str:
    from core import store as core_store

    name = server.new_database()
    core_store.open_store(server.url(name, role=owner))  # the owner migrates
    core_store.close_all()
    server.grant_purge(name)
    return server.url(name)


def score_latency(server, pg_support, tmp: Path, calls: int, patients: list[dict]
                  ) -> dict[str, list[float]]:
    from core import scoring
    from core import store as core_store

    stores = {"embedded": str(tmp / "score.duckdb"), "postgresql": new_database(server, pg_support.OWNER)}
    times: dict[str, list[float]] = {name: [] for name in stores}
    for db in stores.values():  # warm: open, migrate, load the model
        os.environ["APP_DB"] = db
        for i in range(30):
            scoring.score(patients[i % len(patients)], user="bench", source="api")
    blocks = 10
    for block in range(blocks):
        for name, db in (stores.items() if block % 2 == 0 else reversed(stores.items())):
            os.environ["APP_DB"] = db
            for i in range(calls // blocks):
                payload = patients[(block * calls + i) % len(patients)]
                t = time.perf_counter()
                scoring.score(payload, user="bench", source="api")
                times[name].append(time.perf_counter() - t)
    core_store.close_all()
    return times


def copy_tables(duck_file: Path, url: str, tables: list[str]) -> float:
    """Every row of `tables` from a DuckDB file into the PostgreSQL database (COPY, as the
    owner: the product never writes rows this way)."""
    import duckdb
    import psycopg

    t = time.perf_counter()
    src = duckdb.connect(str(duck_file), read_only=True)
    with psycopg.connect(url, autocommit=True) as con:
        for table in tables:
            columns = [r[0] for r in src.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position", [table]).fetchall()]
            names = ", ".join(columns)
            reader = src.sql(f"SELECT {names} FROM {table}").to_arrow_reader(50_000)  # noqa: S608
            with con.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for batch in reader:
                    for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                        copy.write_row(row)
            con.execute(f"ANALYZE {table}")
    src.close()
    return time.perf_counter() - t


def dashboard_seconds(server, pg_support, tmp: Path, predictions: int, runs: int) -> tuple[float, float, dict]:
    import bench_monitoring

    from core import monitoring
    from core import store as core_store
    from core.clock import now_utc

    shipped = Path(os.environ["APP_MODELS"]) / "v1" / "manifest.json"
    for version in ("v1", "v2"):  # the versions the rows name, as bench_monitoring.py has them
        (tmp / "models" / version).mkdir(parents=True)
        shutil.copy(shipped, tmp / "models" / version / "manifest.json")
    models, os.environ["APP_MODELS"] = os.environ["APP_MODELS"], str(tmp / "models")
    duck = tmp / "monitoring.duckdb"
    core_store.open_store(duck)
    core_store.close_all()
    now = now_utc()
    bench_monitoring.fill(duck, predictions=predictions, decisions=predictions // 10, outcomes=0, now=now)
    url = new_database(server, pg_support.OWNER)
    owner_url = url.replace(f"{pg_support.SERVICE}:{pg_support.SERVICE_PASSWORD}",
                            f"{pg_support.OWNER}:{pg_support.OWNER_PASSWORD}")
    # COPY as the superuser would bypass nothing the triggers guard: they refuse UPDATE/DELETE only.
    copied = copy_tables(duck, owner_url, ["predictions", "review_decisions"])
    start, end = now - timedelta(days=bench_monitoring.DAYS + 1), now + timedelta(days=1)
    out = {}
    for name, db in (("embedded", duck), ("postgresql", url)):
        store = core_store.open_store(db)
        monitoring.dashboard(start=start, end=end, now=now, store=store)  # warm
        out[name] = bench_monitoring._median_seconds(
            lambda store=store: monitoring.dashboard(start=start, end=end, now=now, store=store), runs)
        core_store.close_all()
    os.environ["APP_MODELS"] = models
    return out["embedded"], out["postgresql"], {"copied_s": copied}


def writers(url: str, n: int, processes: int, patients_file: Path) -> float:
    """Combined scores/s of `processes` processes scoring n each at once."""
    env = {**os.environ, "APP_DB": url}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(patients_file), str(n)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    outs = [p.communicate() for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("a writer failed: " + " | ".join(o[1][-500:] for o in outs))
    return processes * n / max(float(o[0].split()[-1]) for o in outs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--per-writer", type=int, default=300)
    args = parser.parse_args(argv)

    import pg_support
    from browser_support import free_port

    from core import store as core_store

    os.environ.setdefault("APP_PATIENT_KEY", "bench-only-patient-key-not-a-secret-0123456789")
    os.environ["APP_DEMO"] = "0"
    os.environ.setdefault("APP_MODELS", str(REPO / "model_artifacts"))
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    server = pg_support.start(free_port())
    try:
        with tempfile.TemporaryDirectory(prefix="bench-store-pg-") as tmp:
            tmp = Path(tmp)
            patients = payloads(PATIENTS)
            (tmp / "patients.json").write_text(json.dumps(patients))
            times = score_latency(server, pg_support, tmp, args.calls, patients)
            embedded_s, pg_s, fill = dashboard_seconds(server, pg_support, tmp, args.predictions, args.runs)
            url = new_database(server, pg_support.OWNER)
            one = writers(url, args.per_writer, 1, tmp / "patients.json")
            four = writers(url, args.per_writer, 4, tmp / "patients.json")
            store = core_store.open_store(url)
            recorded = store.count("predictions")
            core_store.close_all()
        version = server.sql("SHOW server_version").strip()
    finally:
        server.stop()

    buf = io.StringIO()
    print(f"PostgreSQL {version} on this machine (a server of the benchmark's own), {os.cpu_count()} "
          f"CPUs, load average {load} at the start", file=buf)
    print("\none score with a durable commit (core.score), "
          f"{len(times['embedded'])} calls each, in turns:", file=buf)
    print(f"  {'':12} {'p50 ms':>8} {'p99 ms':>8}", file=buf)
    for name, samples in times.items():
        print(f"  {name:12} {pct(samples, .5) * 1e3:8.2f} {pct(samples, .99) * 1e3:8.2f}", file=buf)
    ratio = pct(times["postgresql"], .5) / pct(times["embedded"], .5)
    met_score = ratio <= SCORE_RATIO_TARGET
    print(f"PostgreSQL p50 / embedded p50: {ratio:.2f}x (target <= {SCORE_RATIO_TARGET}x): "
          + ("MET" if met_score else "MISSED"), file=buf)
    print(f"\nmonitoring dashboard(), a year, all versions, {args.predictions:,} predictions and "
          f"{args.predictions // 10:,} decisions (copied in {fill['copied_s']:.0f} s), median of "
          f"{args.runs}:", file=buf)
    print(f"  embedded {embedded_s:.3f} s; PostgreSQL {pg_s:.3f} s", file=buf)
    met_dash = pg_s <= DASHBOARD_TARGET_S
    print(f"PostgreSQL dashboard <= {DASHBOARD_TARGET_S:g} s: " + ("MET" if met_dash else "MISSED"), file=buf)
    print(f"\nwriters into one PostgreSQL database, {args.per_writer} scores each: 1 process "
          f"{one:.0f} scores/s; 4 processes at once {four:.0f} scores/s combined "
          f"({four / one:.2f}x); {recorded:,} predictions recorded (expected "
          f"{5 * args.per_writer + 5:,})", file=buf)
    ok_rows = recorded == 5 * args.per_writer + 5
    print("every score recorded once: " + ("MET" if ok_rows else "MISSED"), file=buf)
    print(buf.getvalue(), end="")
    return 0 if met_score and met_dash and ok_rows else 1


if __name__ == "__main__":
    sys.exit(main())
