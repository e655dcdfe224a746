"""The running service's admin socket: a `python -m core` command that opens the store runs
inside the service that holds it (DuckDB lets one process open the file), and opens the store
itself when no service holds it.

The service (`start(settings)` in its lifespan, `Channel.stop()` at its end) listens on a Unix
socket beside the store, `.<store file name>.admin.sock`. The socket is bound inside a private
(0700) folder, made 0600 and only then renamed into place, so that nobody else can reach it at
any moment; a socket left behind by a service that was killed is replaced (this process holds
the store, so nothing else can be listening for it). Each connection's peer credentials
(SO_PEERCRED) are checked too: only the service's own OS user and root are served, anyone else
is refused and the refusal recorded as an access denial.

A request is the command line (argv) and what the command takes from the caller's side: its
working directory (paths in the command resolve against it), its OS user name (the default of
`--by` and `--user`, as when the command runs itself) and, for `users add`, the password read at
the caller's prompt or from its standard input, never from the command line and never logged.
Commands run one at a time, each in a thread of its own (never on the server's event loop),
against the service's own process-wide store, with the service's settings; what they print is
streamed back as it is written, then the exit code. A file a command names is opened by the
service, with its OS user's permissions: the caller is that user or root, so the service
opens nothing for anyone that they could not open themselves. Ctrl-C (or a closed connection)
stops a `score-batch` before its next chunk; other commands finish. A command that changed the
store is followed in the audit trail by an access event `admin_command` naming the OS user who
ran it (`os:NAME`) and the command (never its arguments).

The caller's side is `forward`: it connects when the socket exists, and returns None when no
service answers on it (core.cli then runs the command itself).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import pwd
import signal
import socket
import stat
import struct
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from core.config import Settings, get_settings
from core.errors import AdminSocketRefused, CoreError

log = logging.getLogger(__name__)

PROTOCOL = 1
MAX_MESSAGE = 1 << 20  # bytes of one message (a request's argv and password)
HELLO_TIMEOUT_S = 15.0  # a service that accepts but never answers is reported, not waited for
REQUEST_TIMEOUT_S = 600.0  # a caller that connects and sends nothing (no password typed) is let go
MAX_CONNECTIONS = 8  # callers connected at once (running, or waiting for their turn)
ACCEPT_POLL_S = 0.2  # how often the listener looks whether the service is stopping
STOP_WAIT_S = 30.0  # how long stop() waits for a running command
MAX_UNIX_PATH = 107  # sun_path is 108 bytes with its terminating NUL
ACCESS_SOURCE = "admin socket"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def socket_path(db: Path) -> Path:
    """The admin socket of the store file `db`: beside the file itself (links resolved)."""
    real = Path(db).resolve()
    return real.with_name(f".{real.name}.admin.sock")


def serving_command() -> bool:
    """Whether this thread runs a command for the admin socket, inside the running service (a
    command that would hold the whole database's memory down then leaves it alone)."""
    return _running.get() is not None


# ---- the service's side ---------------------------------------------------------------------


@dataclass(eq=False)  # one per connection, kept in a set
class _Run:
    """One connection: the caller, its stop requests, and the way back to it."""

    conn: socket.socket
    uid: int
    os_user: str
    stop_requests: list[int] = field(default_factory=list)
    gone: threading.Event = field(default_factory=threading.Event)
    send_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: dict) -> None:
        """Send a message; once the caller is gone, nothing (and a stop is requested)."""
        if self.gone.is_set():
            return
        data = json.dumps(message).encode() + b"\n"
        try:
            with self.send_lock:
                self.conn.sendall(data)
        except OSError:
            self.went_away()

    def went_away(self) -> None:
        if not self.gone.is_set():
            self.gone.set()
            self.stop_requests.append(signal.SIGHUP)  # as a closed terminal stops a batch


_running: ContextVar[_Run | None] = ContextVar("admin_channel_run", default=None)
_sinks: dict[int, Callable[[str, str], None]] = {}  # thread -> where its output goes


