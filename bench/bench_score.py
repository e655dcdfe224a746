"""Latency of one core.score() call next to the bare model call it wraps.

Prints p50/p99 of core.score() (validate, features, predict, route, record one committed event)
and of the same pipeline's predict_proba on a prebuilt one-row frame, measured in the same run,
and their ratio. Target: score p50 <= 2x bare predict_proba p50.

    .venv/bin/python bench/bench_score.py [--calls 500]

Uses a temporary store file; the shipped model artefacts are only read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 2.0


def typical_payload() -> dict:
    """The default version's typical patient (its statistics' reference values): any model."""
    models = Path(os.environ.get("APP_MODELS", REPO / "model_artifacts"))
    version = (models / "DEFAULT_VERSION").read_text().strip()
    reference = json.loads((models / version / "statistics.json").read_text())["reference"]
    return {"patient_ref": "BENCH-0001", **reference}


PAYLOAD = typical_payload()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn, calls: int) -> list[float]:
    """Milliseconds per call."""
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def stage_breakdown(artefact, store, settings, pipeline, frame, *, calls: int) -> dict[str, float]:
    """p50 milliseconds of each step score() takes, timed one by one."""
    from core.config import get_settings
    from core.features import model_frame
    from core.scoring import record_predictions
    from core.serving import active_artefact
    from core.spec import validate_payload
    from core.store import open_store

    ref, values = validate_payload(artefact.spec, PAYLOAD)
    pred = artefact.predictor.predict(frame)
    key = settings.patient_key_bytes()
    steps = {
        "settings (read from the environment)": get_settings,
        "store and active model look-up": lambda: active_artefact(open_store(settings.db), settings),
        "validate (pydantic input model)": lambda: validate_payload(artefact.spec, PAYLOAD),
        "features (model_frame)": lambda: model_frame([values], artefact.spec),
        "predict (transform, risk, routing, factors)": lambda: artefact.predictor.predict(frame),
        "  of which the preprocessing transform": lambda: pipeline.named_steps["preprocess"]
        .transform(frame),
        "record (one committed event, audit entry)": lambda: record_predictions(
            store, artefact, [(ref, values)], pred, user="bench", source="form", key=key),
    }
    return {name: percentile(timed(fn, calls), 0.5) for name, fn in steps.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        os.environ["APP_DB"] = str(Path(tmp) / "bench.duckdb")
        os.environ.setdefault("APP_MODELS", str(REPO / "model_artifacts"))
        os.environ.setdefault("APP_PATIENT_KEY", "bench-only-patient-key-not-a-secret-0123456789")

        import joblib

        import core
        from core import store
        from core.config import get_settings
        from core.features import model_frame
        from core.serving import active_artefact
        from core.spec import validate_payload

        settings = get_settings()
        artefact = active_artefact(store.open_store(settings.db), settings)
        pipeline = joblib.load(artefact.path / "model.joblib")  # verified by active_artefact
        frame = model_frame([validate_payload(artefact.spec, PAYLOAD)[1]], artefact.spec)

        def bare() -> None:
            pipeline.predict_proba(frame)

        def score() -> None:
            core.score(PAYLOAD, user="bench", source="form")

        timed(bare, args.warmup)
        timed(score, args.warmup)
        # Interleave in blocks so both see the same machine load.
        bare_ms, score_ms = [], []
        block = max(1, args.calls // 10)
        while len(score_ms) < args.calls:
            n = min(block, args.calls - len(score_ms))
            bare_ms += timed(bare, n)
            score_ms += timed(score, n)
        stages = stage_breakdown(artefact, store.open_store(settings.db), settings, pipeline,
                                 frame, calls=max(50, args.calls // 2))
        recorded = store.open_store(settings.db).count("predictions")
        store.close_all()

    b50, b99 = percentile(bare_ms, 0.50), percentile(bare_ms, 0.99)
    s50, s99 = percentile(score_ms, 0.50), percentile(score_ms, 0.99)
    ratio = s50 / b50
    print(f"model {artefact.version}, {args.calls} calls each, {os.cpu_count()} CPUs")
    print(f"{'':<28}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    print(f"{'bare predict_proba (1 row)':<28}{b50:>9.2f}{b99:>9.2f}{statistics.fmean(bare_ms):>9.2f}")
    print(f"{'core.score (recorded)':<28}{s50:>9.2f}{s99:>9.2f}{statistics.fmean(score_ms):>9.2f}")
    print(f"ratio score/bare p50: {ratio:.2f}x (target <= {TARGET_RATIO:g}x): "
          + ("MET" if ratio <= TARGET_RATIO else "MISSED"))
    print(f"predictions recorded: {recorded}")
    print("where score() spends its time (p50 ms per stage, measured separately):")
    for name, ms in stages.items():
        print(f"  {name:<44}{ms:>8.2f}")
    total = sum(ms for name, ms in stages.items() if not name.startswith(" "))
    print(f"  {'sum of the steps':<44}{total:>8.2f}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
