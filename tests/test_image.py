"""The container image, built from the working tree with podman and deployed the way RUNBOOK.md's
"Deploy on a VM with Docker" says (its part "With Podman instead of Docker"), step for step.

The build context is the working tree's files plus the mistakes an operator could make by
following the runbook (a .env, the key's secret file, a store, a virtual environment, the
proxy's certificate and key in deploy/certs/); none may reach the image. The deployment runs
the container with compose.yaml's options (tests/compose_support.py) behind Caddy with
deploy/Caddyfile (tests/proxy_support.py), and a browser on a host outside the VM signs in and
scores through the proxy; the store on the volume must verify and hold every prediction made.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from browser_support import CHROMIUM, LAUNCH_ARGS, NEEDS_CHROMIUM, score_in_browser, sign_in, wait_idle
from compose_support import app_service, load
from conftest import TYPICAL_PATIENT
from playwright.sync_api import Error as PlaywrightError
from podman_support import (
    HOST_CA_BUNDLE,
    IMAGE_CA_BUNDLE,
    Podman,
    build,
    copy_working_tree,
    ensure_base_image,
    image_files,
    keep_as_cache,
    missing_tools,
    network,
    pem_blocks,
)
from proxy_support import SITE, OutsideHost, access_log, caddy, trusting_home

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
RUNBOOK = REPO / "RUNBOOK.md"
APP_UID = 10001
# compose.yaml's default network, shared by concurrent runs: its subnet is fixed there.
NETWORK = "hyperkalaemia-risk-test_default"
HEALTHY_TIMEOUT_S = 90  # the health check's start period is 60 s
# The deployment's steps in the runbook's order; the journey below records the ones it takes.
RUNBOOK_STEPS = ["podman build", "podman network create", "models verify", "users add", "podman run --detach",
                 "podman healthcheck run", "caddy run", "sign in", "podman exec",
                 "podman stop", "audit verify"]
# Where the runbook has operators put secrets and local state, beside the files that are built.
MISTAKES = {
    ".env": "APP_PATIENT_KEY={}\n",
    "secrets/app_patient_key": "{}\n",
    ".streamlit/secrets.toml": '[auth]\ncookie_secret = "{}"\n',
    "data/app.duckdb": "{}",
    ".venv/pyvenv.cfg": "home = /usr/bin\n# {}\n",
    "deploy/certs/fullchain.pem": "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
    "deploy/certs/privkey.pem": "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
}
COMPLETE = {"lvef": "30", "sbp": "118"}



@dataclass
class Built:
    id: str
    tag: str
    canaries: dict[str, str]  # planted file -> the unique text it holds
    report: list[str] = field(default_factory=list)


def _cannot_test(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)  # CI installs what the tests need: a skip there would hide the image
    pytest.skip(reason)


@pytest.fixture(scope="module")
def podman(tmp_path_factory) -> Podman:
    missing = missing_tools()
    if missing:
        _cannot_test(f"needs {', '.join(missing)} (.ci/run installs them on Debian)")
    podman = Podman(tmp_path_factory.mktemp("podman"))
    info = podman("info", check=False)
    if info.returncode != 0:
        _cannot_test(f"podman cannot run here: {(info.stderr.strip().splitlines() or ['?'])[-1]}")
    return podman


@pytest.fixture(scope="module")
def image(podman: Podman, tmp_path_factory) -> Iterator[Built]:
    work = tmp_path_factory.mktemp("image")
    started = time.monotonic()
    report = [ensure_base_image(podman, work)]
    context = work / "context"
    copy_working_tree(context)
    canaries = {}
    for path, template in MISTAKES.items():
        canaries[path] = f"canary-{secrets.token_hex(12)}"
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        (context / path).write_text(template.format(canaries[path]))
    tag = app_service(load({"SITE_ADDRESS": SITE, "APP_IMAGE_TAG": f"test-{os.getpid()}"}),
                      project="unused", network="unused").image
    built_at = time.monotonic()
    image_id = build(podman, context, tag, work / "build.log")
    size = int(podman.inspect("image", image_id, "{{.Size}}"))
    report.append(f"image {tag} ({image_id.removeprefix('sha256:')[:12]}): {size / 1e6:.0f} MB, built in "
                  f"{time.monotonic() - built_at:.0f} s ({time.monotonic() - started:.0f} s with the base)")
    try:
        yield Built(id=image_id, tag=tag, canaries=canaries, report=report)
    finally:
        keep_as_cache(podman, image_id, tag)


def _suspect(folder: str, name: str) -> bool:
    """A name that is local state or a secret, or, in the app's folder, a certificate or key."""
    if name in (".env", ".venv", "pyvenv.cfg", "secrets.toml") or name.startswith(".env."):
        return True
    if re.search(r"\.duckdb(\.|$)", name):
        return True
    return (folder + "/").startswith("/app/") and (name == "certs" or name.endswith((".pem", ".key", ".crt")))


