"""Batch scoring of a CSV file: the same validation, routing and recording as single scoring,
vectorised, one transaction per chunk. An invalid row is reported in the output and recorded
as a rejected input; it does not stop the file."""

from __future__ import annotations

import csv
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from core.config import get_settings
from core.features import model_frame
from core.scoring import (
    active_artefact,
    check_not_suspended,
    prediction_events,
    record_rejections,
)
from core.spec import validate_many
from core.store import open_store

OUTPUT_COLUMNS = ["row", "status", "prediction_id", "patient_ref", "risk", "risk_class",
                  "confidence", "routing", "reasons", "errors", "model_version"]


def score_batch(input_csv: Path, output_csv: Path, *, user: str, progress: bool = True) -> dict:
    """Score every row of input_csv into output_csv; returns counts."""
    settings = get_settings()
    store = open_store(settings.db)
    check_not_suspended(store)
    artefact = active_artefact(store, settings)
    key = settings.patient_key_bytes()
    with open(input_csv, newline="", encoding="utf-8-sig") as fh:
        records = list(csv.DictReader(fh))  # text as written; validation parses it
    chunk = settings.batch_chunk_rows
    out_rows: list[dict] = []
    counts = {"rows": len(records), "scored": 0, "review": 0, "rejected": 0}
    bar = tqdm(total=len(records), unit="row", disable=not progress, desc="scoring")
    # One writer thread commits chunk k while this thread validates and predicts chunk k+1
    # (DuckDB releases the GIL while it writes). Writes stay in chunk order, so the chain does.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-writer") as writer:
        pending: list[Future] = []
        for start in range(0, len(records), chunk):
            part = records[start:start + chunk]
            valid, invalid = validate_many(artefact.spec, part)
            good = [(start + i, ref, values) for i, ref, values in valid]
            bad = [(start + i, part[i], errors) for i, errors in invalid]
            events = []
            if good:
                inputs = [(ref, values) for _, ref, values in good]
                pred = artefact.predictor.predict(model_frame([v for _, v in inputs], artefact.spec))
                events = prediction_events(artefact, inputs, pred, user=user, source="batch", key=key)
                counts["review"] += int(pred.review.sum())
            pending.append(writer.submit(_commit, store, events, bad, user, artefact.version))
            if len(pending) > 1:
                pending.pop(0).result()  # at most one chunk in flight; a failed commit stops here
            out_rows += _output_rows(good, events, bad)
            counts["scored"] += len(events)
            counts["rejected"] += len(bad)
            bar.update(len(part))
        for future in pending:
            future.result()
    bar.close()
    out_rows.sort(key=lambda r: r["row"])
    with open(output_csv, "w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, fieldnames=OUTPUT_COLUMNS)
        out.writeheader()
        out.writerows(out_rows)
    return counts


def _commit(store, events: list, bad: list, user: str, model_version: str) -> None:
    """Record one chunk: its predictions, then its rejected rows."""
    store.append("predictions", events)
    if bad:
        record_rejections(store, [(rec, errs) for _, rec, errs in bad], user=user,
                          source="batch", model_version=model_version)


def _output_rows(good: list, events: list, bad: list) -> list[dict]:
    """Output lines for one chunk; written to the file only after every chunk committed."""
    out = [{"row": row + 1, "status": "scored", "patient_ref": ref,
            "prediction_id": ev.row["prediction_id"], "risk": ev.row["risk"],
            "risk_class": ev.row["risk_class"], "confidence": ev.row["confidence"],
            "routing": ev.row["routing"], "reasons": ev.row["reasons_json"],
            "model_version": ev.row["model_version"]}
           for (row, ref, _), ev in zip(good, events, strict=True)]
    out += [{"row": row + 1, "status": "rejected", "patient_ref": str(rec.get("patient_ref", ""))[:64],
             "errors": "; ".join(f"{e['field']}: {e['message']}" for e in errs)}
            for row, rec, errs in bad]
    return out
