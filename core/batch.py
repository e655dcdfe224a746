"""Batch scoring of a CSV file: the same validation, routing and recording as single scoring,
vectorised, one transaction per chunk. An invalid row is reported in the output and recorded
as a rejected input; it does not stop the file. A file that cannot be read as the model's
input (not UTF-8, not CSV, a wrong header) is refused whole, before any row is scored."""

from __future__ import annotations

import csv
import gc
import itertools
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from core.config import get_settings
from core.errors import InvalidInput
from core.features import model_frame
from core.scoring import (
    active_artefact,
    check_not_suspended,
    prediction_events,
    record_rejections,
)
from core.spec import PATIENT_REF, WHOLE_ROW, Spec, problem, validate_many
from core.store import open_store

OUTPUT_COLUMNS = ["row", "status", "prediction_id", "patient_ref", "risk", "risk_class",
                  "confidence", "routing", "reasons", "errors", "model_version"]
EXTRA = "\0extra"  # DictReader's key for values beyond the header (never a column name)
COLLECT_EVERY_ROWS = 50_000  # young objects are checked for reference cycles this often


def score_batch(input_csv: Path, output_csv: Path, *, user: str, progress: bool = True) -> dict:
    """Score every row of input_csv into output_csv; returns counts.

    InvalidInput (nothing scored) when the file cannot be read or its header does not fit the
    model; a refused header is recorded as one rejected input. The file is read in chunks, so
    memory does not grow with its length. The output appears, whole, only once every row is
    recorded: it is written to a hidden file beside it and renamed at the end."""
    settings = get_settings()
    store = open_store(settings.db)
    check_not_suspended(store)
    artefact = active_artefact(store, settings)
    input_csv, output_csv = Path(input_csv), Path(output_csv)
    _check_output(input_csv, output_csv)
    header, n_rows = _scan(input_csv)
    problems = header_problems(artefact.spec, header)
    if problems:
        record_rejections(store, artefact, [({"file_header": header}, problems)], user=user,
                          source="batch")
        raise InvalidInput(problems)
    counts = {"rows": n_rows, "scored": 0, "review": 0, "rejected": 0}
    partial = tempfile.NamedTemporaryFile("w", dir=output_csv.parent, prefix=".score-batch-",
                                          suffix=".partial", delete=False, newline="", encoding="utf-8")
    try:
        # The output names the same patients as the input: readable by whom the input is.
        os.chmod(partial.name, stat.S_IMODE(input_csv.stat().st_mode) & 0o666)
        with partial, open(input_csv, newline="", encoding="utf-8-sig") as fh, _bulk_mode(), \
                tqdm(total=n_rows, unit="row", disable=not progress, desc="scoring") as bar:
            out = csv.DictWriter(partial, fieldnames=OUTPUT_COLUMNS)
            out.writeheader()
            rows = csv.DictReader(fh, restkey=EXTRA, strict=True)
            for lines, scored, review in _score_rows(rows, header, store, artefact, settings, user):
                out.writerows(lines)
                counts["scored"] += scored
                counts["review"] += review
                counts["rejected"] += len(lines) - scored
                bar.update(len(lines))
        done = counts["scored"] + counts["rejected"]
        if done != n_rows:  # the file changed while it was scored
            raise InvalidInput([problem("input file", f"changed while it was scored ({n_rows} rows "
                                        f"at first, {done} later); the {done} rows read are "
                                        "recorded, but no output is written", str(input_csv))])
        os.replace(partial.name, output_csv)
    except BaseException:
        Path(partial.name).unlink(missing_ok=True)
        raise
    return counts


