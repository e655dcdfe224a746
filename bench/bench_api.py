"""Scoring one patient over HTTP: this project's REST API next to `mlflow models serve`.

Starts both servers on free loopback ports and measures, for each, sequential p50/p99 latency of
one request scoring one patient and the throughput of 8 concurrent clients (requests/s), with one
keep-alive connection per client and a warm-up first. The sequential requests of the two servers
are interleaved in blocks and the concurrent runs split in rounds the servers take turns in, so
both see the same machine load.

The project's side: `python -m uvicorn serve:app` in demo mode over a fresh temporary store, an
API client made with `python -m core clients add bench --role clinician`, and
`POST /api/v1/predictions` with one patient's payload (validated, scored, routed and recorded).
MLflow's side: the same fitted pipeline (the serving version's model file) saved with
mlflow.sklearn.save_model (pyfunc predict = predict_proba, signature inferred from the model
frame) in a throwaway virtualenv that has MLflow and the project's scikit-learn, numpy, pandas and
scipy versions, served with `mlflow models serve --env-manager local --workers 1`; each request is
the patient's model frame (core.features.model_frame) as dataframe_split JSON.

The patients are data/sample_patients.csv, sent in turn. Every response is checked: no error
(201 from the API, 200 from MLflow), the API's risk equal to the risk core records for that
payload (core.scoring.prediction_events on core's own prediction, computed here) and to the risk
of the recorded prediction read back from the store after the server stopped, and MLflow's
probability equal to core's unrounded risk, each to 1e-9.

Targets: API p50 <= 1/3 of MLflow's p50; API 8-client throughput >= 3x MLflow's; no errors.

    .venv/bin/python bench/bench_api.py [--sequential 2000] [--clients 8] [--per-client 500]
        [--mlflow-venv DIR]

The MLflow virtualenv (--mlflow-venv, default bench-api-mlflow-3.17.2 in the system's temporary
folder) is made on the first run (about a minute, from the package index) and reused while its
requirements are unchanged. Exits
1 when a target is missed or a check fails. Uses a temporary store; the artefacts are only read.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MLFLOW_VERSION = "3.17.2"
# The libraries the pipeline needs to load and predict; their versions are the project's own.
MODEL_LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "joblib", "skops", "threadpoolctl")
TARGET_P50_RATIO = 1 / 3  # API p50 / MLflow p50 at most
TARGET_THROUGHPUT_RATIO = 3.0  # API throughput / MLflow throughput at least
TOLERANCE = 1e-9
# Outside the repository: the tests and linters that walk bench/ must not walk a virtualenv.
DEFAULT_VENV = Path(tempfile.gettempdir()) / f"bench-api-mlflow-{MLFLOW_VERSION}"
CLIENT = "bench"

SAVE_MODEL = """
import json, sys
import pandas as pd
import skops.io
import mlflow.sklearn
from mlflow.models import infer_signature

model_file, out, trusted, frame = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
pipeline = skops.io.load(model_file, trusted=trusted)
split = json.loads(open(frame).read())
example = pd.DataFrame(split["data"], columns=split["columns"])
signature = infer_signature(example, pipeline.predict_proba(example)) if sys.argv[5] == "1" else None
mlflow.sklearn.save_model(pipeline, out, serialization_format="skops", skops_trusted_types=trusted,
                          pyfunc_predict_fn="predict_proba", signature=signature)
if signature is not None:
    types = [str(c.type) for c in signature.inputs.inputs]
    print(f"{len(types)} inputs: " + ", ".join(f"{types.count(t)} {t}" for t in sorted(set(types))))
"""


# --------------------------------------------------------------------------- the patients

@dataclass
class Patient:
    payload: dict  # the API's JSON body
    frame_split: dict  # the model frame, as MLflow's dataframe_split
    risk: float  # core's prediction, unrounded
    recorded_risk: float  # the risk core records (and answers) for this payload


BOOLEAN_TEXT = {"yes": True, "true": True, "no": False, "false": False}


def json_value(kind: str | None, text: str):
    """A CSV cell in the JSON type the API's document gives its field."""
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        return BOOLEAN_TEXT.get(text.strip().lower(), text)
    return text


