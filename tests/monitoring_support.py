"""A store with a few weeks of activity: scored synthetic patients, review decisions that mostly
upgrade low-risk predictions (so the override alert fires), and outcomes drawn from the known
data-generating model. Past timestamps come from patching the clock of scoring and review."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import store_oracle as oracle

from core import review, scoring, synthetic
from core.batch import score_batch
from core.config import get_settings
from core.outcomes import record_outcome
from core.store import Store, open_store

WEEKS = 10


def seed_activity(tmp_path: Path, *, patients: int = 420, seed: int = 11) -> Store:
    """Fill the store the settings point at (APP_DB); returns it, still open."""
    store = open_store(get_settings().db)
    now = scoring.now_utc()
    inputs = pd.read_csv(synthetic.write_sample_patients(tmp_path / "seed.csv", n=patients, seed=seed),
                         dtype=str, keep_default_na=False)
    rng = np.random.default_rng(seed)
    codes = get_settings().review_reason_codes
    with pytest.MonkeyPatch.context() as mp:
        for week, rows in enumerate(np.array_split(np.arange(len(inputs)), WEEKS)):
            at = now - timedelta(weeks=WEEKS - week, hours=-2)
            mp.setattr(scoring, "now_utc", lambda at=at: at)
            inputs.iloc[rows].to_csv(tmp_path / "chunk.csv", index=False)
            score_batch(tmp_path / "chunk.csv", tmp_path / "chunk-scored.csv", user="demo-clinician",
                        progress=False)
        queue = store.pending_reviews(limit=10_000)
        for i, row in enumerate(queue.itertuples()):
            if i % 5 == 4:
                continue  # left waiting
            when = min(row.created_at.to_pydatetime() + timedelta(hours=int(rng.integers(1, 72))), now)
            mp.setattr(review, "now_utc", lambda when=when: when)
            low = row.risk_class == "low"
            choice = "override_high" if low and i % 3 else "override_low" if i % 7 == 0 else "agree"
            review.decide({"prediction_id": row.prediction_id, "decision": choice,
                           "reason_code": codes[i % 3], "comment": "" if choice == "agree" else "seen"},
                          user=f"reviewer{i % 2 + 1}", display_name=f"Dr Reviewer {i % 2 + 1}")
    _record_outcomes(store, inputs, rng, now)
    return store


def _record_outcomes(store: Store, inputs: pd.DataFrame, rng, now: datetime) -> None:
    clean = inputs.replace("", np.nan)
    for col in ("age", "weight_kg", "egfr", "potassium", "spironolactone_dose_mg", "lvef", "sbp"):
        clean[col] = pd.to_numeric(clean[col])
    for col in ("diabetes", "loop_diuretic", "potassium_supplement", "nsaid"):
        clean[col] = clean[col] == "yes"
    events = rng.random(len(clean)) < synthetic.true_risk(clean)
    predictions = oracle.sql(store, "SELECT prediction_id, created_at FROM predictions "
                             "ORDER BY audit_seq")
    for (pid, created), event in zip(predictions, events, strict=True):
        if created > now - timedelta(days=43):
            continue  # not past the horizon yet: due later
        record_outcome({"prediction_id": pid, "event": bool(event),
                        "event_date": str(created.date()) if event else None, "source": "seed"},
                       user="demo-clinician", now=now)