def _score_rows(rows: Iterator[dict], header: list[str], store, artefact, settings, user: str
                ) -> Iterator[tuple[list[dict], int, int]]:
    """Validate, predict and record the rows chunk by chunk; yield each chunk's output lines,
    scored and review counts once the chunk is committed (a failed commit raises here)."""
    key = settings.patient_key_bytes()
    chunk = settings.batch_chunk_rows
    # One writer thread commits chunk k while this thread validates and predicts chunk k+1
    # (DuckDB releases the GIL while it writes). Writes stay in chunk order, so the chain does.
    # Once anything fails (a commit, writing the output, Ctrl-C), `stop` keeps a queued chunk
    # from being written.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-writer")
    stop = threading.Event()
    try:
        pending: list[tuple[Future, list[dict], int, int]] = []
        previous: Future | None = None
        start = uncollected = 0
        while part := list(itertools.islice(rows, chunk)):
            valid, invalid = _validate_chunk(artefact.spec, part, header)
            good = [(start + i, ref, values) for i, ref, values in valid]
            bad = [(start + i, part[i], errors) for i, errors in invalid]
            events, review = [], 0
            if good:
                inputs = [(ref, values) for _, ref, values in good]
                pred = artefact.predictor.predict(model_frame([v for _, v in inputs], artefact.spec))
                events = prediction_events(artefact, inputs, pred, user=user, source="batch", key=key)
                review = int(pred.review.sum())
            previous = writer.submit(_commit_after, stop, previous, store, artefact, events, bad,
                                     user)
            pending.append((previous, _output_rows(good, events, bad), len(events), review))
            if len(pending) > 1:  # at most one chunk in flight
                done, *result = pending.pop(0)
                done.result()
                yield tuple(result)
            start += len(part)
            uncollected += len(part)
            if uncollected >= COLLECT_EVERY_ROWS:
                gc.collect(1)
                uncollected = 0
        for done, *result in pending:
            done.result()
            yield tuple(result)
    finally:
        stop.set()
        writer.shutdown(wait=True, cancel_futures=True)  # a commit under way completes or rolls back


@contextmanager
def _bulk_mode() -> Iterator[None]:
    """While a file is scored: automatic garbage collection off and BLAS on one thread; both as
    they were before afterwards.

    Scoring allocates millions of small objects, and the automatic collector would walk them
    again and again (a third of the run time). Reference counting still frees nearly everything;
    the loop collects the young generations every COLLECT_EVERY_ROWS rows, so the few reference
    cycles (pandas frames) cannot pile up. The matrices are a chunk of rows by a few dozen
    columns: BLAS threads gain nothing there, and while idle they spin on the cores that the
    writer thread and DuckDB need."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        if enabled:
            gc.enable()


def _check_output(input_csv: Path, output_csv: Path) -> None:
    """Refuse, before scoring, an output that could not be written or would overwrite the input."""
    folder = output_csv.parent
    if output_csv.resolve() == input_csv.resolve():
        reason = "is the input file; choose another name"
    elif output_csv.is_symlink() or (output_csv.exists() and not output_csv.is_file()):
        reason = "is a folder, a link or a device; name a file"
    elif not folder.is_dir():
        reason = f"is in a folder that does not exist ({folder})"
    elif not os.access(folder, os.W_OK) or (output_csv.exists() and not os.access(output_csv, os.W_OK)):
        reason = "cannot be written (permission denied)"
    else:
        return
    raise InvalidInput([problem("output file", reason, str(output_csv))])


def _scan(path: Path) -> tuple[list[str], int]:
    """A first pass over the file: its header and number of rows (blank lines are not rows).

    Reading it whole before scoring means a file that is not UTF-8 CSV is refused before any of
    its rows is recorded; InvalidInput names the problem. A pipe or device cannot be read twice,
    so only a regular file is accepted."""
    try:
        if path.exists() and not path.is_file():
            raise IsADirectoryError
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            n_rows = sum(1 for row in reader if row)
    except FileNotFoundError:
        reason = "does not exist"
    except IsADirectoryError:
        reason = "is a folder, a pipe or a device; save the rows to a file first"
    except PermissionError:
        reason = "cannot be read (permission denied)"
    except UnicodeDecodeError:
        reason = (f"is not UTF-8 text (line {_first_undecodable_line(path)}); "
                  "save it as 'CSV UTF-8'")
    except csv.Error as exc:
        reason = (f"is not a readable CSV file (line {reader.line_num}: {exc}; a quote that is "
                  "opened and never closed, perhaps)")
    else:
        if header is None:
            reason = "is empty (no header row)"
        elif not header:
            reason = "starts with a blank line; the first line must be the header row"
        else:
            return header, n_rows
    raise InvalidInput([problem("input file", reason, str(path))])


def _first_undecodable_line(path: Path) -> int:
    """The number of the first line that is not UTF-8 (a newline byte never occurs inside a
    UTF-8 character, so line by line is exact)."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def header_problems(spec: Spec, header: list[str]) -> list[dict]:
    """What keeps a file's columns from being the model's inputs: missing required columns,
    unknown columns (often a misspelling) and repeated ones. Empty when the header fits."""
    known = {PATIENT_REF, *spec.names}
    required = [PATIENT_REF, *(f.name for f in spec.features if f.required)]
    problems = [problem(name, "is a required column; the file has no such column", "")
                for name in required if name not in header]
    seen: set[str] = set()
    for position, name in enumerate(header, start=1):
        if not name.strip():
            problems.append(problem(f"column {position}", "has no name in the header (a comma too "
                                    "many at the end of the header line, perhaps)", ""))
        elif name in seen:
            problems.append(problem(name, "appears more than once in the header", ""))
        elif name not in known:
            problems.append(problem(name, "is not an input of this model (unknown column)", ""))
        seen.add(name)
    return problems


