"""A real PostgreSQL server for the tests: initdb and pg_ctl from the installed PostgreSQL (the
Debian package; .ci/run installs it when missing), in a temporary folder, on a free loopback
port, with password authentication. initdb refuses to run as root, so as root the server runs
as the `postgres` OS user (or `nobody`).

Two roles, as RUNBOOK.md sets them up: OWNER owns the schema and runs the migrations; SERVICE
may SELECT and INSERT (and DELETE raw inputs, for the retention purge), nothing else. Each test
gets a database of its own (`new_database`)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

OWNER, OWNER_PASSWORD = "store_owner", "owner-test-only-password"
SERVICE, SERVICE_PASSWORD = "store_service", "service-test-only-password"


def pg_bin() -> Path | None:
    """The folder of initdb and pg_ctl (on PATH, or Debian's versioned folder), or None."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _server_user() -> str | None:
    """The OS user the server runs as when this process is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root with neither a postgres nor a nobody user")


@dataclass
class Server:
    root: Path
    port: int
    user: str | None
    _count: int = 0
    _lock: threading.Lock = threading.Lock()

    def url(self, database: str, *, role: str = SERVICE, password: str | None = None) -> str:
        secret = password if password is not None else (
            OWNER_PASSWORD if role == OWNER else SERVICE_PASSWORD)
        return f"postgresql://{role}:{secret}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, *, database: str = "postgres") -> str:
        """Run SQL as the superuser over the server's socket; its output (psql -At)."""
        return self._run([str(pg_bin() / "psql"), "-h", str(self.root), "-p", str(self.port),
                          "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-At",
                          "-c", statement]).stdout

    def new_database(self) -> str:
        """An empty database owned by OWNER, whose tables SERVICE is granted as RUNBOOK.md says."""
        with self._lock:
            self._count += 1
            name = f"store_{os.getpid()}_{self._count}"
        self.sql(f"CREATE DATABASE {name} OWNER {OWNER}")
        self.sql(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC; "
                 f"GRANT CONNECT ON DATABASE {name} TO {SERVICE}", database=name)
        self.sql(f"ALTER SCHEMA public OWNER TO {OWNER}; "
                 f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; "
                 f"GRANT USAGE ON SCHEMA public TO {SERVICE}; "
                 f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER} IN SCHEMA public "
                 f"GRANT SELECT, INSERT ON TABLES TO {SERVICE}", database=name)
        return name

    def grant_purge(self, database: str) -> None:
        """What the runbook grants after the tables exist: DELETE on the raw inputs only."""
        self.sql(f"GRANT DELETE ON phi_inputs TO {SERVICE}", database=database)

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        if self.user:
            args = ["runuser", "-u", self.user, "--", *args]
        done = subprocess.run(args, capture_output=True, text=True, **kw)
        if done.returncode:
            raise RuntimeError(f"{args[-1] if len(args) < 12 else args}: {done.stderr.strip()}")
        return done

    def halt(self) -> None:
        """Stop the server at once (as a crash or a network cut would look to its clients)."""
        self._run([str(pg_bin() / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                   "-w", "stop"])

    def run(self) -> None:
        self._run([str(pg_bin() / "pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "log"),
                   "-w", "-t", "60", "-o",
                   f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=200 -c shared_buffers=64MB", "start"])

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.halt()
        shutil.rmtree(self.root, ignore_errors=True)


def start(port: int) -> Server:
    """initdb and start a server on 127.0.0.1:`port` (and a socket in its folder)."""
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="pg-test-"))
    if user:
        shutil.chown(root, user)
    root.chmod(0o700)
    server = Server(root=root, port=port, user=user)
    pwfile = root / "pw"
    pwfile.write_text("postgres-test-only\n")
    if user:
        shutil.chown(pwfile, user)
    server._run([str(pg_bin() / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                 "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                 "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
    server.run()
    server.sql(f"CREATE ROLE {OWNER} LOGIN PASSWORD '{OWNER_PASSWORD}'; "
               f"CREATE ROLE {SERVICE} LOGIN PASSWORD '{SERVICE_PASSWORD}'")
    return server
