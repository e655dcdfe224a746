"""The container image's start command, run the way the image runs it, without a container engine.

The files the Dockerfile copies into the image are copied the same way into a temporary folder
(root-owned, modes kept), the model folder is made read-only, and deploy/start.sh runs with the
image's environment as an unprivileged user that owns only a data folder (the image's /data
volume). The checks are what an operator relies on: the app serves, its store lands on the
volume, the model artefacts stay untouched, and a misconfigured service refuses to start.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from proxy_support import stop_group

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
TEST_PATIENT_KEY = "container-test-patient-key-0123456789abcdef"  # 43 characters
START_TIMEOUT_S = 45


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def dockerfile_env() -> dict[str, str]:
    env = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            env.update(pair.split("=", 1) for pair in rest.split())
    return env


def copy_like_dockerfile(root: Path) -> None:
    """Lay out the image's WORKDIR: every COPY of the Dockerfile, relative to `root`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for word, rest in dockerfile_instructions():
        if word != "COPY":
            continue
        *sources, dest = [arg for arg in rest.split() if not arg.startswith("--")]
        for src in sources:
            source = REPO / src
            if source.is_dir():
                shutil.copytree(source, root / dest, ignore=ignore, dirs_exist_ok=True)
            else:
                target = root / dest / source.name if dest.endswith("/") else root / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)


@dataclass
class Image:
    """The image's files on disk, and how to run a command in it as the unprivileged user."""

    root: Path
    models: Path
    run_as: list[str]  # command prefix that drops to the user (empty when not root)
    uid: int
    gid: int
    base_env: dict[str, str]

    def env(self, data: Path, **overrides: str) -> dict[str, str]:
        env = {**self.base_env, "APP_DB": str(data / "app.duckdb"), "APP_MODELS": str(self.models)}
        env.update(overrides)
        return {key: value for key, value in env.items() if value is not None}

    def data_folder(self) -> Path:
        """A folder only the user can write, like the image's /data volume."""
        data = Path(tempfile.mkdtemp(prefix="data-", dir=self.root.parent))
        os.chown(data, self.uid, self.gid)
        return data

    def secret_file(self, value: str) -> Path:
        """A secret as compose mounts it: a file readable by the user only."""
        path = self.root.parent / f"secret-{time.monotonic_ns()}"
        path.write_text(value + "\n")
        os.chown(path, self.uid, self.gid)
        path.chmod(0o400)
        return path

    def run(self, env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.run_as, str(self.root / "deploy" / "start.sh"), *args],
                              cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout)


def _interpreter_env(run_as: list[str], bin_dir: Path) -> dict[str, str]:
    """PATH (and PYTHONPATH) that give the user a `python` with this environment's packages.

    The image has them in its own interpreter; here the test's virtualenv serves. Its interpreter
    may sit in a folder the user cannot enter (a home directory): then a system interpreter of
    the same version runs with the virtualenv's packages on PYTHONPATH."""
    system_path = "/usr/local/bin:/usr/bin:/bin"

    def usable(env: dict[str, str]) -> bool:
        probe = [*run_as, "sh", "-c", 'exec python -c "import streamlit"']
        return subprocess.run(probe, env=env, capture_output=True, timeout=60).returncode == 0

    env = {"PATH": f"{Path(sys.executable).parent}:{system_path}"}
    if usable(env):
        return env
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system_python = shutil.which(name, path=system_path)
    if system_python:
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "python").symlink_to(system_python)
        paths = list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
        env = {"PATH": f"{bin_dir}:{system_path}", "PYTHONPATH": os.pathsep.join(paths)}
        if usable(env):
            return env
        # The packages themselves sit below a folder the user cannot enter (a checkout in a
        # private temporary folder): give the user its own folders of hard links to them.
        linked = [_linked_copy(Path(p), bin_dir.parent / f"site-packages-{i}") for i, p in enumerate(paths)]
        env = {"PATH": f"{bin_dir}:{system_path}", "PYTHONPATH": os.pathsep.join(map(str, linked))}
        if usable(env):
            return env
    pytest.fail(f"no Python {sys.version_info.major}.{sys.version_info.minor} with this "
                f"environment's packages that an unprivileged user can run")


def _linked_copy(source: Path, target: Path) -> Path:
    """A tree of new folders holding hard links to source's files (a plain copy across devices)."""
    try:
        shutil.copytree(source, target, copy_function=os.link, symlinks=True)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, symlinks=True)
    for folder in [target, *(p for p in target.rglob("*") if p.is_dir() and not p.is_symlink())]:
        folder.chmod(0o755)
    return target


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    # An image is built with the usual umask 022; a store opened earlier in this test process
    # made it 077 (files the service writes are its own), which would hide the copy from the user.
    umask = os.umask(0o022)
    base = Path(tempfile.mkdtemp(prefix="image-"))
    base.chmod(0o755)
    root = base / "app"
    root.mkdir()
    try:
        copy_like_dockerfile(root)
        models = root / "model_artifacts"
        for path in [models, *models.rglob("*")]:  # RUN chmod -R a-w model_artifacts
            path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            uid, gid = user.pw_uid, user.pw_gid
            run_as = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        else:
            uid, gid, run_as = os.geteuid(), os.getegid(), []
        # The user's home is not writable in the container (read-only root file system).
        base_env = {**dockerfile_env(), "HOME": "/nonexistent", "LANG": "C.UTF-8",
                    **_interpreter_env(run_as, base / "bin")}
        yield Image(root=root, models=models, run_as=run_as, uid=uid, gid=gid, base_env=base_env)
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base)
        os.umask(umask)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tree(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
            for p in [folder, *folder.rglob("*")]}


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def _wait_healthy(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"start.sh exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if _get(f"http://127.0.0.1:{port}/_stcore/health") == (200, "ok"):
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    pytest.fail(f"no healthy answer within {START_TIMEOUT_S} s:\n{log.read_text()}")


def _uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1))


