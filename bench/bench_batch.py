"""Throughput of batch scoring: 100,000 valid patients through core.batch.score_batch.

Builds the rows by repeating data/sample_patients.csv with small perturbations (every value
stays inside its hard limits) and distinct patient references, writes them to a temporary CSV,
then times score_batch end to end (read, validate, predict, route, record, write the output).
Target: <= 5 s for 100,000 rows on 2 cores.

    .venv/bin/python bench/bench_batch.py [--rows 100000] [--runs 1] [--profile]

--profile adds a cProfile of the first run (top functions by cumulative and by own time).
--runs K scores the same file K times into the same store and prints each time: later runs show
the store's periodic checkpoints (DuckDB moving its write-ahead log into the file), which a
fresh store does not pay yet. The target is judged on the first run.
Uses a temporary store file; the shipped model artefacts are only read.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "sample_patients.csv"
TARGET_SECONDS = 5.0
JITTER_SHARE = 0.02  # of each numeric input's validated range


def default_spec() -> dict:
    models = Path(os.environ.get("APP_MODELS", REPO / "model_artifacts"))
    version = (models / "DEFAULT_VERSION").read_text().strip()
    return json.loads((models / version / "spec.json").read_text())


def make_rows(n: int, seed: int = 20261126) -> pd.DataFrame:
    """n valid rows: sample patients repeated and jittered inside the hard limits."""
    spec = default_spec()
    samples = pd.read_csv(SAMPLES, dtype=str, keep_default_na=False)
    frame = samples.iloc[np.arange(n) % len(samples)].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    for f in spec["features"]:
        if f["type"] not in ("number", "integer") or "validated_min" not in f:
            continue
        name = f["name"]
        spread = JITTER_SHARE * (f["validated_max"] - f["validated_min"])
        blank = frame[name] == ""
        values = pd.to_numeric(frame[name].where(~blank, "nan"))
        values = (values + rng.uniform(-spread, spread, n)).clip(f["hard_min"], f["hard_max"])
        whole = f["type"] == "integer"
        text = values.round(0).astype("Int64").astype(str) if whole else values.round(1).astype(str)
        frame[name] = text.where(~blank, "")
    frame["patient_ref"] = [f"BENCH-{i:06d}" for i in range(n)]
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1, help="batches into the same store")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the first run")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        os.environ["APP_DB"] = str(tmp / "bench.duckdb")
        os.environ.setdefault("APP_MODELS", str(REPO / "model_artifacts"))
        os.environ.setdefault("APP_PATIENT_KEY", "bench-only-patient-key-not-a-secret-0123456789")

        from core import store
        from core.batch import score_batch
        from core.config import get_settings
        from core.serving import active_artefact

        start = time.perf_counter()
        rows = make_rows(args.rows)
        source, output = tmp / "patients.csv", tmp / "scored.csv"
        rows.to_csv(source, index=False)
        made = time.perf_counter() - start

        settings = get_settings()
        active_artefact(store.open_store(settings.db), settings)  # open and load outside the timing
        profiler = cProfile.Profile() if args.profile else None
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        counts = score_batch(source, output, user="bench", progress=False)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - start
        later = []
        for _ in range(args.runs - 1):
            start = time.perf_counter()
            score_batch(source, output, user="bench", progress=False)
            later.append(time.perf_counter() - start)
        recorded = store.open_store(settings.db).count("predictions")
        store.close_all()

    rate = counts["rows"] / elapsed
    met = elapsed <= TARGET_SECONDS * args.rows / 100_000
    print(f"rows: {counts['rows']:,} ({counts['scored']:,} scored, {counts['review']:,} to review, "
          f"{counts['rejected']:,} rejected); predictions recorded: {recorded:,}")
    print(f"input built and written in {made:.2f} s; chunk size {settings.batch_chunk_rows:,}; "
          f"{os.cpu_count()} CPUs")
    print(f"score_batch end to end: {elapsed:.2f} s = {rate:,.0f} rows/s "
          f"({elapsed / counts['rows'] * 1e6:.1f} us/row)")
    print(f"target <= {TARGET_SECONDS:g} s per 100,000 rows: " + ("MET" if met else "MISSED"))
    if later:
        print("the same file again into the same store (holding 1, 2, ... earlier runs): "
              + ", ".join(f"{t:.2f} s" for t in later)
              + f"; mean over all {args.runs} runs {(elapsed + sum(later)) / args.runs:.2f} s")
    if profiler:
        for key in ("cumulative", "tottime"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(key).print_stats(25)
            print(f"\n---- profile by {key} ----")
            print("\n".join(line for line in text.getvalue().splitlines()
                            if line.strip() and not line.startswith(("   Ordered", "   List"))))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
