"""Podman for the image tests: the engine's settings, the base image, the build and the image's files.

These machines have podman but no registry, so the Dockerfile's base image cannot be pulled. A
stand-in with the same name is made once with debootstrap (Debian bookworm's Python 3.11, laid
out like the official image: `python` and a global `pip` in /usr/local/bin, no "externally
managed" marker) and kept in podman's image store, labelled with the parameters that made it; a
real image of that name, where one was pulled, is used as it is. The Dockerfile itself is built
unmodified.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The tools the tests drive; .ci/run installs them on Debian.
TOOLS = ("podman", "runc", "catatonit", "debootstrap", "caddy", "certutil", "ip")
# crun cannot run on machines whose cgroups are in hybrid mode; podman's default ulimits are
# refused where the container's limits may not exceed the sandbox's.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""
STAND_IN = {"suite": "bookworm", "variant": "minbase",
            "include": "python3,python3-venv,ca-certificates", "layout": 1}
STAND_IN_LABEL = "hyperkalaemia-risk.test.stand-in-base"
# The build's pip reaches the package index through this machine's trust store, mounted
# read-only for the build only (a bind mount never becomes part of a layer).
HOST_CA_BUNDLE = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def missing_tools() -> list[str]:
    missing = [tool for tool in TOOLS if not shutil.which(tool, path=os.environ.get("PATH", "") +
                                                          ":/usr/sbin:/sbin")]
    if os.geteuid() != 0:
        missing.append("root (debootstrap, rootful podman, network namespaces)")
    return missing


class Podman:
    """The podman command with this suite's containers.conf; output captured as text."""

    def __init__(self, workdir: Path):
        conf = workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def __call__(self, *args: str, check: bool = True, timeout: float = 120,
                 input: str | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, input=input,
                              stdin=subprocess.DEVNULL if input is None else None)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def inspect(self, kind: str, name: str, template: str) -> str:
        return self(kind, "inspect", "--format", template, name).stdout.strip()


def base_image_name() -> str:
    match = re.search(r"^FROM\s+(\S+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    name = match.group(1)
    return name if "/" in name else f"docker.io/library/{name}"


def stand_in_key() -> str:
    return hashlib.sha256(json.dumps(STAND_IN, sort_keys=True).encode()).hexdigest()[:16]


def ensure_base_image(podman: Podman, workdir: Path) -> str:
    """The Dockerfile's FROM image in the local store: kept, or made now. Says which."""
    name = base_image_name()
    if podman("image", "exists", name, check=False).returncode == 0:
        label = podman.inspect("image", name, f'{{{{index .Labels "{STAND_IN_LABEL}"}}}}')
        if label in ("", "<no value>"):
            return f"base image {name}: the real one, found locally"
        if label == stand_in_key():
            return f"base image {name}: stand-in {label}, kept from an earlier run"
    started = time.monotonic()
    _make_stand_in(podman, name, workdir)
    return f"base image {name}: stand-in {stand_in_key()} made in {time.monotonic() - started:.0f} s"


def _make_stand_in(podman: Podman, name: str, workdir: Path) -> None:
    root = workdir / "rootfs"
    clean = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
             "LANG": "C.UTF-8"}
    try:
        subprocess.run(["debootstrap", f"--variant={STAND_IN['variant']}",
                        f"--include={STAND_IN['include']}", STAND_IN["suite"], str(root)],
                       env=clean, check=True, capture_output=True, timeout=480)
        for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        wheel = next(root.glob("usr/share/python-wheels/pip-*.whl")).relative_to(root)
        subprocess.run(["chroot", str(root), "python3", f"/{wheel}/pip", "install", "--no-index",
                        "--no-cache-dir", "--root-user-action=ignore", f"/{wheel}"],
                       env=clean, check=True, capture_output=True, timeout=120)
        (root / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        (root / "etc/pip.conf").write_text(f"[global]\ncert = {IMAGE_CA_BUNDLE}\n")
        for junk in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(root / junk, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["podman", "import", "--change", "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]',
             "--change", f"LABEL {STAND_IN_LABEL}={stand_in_key()}", "-", name],
            stdin=tar.stdout, env=podman.env, capture_output=True, text=True, timeout=300)
        tar.stdout.close()
        tar.wait(timeout=60)
        assert imported.returncode == 0, imported.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def copy_working_tree(target: Path) -> None:
    """The files a commit of the working tree would hold (tracked and new, not ignored), as they
    are on disk now: the build context the image tests build from. Modes are git's (0644, or
    0755 for executables), whatever the checkout's umask: they are part of each layer, so the
    build cache holds across checkouts."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / name)
            (target / name).chmod(0o755 if source.stat().st_mode & 0o100 else 0o644)
    for folder in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)


def build(podman: Podman, context: Path, tag: str, log: Path) -> str:
    """`podman build` of the unmodified Dockerfile; the image's id."""
    iid = context.parent / "iid"
    with open(log, "w") as out:
        done = subprocess.run(
            ["podman", "build", "--format", "docker", "--pull=never", "--iidfile", str(iid),
             "--volume", f"{HOST_CA_BUNDLE}:{IMAGE_CA_BUNDLE}:ro", "--tag", tag, str(context)],
            env=podman.env, stdout=out, stderr=subprocess.STDOUT, timeout=900)
    assert done.returncode == 0, f"podman build failed:\n{log.read_text()[-5000:]}"
    return iid.read_text().strip()


@contextmanager
def network(podman: Podman, name: str, subnets: list[str]) -> Iterator[str]:
    """A bridge network with these subnets, shared by concurrent runs (two networks cannot hold
    the same subnet); removed at the end unless another run's container is still on it."""
    def current() -> list[str] | None:
        found = podman("network", "inspect", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}", name,
                       check=False)
        return found.stdout.split() if found.returncode == 0 else None

    if current() is None:
        created = podman("network", "create", *(f"--subnet={s}" for s in subnets), name, check=False)
        assert created.returncode == 0 or current() is not None, created.stderr
    assert current() == subnets, f"network {name} has subnets {current()}, compose.yaml says {subnets}"
    try:
        yield name
    finally:
        podman("network", "rm", name, check=False)


def keep_as_cache(podman: Podman, image: str, tag: str) -> None:
    """Drop the run's tag, keeping the image under one cache tag, so that the next build reuses
    its layers (the slow one installs the requirements) while older test images are removed."""
    cache = f"{tag.rsplit(':', 1)[0]}:test-cache"
    previous = podman("image", "inspect", "--format", "{{.Id}}", cache, check=False).stdout.strip()
    podman("tag", image, cache)
    podman("untag", image, tag, check=False)
    if previous and previous != image.removeprefix("sha256:"):
        podman("rmi", previous, check=False)  # refused while a container of it exists: fine


@contextmanager
def image_files(podman: Podman, image: str) -> Iterator[Path]:
    """The image's root file system, mounted read-only on the host."""
    mounted = Path(podman("image", "mount", image).stdout.strip())
    try:
        yield mounted
    finally:
        podman("image", "unmount", image, check=False)


def pem_blocks(text: str) -> set[str]:
    return set(re.findall(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----", text))
