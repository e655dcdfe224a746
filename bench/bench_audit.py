"""The audit trail on a big store: a whole verification, and the Governance page's check.

Fills a temporary store with --predictions real, chained predictions through score-batch (the
rows of bench_batch), then prints, in one run:

1. a whole verification (`python -m core audit verify`, streamed) in a child process: its time
   and the child's peak memory (resident set). Targets: <= 10 s and < 300 MB at 1M predictions.
2. the Governance page's answer after a whole verification was recorded and 100 more patients
   were scored: core.governance.snapshot(), which checks only what came after. Target: < 1 s.

    .venv/bin/python bench/bench_audit.py [--predictions 1000000] [--store DIR]

Uses a temporary store; the shipped model artefacts are only read. --store DIR keeps the store
in DIR instead, and a later run with the same DIR reuses it when it already holds that many
predictions (filling 1M takes minutes); each run adds its verification and 100 patients to it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
VERIFY_SECONDS, VERIFY_MB, PAGE_SECONDS = 10.0, 300.0, 1.0
CHILD = """
import resource, sys, time
from core.config import get_settings
from core.store import open_store
from core.verification import verify_audit
store = open_store(get_settings().db)
start = time.perf_counter()
problems, head = verify_audit(store, bound_memory=True)  # as `python -m core audit verify`
elapsed = time.perf_counter() - start
print(len(problems), head[0], elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--store", type=Path, help="keep the store in this directory and reuse it")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.store is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-audit-")))
        else:
            tmp = args.store.resolve()
            tmp.mkdir(parents=True, exist_ok=True)
        os.environ.update({"APP_DB": str(tmp / "bench.duckdb"), "APP_DEMO": "0",
                           "APP_MODELS": os.environ.get("APP_MODELS", str(REPO / "model_artifacts"))})
        os.environ.setdefault("APP_PATIENT_KEY", "bench-only-patient-key-not-a-secret-0123456789")
        from bench_batch import make_rows

        import core
        from core import store as core_store
        from core.batch import score_batch
        from core.governance import snapshot
        from core.verification import verify_whole

        start = time.perf_counter()
        store = core_store.open_store(Path(os.environ["APP_DB"]))
        if store.count("predictions") >= args.predictions:
            print(f"store in {tmp} reused: {store.count('predictions'):,} chained predictions")
        else:
            source = tmp / "patients.csv"
            make_rows(args.predictions).to_csv(source, index=False)
            score_batch(source, tmp / "scored.csv", user="bench", progress=False)
            source.unlink()
            (tmp / "scored.csv").unlink()
            print(f"store filled with {store.count('predictions'):,} chained predictions in "
                  f"{time.perf_counter() - start:.0f} s")
        store.checkpoint()
        core_store.close_all()

        child = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        if child.returncode:
            sys.exit(f"the verification failed:\n{child.stderr}")
        problems, entries, seconds, max_kb = child.stdout.split()
        mb = int(max_kb) / 1024
        load = os.getloadavg()[0]
        print(f"whole verification: {int(entries):,} entries in {float(seconds):.1f} s, peak "
              f"resident memory of the process {mb:.0f} MB, {problems} problems "
              f"(targets <= {VERIFY_SECONDS:g} s, < {VERIFY_MB:g} MB; load average {load:.1f} "
              f"on {os.cpu_count()} cores)")

        store = core_store.open_store(Path(os.environ["APP_DB"]))
        verify_whole(store, by="bench")
        patient = make_rows(1).iloc[0].to_dict()
        for i in range(100):
            core.score({**patient, "patient_ref": f"LATE-{i}"}, user="bench", source="form")
        times = []
        for _ in range(3):
            start = time.perf_counter()
            snap = snapshot(store, by="bench")
            times.append(time.perf_counter() - start)
        trail = snap["trail"]
        print(f"governance page: snapshot {times[0]:.2f} s (then {times[1]:.2f}, {times[2]:.2f} s); "
              f"verified through entry {trail.verified_through:,}, {trail.checked_since} checked "
              f"since; {'intact' if not trail.problems else trail.problems[0]} "
              f"(target < {PAGE_SECONDS:g} s)")
        core_store.close_all()
    met = (float(seconds) <= VERIFY_SECONDS * args.predictions / 1e6
           and mb < VERIFY_MB and times[0] < PAGE_SECONDS and problems == "0")
    print("targets: " + ("MET" if met else "MISSED"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