class _Routed:
    """sys.stdout or sys.stderr while the channel runs: what a command's thread writes goes to its
    caller, what every other thread writes goes where it went before."""

    def __init__(self, original, kind: str):
        self.original = original
        self._kind = kind

    def write(self, text: str) -> int:
        sink = _sinks.get(threading.get_ident())
        if sink is None:
            return self.original.write(text)
        if text:
            sink(self._kind, text)
        return len(text)

    def flush(self) -> None:
        if threading.get_ident() not in _sinks:
            self.original.flush()

    def isatty(self) -> bool:
        return False if threading.get_ident() in _sinks else self.original.isatty()

    def __getattr__(self, name: str):
        return getattr(self.original, name)


def _route_output() -> None:
    if not isinstance(sys.stdout, _Routed):
        sys.stdout = _Routed(sys.stdout, "out")
    if not isinstance(sys.stderr, _Routed):
        sys.stderr = _Routed(sys.stderr, "err")


def _unroute_output() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, _Routed):
            setattr(sys, name, stream.original)


class Channel:
    """The admin socket of a running service; `stop()` ends it and removes the socket. Without
    a listener (a system without SO_PEERCRED), it does nothing."""

    def __init__(self, settings: Settings, listener: socket.socket | None, path: Path | None):
        self.path = path
        self._db = settings.db
        self._listener = listener
        self._identity = _identity(path) if path else None
        self._stopping = threading.Event()
        self._one_at_a_time = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._runs: set[_Run] = set()
        self._handlers: set[threading.Thread] = set()
        self._state_lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept_loop, name="admin-socket",
                                           daemon=True)

    def stop(self, timeout: float = STOP_WAIT_S) -> None:
        """Stop listening and remove the socket; ask a running batch to stop before its next
        chunk and wait up to `timeout` seconds for the running command."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._listener is None:
            return
        with _started_lock:
            if _started.get(self.path) is self:
                del _started[self.path]
        self._accepting.join(timeout=5)
        self._listener.close()
        if _identity(self.path) == self._identity:  # still ours
            self.path.unlink(missing_ok=True)
        with self._state_lock:
            runs, handlers = list(self._runs), list(self._handlers)
        for run in runs:
            run.stop_requests.append(signal.SIGTERM)
        for thread in handlers:
            thread.join(timeout=timeout)
        if not any(t.is_alive() for t in handlers):
            _unroute_output()
        log.info("admin socket %s closed", self.path)

    # ---- connections --------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if not self._stopping.is_set():
                    log.warning("admin socket: accept failed: %s", exc)
                continue
            conn.settimeout(None)
            if not self._slots.acquire(blocking=False):
                _say_and_close(conn, "error: too many admin commands are waiting for the service; "
                                     "try again shortly", 75)
                continue
            thread = threading.Thread(target=self._handle, args=(conn,), name="admin-command",
                                      daemon=True)
            with self._state_lock:
                self._handlers.add(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        run = None
        try:
            uid, pid = _peer(conn)
            run = _Run(conn, uid, _os_user(uid))
            if uid not in (os.geteuid(), 0):
                self._refuse(run, pid)
                return
            run.send({"hello": PROTOCOL, "pid": os.getpid(), "store": str(self._db)})
            conn.settimeout(REQUEST_TIMEOUT_S)
            reader = conn.makefile("rb")
            request = _request(_receive(reader))
            conn.settimeout(None)
            problem = self._wrong_store(request)
            if problem:
                run.send({"err": f"error: {problem}\n"})
                run.send({"exit": 2})
                return
            threading.Thread(target=_watch, args=(reader, run), name="admin-command-watch",
                             daemon=True).start()
            with self._state_lock:
                self._runs.add(run)
            if not self._turn(run):
                return
            try:
                code = self._execute(run, request)
            finally:
                self._one_at_a_time.release()
            run.send({"exit": code})
        except (OSError, ValueError, CoreError) as exc:  # the caller went away, sent something
            log.info("admin socket: connection ended: %s", exc)  # else, or the store failed
            if run is not None:
                run.send({"err": f"error: {exc}\n"})
                run.send({"exit": 2})
        finally:
            with self._state_lock:
                self._runs.discard(run)
                self._handlers.discard(threading.current_thread())
            self._slots.release()
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes the thread that watches for a stop
            with contextlib.suppress(OSError):
                conn.close()

    def _refuse(self, run: _Run, pid: int) -> None:
        detail = (f"admin socket: uid {run.uid} (pid {pid}) is neither the service's OS user "
                  f"(uid {os.geteuid()}) nor root")
        log.warning("%s: refused", detail)
        try:
            from core import auth

            auth.record_access(f"os:{run.os_user}", "access_denied", detail, source=ACCESS_SOURCE)
        except CoreError as exc:
            log.warning("admin socket: the refusal could not be recorded: %s", exc)
        run.send({"err": f"error: refused: the service's admin socket serves only its own OS user "
                         f"(uid {os.geteuid()}) and root, not uid {run.uid}\n"})
        run.send({"exit": 2})

    def _wrong_store(self, request: dict) -> str | None:
        try:
            if os.path.samefile(request["store"], self._db):
                return None
        except OSError:
            pass
        return f"this service holds the store {self._db}, not {request['store']}"

    def _turn(self, run: _Run) -> bool:
        """Wait until no other command runs (saying so); False if the caller left meanwhile or
        the service is stopping."""
        told = False
        while not self._one_at_a_time.acquire(timeout=0.5):
            if run.gone.is_set():
                return False
            if self._stopping.is_set():
                run.send({"err": "error: the service is stopping; run the command again once it has "
                                 "stopped (it then opens the store itself) or restarted\n"})
                run.send({"exit": 75})
                return False
            if not told:
                run.send({"err": "waiting for another admin command to finish in the service...\n"})
                told = True
        if run.gone.is_set() or self._stopping.is_set():
            self._one_at_a_time.release()
            return False
        return True

    def _execute(self, run: _Run, request: dict) -> int:
        """Run the command in this thread, its output to the caller; its exit code."""
        from core import batch, cli
        from core.store import open_store

        store = open_store(self._db)
        before = store.head()
        words = "?"
        token = _running.set(run)
        _sinks[threading.get_ident()] = lambda kind, text: run.send({kind: text})
        try:
            with batch.stop_requests_from(run.stop_requests):
                try:
                    args = cli.parse_args(request["argv"], user=request["user"])
                except SystemExit as exc:  # --help, or arguments argparse refused (it said why)
                    return exc.code if isinstance(exc.code, int) else 2
                words = " ".join(str(w) for w in (args.command, getattr(args, "action", None)) if w)
                if cli.runs_here(args):
                    print(f"error: python -m core {words} never opens the store: run it where you "
                          "are, not through the service", file=sys.stderr)
                    return 2
                _resolve_paths(args, Path(request["cwd"]))
                if cli.asks_password(args):
                    if not isinstance(request.get("password"), str):
                        print("error: no password was sent with the command", file=sys.stderr)
                        return 2
                    args.password = request["password"]
                try:
                    code = cli.execute(args)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except Exception:  # a fault, not a refusal: the caller gets the traceback
                    log.exception("admin socket: python -m core %s failed", words)
                    traceback.print_exc()
                    code = 1
        finally:
            _sinks.pop(threading.get_ident(), None)
            _running.reset(token)
        log.info("admin socket: %s (uid %d) ran python -m core %s: exit %d", run.os_user, run.uid,
                 words, code)
        self._record(run, words, code, before)
        return code

    def _record(self, run: _Run, words: str, code: int, before: tuple[int, str]) -> None:
        """After a command that changed the store: who ran it, as the OS knows them."""
        from core import auth
        from core.store import open_store

        try:
            if open_store(self._db).head() != before:
                auth.record_access(f"os:{run.os_user}", "admin_command",
                                   f"python -m core {words} (exit {code})", source=ACCESS_SOURCE)
        except CoreError as exc:
            log.warning("admin socket: the command could not be recorded: %s", exc)


_started: dict[Path, Channel] = {}  # socket -> the channel this process listens on there
_started_lock = threading.Lock()


def start(settings: Settings | None = None) -> Channel:
    """Listen on the store's admin socket (the service holds the store, or this opens it first;
    a second call for the same store gives the same channel). CoreError when a file that is not
    a socket is in the way."""
    from core.store import open_store

    settings = settings or get_settings()
    if not settings.db_is_file():  # a database server: every command connects to it itself
        open_store(settings.db)
        return Channel(settings, None, None)
    path = socket_path(settings.db)
    if not hasattr(socket, "SO_PEERCRED"):  # the peer check is Linux's: no socket without it
        log.warning("no admin socket on this system (it needs SO_PEERCRED, Linux): commands that "
                    "open the store cannot run while the service holds it")
        return Channel(settings, None, path)
    with _started_lock:
        if path in _started:
            return _started[path]
        open_store(settings.db)  # this process holds the store: a socket left at the path is stale
        channel = Channel(settings, _listen(path), path)
        _started[path] = channel
    _route_output()
    channel._accepting.start()
    log.info("admin socket listening at %s", path)
    return channel


def _listen(path: Path) -> socket.socket:
    """A listening socket at `path`, mode 0600 from the moment it has that name."""
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISSOCK(existing.st_mode):
        raise CoreError(f"{path} exists and is not a socket: move it away so that the service can "
                        "listen for admin commands there")
    private = Path(tempfile.mkdtemp(prefix=f"{path.name}.", dir=path.parent))  # mode 0700
    inside = private / "s"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _address(inside) as address:
            listener.bind(address)
        os.chmod(inside, 0o600)
        listener.listen(MAX_CONNECTIONS)
        listener.settimeout(ACCEPT_POLL_S)
        os.replace(inside, path)  # atomic: replaces a stale socket, never leaves the name free
    except BaseException:
        listener.close()
        raise
    finally:
        inside.unlink(missing_ok=True)
        private.rmdir()
    return listener


def _watch(reader, run: _Run) -> None:
    """Read the caller's stop requests until it closes the connection (then it is gone)."""
    try:
        while message := _receive(reader, eof_ok=True):
            signum = message.get("stop")
            if isinstance(signum, int) and signum in {s.value for s in STOP_SIGNALS}:
                run.stop_requests.append(signum)
    except (OSError, ValueError):
        pass
    run.went_away()