def _validate_chunk(spec: Spec, part: list[dict], header: list[str]
                    ) -> tuple[list[tuple[int, str, dict]], list[tuple[int, list[dict]]]]:
    """validate_many for rows of a file; a misaligned row is refused before its values are read."""
    misaligned = {i: errs for i, rec in enumerate(part) if (errs := _shape_errors(rec, header))}
    if not misaligned:
        return validate_many(spec, part)
    keep = [i for i in range(len(part)) if i not in misaligned]
    valid, invalid = validate_many(spec, [part[i] for i in keep])
    invalid = sorted([(keep[i], errs) for i, errs in invalid] + list(misaligned.items()))
    return [(keep[i], ref, values) for i, ref, values in valid], invalid


def _shape_errors(record: dict, header: list[str]) -> list[dict]:
    """A row with more or fewer values than the header is misaligned: refused, never guessed."""
    if EXTRA in record:
        n = len(header) + len(record[EXTRA])
    elif None in record.values():
        n = sum(v is not None for v in record.values())
    else:
        return []
    return [problem(WHOLE_ROW, f"has {n} values but the header has {len(header)} columns", "")]


def _commit_after(stop: threading.Event, previous: Future | None, *chunk) -> None:
    """Commit a chunk once the one before it is recorded; after any failure, write nothing."""
    if previous is not None:
        previous.result()
    if stop.is_set():
        raise CancelledError("the batch stopped before this chunk was recorded")
    _commit(*chunk)


def _commit(store, artefact, events: list, bad: list, user: str) -> None:
    """Record one chunk: its predictions, then its rejected rows."""
    store.append("predictions", events)
    if bad:
        record_rejections(store, artefact, [(rec, errs) for _, rec, errs in bad], user=user,
                          source="batch")


def _output_rows(good: list, events: list, bad: list) -> list[dict]:
    """Output lines for one chunk, in file order; written once the chunk is committed."""
    out = [{"row": row + 1, "status": "scored", "patient_ref": ref,
            "prediction_id": ev.row["prediction_id"], "risk": ev.row["risk"],
            "risk_class": ev.row["risk_class"], "confidence": ev.row["confidence"],
            "routing": ev.row["routing"], "reasons": ev.row["reasons_json"],
            "model_version": ev.row["model_version"]}
           for (row, ref, _), ev in zip(good, events, strict=True)]
    out += [{"row": row + 1, "status": "rejected", "patient_ref": str(rec.get("patient_ref", ""))[:64],
             "errors": "; ".join(f"{e['field']}: {e['message']}" for e in errs)}
            for row, rec, errs in bad]
    return sorted(out, key=lambda line: line["row"]) if bad else out
