"""Commands while the service runs: every `python -m core` command that opens the store reaches
the running service through its admin socket (core.admin_channel) and runs there, against the
store the service holds; only the service's OS user and root may use the socket; with no
service (or only a stale socket) a command opens the store itself.

Real processes throughout: the service is a process of its own that holds the store and
listens on its admin socket (tests/admin_support.py), the commands are subprocesses beside it,
and what they did is read from the store once the service has stopped."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import store_oracle as oracle
from admin_support import REPO, as_nobody, can_run_as_nobody, command, service
from browser_support import streamlit_server
from conftest import MODELS, TEST_PATIENT_KEY

from core import admin_channel
from core import store as core_store
from core.clock import now_utc
from core.errors import CoreError
from core.store.files import inspect
from core.verification import verify_audit

SAMPLES = REPO / "data" / "sample_patients.csv"
PASSWORD = "a-long-enough-password"
REVIEW = "review"  # the routing of a prediction sent to a reviewer


def environment(db: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "APP_DB": str(db), "APP_MODELS": str(MODELS),
           "APP_PATIENT_KEY": TEST_PATIENT_KEY, "APP_DEMO": "0"}
    env.pop("APP_BATCH_CHUNK_ROWS", None)
    return {**env, **extra}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "app.duckdb"


def stopped_store(db: Path) -> core_store.Store:
    """The store as the service left it (it has stopped: the file is free)."""
    return core_store.open_store(db)


def held_elsewhere(env: dict[str, str]) -> bool:
    """Whether another process holds the store (this one cannot open it)."""
    done = subprocess.run([sys.executable, "-c", "from core.store import open_store; from core.config "
                           "import get_settings; open_store(get_settings().db)"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode != 0 and "in use by another process" in done.stderr


def patients(path: Path, n: int, *, bad: int = 0) -> Path:
    rows = pd.read_csv(SAMPLES, dtype=str, keep_default_na=False)
    rows = rows.iloc[[i % len(rows) for i in range(n)]].reset_index(drop=True)
    rows["patient_ref"] = [f"ADM-{i:05d}" for i in range(n)]
    if bad:
        rows.loc[:bad - 1, "potassium"] = "abc"
    rows.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_every_command_runs_in_the_service_that_holds_the_store(db: Path, tmp_path: Path):
    env = environment(db, LOGNAME="service.account")  # the service's own OS user name
    caller = {**env, "LOGNAME": "ward.admin"}  # the one who types the commands
    work = tmp_path / "work"  # the caller's working directory: the paths below are relative to it
    work.mkdir()
    patients(work / "patients.csv", 40, bad=1)
    with service(env, tmp_path / "service.log"):
        assert held_elsewhere(env)  # the service holds the store: only its socket reaches it

        def run(*args: str, input: str | None = None, code: int = 0) -> str:
            done = command(*args, env=caller, cwd=work, input=input)
            assert done.returncode == code, f"{args}\n{done.stdout}\n{done.stderr}"
            return done.stdout

        assert run("users", "add", "bob", "--role", "clinician", "--name", "Bob Jones", "--by", "alice",
                   input=PASSWORD + "\n") == "added bob (clinician)\n"
        assert run("users", "add", "carol", "--role", "reviewer", input=PASSWORD + "\n") \
            == "added carol (reviewer)\n"
        assert run("users", "disable", "bob", "--by", "alice") == "disabled bob\n"
        assert run("users", "unlock", "carol", "--by", "alice") == "unlocked carol\n"
        assert "carol" in run("users", "list")
        assert run("models", "activate", "v1", "--by", "alice", "--reason", "validated").startswith("active: v1")
        batch = run("score-batch", "--input", "patients.csv", "--output", "scored.csv", "--quiet")
        scored = pd.read_csv(work / "scored.csv", dtype=str, keep_default_na=False)
        review = int((scored["routing"] == REVIEW).sum())
        assert batch == f"40 rows: 39 scored ({review} to review), 1 rejected; results in {work / 'scored.csv'}\n"
        first = scored.loc[scored["status"] == "scored", "prediction_id"].iloc[0]
        (work / "lab.csv").write_text(f"prediction_id,event,event_date,source\n{first},yes,"
                                      f"{now_utc().date()},ward lab\n")
        assert run("outcomes", "import", "lab.csv", "--user", "lab.import") \
            == f"{work / 'lab.csv'}: 1 rows, 1 recorded, 0 rejected\n"
        assert run("audit", "verify", "--by", "alice").startswith("audit chain intact: ")
        assert run("retention", "purge", "--days", "30", "--by", "alice").endswith(": 0 records\n")
        backup = Path(run("backup", "backups").removeprefix("backup written: ").strip())
        assert backup.parent == work / "backups" and backup.is_file()
        run("users", "add", "dave", "--role", "admin", input="short\n", code=2)  # refused by the service

    store = stopped_store(db)
    users = store.users().set_index("username")
    assert users.loc["bob", "display_name"] == "Bob Jones" and not users.loc["bob", "active"]
    assert users.loc["carol", "active"] and "dave" not in users.index
    changes = oracle.rows(store, "user_events")
    assert list(zip(changes["username"], changes["action"], changes["user_name"], strict=True)) == [
        ("bob", "created", "alice"), ("carol", "created", "ward.admin"), ("bob", "disabled", "alice")]
    activation = oracle.rows(store, "model_activations")
    assert list(zip(activation["version"], activation["user_name"], strict=True)) == [("v1", "alice")]
    predictions = oracle.rows(store, "predictions")
    assert len(predictions) == 39 and set(predictions["user_name"]) == {"ward.admin"}
    assert set(predictions["source"]) == {"batch"} and store.count("rejected_inputs") == 1
    assert set(scored.loc[scored["status"] == "scored", "prediction_id"]) == set(predictions["prediction_id"])
    assert store.current_outcome(first)["user_name"] == "lab.import"
    verification = oracle.rows(store, "audit_verifications")
    assert list(zip(verification["user_name"], verification["intact"], strict=True)) == [("alice", True)]
    assert oracle.rows(store, "retention_purges")["user_name"].tolist() == ["alice"]
    # Who ran each command that changed the store, as the OS knows them: the socket's peer.
    commands = oracle.rows(store, "access_events", action="admin_command")
    assert set(commands["user_name"]) == {"os:root"} and set(commands["source"]) == {"admin socket"}
    assert commands["detail"].tolist() == [f"python -m core {c} (exit 0)" for c in (
        "users add", "users add", "users disable", "users unlock", "models activate", "score-batch",
        "outcomes import", "audit verify", "retention purge")]
    assert [(inspect(backup).deployment_id,)] == oracle.sql(store, "SELECT deployment_id FROM store_identity")
    assert verify_audit(store)[0] == []
    assert not admin_channel.socket_path(db).exists()  # removed at stop


@pytest.mark.slow
@pytest.mark.xdist_group("browser")  # a real server: one at a time, as the browser tests' are
def test_commands_reach_the_one_server_process(tmp_path: Path):
    """`uvicorn serve:app`, the UI and the API: its lifespan listens on the admin socket."""
    db = tmp_path / "store.duckdb"
    env = {**os.environ, "APP_DB": str(db), "APP_MODELS": str(MODELS), "APP_DEMO": "1"}
    env.pop("APP_PATIENT_KEY", None)
    work = tmp_path / "work"
    work.mkdir()
    patients(work / "patients.csv", 20)
    sock = admin_channel.socket_path(db)
    with streamlit_server(db) as url:
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600

        def run(*args: str, input: str | None = None) -> str:
            done = command(*args, env=env, cwd=work, input=input)
            assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
            return done.stdout

        assert run("users", "add", "ward.admin", "--role", "admin", input=PASSWORD + "\n") \
            == "added ward.admin (admin)\n"
        token = run("clients", "add", "lab-system", "--role", "clinician", "--by", "it").splitlines()[-1]
        assert run("models", "activate", "v1", "--by", "it", "--reason", "validated").startswith("active: v1")
        assert run("score-batch", "--input", "patients.csv", "--output", "scored.csv", "--quiet") \
            .startswith("20 rows: 20 scored")
        assert run("audit", "verify").startswith("audit chain intact")
        backup = Path(run("backup", "backups").removeprefix("backup written: ").strip())
        with httpx.Client(base_url=f"{url}/api/v1") as http:  # served all along, by the same process
            assert http.get("/health/ready").status_code == 200
            model = http.get("/model", headers={"Authorization": f"Bearer {token}"})
            assert model.status_code == 200, model.text
    assert not sock.exists()  # removed at shutdown
    assert backup.parent == work / "backups" and backup.is_file()
    store = stopped_store(db)
    assert "ward.admin" in set(store.users()["username"])
    assert store.count("predictions") == 20 and store.count("client_events") == 1
    assert oracle.rows(store, "model_activations")["user_name"].tolist() == ["it"]
    assert oracle.rows(store, "access_events", action="admin_command")["detail"].tolist() == [
        f"python -m core {c} (exit 0)" for c in ("users add", "clients add", "models activate",
                                                 "score-batch", "audit verify")]
    log = (tmp_path / "streamlit.log").read_text()
    assert PASSWORD not in log and token not in log


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A store folder others may pass through (0711), as a deployment's data folder can be: only
    the socket's own mode and its peer check keep another user out."""
    folder = Path(tempfile.mkdtemp(prefix="admin-socket-"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not can_run_as_nobody(), reason="needs root and setpriv to run as user nobody")
def test_another_os_user_is_refused(open_folder: Path, tmp_path: Path):
    db = open_folder / "app.duckdb"
    env = environment(db)
    sock = admin_channel.socket_path(db)
    with service(env, tmp_path / "service.log"):
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600 and sock.stat().st_uid == os.geteuid()
        # The socket's mode keeps user nobody out before the service is even asked.
        plain = command("users", "add", "mallory", "--role", "admin", env=env, input=PASSWORD + "\n",
                        as_user=as_nobody())
        assert plain.returncode == 2, plain.stderr
        assert "is open only to the service's OS user and root" in plain.stderr
        # Passing over file permissions (CAP_DAC_OVERRIDE) reaches the socket, not the service:
        # its peer credentials are not the service's user's, nor root's.
        past_modes = command("users", "add", "mallory", "--role", "admin", env=env,
                             input=PASSWORD + "\n", as_user=as_nobody(dac_override=True))
        assert past_modes.returncode == 2, past_modes.stderr
        assert f"not uid {65534}" in past_modes.stderr and "refused" in past_modes.stderr
        assert "added" not in past_modes.stdout
    store = stopped_store(db)
    assert "mallory" not in set(store.users()["username"])
    denied = oracle.rows(store, "access_events", action="access_denied")
    assert denied["user_name"].tolist() == ["os:nobody"]
    assert denied["source"].tolist() == ["admin socket"]
    assert "uid 65534" in denied["detail"].iloc[0]
    assert oracle.rows(store, "access_events", action="admin_command").empty


def test_stale_socket_is_passed_over_then_replaced(tmp_path: Path):
    # A folder deeper than a socket address can name (108 bytes): reached through its descriptor.
    folder = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5)
    db = folder / "app.duckdb"
    sock = admin_channel.socket_path(db)
    assert len(str(sock)) > 108
    env = environment(db)
    folder.mkdir(parents=True)
    with admin_channel._address(sock) as address:  # a service that was killed leaves its socket
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(address)
        stale.close()
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)

    direct = command("users", "add", "bob", "--role", "clinician", env=env, input=PASSWORD + "\n")
    assert direct.returncode == 0, direct.stderr  # no service answers: the command opened the store
    with service(env, tmp_path / "service.log"):
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
        assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == [sock.name]
        listed = command("users", "list", env=env)
        assert listed.returncode == 0 and "bob" in listed.stdout, listed.stderr
        added = command("users", "add", "carol", "--role", "reviewer", env=env, input=PASSWORD + "\n")
        assert added.returncode == 0, added.stderr
    assert not sock.exists()
    store = stopped_store(db)
    assert set(store.users()["username"]) == {"bob", "carol"}
    ran = oracle.rows(store, "access_events", action="admin_command")["detail"].tolist()
    assert ran == ["python -m core users add (exit 0)"]  # carol's, through the socket; bob's directly