def _request(message: dict | None) -> dict:
    if not message:
        raise ValueError("no command was sent")
    argv, cwd = message.get("argv"), message.get("cwd")
    if (message.get("request") != PROTOCOL or not isinstance(argv, list)
            or not all(isinstance(a, str) for a in argv) or not isinstance(cwd, str)
            or not os.path.isabs(cwd) or not isinstance(message.get("user"), str)
            or not isinstance(message.get("store"), str)):
        raise ValueError("not a command this service understands (a client of another version?)")
    return message


def _resolve_paths(args, cwd: Path) -> None:
    """Every path argument as the caller meant it: relative to the caller's working directory."""
    for name, value in vars(args).items():
        if isinstance(value, Path) and not value.is_absolute():
            setattr(args, name, cwd / value)


def _peer(conn: socket.socket) -> tuple[int, int]:
    """(uid, pid) of the process at the other end, as the kernel saw it connect."""
    pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                         struct.calcsize("3i")))
    return uid, pid


def _os_user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _say_and_close(conn: socket.socket, text: str, code: int) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps({"err": text + "\n"}).encode() + b"\n"
                     + json.dumps({"exit": code}).encode() + b"\n")
    with contextlib.suppress(OSError):
        conn.close()


# ---- both sides -----------------------------------------------------------------------------


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address for bind or connect: the path itself, or when it is longer than a socket
    address can be, the same file reached through an open descriptor of its folder."""
    if len(os.fsencode(str(path))) <= MAX_UNIX_PATH:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def _receive(reader, *, eof_ok: bool = False) -> dict | None:
    line = reader.readline(MAX_MESSAGE + 1)
    if not line:
        if eof_ok:
            return None
        raise ConnectionResetError("the other side closed the connection")
    if len(line) > MAX_MESSAGE or not line.endswith(b"\n"):
        raise ValueError("a message too long, or cut short")
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("not a message")
    return message


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


# ---- the caller's side ----------------------------------------------------------------------


def forward(argv: list[str], db: Path, *, read_password: Callable[[], str] | None = None,
            stops_at_a_chunk: bool = False) -> int | None:
    """Run the command line `argv` in the service that holds the store `db`, printing what it
    prints; its exit code. None when no service answers on the store's admin socket (the caller
    then opens the store itself). `read_password`: asked once the service answered (the
    password goes with the command). `stops_at_a_chunk`: the command stops on Ctrl-C (a batch).

    AdminSocketRefused when a service holds the socket but this user may not use it."""
    path = socket_path(db)
    conn = _connect(path)
    if conn is None:
        return None
    with conn:
        conn.settimeout(HELLO_TIMEOUT_S)
        reader = conn.makefile("rb")
        try:
            first = _receive(reader)
        except TimeoutError:
            raise CoreError(f"the service at {path} accepted the command but did not answer within "
                            f"{HELLO_TIMEOUT_S:.0f} s; see the service's log") from None
        except (OSError, ValueError) as exc:
            raise CoreError(f"the service at {path} ended the connection ({exc})") from None
        conn.settimeout(None)
        if "hello" in first:
            request = {"request": PROTOCOL, "argv": list(argv), "cwd": os.getcwd(),
                       "user": getpass.getuser(), "store": str(Path(db).resolve())}
            if read_password is not None:
                request["password"] = read_password()
            _send(conn, request)
            first = None
        with _relayed_stops(conn, stops_at_a_chunk):
            return _print_until_exit(reader, first, path)


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _address(path) as address:
            conn.connect(address)
    except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError):
        conn.close()  # no service (or a stale socket that a service's next start replaces)
        return None
    except PermissionError:
        conn.close()
        try:
            os.lstat(path)
        except OSError:  # its folder is closed to this user: whether a service runs is unknown
            return None  # here, and opening the store says why it cannot be opened either
        raise AdminSocketRefused(
            f"the running service holds the store; its admin socket {path} is open only to the "
            "service's OS user and root: run the command as that user (for example with "
            "`sudo -u USER` or `docker compose exec app ...`)") from None
    return conn


def _print_until_exit(reader, first: dict | None, path: Path) -> int:
    message = first
    while True:
        if message is None:
            try:
                message = _receive(reader)
            except (OSError, ValueError):
                raise CoreError(f"the service at {path} closed the connection before the command "
                                "ended (stopped, or restarted?); see the service's log") from None
        if "out" in message:
            sys.stdout.write(message["out"])
            sys.stdout.flush()
        if "err" in message:
            sys.stderr.write(message["err"])
            sys.stderr.flush()
        if "exit" in message:
            return int(message["exit"])
        message = None


@contextlib.contextmanager
def _relayed_stops(conn: socket.socket, stops_at_a_chunk: bool) -> Iterator[None]:
    """Ctrl-C, a stop signal or a closed terminal is passed on to the service once (a batch
    stops before its next chunk); a second one stops waiting at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sent: list[int] = []

    def relay(signum, frame):
        if sent:
            raise SystemExit(128 + signum)
        sent.append(signum)
        with contextlib.suppress(OSError):
            _send(conn, {"stop": signum})
        if not stops_at_a_chunk:
            print("the command finishes in the service; a second Ctrl-C stops waiting for it",
                  file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, relay) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
