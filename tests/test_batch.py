"""Batch scoring: `python -m core score-batch` on a file with valid and invalid rows, and the
chunked path giving the same counts."""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import store_oracle as oracle
from conftest import run_core
from threadpoolctl import threadpool_info

import core
from core import store as core_store
from core.batch import score_batch
from core.config import get_settings
from core.store import Store
from core.verification import verify_audit

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "sample_patients.csv"

# (change to a valid sample row, the field its error must name)
INVALID = [
    ({"patient_ref": "BAD-K", "potassium": "abc"}, "potassium"),
    ({"patient_ref": "BAD-SEX", "sex": "unknown"}, "sex"),
    ({"patient_ref": "BAD-EGFR", "egfr": "500"}, "egfr"),
    ({"patient_ref": "BAD-AGE", "age": ""}, "age"),
    ({"patient_ref": "bad ref"}, "patient_ref"),
]


@pytest.fixture
def mixed_csv(tmp_path: Path) -> tuple[Path, pd.DataFrame, dict[int, str]]:
    """The sample patients, one invalid row in the middle and the others appended.

    Returns the file, its rows as text, and {1-based row number: field its error names}."""
    samples = pd.read_csv(SAMPLES, dtype=str, keep_default_na=False)
    template = samples.iloc[0].to_dict()
    bad = [{**template, **change} for change, _ in INVALID]
    frame = pd.concat([samples.iloc[:150], pd.DataFrame(bad[:1]), samples.iloc[150:],
                       pd.DataFrame(bad[1:])], ignore_index=True)
    path = tmp_path / "patients.csv"
    frame.to_csv(path, index=False)
    rows = {151: INVALID[0][1]}
    rows.update({len(samples) + 1 + i: field for i, (_, field) in enumerate(INVALID[1:], start=1)})
    return path, frame, rows


def test_score_batch_command(any_store: Store, mixed_csv, tmp_path: Path):
    path, frame, invalid_rows = mixed_csv
    out = tmp_path / "scored.csv"
    run = run_core("score-batch", "--input", str(path), "--output", str(out),
                   "--user", "batch.tester", "--quiet")
    assert run.returncode == 0, run.stderr
    n, n_bad = len(frame), len(invalid_rows)
    assert f"{n} rows: {n - n_bad} scored" in run.stdout
    assert f"{n_bad} rejected" in run.stdout

    result = pd.read_csv(out, dtype={"patient_ref": str}, keep_default_na=False)
    assert list(result["row"]) == list(range(1, n + 1))  # one row per input row, in order
    assert list(result["patient_ref"]) == list(frame["patient_ref"])
    rejected = result[result["status"] == "rejected"]
    assert dict(zip(rejected["row"], rejected["errors"], strict=True)).keys() == invalid_rows.keys()
    for row, errors in zip(rejected["row"], rejected["errors"], strict=True):
        assert errors.startswith(f"{invalid_rows[row]}: "), errors
    scored = result[result["status"] == "scored"]
    assert len(scored) == n - n_bad
    assert scored["prediction_id"].is_unique

    store = core_store.open_store(get_settings().db)
    assert store.count("predictions") == n - n_bad
    assert store.count("rejected_inputs") == n_bad
    kinds = oracle.sql(store, "SELECT kind, count(*) FROM audit_log GROUP BY kind")
    assert dict(kinds) == {"prediction": n - n_bad, "rejected_input": n_bad,
                           "configuration_change": 1}  # the command records its settings first
    sources = oracle.sql(store, "SELECT source, user_name, count(*) FROM predictions "
                                "GROUP BY source, user_name")
    assert sources == [("batch", "batch.tester", n - n_bad)]
    ids = {r[0] for r in oracle.sql(store, "SELECT prediction_id FROM predictions")}
    assert ids == set(scored["prediction_id"])
    recorded = oracle.rows(store, "rejected_inputs")
    assert set(recorded["source"]) == {"batch"}
    assert sorted(json.loads(f)[0]["field"] for f in recorded["fields_json"]) == sorted(
        invalid_rows.values())

    # Each scored row says what single scoring says for the same row.
    inputs = frame.to_dict("records")
    for row, risk, routing in zip(scored["row"], scored["risk"].astype(float), scored["routing"],
                                  strict=True):
        single = core.score(inputs[row - 1], user="dr.test", source="form")
        assert (single.risk, single.routing) == (risk, routing), row


