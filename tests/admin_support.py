"""A running service holding a store, for the admin socket's tests: a process of its own that
opens the store and listens on its admin socket as the service's lifespan does
(core.admin_channel.start), and `python -m core` commands run beside it as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core import store as core_store

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534

SERVICE = """
import sys

from argon2 import PasswordHasher

from core import admin_channel, auth
from core.config import get_settings

# Cheaper argon2id parameters, as the suite's fixtures use: the same behaviour, a faster suite.
auth._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
channel = admin_channel.start(get_settings())
print("serving", flush=True)
sys.stdin.read()  # until the test closes it
channel.stop()
print("stopped", flush=True)
"""


@contextmanager
def service(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """The service, holding the store of `env`'s APP_DB and answering on its admin socket until
    the context ends (then it stops as it does at shutdown); its log in `log`."""
    core_store.close_all()
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", SERVICE], cwd=REPO, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        ready = proc.stdout.readline().strip()
        assert ready == "serving", log.read_text()
        yield proc
        proc.stdin.close()
        assert proc.stdout.readline().strip() == "stopped", log.read_text()
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()


def command(*args: str, env: dict[str, str], cwd: Path = REPO, input: str | None = None,
            as_user: list[str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m core ARGS` run from `cwd`, output captured as text; `as_user`: the command
    that runs it as another OS user (e.g. setpriv's)."""
    return subprocess.run([*(as_user or []), sys.executable, "-m", "core", *args], cwd=cwd,
                          env={**env, "PYTHONPATH": str(REPO)}, input=input, capture_output=True,
                          text=True, timeout=timeout)


def as_nobody(*, dac_override: bool = False) -> list[str]:
    """setpriv's command line for user nobody. It keeps CAP_DAC_READ_SEARCH, so it can read the
    code in a private checkout (a clean clone in a 0700 folder) yet write nothing, and so open
    no 0600 socket; `dac_override`: also the capability that passes over every file permission
    (such a process reaches a 0600 socket, not its credentials)."""
    caps = "+dac_read_search,+dac_override" if dac_override else "+dac_read_search"
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            f"--inh-caps={caps}", f"--ambient-caps={caps}"]


def can_run_as_nobody() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        done = subprocess.run([*as_nobody(), sys.executable, "-c", "import core"],
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
