"""The TLS proxy in front of the container, and a host outside it that clinicians' browsers sit on.

Caddy (Debian's) runs on the host with the repository's deploy/Caddyfile, unmodified: a small
file of global options imports it, choosing free ports instead of 80 and 443, a private storage
folder, and certificates from Caddy's own local authority (`local_certs`, as `tls internal`).
The upstream is the container's port on loopback (PROXY_UPSTREAM), where compose would give the
name `app` on its network.

"Outside" is a network namespace joined to the host by a veth pair: what it can reach on the
host's address is what a machine on the hospital network could reach on the VM.

Run as a script (`python proxy_support.py probe JSON`), this module is the probe that runs
inside that namespace.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CADDYFILE = REPO / "deploy" / "Caddyfile"
SITE = "risk.test"  # .test never resolves outside: the browser is told where it is
START_TIMEOUT_S = 60


class OutsideHost:
    """A network namespace with one veth link to the host, on a /30 of the benchmarking range."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{secrets.randbelow(100)}"
        self.namespace = f"hkr-outside-{tag}"
        self._link = f"hkr{tag}"  # interface names have at most 15 characters
        block = secrets.randbelow(1 << 15)  # 198.18.0.0/15 holds 2**15 such /30 blocks
        base = (198 << 24) | (18 << 16) | (block << 2)
        self.host_ip, self.ip = (socket.inet_ntoa((base + n).to_bytes(4, "big")) for n in (1, 2))
        commands = [
            ["ip", "netns", "add", self.namespace],
            ["ip", "link", "add", self._link, "type", "veth", "peer", "name", f"{self._link}o"],
            ["ip", "link", "set", f"{self._link}o", "netns", self.namespace],
            ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self._link],
            ["ip", "link", "set", self._link, "up"],
            ["ip", "-n", self.namespace, "addr", "add", f"{self.ip}/30", "dev", f"{self._link}o"],
            ["ip", "-n", self.namespace, "link", "set", f"{self._link}o", "up"],
            ["ip", "-n", self.namespace, "link", "set", "lo", "up"],
        ]
        try:
            for command in commands:
                subprocess.run(command, check=True, capture_output=True, timeout=30)
        except BaseException:
            self.close()
            raise

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]

    def probe(self, **request) -> dict:
        """One request made from outside (see `_probe`); its answer."""
        done = subprocess.run(self.command(sys.executable, __file__, "probe", json.dumps(request)),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def chromium(self, folder: Path, executable: str) -> Path:
        """A Chromium that runs in this namespace (Playwright starts it as it starts any)."""
        wrapper = folder / "chromium-outside"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {self.namespace} {executable} "$@"\n')
        wrapper.chmod(0o755)
        return wrapper

    def close(self) -> None:
        # Deleting the namespace deletes the veth pair with it.
        subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "delete", self._link], capture_output=True, timeout=30)


def _probe(request: dict) -> dict:
    """connect: is the port open? http/https: status, headers and body of a request (a GET, or
    `method` with `headers` and a JSON `json` body; https verified against `ca` for the site's
    name, whatever address it is reached on)."""
    address = (request["ip"], request["port"])
    if request["kind"] == "connect":
        try:
            with socket.create_connection(address, timeout=5):
                return {"open": True}
        except OSError as exc:
            return {"open": False, "error": str(exc)}
    host = f"{request['site']}:{request['port']}"
    if request["kind"] == "https":
        context = ssl.create_default_context(cafile=request["ca"])
        conn = http.client.HTTPSConnection(request["site"], request["port"], timeout=10, context=context)
        conn.sock = context.wrap_socket(socket.create_connection(address, timeout=10),
                                        server_hostname=request["site"])
    else:
        conn = http.client.HTTPConnection(*address, timeout=10)
    body = json.dumps(request["json"]) if "json" in request else None
    headers = {"Host": host, **request.get("headers", {}),
               **({"Content-Type": "application/json"} if body is not None else {})}
    conn.request(request.get("method", "GET"), request["path"], body=body, headers=headers)
    response = conn.getresponse()
    return {"status": response.status, "headers": {k.lower(): v for k, v in response.getheaders()},
            "body": response.read().decode(errors="replace")}


@dataclass
class Proxy:
    site: str  # what clinicians type: https://risk.test:PORT
    http_port: int
    https_port: int
    root_ca: Path  # the local authority's root certificate
    log: Path  # Caddy's output: its JSON access log among it


def _global_options(http_port: int, storage: Path) -> str:
    return (f"{{\n\thttp_port {http_port}\n\tadmin off\n\tlocal_certs\n"
            f"\tskip_install_trust\n\tstorage file_system {storage}\n}}\n\n"
            f"import {CADDYFILE}\n")


@contextmanager
def caddy(folder: Path, *, upstream: str, http_port: int, https_port: int,
          outside: OutsideHost) -> Iterator[Proxy]:
    """Caddy with deploy/Caddyfile in front of `upstream`; ready once a verified HTTPS request
    from outside reaches the app's health endpoint through it."""
    folder.mkdir(parents=True, exist_ok=True)
    storage = folder / "storage"
    config = folder / "Caddyfile"
    config.write_text(_global_options(http_port, storage))
    site = f"{SITE}:{https_port}"  # the HTTPS port rides on the site address, so redirects name it
    env = {"PATH": os.environ["PATH"], "HOME": str(folder), "XDG_DATA_HOME": str(folder / "data"),
           "XDG_CONFIG_HOME": str(folder / "config"), "SITE_ADDRESS": site,
           "PROXY_UPSTREAM": upstream}
    log = folder / "caddy.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["caddy", "run", "--config", str(config), "--adapter", "caddyfile"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    proxy = Proxy(site=site, http_port=http_port, https_port=https_port,
                  root_ca=storage / "pki" / "authorities" / "local" / "root.crt", log=log)
    try:
        deadline, last = time.monotonic() + START_TIMEOUT_S, "no certificate yet"
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"caddy exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if proxy.root_ca.exists():
                try:
                    answer = outside.probe(kind="https", ip=outside.host_ip, port=https_port, site=SITE,
                                           path="/_stcore/health", ca=str(proxy.root_ca))
                    if answer["status"] == 200:
                        break
                    last = f"HTTP {answer['status']}" + (f": nothing answers at {upstream}"
                                                         if answer["status"] == 502 else "")
                except AssertionError as exc:  # not listening yet, or its certificate not issued yet
                    last = str(exc).strip()
            if time.monotonic() > deadline:
                raise AssertionError(f"no healthy answer through caddy within {START_TIMEOUT_S} s; "
                                     f"last: {last}\n{log.read_text()[-1500:]}")
            time.sleep(0.25)
        yield proxy
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process started in its own group, and its children: politely, then for certain."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def trusting_home(folder: Path, root_ca: Path) -> Path:
    """A HOME whose NSS database trusts `root_ca` for servers: Chromium on Linux reads it, the way
    a hospital's managed browsers trust the institution's authority."""
    nssdb = folder / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True,
                   capture_output=True, timeout=30)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "test local authority",
                    "-i", str(root_ca)], check=True, capture_output=True, timeout=30)
    return folder


def access_log(proxy: Proxy) -> list[dict]:
    """The requests Caddy handled, from its JSON access log."""
    entries = []
    for line in proxy.log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "handled request":
            entries.append(entry)
    return entries


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        try:
            print(json.dumps(_probe(json.loads(sys.argv[2]))))
        except (OSError, http.client.HTTPException) as exc:
            sys.exit(f"{type(exc).__name__}: {exc}")
