"""compose.yaml's app service as `podman run` options, so that the image tests run the container
the way the deployment does.

Only the keys the tests translate are accepted: a new key in compose.yaml fails the tests until
it is translated here (or listed as not applying to a test run), so what is tested cannot drift
from what is deployed. Variables are interpolated the way compose does (`${X}`, `${X:-default}`,
`${X-default}`, `${X:?message}`), from the mapping the test passes instead of a `.env` file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "compose.yaml"

TOP_LEVEL = {"name", "services", "networks", "volumes", "secrets"}
TRANSLATED = {"build", "image", "init", "read_only", "tmpfs", "cap_drop", "security_opt",
              "environment", "secrets", "volumes", "expose", "healthcheck"}
# Host policies: the tests watch the container themselves and read its logs with `podman logs`.
NOT_APPLICABLE = {"restart", "logging"}
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class ComposeError(Exception):
    """compose.yaml uses something this translation does not know, or lacks a required variable."""


def interpolate(text: str, variables: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        current = variables.get(name)
        unset = current is None or (op.startswith(":") and current == "")
        if op.endswith("?") and unset:
            raise ComposeError(f"{name}: {arg}")
        return arg if op.endswith("-") and unset else (current or "")

    result = _VARIABLE.sub(value, text.replace("$$", "\0"))
    if "$" in result:
        raise ComposeError(f"unsupported interpolation in {text!r}")
    return result.replace("\0", "$")


def load(variables: dict[str, str]) -> dict:
    """compose.yaml, parsed, with every string value interpolated (compose leaves comments be)."""
    def walk(node):
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return interpolate(node, variables) if isinstance(node, str) else node

    return walk(yaml.safe_load(COMPOSE.read_text()))


@dataclass
class AppService:
    """What `docker compose up` would run for the app, as podman options."""

    image: str
    run_args: list[str]  # everything but the health check (also for one-off `run --rm` containers)
    health_args: list[str]
    exposed: list[str]
    secret_files: dict[str, Path]
    subnets: list[str]  # of compose's default network, which `run_args` attach the container to


def _duration(value: str) -> str:
    if not re.fullmatch(r"\d+(ms|s|m|h)", value):
        raise ComposeError(f"unsupported duration {value!r}")
    return value


def default_subnets(compose: dict) -> list[str]:
    """The subnets compose.yaml fixes for its default network (the app trusts its proxy by them)."""
    networks = compose.get("networks") or {}
    if set(networks) - {"default"} or set(networks.get("default") or {}) - {"ipam"}:
        raise ComposeError(f"compose.yaml's networks are more than a default network's subnets: {networks}")
    ipam = (networks.get("default") or {}).get("ipam") or {}
    if set(ipam) - {"config"} or any(set(entry) - {"subnet"} for entry in ipam.get("config", [])):
        raise ComposeError(f"unsupported network settings: {ipam}")
    return [entry["subnet"] for entry in ipam.get("config", [])]


def app_service(compose: dict, *, project: str, network: str) -> AppService:
    """The app service's options. Named volumes become `<project>_<name>`, as compose names them;
    compose's default network is `network`, which the caller creates with `subnets`."""
    if set(compose) - TOP_LEVEL:
        raise ComposeError(f"compose.yaml has top-level keys the image tests do not translate: "
                           f"{sorted(set(compose) - TOP_LEVEL)} (see tests/compose_support.py)")
    service = compose["services"]["app"]
    unknown = set(service) - TRANSLATED - NOT_APPLICABLE
    if unknown:
        raise ComposeError(f"compose.yaml's app service has keys the image tests do not translate: "
                           f"{sorted(unknown)} (see tests/compose_support.py)")
    if service.get("build", ".") != ".":
        raise ComposeError(f"the image is built from {service['build']!r}, the tests build from '.'")
    args: list[str] = ["--network", network]
    if service.get("init"):
        args.append("--init")
    if service.get("read_only"):
        # Docker's read_only mounts nothing writable of its own; podman would add /run and /var/tmp.
        args += ["--read-only", "--read-only-tmpfs=false"]
    for path in service.get("tmpfs", []):
        args += ["--tmpfs", path]
    for cap in service.get("cap_drop", []):
        args += ["--cap-drop", cap]
    for option in service.get("security_opt", []):
        args += ["--security-opt", option]
    for name, value in (service.get("environment") or {}).items():
        args += ["--env", f"{name}={value}"]
    secret_files = {}
    for name in service.get("secrets", []):
        path = Path(compose["secrets"][name]["file"])
        secret_files[name] = path if path.is_absolute() else (REPO / path).resolve()
        # A file secret is a read-only bind mount, which is what compose makes of it.
        args += ["--volume", f"{secret_files[name]}:/run/secrets/{name}:ro"]
    for volume in service.get("volumes", []):
        source, target = volume.split(":", 1)
        if not source.startswith((".", "/")):
            source = f"{project}_{source}"
        args += ["--volume", f"{source}:{target}"]
    health = service.get("healthcheck") or {}
    health_args = ["--health-cmd", json.dumps(health["test"][1:])] if health.get("test") else []
    if health.get("test") and health["test"][0] != "CMD":
        raise ComposeError(f"unsupported health check form {health['test'][0]!r}")
    for key in ("interval", "timeout", "start_period"):
        if key in health:
            health_args += [f"--health-{key.replace('_', '-')}", _duration(health[key])]
    if "retries" in health:
        health_args += ["--health-retries", str(health["retries"])]
    return AppService(image=service["image"], run_args=args, health_args=health_args,
                      exposed=[str(port) for port in service.get("expose", [])],
                      secret_files=secret_files, subnets=default_subnets(compose))