def test_chunked_batch_counts_add_up(any_store: Store, mixed_csv, tmp_path: Path, monkeypatch):
    path, frame, invalid_rows = mixed_csv
    monkeypatch.setenv("APP_BATCH_CHUNK_ROWS", "50")
    out = tmp_path / "scored.csv"
    path.chmod(0o640)
    counts = score_batch(path, out, user="batch.tester", progress=False)
    n, n_bad = len(frame), len(invalid_rows)
    assert out.stat().st_mode & 0o777 == 0o640  # the same patients: as readable as the input
    assert not list(tmp_path.glob(".*partial"))
    assert counts["rows"] == n
    assert counts["rejected"] == n_bad
    assert counts["scored"] == n - n_bad
    result = pd.read_csv(out, keep_default_na=False)
    assert list(result["row"]) == list(range(1, n + 1))
    assert counts["review"] == int((result["routing"] == "review").sum())
    assert any_store.count("predictions") == n - n_bad
    assert any_store.count("rejected_inputs") == n_bad
    entries = oracle.rows(any_store, "audit_log")
    assert list(entries["seq"]) == list(range(1, n + 1))
    assert list(entries["prev_hash"].iloc[1:]) == list(entries["entry_hash"].iloc[:-1])


def _sample_lines() -> list[str]:
    return SAMPLES.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize(("content", "fields", "message"), [
    (b"patient_ref,age\nSYN-1,70\nSYN-2\xff,71\n", ["input file"], "is not UTF-8 text (line 3)"),
    (b"", ["input file"], "is empty"),
    (None, ["input file"], "does not exist"),
])
def test_unreadable_file_is_refused_before_anything_is_recorded(
        any_store: Store, tmp_path: Path, content, fields, message):
    path, out = tmp_path / "patients.csv", tmp_path / "scored.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(core.InvalidInput) as caught:
        score_batch(path, out, user="batch.tester", progress=False)
    assert [e["field"] for e in caught.value.errors] == fields
    assert caught.value.errors[0]["message"].startswith(message)
    assert not out.exists()
    assert any_store.count("predictions") == any_store.count("rejected_inputs") == 0
    assert gc.isenabled()  # the collector is back on after a refused file


def test_header_that_does_not_fit_the_model_is_refused_and_recorded(any_store: Store,
                                                                     tmp_path: Path):
    lines = _sample_lines()
    header = lines[0].split(",")
    renamed = ["eGFR" if c == "egfr" else c for c in header if c != "sex"] + ["age"]
    path, out = tmp_path / "patients.csv", tmp_path / "scored.csv"
    path.write_text("\n".join([",".join(renamed), *lines[1:4]]) + "\n", encoding="utf-8")
    with pytest.raises(core.InvalidInput) as caught:
        score_batch(path, out, user="batch.tester", progress=False)
    problems = {e["field"]: e["message"] for e in caught.value.errors}
    assert problems == {"sex": "is a required column; the file has no such column",
                        "egfr": "is a required column; the file has no such column",
                        "eGFR": "is not an input of this model (unknown column)",
                        "age": "appears more than once in the header"}
    assert not out.exists()
    assert any_store.count("predictions") == 0
    recorded = oracle.rows(any_store, "rejected_inputs")  # the refusal is on record, once for the whole file
    assert len(recorded) == 1 and list(recorded["source"]) == ["batch"]
    fields = {f["field"] for f in json.loads(recorded["fields_json"].iloc[0])}
    assert fields == {"sex", "egfr", "age", "(unknown field)"}  # a heading the model lacks: no name


def test_misaligned_rows_are_rejected_and_the_rest_scored(any_store: Store, tmp_path: Path):
    lines = _sample_lines()
    columns = len(lines[0].split(","))
    rows = [lines[1], lines[2] + ",1,2", ",".join(lines[3].split(",")[:5]), lines[4]]
    path, out = tmp_path / "patients.csv", tmp_path / "scored.csv"
    path.write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
    counts = score_batch(path, out, user="batch.tester", progress=False)
    assert (counts["scored"], counts["rejected"]) == (2, 2)
    result = pd.read_csv(out, keep_default_na=False)
    assert list(result["status"]) == ["scored", "rejected", "rejected", "scored"]
    assert list(result["errors"].iloc[1:3]) == [
        f"(row): has {columns + 2} values but the header has {columns} columns",
        f"(row): has 5 values but the header has {columns} columns"]
    assert any_store.count("predictions") == 2
    assert any_store.count("rejected_inputs") == 2