def test_a_file_in_the_sockets_place_stops_the_start(fresh_store):
    sock = admin_channel.socket_path(fresh_store.path)
    sock.write_text("not a socket")
    with pytest.raises(CoreError, match="is not a socket"):
        admin_channel.start()
    assert sock.read_text() == "not a socket"


@pytest.mark.slow
def test_ctrl_c_or_a_lost_caller_stops_a_batch_in_the_service_before_its_next_chunk(db: Path,
                                                                                      tmp_path: Path):
    env = environment(db, APP_BATCH_CHUNK_ROWS="1000")
    work = tmp_path / "work"
    work.mkdir()
    patients(work / "patients.csv", 60_000)
    with service(env, tmp_path / "service.log"):
        def batch(*extra: str) -> subprocess.Popen:
            proc = subprocess.Popen(
                [sys.executable, "-m", "core", "score-batch", "--input", "patients.csv", "--output",
                 "scored.csv", *extra], cwd=work, env={**env, "PYTHONPATH": str(REPO)},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert proc.stderr.readline().startswith("scoring 60000 rows")  # stops count from here
            return proc

        stopped = batch()  # with its progress bar, streamed from the service
        stopped.send_signal(signal.SIGINT)
        _, stderr = stopped.communicate(timeout=60)
        assert stopped.returncode == 128 + signal.SIGINT, stderr
        assert "error: stopped by SIGINT" in stderr
        lost = batch("--quiet")
        lost.kill()  # the caller is gone at once: the service stops the batch too
        lost.wait(timeout=30)
        lost.stdout.close()
        lost.stderr.close()
        verified = command("audit", "verify", env=env)  # runs once the batch has stopped
        assert verified.returncode == 0 and verified.stdout.startswith("audit chain intact"), verified.stderr
    assert not (work / "scored.csv").exists() and not list(work.glob(".*partial"))
    store = stopped_store(db)
    predictions = store.count("predictions")
    assert predictions % 1000 == 0 and predictions < 2 * 60_000 - 2000  # whole chunks, stopped early
    assert verify_audit(store)[0] == []


@pytest.mark.slow
def test_restore_while_the_service_runs(db: Path, tmp_path: Path):
    env = environment(db)
    with service(env, tmp_path / "service.log"):
        def run(*args: str, input: str | None = None) -> str:
            done = command(*args, env=env, cwd=tmp_path, input=input)
            assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
            return done.stdout

        run("users", "add", "bob", "--role", "clinician", input=PASSWORD + "\n")
        backup = Path(run("backup", "backups").removeprefix("backup written: ").strip())
        run("users", "add", "carol", "--role", "clinician", input=PASSWORD + "\n")
        restored = run("restore", str(backup))
        assert restored.startswith(f"restored {backup} to {db}; audit chain intact")
        replaced = Path(restored.splitlines()[1].rsplit(" kept as ", 1)[1])
        # The service goes on, on the restored store: carol came after the backup.
        listed = run("users", "list")
        assert "bob" in listed and "carol" not in listed
        run("users", "add", "dave", "--role", "clinician", input=PASSWORD + "\n")
        assert held_elsewhere(env)
    store = stopped_store(db)
    assert set(store.users()["username"]) == {"bob", "dave"}
    assert verify_audit(store)[0] == []
    assert oracle.rows(store, "access_events", action="admin_command")["detail"].tolist() == [
        "python -m core users add (exit 0)", "python -m core restore (exit 0)",
        "python -m core users add (exit 0)"]
    core_store.close_all()
    kept = core_store.open_file(replaced)
    try:
        assert set(kept.users()["username"]) == {"bob", "carol"}
    finally:
        kept.close()


def test_the_password_is_asked_at_the_callers_terminal(db: Path, tmp_path: Path):
    env = environment(db)
    with service(env, tmp_path / "service.log"):
        primary, secondary = pty.openpty()

        def own_terminal():  # the command's controlling terminal: what getpass prompts on
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        proc = subprocess.Popen([sys.executable, "-m", "core", "users", "add", "erin", "--role", "pi"],
                                cwd=REPO, env=env, stdin=secondary, stdout=secondary, stderr=secondary,
                                start_new_session=True, preexec_fn=own_terminal)
        os.close(secondary)
        seen = b""
        try:
            for prompt in (b"Password: ", b"Repeat password: "):
                seen = _read_until(primary, prompt, seen)
                os.write(primary, PASSWORD.encode() + b"\n")
            seen = _read_until(primary, b"added erin (pi)", seen)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(primary)
        assert PASSWORD.encode() not in seen  # not echoed
    assert PASSWORD not in (tmp_path / "service.log").read_text()
    store = stopped_store(db)
    assert "erin" in set(store.users()["username"])


def _read_until(fd: int, wanted: bytes, seen: bytes, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    start = len(seen)
    while wanted not in seen[start:]:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {wanted!r} in {seen!r}"
        try:
            seen += os.read(fd, 1024)
        except OSError:  # the terminal closed
            break
    assert wanted in seen[start:], seen
    return seen