def load_patients(artefact, csv_path: Path) -> list[Patient]:
    """The sample patients with the risk core computes for each, one patient per call as the
    API scores them."""
    from core.features import model_frame
    from core.inputs import validate_payload
    from core.scoring import prediction_events

    spec = artefact.spec
    kinds = {f.name: f.type for f in spec.features}
    out = []
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            payload = {}
            for name, text in row.items():
                if text == "":
                    continue  # an empty cell: the field is omitted
                payload[name] = json_value(kinds.get(name), text)
            ref, values = validate_payload(spec, payload, strict=True)  # as the API validates
            frame = model_frame([values], spec)
            pred = artefact.predictor.predict(frame)
            event = prediction_events(artefact, [(ref, values)], pred, user=CLIENT, source="api",
                                      key=b"bench-only-key")[0]
            split = frame.to_dict(orient="split")
            data = [[None if isinstance(v, float) and math.isnan(v) else v for v in r]
                    for r in split["data"]]
            out.append(Patient(payload, {"columns": split["columns"], "data": data},
                               float(pred.risk[0]), float(event.record.risk)))
    return out


# --------------------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, times = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(times.get(p, 0.0) for p in tree)


class Server:
    """A server process of ours, in its own process group, logging to a file."""

    def __init__(self, name: str, cmd: list[str], *, env: dict, cwd: Path, log: Path):
        self.name, self.log = name, log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, url: str, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   + self.tail())
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready at {url} after {timeout:g} s:\n" + self.tail())

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


# --------------------------------------------------------------------------- MLflow's side

def pinned_versions(names: tuple[str, ...]) -> dict[str, str]:
    """The project's exact versions of these packages (requirements.txt, then constraints.txt)."""
    found: dict[str, str] = {}
    for file in ("requirements.txt", "constraints.txt"):
        for line in (REPO / file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = (part.strip() for part in line.split("==", 1))
                key = name.lower().replace("_", "-")
                if key in names and key not in found:
                    found[key] = version
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"no pinned version of {', '.join(missing)} in requirements.txt or "
                         "constraints.txt")
    return found


def mlflow_venv(folder: Path, mlflow_version: str) -> Path:
    """The throwaway virtualenv's Python: made once, reused while its requirements match."""
    pins = pinned_versions(MODEL_LIBRARIES)
    wanted = [f"mlflow=={mlflow_version}", *(f"{n}=={v}" for n, v in sorted(pins.items()))]
    marker = folder / "bench-requirements.txt"
    python = folder / "bin" / "python"
    if marker.is_file() and marker.read_text().split() == wanted and python.exists():
        return python
    if folder.exists():
        if not marker.is_file() and any(folder.iterdir()):
            raise SystemExit(f"{folder} exists and is not a virtualenv this benchmark made; "
                             "give another --mlflow-venv")
        shutil.rmtree(folder)
    print(f"making the MLflow virtualenv in {folder}: {' '.join(wanted)}", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(folder)], check=True)
    log = folder / "pip-install.log"
    with open(log, "w") as out:
        done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                               *wanted], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"installing into {folder} failed; see {log}:\n"
                         + "\n".join(log.read_text().splitlines()[-15:]))
    marker.write_text("\n".join(wanted) + "\n")
    return python