@pytest.mark.slow
def test_start_serves_app_as_unprivileged_user_with_read_only_models(image: Image) -> None:
    data = image.data_folder()
    port = _free_port()
    key_file = image.secret_file(TEST_PATIENT_KEY)
    env = image.env(data, APP_PATIENT_KEY_FILE=str(key_file), STREAMLIT_SERVER_ADDRESS="127.0.0.1",
                    STREAMLIT_SERVER_PORT=str(port))
    models_before = _tree(image.models)
    log = data.parent / f"server-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*image.run_as, str(image.root / "deploy" / "start.sh")],
                                cwd=image.root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_healthy(port, proc, log)
        assert _uid_of(proc.pid) == image.uid
        assert image.uid != 0

        status, html = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and '<div id="root">' in html and "<title>Streamlit</title>" in html

        # The image's HEALTHCHECK, run as the image runs it: the app's user and interpreter.
        healthcheck = subprocess.run([*image.run_as, "python", "deploy/healthcheck.py"],
                                     cwd=image.root, env=env, capture_output=True, timeout=30)
        assert healthcheck.returncode == 0, healthcheck.stderr

        store = data / "app.duckdb"
        assert store.is_file() and store.stat().st_uid == image.uid
        assert _tree(image.models) == models_before
        text = log.read_text()
        default = (image.models / "DEFAULT_VERSION").read_text().strip()  # whichever the repo names
        assert "checks passed: production mode" in text and f"serving model {default}" in text
        assert TEST_PATIENT_KEY not in text
        assert proc.poll() is None, text
    finally:
        stop_group(proc)
    assert _tree(image.models) == models_before


@pytest.mark.parametrize(("overrides", "expected"), [
    pytest.param({}, "APP_PATIENT_KEY is not set", id="no-key"),
    pytest.param({"APP_PATIENT_KEY": "change-me-change-me-change-me-change-me"},
                 "APP_PATIENT_KEY must be at least 32 characters, not a placeholder",
                 id="placeholder-key"),
    pytest.param({"APP_PATIENT_KEY": "too-short"}, "APP_PATIENT_KEY must be at least 32",
                 id="short-key"),
    pytest.param({"APP_PATIENT_KEY": TEST_PATIENT_KEY, "APP_PATIENT_KEY_FILE": "/run/secrets/x"},
                 "both APP_PATIENT_KEY and APP_PATIENT_KEY_FILE are set", id="key-twice"),
    pytest.param({"APP_PATIENT_KEY_FILE": "/nonexistent/app_patient_key"},
                 "APP_PATIENT_KEY_FILE=/nonexistent/app_patient_key is not a file",
                 id="unreadable-key-file"),
])
def test_start_refuses_without_usable_patient_key_outside_demo(
        image: Image, overrides: dict[str, str], expected: str) -> None:
    data = image.data_folder()
    done = image.run(image.env(data, APP_DEMO="0", STREAMLIT_SERVER_PORT=str(_free_port()),
                               **overrides), timeout=30)
    assert done.returncode == 78, (done.stdout, done.stderr)
    assert expected in done.stderr, done.stderr
    for secret in (overrides.get("APP_PATIENT_KEY"), TEST_PATIENT_KEY):
        assert not secret or secret not in done.stdout + done.stderr
    assert "Uvicorn server started" not in done.stdout
    assert not (data / "app.duckdb").exists()


def test_start_runs_admin_commands_with_the_secret_from_its_file(image: Image) -> None:
    data = image.data_folder()
    key_file = image.secret_file(TEST_PATIENT_KEY)
    done = image.run(image.env(data, APP_PATIENT_KEY_FILE=str(key_file)), "python", "-c",
                     "import os; from core.config import get_settings; "
                     "print(get_settings().patient_key_bytes() == os.environb[b'APP_PATIENT_KEY'], "
                     "'APP_PATIENT_KEY_FILE' in os.environ)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]


def test_dockerfile_serves_through_start_script_as_unprivileged_user() -> None:
    steps = dockerfile_instructions()
    words = [word for word, _ in steps]
    args = dict(steps)  # the last of each instruction

    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", args["FROM"]), args["FROM"]
    assert re.fullmatch(r"\d+(:\d+)?", args["USER"]) and not args["USER"].startswith("0")
    assert words.index("USER") > max(i for i, w in enumerate(words) if w in ("RUN", "COPY"))
    assert args["ENTRYPOINT"] == '["/app/deploy/start.sh"]' and "CMD" not in words
    assert "/app/deploy/healthcheck.py" in args["HEALTHCHECK"]
    env = dockerfile_env()
    assert env["APP_DB"] == "/data/app.duckdb" and env["APP_DEMO"] == "0"
    assert "APP_PATIENT_KEY" not in env and "/data" in args["VOLUME"]
    assert os.access(REPO / "deploy" / "start.sh", os.X_OK)
