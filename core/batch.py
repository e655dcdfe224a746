"""Batch scoring of a CSV file: the same validation, routing and recording as single scoring,
vectorised and committed chunk by chunk. An invalid row is reported in the output and recorded
as a rejected input; it does not stop the file. A file that cannot be read as the model's
input (not UTF-8, not CSV, a wrong header) is refused whole, before any row is scored (the
checks are in core.batch_files)."""

from __future__ import annotations

import csv
import gc
import itertools
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from core.batch_files import (
    EXTRA,
    changed,
    check_output,
    copy_mode,
    header_problems,
    scan,
    shape_errors,
)
from core.config import get_settings
from core.errors import BatchStopped, CoreError, InvalidInput
from core.exports import SafeDictWriter
from core.features import model_frame
from core.scoring import Source, check_source, prediction_events, record_rejections
from core.serving import active_artefact
from core.spec import Spec, validate_many
from core.stop_switch import check_not_suspended
from core.store import open_store

OUTPUT_COLUMNS = ["row", "status", "prediction_id", "patient_ref", "risk", "risk_class",
                  "confidence", "routing", "reasons", "errors", "model_version"]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, stop, closed terminal
COLLECT_EVERY_ROWS = 50_000  # young objects are checked for reference cycles this often
# Stop requests a caller passes in (signal numbers), for a run in a thread of a serving process,
# where signals never arrive: see stop_requests_from.
_GIVEN_STOPS: ContextVar[list[int] | None] = ContextVar("batch_stop_requests", default=None)


def score_batch(input_csv: Path, output_csv: Path, *, user: str, progress: bool = True,
                on_start: Callable[[int], None] | None = None, source: Source = "batch") -> dict:
    """Score every row of input_csv into output_csv; returns counts.

    InvalidInput (nothing scored) when the file cannot be read or its header does not fit the
    model; a refused header is recorded as one rejected input. The file is read in chunks, so
    memory does not grow with its length. The output appears, whole, only once every row is
    recorded: it is written to a hidden file beside it and renamed at the end. BatchStopped when
    Ctrl-C or a stop signal ends the run between two chunks. `source`: "batch" for a file given
    to the command, "api" for one uploaded to the API (core.scoring.SOURCES)."""
    check_source(source)
    settings = get_settings()
    store = open_store(settings.db)
    check_not_suspended(store)
    artefact = active_artefact(store, settings)
    input_csv, output_csv = Path(input_csv), Path(output_csv)
    check_output(input_csv, output_csv)
    with _stop_requests() as stop_requests:
        header, n_rows = scan(input_csv)
        problems = header_problems(artefact.spec, header)
        if problems:
            record_rejections(store, artefact, [({"file_header": header}, problems)], user=user,
                              source=source)
            raise InvalidInput(problems)
        counts = {"rows": n_rows, "scored": 0, "review": 0, "rejected": 0}
        if on_start is not None:  # the file is accepted and a stop request is now honoured
            on_start(n_rows)
        partial = None
        try:
            partial = tempfile.NamedTemporaryFile(
                "w", dir=output_csv.parent, prefix=".score-batch-", suffix=".partial", delete=False,
                newline="", encoding="utf-8")
            copy_mode(input_csv, partial.name)
            with partial, open(input_csv, newline="", encoding="utf-8-sig") as fh, _bulk_mode(), \
                    tqdm(total=n_rows, unit="row", disable=not progress, desc="scoring") as bar:
                out = SafeDictWriter(partial, fieldnames=OUTPUT_COLUMNS)
                out.writeheader()
                rows = csv.DictReader(fh, restkey=EXTRA, strict=True)
                if rows.fieldnames != header:
                    raise changed(input_csv, "its header is not the one checked")
                for lines, scored, review in _score_rows(rows, header, store, artefact, settings,
                                                         user, source, stop_requests):
                    out.writerows(lines)
                    counts["scored"] += scored
                    counts["review"] += review
                    counts["rejected"] += len(lines) - scored
                    bar.update(len(lines))
                partial.flush()
                os.fsync(partial.fileno())  # on disk before it takes the output's name
            done = counts["scored"] + counts["rejected"]
            if done != n_rows:
                raise changed(input_csv, f"{n_rows} rows at first, {done} later")
            os.replace(partial.name, output_csv)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise changed(input_csv, str(exc)) from exc
        except OSError as exc:
            if exc.filename == str(input_csv):  # removed or locked between the two passes
                raise changed(input_csv, exc.strerror or str(exc)) from exc
            raise CoreError(f"the output file {output_csv} could not be written ({exc}); the rows "
                            "scored before it are recorded") from exc
        finally:
            if partial is not None:
                Path(partial.name).unlink(missing_ok=True)  # gone once renamed
    return counts


@contextmanager
def stop_requests_from(requests: list[int]) -> Iterator[None]:
    """Within the context, a score_batch in this thread stops before its next chunk once
    `requests` holds a signal number, appended by another thread (the admin socket's caller
    pressed Ctrl-C, or went away); no signal handler is installed."""
    token = _GIVEN_STOPS.set(requests)
    try:
        yield
    finally:
        _GIVEN_STOPS.reset(token)