def save_mlflow_model(python: Path, artefact, patients: list[Patient], out: Path,
                      signature: bool) -> str:
    from core.artifacts import TRUSTED_TYPES

    frame = out.parent / "example-frame.json"
    frame.write_text(json.dumps({"columns": patients[0].frame_split["columns"],
                                 "data": [p.frame_split["data"][0] for p in patients]}))
    model_file = artefact.path / artefact.manifest["model_file"]
    done = subprocess.run([str(python), "-c", SAVE_MODEL, str(model_file), str(out),
                           json.dumps(TRUSTED_TYPES), str(frame), "1" if signature else "0"],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit("saving the MLflow model failed:\n" + done.stderr[-3000:])
    return done.stdout.strip()


# --------------------------------------------------------------------------- load

@dataclass
class Side:
    name: str
    url: str  # the scoring endpoint
    headers: dict
    bodies: list[bytes]  # one per patient
    floor_url: str = ""  # a route that does next to nothing: the HTTP stack's own cost
    server: Server | None = None
    floor_ms: list[float] = field(default_factory=list)
    floor_errors: int = 0
    sequential_ms: list[float] = field(default_factory=list)
    concurrent_ms: list[float] = field(default_factory=list)
    throughput: float = 0.0
    concurrent_wall: float = 0.0
    server_cpu: float = 0.0  # CPU seconds of the server during the concurrent run
    client_cpu: float = 0.0  # CPU seconds of this process during the concurrent run
    responses: list[tuple[int, int, bytes]] = field(default_factory=list)  # patient, status, body
    failures: list[str] = field(default_factory=list)  # transport errors

    def client(self):
        import httpx

        return httpx.Client(headers=self.headers, timeout=30,
                            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    def run(self, client, start: int, n: int, *, keep: bool, times: list[float] | None) -> None:
        """n requests, patients in turn from `start`; each one's status and body kept."""
        bodies, url, count = self.bodies, self.url, len(self.bodies)
        for i in range(start, start + n):
            k = i % count
            t0 = time.perf_counter()
            try:
                r = client.post(url, content=bodies[k])
                status, content = r.status_code, r.content
            except Exception as exc:  # every failure counts as an error, none stops the run
                status, content = -1, repr(exc).encode()
            if times is not None:
                times.append((time.perf_counter() - t0) * 1000)
            if keep:
                self.responses.append((k, status, content))


    def get(self, client, n: int, *, times: list[float] | None) -> None:
        """n GETs of the floor route (no body, no scoring)."""
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                ok = client.get(self.floor_url).status_code == 200
            except Exception:  # counted, as with scoring
                ok = False
            if times is not None:
                times.append((time.perf_counter() - t0) * 1000)
                self.floor_errors += not ok


def sequential(sides: list[Side], n: int, warmup: int, blocks: int, floor: int) -> None:
    """Sequential scoring requests, the servers taking turns in blocks; then the floor routes."""
    clients = [s.client() for s in sides]
    for s, c in zip(sides, clients, strict=True):
        s.run(c, 0, warmup, keep=True, times=None)
    done, block = 0, max(1, math.ceil(n / blocks))
    while done < n:
        m = min(block, n - done)
        for s, c in zip(sides, clients, strict=True):
            s.run(c, warmup + done, m, keep=True, times=s.sequential_ms)
        done += m
    if floor:
        for s, c in zip(sides, clients, strict=True):
            s.get(c, max(1, warmup // 10), times=None)
        done, block = 0, max(1, math.ceil(floor / blocks))
        while done < floor:
            m = min(block, floor - done)
            for s, c in zip(sides, clients, strict=True):
                s.get(c, m, times=s.floor_ms)
            done += m
    for c in clients:
        c.close()


def concurrent(side: Side, clients: int, per_client: int, warmup: int, start: int = 0) -> None:
    """One round: `clients` threads, each its own connection, `per_client` timed requests each
    after `warmup`; the round's wall and CPU times add to the side's."""
    barrier = threading.Barrier(clients + 1)
    per_thread: list[list[float]] = [[] for _ in range(clients)]
    kept: list[list] = [[] for _ in range(clients)]

    def worker(j: int) -> None:
        own = Side(side.name, side.url, side.headers, side.bodies)  # its own response list
        with side.client() as c:
            own.run(c, start + j * 37, warmup, keep=True, times=None)
            barrier.wait()
            own.run(c, start + j * 37 + warmup, per_client, keep=True, times=per_thread[j])
        kept[j] = own.responses

    threads = [threading.Thread(target=worker, args=(j,)) for j in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0, cpu0 = time.perf_counter(), time.process_time()
    server0 = side.server.cpu()
    for t in threads:
        t.join()
    side.concurrent_wall += time.perf_counter() - t0
    side.client_cpu += time.process_time() - cpu0
    side.server_cpu += side.server.cpu() - server0
    side.concurrent_ms += [ms for times in per_thread for ms in times]
    side.throughput = len(side.concurrent_ms) / side.concurrent_wall
    for responses in kept:
        side.responses += responses


def in_process(artefact, patients: list[Patient], n: int, folder: Path) -> dict[str, float]:
    """p50 milliseconds, in this process, of the calls each server makes per request: the
    pipeline's predict_proba on the model frame (what MLflow's pyfunc model calls), core's
    predictor on it, and core.score (validate, predict, route, record) over its own store."""
    import pandas as pd

    import core
    from core.features import model_frame
    from core.inputs import validate_payload

    os.environ.update(APP_DEMO="1", APP_DB=str(folder / "in-process.duckdb"))
    frames = [model_frame([validate_payload(artefact.spec, p.payload, strict=True)[1]], artefact.spec)
              for p in patients]
    splits = [pd.DataFrame(p.frame_split["data"], columns=p.frame_split["columns"])
              for p in patients]
    pipeline = artefact.predictor.model
    steps = {
        "pipeline.predict_proba (MLflow's frame)": lambda i: pipeline.predict_proba(splits[i]),
        "pipeline.predict_proba (core's frame)": lambda i: pipeline.predict_proba(frames[i]),
        "core predictor.predict (risk, routing, factors)":
            lambda i: artefact.predictor.predict(frames[i]),
        "core.score (validate, predict, route, record)":
            lambda i: core.score(patients[i].payload, user=CLIENT, source="api"),
    }
    out = {}
    for name, fn in steps.items():
        times = []
        for i in range(max(20, n // 10) + n):
            t0 = time.perf_counter()
            fn(i % len(patients))
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = percentile(times[-n:], 0.5)
    from core.store import close_all

    close_all()
    return out


# --------------------------------------------------------------------------- checks

def check_api(side: Side, patients: list[Patient], version: str) -> tuple[list[str], float, dict]:
    """Problems, the largest |risk - core's recorded risk|, and prediction_id -> risk answered."""
    problems, worst, answered = [], 0.0, {}
    for k, status, content in side.responses:
        if status != 201:
            problems.append(f"HTTP {status}: {content[:300]!r}")
            continue
        try:
            body = json.loads(content)
            risk, pid = float(body["risk"]), body["prediction_id"]
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"unreadable answer ({exc!r}): {content[:300]!r}")
            continue
        diff = abs(risk - patients[k].recorded_risk)
        worst = max(worst, diff)
        if diff > TOLERANCE:
            problems.append(f"{patients[k].payload['patient_ref']}: risk {risk!r}, core's "
                            f"{patients[k].recorded_risk!r}")
        if body.get("model_version") not in (None, version):
            problems.append(f"answered by model {body.get('model_version')}, not {version}")
        answered[pid] = risk
    return problems, worst, answered


def check_mlflow(side: Side, patients: list[Patient]) -> tuple[list[str], float, float]:
    """Problems, the largest |probability - core's risk|, and the largest
    |probability rounded as core records - the API's risk| (core's recorded risk)."""
    problems, worst, worst_rounded = [], 0.0, 0.0
    for k, status, content in side.responses:
        if status != 200:
            problems.append(f"HTTP {status}: {content[:300]!r}")
            continue
        try:
            p = float(json.loads(content)["predictions"][0][1])
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            problems.append(f"unreadable answer ({exc!r}): {content[:300]!r}")
            continue
        diff = abs(p - patients[k].risk)
        worst = max(worst, diff)
        worst_rounded = max(worst_rounded, abs(round(p, 4) - patients[k].recorded_risk))
        if diff > TOLERANCE:
            problems.append(f"{patients[k].payload['patient_ref']}: probability {p!r}, core's "
                            f"risk {patients[k].risk!r}")
    return problems, worst, worst_rounded


def check_recorded(store_path: Path, answered: dict[str, float]) -> tuple[list[str], int]:
    """Every answered prediction is in the store with the risk the API answered."""
    from core.store import close_all, open_store

    store = open_store(store_path)
    recorded = {row["prediction_id"]: row["risk"] for row in store.iter_rows("predictions")}
    close_all()
    problems = []
    for pid, risk in answered.items():
        if pid not in recorded:
            problems.append(f"prediction {pid} answered but not recorded")
        elif abs(recorded[pid] - risk) > TOLERANCE:
            problems.append(f"prediction {pid}: answered risk {risk!r}, recorded {recorded[pid]!r}")
    return problems, len(recorded)


# --------------------------------------------------------------------------- report

def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def make_client(env: dict) -> str:
    done = subprocess.run([sys.executable, "-m", "core", "clients", "add", CLIENT,
                           "--role", "clinician"], cwd=REPO, env=env, capture_output=True,
                          text=True)
    if done.returncode or not done.stdout.strip():
        raise SystemExit(f"`python -m core clients add` failed ({done.returncode}):\n"
                         f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=2000,
                        help="timed sequential requests per server (default 2000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--per-client", type=int, default=500,
                        help="timed requests per concurrent client (default 500)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds the concurrent requests are split in, the servers taking "
                        "turns, so both see the same machine load (default 4)")
    parser.add_argument("--warmup", type=int, default=200,
                        help="untimed sequential requests per server first (default 200); each "
                        "concurrent client sends a tenth of this before the timed run")
    parser.add_argument("--blocks", type=int, default=20,
                        help="blocks the sequential requests are interleaved in (default 20)")
    parser.add_argument("--floor", type=int, default=500,
                        help="sequential GETs of a route that does next to nothing, per server "
                        "(API /health/live, MLflow /ping): the HTTP stack's floor (0: none)")
    parser.add_argument("--in-process", type=int, default=300,
                        help="calls of each step timed in this process after the servers stop "
                        "(0: none)")
    parser.add_argument("--mlflow-venv", type=Path, default=DEFAULT_VENV,
                        help="the throwaway virtualenv for MLflow, made once and reused while "
                        f"its requirements are unchanged (default {DEFAULT_VENV})")
    parser.add_argument("--mlflow-version", default=MLFLOW_VERSION)
    parser.add_argument("--no-signature", action="store_true",
                        help="save the MLflow model without a signature (no schema enforcement)")
    parser.add_argument("--patients", type=Path, default=REPO / "data" / "sample_patients.csv")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the store, the MLflow model and the server logs in this folder")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from core import artifacts

    models = Path(os.environ.get("APP_MODELS", REPO / "model_artifacts"))
    version = artifacts.default_version(models)
    artefact = artifacts.load(models, version)  # verifies every file's hash first
    patients = load_patients(artefact, args.patients)
    mlflow_python = mlflow_venv(args.mlflow_venv.resolve(), args.mlflow_version)

    tmp_ctx = tempfile.TemporaryDirectory(prefix="bench-api-")
    tmp = Path(tmp_ctx.name)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        tmp = args.keep.resolve()
    model_dir = tmp / "mlflow-model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    signature = save_mlflow_model(mlflow_python, artefact, patients, model_dir,
                                  not args.no_signature)

    store_path = tmp / "bench.duckdb"
    for stale in tmp.glob("bench.duckdb*"):
        stale.unlink()
    app_env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    app_env.update(APP_DEMO="1", APP_DB=str(store_path), APP_MODELS=str(models))
    token = make_client(app_env)

    api_port, mlflow_port = free_port(), free_port()
    mlflow_env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    mlflow_env["PATH"] = f"{mlflow_python.parent}{os.pathsep}{mlflow_env.get('PATH', '')}"
    mlflow_env.pop("VIRTUAL_ENV", None)
    api = Side("API", f"http://127.0.0.1:{api_port}/api/v1/predictions",
               {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
               [json.dumps(p.payload).encode() for p in patients],
               f"http://127.0.0.1:{api_port}/api/v1/health/live")
    mlf = Side("MLflow", f"http://127.0.0.1:{mlflow_port}/invocations",
               {"Content-Type": "application/json"},
               [json.dumps({"dataframe_split": p.frame_split}).encode() for p in patients],
               f"http://127.0.0.1:{mlflow_port}/ping")
    load_before = os.getloadavg()
    try:
        api.server = Server("API", [sys.executable, "-m", "uvicorn", "serve:app", "--host",
                                    "127.0.0.1", "--port", str(api_port)],
                            env=app_env, cwd=REPO, log=tmp / "api-server.log")
        mlf.server = Server("MLflow", [str(mlflow_python.parent / "mlflow"), "models", "serve",
                                       "-m", str(model_dir), "--env-manager", "local",
                                       "-h", "127.0.0.1", "-p", str(mlflow_port),
                                       "--workers", "1"],
                            env=mlflow_env, cwd=tmp, log=tmp / "mlflow-server.log")
        api.server.wait_ready(f"http://127.0.0.1:{api_port}/api/v1/health/ready", 120)
        mlf.server.wait_ready(f"http://127.0.0.1:{mlflow_port}/ping", 120)
        print(f"servers ready; {args.sequential} sequential requests each (after "
              f"{args.warmup} warm-up), then {args.clients} clients x {args.per_client} in "
              f"{args.rounds} rounds", flush=True)
        sequential([api, mlf], args.sequential, args.warmup, args.blocks, args.floor)
        rounds = max(1, min(args.rounds, args.per_client))
        for r in range(rounds):  # the servers take turns, each going first in every other round
            n = args.per_client // rounds + (r < args.per_client % rounds)
            for side in ((api, mlf) if r % 2 == 0 else (mlf, api)):
                concurrent(side, args.clients, n, max(1, args.warmup // 10) if r == 0 else 2,
                           start=r * 101)
    finally:
        for side in (api, mlf):
            if side.server:
                side.server.stop()
    load_after = os.getloadavg()
    steps = in_process(artefact, patients, args.in_process, tmp) if args.in_process else {}

    api_problems, api_worst, answered = check_api(api, patients, version)
    recorded_problems, recorded_n = check_recorded(store_path, answered)
    mlf_problems, mlf_worst, mlf_worst_rounded = check_mlflow(mlf, patients)

    print()
    print(f"model {version} ({artefact.manifest.get('model', '')}), {len(patients)} sample "
          f"patients in turn, {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    print(f"MLflow {args.mlflow_version}, model saved with signature: "
          + ("none" if args.no_signature else f"inferred from the model frame ({signature})"))
    head = (f"{'':<8}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'req/s x' + str(args.clients):>12}"
            f"{'conc p50':>10}{'conc p99':>10}{'srv CPU ms/req':>16}{'errors':>8}")
    print(head)
    rows = {}
    for side, problems in ((api, api_problems + recorded_problems), (mlf, mlf_problems)):
        p50, p99 = percentile(side.sequential_ms, 0.5), percentile(side.sequential_ms, 0.99)
        n_conc = len(side.concurrent_ms)
        rows[side.name] = (p50, side.throughput)
        print(f"{side.name:<8}{p50:>9.2f}{p99:>9.2f}{statistics.fmean(side.sequential_ms):>9.2f}"
              f"{side.throughput:>12.0f}{percentile(side.concurrent_ms, 0.5):>10.2f}"
              f"{percentile(side.concurrent_ms, 0.99):>10.2f}"
              f"{side.server_cpu * 1000 / n_conc:>16.2f}{len(problems):>8}")
    for side in (api, mlf):
        print(f"  {side.name} concurrent runs: {side.concurrent_wall:.2f} s wall, server CPU "
              f"{side.server_cpu:.2f} s, this client process CPU {side.client_cpu:.2f} s")
    if args.floor:
        for side, route in ((api, "GET /api/v1/health/live"), (mlf, "GET /ping")):
            print(f"  {side.name} floor, {route}: p50 {percentile(side.floor_ms, 0.5):.2f} ms, "
                  f"p99 {percentile(side.floor_ms, 0.99):.2f} ms ({side.floor_errors} not 200)")
    if steps:
        print(f"  in this process, p50 of {args.in_process} calls on one patient's frame:")
        for name, ms in steps.items():
            print(f"    {name:<50}{ms:>8.2f} ms")
    p50_ratio = rows["API"][0] / rows["MLflow"][0]
    thr_ratio = rows["API"][1] / rows["MLflow"][1]
    n_api, n_mlf = len(api.responses), len(mlf.responses)
    errors_ok = not (api_problems or recorded_problems or mlf_problems)
    # A failed request is timed too (a refused connection is fast): with errors, no speed counts.
    void = "" if errors_ok else " (not judged: the figures include failed requests)"
    print(f"API p50 / MLflow p50: {p50_ratio:.3f} (target <= {TARGET_P50_RATIO:.3f}): "
          f"{verdict(errors_ok and p50_ratio <= TARGET_P50_RATIO)}{void}")
    print(f"API / MLflow throughput, {args.clients} clients: {thr_ratio:.2f}x (target >= "
          f"{TARGET_THROUGHPUT_RATIO:g}x): "
          f"{verdict(errors_ok and thr_ratio >= TARGET_THROUGHPUT_RATIO)}{void}")
    print(f"errors: API {len(api_problems)} of {n_api} responses, MLflow {len(mlf_problems)} of "
          f"{n_mlf} (target 0): {verdict(not api_problems and not mlf_problems)}")
    print(f"API risk = core's recorded risk for the payload, all {n_api} responses: max |diff| "
          f"{api_worst:.1e}; every answered prediction in the store with that risk "
          f"({len(answered)} answered, {recorded_n} in the store, {len(recorded_problems)} "
          f"problems): {verdict(not api_problems and not recorded_problems)}")
    print(f"MLflow probability = core's unrounded risk, all {n_mlf} responses: max |diff| "
          f"{mlf_worst:.1e} (rounded to 4 places as core records it, vs the API's risk: max "
          f"|diff| {mlf_worst_rounded:.1e}): {verdict(not mlf_problems)}")
    for name, problems in (("API", api_problems), ("store", recorded_problems),
                           ("MLflow", mlf_problems)):
        for line in problems[:5]:
            print(f"  {name}: {line}")
    if args.keep:
        print(f"kept in {tmp}: bench.duckdb, mlflow-model/, api-server.log, mlflow-server.log")
    else:
        tmp_ctx.cleanup()
    met = (p50_ratio <= TARGET_P50_RATIO and thr_ratio >= TARGET_THROUGHPUT_RATIO and errors_ok)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