def test_unwritable_output_is_refused_before_scoring(any_store: Store, mixed_csv, tmp_path: Path):
    path = mixed_csv[0]
    for out, message in [(tmp_path / "missing" / "scored.csv", "is in a folder that does not exist"),
                         (path, "is the input file")]:
        with pytest.raises(core.InvalidInput) as caught:
            score_batch(path, out, user="batch.tester", progress=False)
        assert caught.value.errors[0]["field"] == "output file"
        assert caught.value.errors[0]["message"].startswith(message)
    assert any_store.count("predictions") == any_store.count("rejected_inputs") == 0


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_batch_leaves_the_collector_and_blas_threads_as_it_found_them(any_store: Store, mixed_csv,
                                                                      tmp_path: Path):
    path = mixed_csv[0]
    assert gc.isenabled()
    before = _blas_threads()
    score_batch(path, tmp_path / "a.csv", user="batch.tester", progress=False)
    assert gc.isenabled()
    assert _blas_threads() == before
    gc.disable()
    try:
        score_batch(path, tmp_path / "b.csv", user="batch.tester", progress=False)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_command_lists_every_problem_of_a_refused_file(any_store: Store, tmp_path: Path, v1):
    path = tmp_path / "patients.csv"
    path.write_text("patient_ref,age,Egfr\nSYN-1,70,40\n", encoding="utf-8")
    run = run_core("score-batch", "--input", str(path), "--output", str(tmp_path / "scored.csv"),
                   "--user", "batch.tester", "--quiet")
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert lines[0] == "error: invalid input:"
    assert "  Egfr: is not an input of this model (unknown column)" in lines
    missing = {line.split(":")[0].strip() for line in lines
               if line.endswith(": is a required column; the file has no such column")}
    assert missing == {f.name for f in v1.spec.features if f.required} - {"age"}
    assert not (tmp_path / "scored.csv").exists()


def test_failed_commit_leaves_no_output_and_keeps_what_was_recorded(any_store: Store, mixed_csv,
                                                                     tmp_path: Path, monkeypatch):
    # A write failure on the third chunk (a full disk, say): injected, since it cannot be caused
    # on demand here.
    import core.batch as batch

    monkeypatch.setenv("APP_BATCH_CHUNK_ROWS", "50")
    real, calls = batch._commit, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise core.StoreUnavailable("the store did not record the predictions event: disk full")
        real(*args)

    monkeypatch.setattr(batch, "_commit", failing)
    out = tmp_path / "scored.csv"
    with pytest.raises(core.StoreUnavailable):
        score_batch(mixed_csv[0], out, user="batch.tester", progress=False)
    store_files = ["store.duckdb", "store.duckdb.wal"] if get_settings().db_is_file() else []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patients.csv", *store_files]  # no partial output
    assert any_store.count("predictions") == 100  # the two committed chunks stay recorded
    assert gc.isenabled()


def _signal_during_first_commit(monkeypatch, *gaps: float) -> None:
    """SIGTERM to this process while chunk 1 is being committed, once chunk 2 is ready to be
    submitted (its output lines are built; the submit follows without a stop check); a second
    signal `gaps` seconds after the one before. Chunk 1's commit then completes."""
    import core.batch as batch

    real_commit, real_lines = batch._commit, batch._output_rows
    chunk2_ready, commits = threading.Event(), []

    def lines(*args):
        out = real_lines(*args)
        if lines.calls == 1:
            chunk2_ready.set()
        lines.calls += 1
        return out

    lines.calls = 0

    def commit(*args):
        commits.append(1)
        if len(commits) == 1:
            assert chunk2_ready.wait(30)
            for gap in (0.0, *gaps):
                time.sleep(gap)
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)  # the commit under way takes a while yet
        real_commit(*args)

    monkeypatch.setattr(batch, "_output_rows", lines)
    monkeypatch.setattr(batch, "_commit", commit)


def test_stop_signal_ends_the_run_at_a_chunk_boundary(any_store: Store, mixed_csv,
                                                      tmp_path: Path, monkeypatch):
    monkeypatch.setenv("APP_BATCH_CHUNK_ROWS", "50")
    _signal_during_first_commit(monkeypatch)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "scored.csv"
    with pytest.raises(core.BatchStopped) as caught:
        score_batch(mixed_csv[0], out, user="batch.tester", progress=False)
    assert caught.value.signum == signal.SIGTERM
    assert any_store.count("predictions") == 100  # chunk 2 was submitted before; no chunk 3
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
    assert signal.getsignal(signal.SIGTERM) is before and gc.isenabled()