@contextmanager
def _stop_requests() -> Iterator[list[int]]:
    """Ctrl-C, a stop signal or a closed terminal asks the run to stop before its next chunk;
    the signals received are listed in what this yields. An exception raised at an arbitrary
    moment could land inside a library that swallows it, so the first request only sets this
    flag; a second one exits at once. Signals reach only the main thread; elsewhere, nothing
    is installed."""
    given = _GIVEN_STOPS.get()
    if given is not None:
        yield given
        return
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def request(signum, frame):
        if received:
            raise SystemExit(128 + signum)
        received.append(signum)

    previous = {s: signal.signal(s, request) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def _score_rows(rows: Iterator[dict], header: list[str], store, artefact, settings, user: str,
                source: str, stop_requests: list[int]) -> Iterator[tuple[list[dict], int, int]]:
    """Validate, predict and record the rows chunk by chunk; yield each chunk's output lines,
    scored and review counts once the chunk is committed (a failed commit raises here).
    BatchStopped before a new chunk once a stop was requested."""
    key = settings.patient_key_bytes()
    chunk = settings.batch_chunk_rows
    # One writer thread commits chunk k while this thread validates and predicts chunk k+1
    # (DuckDB releases the GIL while it writes). Writes stay in chunk order, so the chain does.
    # Once anything fails (a commit, writing the output, Ctrl-C), `stop` keeps a queued chunk
    # from being written.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-writer")
    stop = threading.Event()
    try:
        in_flight: tuple[Future, list[dict], int, int] | None = None  # at most one chunk
        start = uncollected = 0
        while part := list(itertools.islice(rows, chunk)):
            if stop_requests:
                raise BatchStopped(stop_requests[0])
            valid, invalid = _validate_chunk(artefact.spec, part, header)
            good = [(start + i, ref, values) for i, ref, values in valid]
            bad = [(start + i, part[i], errors) for i, errors in invalid]
            events, review = [], 0
            if good:
                inputs = [(ref, values) for _, ref, values in good]
                pred = artefact.predictor.predict(model_frame([v for _, v in inputs], artefact.spec))
                events = prediction_events(artefact, inputs, pred, user=user, source=source, key=key)
                review = int(pred.review.sum())
            lines = _output_rows(good, events, bad)
            future = writer.submit(_commit_after, stop, in_flight and in_flight[0], store, artefact,
                                   events, bad, user, source)
            if in_flight:
                yield _once_committed(in_flight)
            in_flight = (future, lines, len(events), review)
            start += len(part)
            uncollected += len(part)
            if uncollected >= COLLECT_EVERY_ROWS:
                gc.collect(1)
                uncollected = 0
        if in_flight:
            yield _once_committed(in_flight)
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


def _validate_chunk(spec: Spec, part: list[dict], header: list[str]
                    ) -> tuple[list[tuple[int, str, dict]], list[tuple[int, list[dict]]]]:
    """validate_many for rows of a file; a misaligned row is refused before its values are read."""
    misaligned = {i: errs for i, rec in enumerate(part) if (errs := shape_errors(rec, header))}
    if not misaligned:
        return validate_many(spec, part)
    keep = [i for i in range(len(part)) if i not in misaligned]
    valid, invalid = validate_many(spec, [part[i] for i in keep])
    invalid = sorted([(keep[i], errs) for i, errs in invalid] + list(misaligned.items()))
    return [(keep[i], ref, values) for i, ref, values in valid], invalid


def _once_committed(chunk: tuple[Future, list[dict], int, int]) -> tuple[list[dict], int, int]:
    """A chunk's output lines and counts, once its commit succeeded (a failure raises here)."""
    chunk[0].result()
    return chunk[1:]


def _commit_after(stop: threading.Event, previous: Future | None, *chunk) -> None:
    """Commit a chunk once the one before it is recorded; after any failure, write nothing."""
    if previous is not None:
        previous.result()
    if stop.is_set():
        raise CancelledError("the batch stopped before this chunk was recorded")
    _commit(*chunk)


def _commit(store, artefact, events: list, bad: list, user: str, source: str) -> None:
    """Record one chunk: its predictions, then its rejected rows."""
    store.append(events, precondition=lambda: check_not_suspended(store, fresh=True))
    if bad:
        record_rejections(store, artefact, [(rec, errs) for _, rec, errs in bad], user=user,
                          source=source)


def _output_rows(good: list, events: list, bad: list) -> list[dict]:
    """Output lines for one chunk, in file order; written once the chunk is committed."""
    out = [{"row": row + 1, "status": "scored", "patient_ref": ref,
            "prediction_id": ev.record.prediction_id, "risk": ev.record.risk,
            "risk_class": ev.record.risk_class, "confidence": ev.record.confidence,
            "routing": ev.record.routing, "reasons": ev.record.reasons_json,
            "model_version": ev.record.model_version}
           for (row, ref, _), ev in zip(good, events, strict=True)]
    out += [{"row": row + 1, "status": "rejected", "patient_ref": str(rec.get("patient_ref", ""))[:64],
             "errors": "; ".join(f"{e['field']}: {e['message']}" for e in errs)}
            for row, rec, errs in bad]
    return sorted(out, key=lambda line: line["row"]) if bad else out
