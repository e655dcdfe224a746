"""Batch scoring of a CSV file: the same validation, routing and recording as single scoring,
vectorised, one transaction per chunk. An invalid row is reported in the output and recorded
as a rejected input; it does not stop the file."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from core.audit import canonical_json
from core.config import get_settings
from core.errors import InvalidInput
from core.features import model_frame
from core.scoring import (
    active_artefact,
    check_not_suspended,
    prediction_events,
    record_rejections,
)
from core.spec import validate_payload
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
    for start in range(0, len(records), chunk):
        part = records[start:start + chunk]
        good, bad = [], []
        for offset, rec in enumerate(part):
            try:
                good.append((start + offset, *validate_payload(artefact.spec, rec)))
            except InvalidInput as exc:
                bad.append((start + offset, rec, exc.errors))
        if good:
            inputs = [(ref, values) for _, ref, values in good]
            pred = artefact.predictor.predict(model_frame([v for _, v in inputs], artefact.spec))
            events = prediction_events(artefact, inputs, pred, user=user, source="batch", key=key)
            store.append("predictions", events)  # committed before anything is written out
            for (row, ref, _), ev in zip(good, events, strict=True):
                r = ev.row
                out_rows.append({"row": row + 1, "status": "scored", "patient_ref": ref,
                                 "prediction_id": r["prediction_id"], "risk": r["risk"],
                                 "risk_class": r["risk_class"], "confidence": r["confidence"],
                                 "routing": r["routing"], "reasons": canonical_json(r["reasons"]),
                                 "model_version": r["model_version"]})
            counts["scored"] += len(events)
            counts["review"] += int(pred.review.sum())
        if bad:
            record_rejections(store, [(rec, errs) for _, rec, errs in bad], user=user,
                              source="batch", model_version=artefact.version)
            for row, rec, errs in bad:
                out_rows.append({"row": row + 1, "status": "rejected",
                                 "patient_ref": str(rec.get("patient_ref", ""))[:64],
                                 "errors": "; ".join(f"{e['field']}: {e['message']}" for e in errs)})
            counts["rejected"] += len(bad)
        bar.update(len(part))
    bar.close()
    out = pd.DataFrame(out_rows, columns=OUTPUT_COLUMNS).sort_values("row")
    out.to_csv(output_csv, index=False)
    return counts