def test_second_stop_signal_exits_at_once_and_writes_nothing_queued(
        any_store: Store, mixed_csv, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("APP_BATCH_CHUNK_ROWS", "50")
    _signal_during_first_commit(monkeypatch, 0.2)  # both while chunk 1 commits; chunk 2 is queued
    out = tmp_path / "scored.csv"
    with pytest.raises(SystemExit) as caught:
        score_batch(mixed_csv[0], out, user="batch.tester", progress=False)
    assert caught.value.code == 128 + signal.SIGTERM
    assert any_store.count("predictions") == 50  # the chunk under way completed; no other
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_output_that_cannot_be_written_fails_clearly_and_leaves_nothing(
        any_store: Store, mixed_csv, tmp_path: Path, monkeypatch):
    import core.batch as batch

    class FullDisk(batch.SafeDictWriter):  # the disk fills up at the first chunk's lines (injected)
        def writerows(self, rows):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setenv("APP_BATCH_CHUNK_ROWS", "50")
    monkeypatch.setattr(batch, "SafeDictWriter", FullDisk)
    out = tmp_path / "scored.csv"
    with pytest.raises(core.CoreError, match="could not be written .*No space left on device"):
        score_batch(mixed_csv[0], out, user="batch.tester", progress=False)
    assert any_store.count("predictions") in (50, 100)  # chunk 1, and chunk 2 if under way
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_stop_signal_ends_the_command_cleanly(any_store: Store, tmp_path: Path):
    samples = pd.read_csv(SAMPLES, dtype=str, keep_default_na=False)
    rows = samples.iloc[[i % len(samples) for i in range(60_000)]].reset_index(drop=True)
    rows["patient_ref"] = [f"STOP-{i:05d}" for i in range(len(rows))]
    path, out = tmp_path / "patients.csv", tmp_path / "scored.csv"
    rows.to_csv(path, index=False)
    core_store.close_all()  # the command opens the store file itself
    env = {**os.environ, "APP_BATCH_CHUNK_ROWS": "1000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "score-batch", "--input", str(path), "--output", str(out),
         "--user", "batch.tester", "--quiet"], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline().startswith("scoring 60000 rows")  # stop requests count from here
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "error: stopped by SIGTERM" in stderr
    assert not out.exists() and not list(tmp_path.glob(".*partial"))  # no output at all
    store = core_store.open_store(get_settings().db)
    assert store.count("predictions") % 1000 == 0  # whole chunks only
    assert store.count("predictions") < len(rows)
    assert verify_audit(store)[0] == []


def test_file_problems_are_named_before_anything_is_recorded(any_store: Store, tmp_path: Path):
    lines = _sample_lines()
    out = tmp_path / "scored.csv"
    cases = {
        "blank-first-line": ("\n" + "\n".join(lines[:3]) + "\n", "input file",
                             "starts with a blank line"),
        "stray-quote": ("\n".join([lines[0], lines[1], '"' + lines[2], lines[3]]) + "\n",
                        "input file", "is not a readable CSV file"),
        "trailing-comma": ("\n".join([lines[0] + ",", *(line + "," for line in lines[1:3])]) + "\n",
                           f"column {len(lines[0].split(',')) + 1}", "has no name in the header"),
    }
    for name, (text, field, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(core.InvalidInput) as caught:
            score_batch(path, out, user="batch.tester", progress=False)
        assert [(e["field"], e["message"][:len(message)]) for e in caught.value.errors] == [
            (field, message)], name
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # a pipe cannot be read twice: refused without being opened
    with pytest.raises(core.InvalidInput) as caught:
        score_batch(fifo, out, user="batch.tester", progress=False)
    assert caught.value.errors[0]["message"].startswith("is a folder, a pipe or a device")
    assert not out.exists()
    assert any_store.count("predictions") == 0
    assert any_store.count("rejected_inputs") == 1  # the header with an unnamed column


def test_output_that_is_a_folder_or_a_link_is_refused(any_store: Store, mixed_csv, tmp_path: Path):
    folder, link = tmp_path / "results", tmp_path / "link.csv"
    folder.mkdir()
    link.symlink_to(tmp_path / "elsewhere.csv")
    for out in (folder, link):
        with pytest.raises(core.InvalidInput) as caught:
            score_batch(mixed_csv[0], out, user="batch.tester", progress=False)
        assert caught.value.errors[0]["message"] == "is a folder, a link or a device; name a file"
    assert any_store.count("predictions") == 0


def test_file_that_grows_while_it_is_scored_gives_no_output(any_store: Store, mixed_csv,
                                                            tmp_path: Path, monkeypatch):
    import core.batch as batch

    path, frame, _ = mixed_csv
    real_scan = batch.scan

    def scan_then_append(p):  # another program appends a row after the first pass (injected)
        found = real_scan(p)
        with open(p, "a", encoding="utf-8") as fh:
            fh.write(_sample_lines()[1] + "\n")
        return found

    monkeypatch.setattr(batch, "scan", scan_then_append)
    out = tmp_path / "scored.csv"
    with pytest.raises(core.InvalidInput) as caught:
        score_batch(path, out, user="batch.tester", progress=False)
    assert caught.value.errors[0]["message"].startswith("changed while it was scored")
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