def test_image_holds_no_secret_store_environment_or_certificate(podman: Podman, image: Built, capsys):
    with capsys.disabled():
        print("".join(f"\n  {line}" for line in image.report))
    needles = {canary.encode(): f"planted {path}" for path, canary in image.canaries.items()}
    leaks = []
    with image_files(podman, image.id) as root:
        # The build trusted this machine's authorities through a read-only mount; those the
        # image's own bundle lacks must not have stayed behind.
        own = pem_blocks((root / IMAGE_CA_BUNDLE.lstrip("/")).read_text())
        for block in pem_blocks(HOST_CA_BUNDLE.read_text()) - own:
            needles[block.splitlines()[1].encode()] = "an authority only the build machine trusts"
        for folder, dirs, files in os.walk(root):
            inside = "/" + os.path.relpath(folder, root).removeprefix(".").lstrip("/")
            leaks += [f"{inside.rstrip('/')}/{name} is in the image" for name in dirs + files
                      if _suspect(inside, name)]
            for name in files:
                path = Path(folder) / name
                if path.is_symlink() or not path.is_file():
                    continue
                data = path.read_bytes()
                leaks += [f"{what}: in /{path.relative_to(root)}" for needle, what in needles.items()
                          if needle in data]
    config = podman("image", "inspect", image.id).stdout + podman(
        "history", "--no-trunc", "--format", "{{.CreatedBy}}", image.id).stdout
    leaks += [f"{what}: in the image's configuration or history" for needle, what in needles.items()
              if needle.decode() in config]
    env = podman.inspect("image", image.id, "{{json .Config.Env}}")
    assert "APP_PATIENT_KEY=" not in env and "SECRET" not in env.upper(), env
    assert not leaks, "\n".join(leaks)


def test_image_lets_the_app_user_write_only_its_volumes_and_scratch_folders(podman: Podman, image: Built):
    assert podman.inspect("image", image.id, "{{.Config.User}}") == f"{APP_UID}:{APP_UID}"
    # As the image is, without the read-only root file system compose adds.
    done = podman("run", "--rm", "--network", "none", "--no-healthcheck", "--entrypoint", "find",
                  image.id, "/", "-xdev", "!", "-type", "l", "-writable", check=False)
    assert set(done.stdout.split()) == {"/data", "/backups", "/tmp", "/var/tmp", "/run/lock"}, done.stdout


def test_runbook_podman_steps_are_the_journey_in_order():
    text = RUNBOOK.read_text()
    section = text[text.index("### With Podman instead of Docker"):]
    section = section[:section.find("\n### ", 1)]
    positions = [section.find(step) for step in RUNBOOK_STEPS]
    assert -1 not in positions, [s for s, p in zip(RUNBOOK_STEPS, positions, strict=True) if p < 0]
    assert positions == sorted(positions), "RUNBOOK.md's Podman steps are out of the journey's order"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Deployment:
    """The app container with compose.yaml's options, and what the journey did to it."""

    podman: Podman
    image: Built
    name: str
    args: list[str]  # compose's options for any container of the app service
    steps: list[str] = field(default_factory=list)

    def one_off(self, *command: str, input: str | None = None) -> str:
        """`docker compose run --rm app COMMAND`: a container of its own on the same volumes."""
        stdin = ["--interactive"] if input is not None else []
        done = self.podman("run", "--rm", *stdin, "--no-healthcheck", *self.args, self.image.tag,
                           *command, input=input, timeout=180)
        return done.stdout

    def log_tail(self) -> str:
        logs = self.podman("logs", self.name, check=False)
        return (logs.stdout + logs.stderr)[-3000:]

    def wait_healthy(self) -> None:
        """Run the image's health check (no systemd runs it here) until it passes."""
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        while True:
            state = self.podman.inspect("container", self.name, "{{.State.Status}}")
            if state != "running":
                pytest.fail(f"the app container is {state}:\n{self.log_tail()}")
            if self.podman("healthcheck", "run", self.name, check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"not healthy within {HEALTHY_TIMEOUT_S} s:\n{self.log_tail()}")
            time.sleep(0.5)


def _prediction_id(card_text: str) -> str:
    return re.search(r"prediction ([0-9a-f-]{36})", card_text).group(1)


def _score_through_proxy(proxy, outside: OutsideHost, folder: Path, password: str) -> list[str]:
    """A clinician's browser on the outside host signs in and scores two patients through the
    proxy (the app's WebSocket with it); the prediction ids the result cards show."""
    from playwright.sync_api import sync_playwright

    home = trusting_home(folder / "home", proxy.root_ca)
    recorded = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(outside.chromium(folder, CHROMIUM)), env={**os.environ, "HOME": str(home)},
            args=[*LAUNCH_ARGS, f"--host-resolver-rules=MAP {SITE} {outside.host_ip}"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            sign_in(page, f"https://{proxy.site}/", "clara", password)
            page.get_by_role("heading", name="Score a patient").wait_for(timeout=30_000)
            wait_idle(page)
            # In this order: the form keeps the values of the previous patient.
            for ref, expect, extra in [("VM-1", "Sent to clinical review", None),
                                       ("VM-2", "Auto-finalised", COMPLETE)]:
                score_in_browser(page, ref, expect, extra=extra)
                recorded.append(_prediction_id(page.locator(".st-key-score_result_card").inner_text()))
        finally:
            browser.close()
    assert len(set(recorded)) == 2, recorded
    return recorded


def _check_proxy(proxy, outside: OutsideHost, app_port: int) -> None:
    """HTTP redirects to HTTPS, HTTPS is verified and sets HSTS, and from outside only the
    proxy's ports answer."""
    reach = {port: outside.probe(kind="connect", ip=outside.host_ip, port=port)["open"]
             for port in (proxy.http_port, proxy.https_port, app_port)}
    assert reach == {proxy.http_port: True, proxy.https_port: True, app_port: False}
    plain = outside.probe(kind="http", ip=outside.host_ip, port=proxy.http_port, site=SITE, path="/x?y=1")
    assert plain["status"] == 308 and plain["headers"]["location"] == f"https://{proxy.site}/x?y=1"
    secure = outside.probe(kind="https", ip=outside.host_ip, port=proxy.https_port, site=SITE,
                           path="/_stcore/health", ca=str(proxy.root_ca))
    assert (secure["status"], secure["body"]) == (200, "ok")
    assert secure["headers"]["strict-transport-security"].startswith("max-age=")
    assert "server" not in secure["headers"]


@NEEDS_CHROMIUM
def test_deploy_on_a_vm_as_the_runbook_says(podman: Podman, image: Built, tmp_path: Path):
    project, stack = f"hkrtest{os.getpid()}", ExitStack()
    key_file = tmp_path / "app_patient_key"  # as the runbook's Secrets step makes it
    key_file.write_text(secrets.token_urlsafe(48))
    os.chown(key_file, APP_UID, APP_UID)
    key_file.chmod(0o400)
    https_port, http_port, app_port = _free_port(), _free_port(), _free_port()
    compose = load({"SITE_ADDRESS": f"{SITE}:{https_port}", "APP_PATIENT_KEY_SECRET": str(key_file),
                    "APP_IMAGE_TAG": image.tag.split(":", 1)[1]})
    app = app_service(compose, project=project, network=NETWORK)
    assert app.image == image.tag and app.exposed == ["8501"]
    deployment = Deployment(podman=podman, image=image, name=f"{project}_app", args=app.run_args,
                            steps=["podman build"])
    password = secrets.token_urlsafe(18)
    outside = None
    try:
        stack.enter_context(network(podman, NETWORK, app.subnets))
        deployment.steps.append("podman network create")
        assert "v1: OK" in deployment.one_off("python", "-m", "core", "models", "verify")
        deployment.steps.append("models verify")
        added = deployment.one_off("python", "-m", "core", "users", "add", "clara", "--role", "clinician",
                                   "--name", "Dr Clara Test", "--by", "test", input=password + "\n")
        assert added.strip() == "added clara (clinician)"
        deployment.steps.append("users add")

        # Published on loopback only, for the proxy on this host (compose: the app's network).
        podman("run", "--detach", "--name", deployment.name, *app.run_args, *app.health_args,
               "--publish", f"127.0.0.1:{app_port}:{app.exposed[0]}", image.tag)
        deployment.steps.append("podman run --detach")
        deployment.wait_healthy()
        assert podman.inspect("container", deployment.name, "{{.State.Health.Status}}") == "healthy"
        deployment.steps.append("podman healthcheck run")
        logs = podman("logs", deployment.name).stdout
        assert "start: checks passed: production mode" in logs and key_file.read_text() not in logs
        processes = podman("top", deployment.name, "huser", "args").stdout.splitlines()[1:]
        assert processes and all(line.split()[0] == str(APP_UID) for line in processes), processes
        writable = podman("exec", deployment.name, "find", "/", "-xdev", "!", "-type", "l", "-writable",
                          check=False).stdout.split()
        assert set(writable) == {"/data", "/backups", "/tmp"}  # models, code, settings: read-only

        outside = OutsideHost()
        with caddy(tmp_path / "caddy", upstream=f"127.0.0.1:{app_port}", http_port=http_port,
                   https_port=https_port, outside=outside) as proxy:
            deployment.steps.append("caddy run")
            _check_proxy(proxy, outside, app_port)
            try:
                recorded = _score_through_proxy(proxy, outside, tmp_path, password)
            except (AssertionError, PlaywrightError) as exc:  # the app's log says why, the page may not
                pytest.fail(f"{exc}\n--- app log ---\n{deployment.log_tail()}")
            deployment.steps.append("sign in")
            # An EHR's call: a client made inside the running container, then the API through
            # the proxy, from outside.
            made = podman("exec", deployment.name, "python", "-m", "core", "clients", "add", "ehr",
                          "--role", "clinician", "--by", "test").stdout
            token = made.strip().splitlines()[-1]
            scored = outside.probe(kind="https", ip=outside.host_ip, port=proxy.https_port, site=SITE,
                                   ca=str(proxy.root_ca), method="POST", path="/api/v1/predictions",
                                   headers={"Authorization": f"Bearer {token}"},
                                   json={**TYPICAL_PATIENT, "patient_ref": "VM-3"})
            assert scored["status"] == 201, scored
            recorded.append(json.loads(scored["body"])["prediction_id"])
            deployment.steps.append("podman exec")
        upgrades = [entry for entry in access_log(proxy) if entry["request"]["uri"] == "/_stcore/stream"
                    and entry["request"]["headers"].get("Connection") == ["Upgrade"]]
        assert upgrades and all(e["request"]["remote_ip"] == outside.ip for e in upgrades), upgrades

        assert token not in deployment.log_tail()

        podman("stop", "--time", "30", deployment.name, timeout=60)
        # uvicorn shuts down gracefully on SIGTERM (the lifespan ends: the admin socket closes,
        # the store is released), then re-raises the signal, so the exit status says SIGTERM.
        assert podman.inspect("container", deployment.name, "{{.State.ExitCode}}") in ("0", "143")
        stopped = podman("logs", deployment.name).stderr + podman("logs", deployment.name).stdout
        assert "Application shutdown complete" in stopped and "Finished server process" in stopped
        deployment.steps.append("podman stop")
        audit = deployment.one_off("python", "-m", "core", "audit", "verify")
        assert audit.startswith("audit chain intact:"), audit
        deployment.steps.append("audit verify")

        store = Path(podman.inspect("volume", f"{project}_data", "{{.Mountpoint}}")) / "app.duckdb"
        assert store.stat().st_uid == APP_UID
        with duckdb.connect(str(store), read_only=True) as db:
            stored = {row[0] for row in db.execute("SELECT prediction_id FROM predictions").fetchall()}
            # The proxy's address is trusted (compose.yaml's network), so the lockout counts the
            # browser's own address, as the proxy saw it.
            sources = {row[0] for row in db.execute(
                "SELECT source FROM access_events WHERE user_name = 'clara' AND action = 'sign_in'").fetchall()}
        assert stored == set(recorded) and len(stored) == len(recorded)
        assert sources == {outside.ip}
        assert deployment.steps == RUNBOOK_STEPS
    finally:
        if outside is not None:
            outside.close()
        podman("rm", "--force", "--time", "5", deployment.name, check=False)
        podman("volume", "rm", "--force", f"{project}_data", f"{project}_backups", check=False)
        stack.close()
