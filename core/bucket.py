"""Model versions in an S3-compatible object store (AWS S3, MinIO, Ceph, SeaweedFS...), for
APP_MODELS=s3://bucket/prefix: the bucket's side of core.artifacts.

A version is the objects under `prefix/VERSION/`; it exists for readers only once its
manifest.json does, and publishing uploads the manifest last. Files are fetched into a private
cache folder (APP_MODELS_CACHE: folders 0700, files 0600); this module never decides whether a
file may be loaded: core.artifacts checks every file's sha256 against the manifest read from the
bucket first. A cached file is reused only while its object's ETag is the one it was fetched
with; otherwise it is fetched again.

Credentials come from the environment only, never from a setting: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, else the shared credentials file (AWS_PROFILE),
else an instance or container role. The address is APP_S3_ENDPOINT_URL, else
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS; the region AWS_REGION or AWS_DEFAULT_REGION.
No message names a credential.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.credentials import (
    AWSConfigProvider,
    ChainedProvider,
    EnvAWSProvider,
    IamAwsProvider,
    Provider,
)
from minio.error import MinioException, S3Error

from core.config import S3Location, Settings, get_settings
from core.errors import BucketUnavailable, TrainingDataError

MANIFEST = "manifest.json"
ETAGS = ".etags.json"  # in a cached version's folder: the ETag each file was fetched with
DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem"}
REJECTED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
            "TokenRefreshRequired", "InvalidSecurity"}
MISSING = {"NoSuchKey", "NoSuchObject"}
_ROLE_VARIABLES = ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                   "AWS_CONTAINER_CREDENTIALS_FULL_URI")


class _Role(Provider):
    """An instance or container role; any failure to reach one means "no credentials here".
    AWS_EC2_METADATA_DISABLED=true skips the instance's metadata service, as for AWS's own
    clients."""

    def __init__(self) -> None:
        self._provider = IamAwsProvider(http_client=urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2, read=5), retries=urllib3.Retry(total=1)))

    def retrieve(self):
        if (os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true"
                and not any(os.environ.get(name) for name in _ROLE_VARIABLES)):
            raise ValueError("the instance metadata service is disabled")
        try:
            return self._provider.retrieve()
        except Exception as exc:  # noqa: BLE001 - not on a cloud instance: the chain says so
            raise ValueError(str(exc)) from None


class Bucket:
    """One S3 location (bucket and prefix) and the local cache of its versions."""

    def __init__(self, location: S3Location, settings: Settings | None = None):
        settings = settings or get_settings()
        self.location = location
        source, endpoint = next(
            ((name, value) for name, value in (
                ("APP_S3_ENDPOINT_URL", settings.s3_endpoint_url),
                ("AWS_ENDPOINT_URL_S3", os.environ.get("AWS_ENDPOINT_URL_S3")),
                ("AWS_ENDPOINT_URL", os.environ.get("AWS_ENDPOINT_URL"))) if value),
            ("", "https://s3.amazonaws.com"))
        parts = urlsplit(endpoint)
        try:
            host = parts.hostname + (f":{parts.port}" if parts.port else "")  # never user:password@
        except (TypeError, ValueError):
            host = None
        if parts.scheme not in ("http", "https") or not host:
            raise BucketUnavailable(f"{source} is not an http:// or https:// address of an object "
                                    "store")
        self.endpoint = f"{parts.scheme}://{host}"
        self.root = Path(settings.models_cache)
        self.cache = self.root.joinpath(host.replace(":", "_"), location.bucket,
                                        *filter(None, location.prefix.split("/")))
        self._client = Minio(
            host, secure=parts.scheme == "https",
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
            credentials=ChainedProvider([EnvAWSProvider(), AWSConfigProvider(), _Role()]),
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=5, read=60), maxsize=4,
                cert_reqs="CERT_REQUIRED", ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
                retries=urllib3.Retry(total=2, backoff_factor=0.2,
                                      status_forcelist=[500, 502, 503, 504])))

    def uri(self, name: str = "") -> str:
        return self.location.uri(name)

    @contextlib.contextmanager
    def _errors(self, name: str = "") -> Iterator[None]:
        """The client's failures as BucketUnavailable, naming the bucket or key and the problem."""
        where = self.uri(name)
        try:
            yield
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                raise BucketUnavailable(f"{self.uri()}: the bucket {self.location.bucket} does "
                                        f"not exist at {self.endpoint}") from None
            if exc.code in DENIED:
                raise BucketUnavailable(f"{where}: access denied: the credentials in the "
                                        "environment have no permission for it") from None
            if exc.code in REJECTED:
                raise BucketUnavailable(f"{where}: the object store at {self.endpoint} rejected "
                                        f"the credentials in the environment ({exc.code})") from None
            raise BucketUnavailable(f"{where}: the object store answered {exc.code}: "
                                    f"{exc.message}") from None
        except ValueError as exc:
            if "fail to fetch credentials" not in str(exc):
                raise
            raise BucketUnavailable(
                f"{where}: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in "
                "the service's environment (or AWS_PROFILE, or a role)") from None
        except (urllib3.exceptions.HTTPError, MinioException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise BucketUnavailable(f"{where}: cannot reach the object store at {self.endpoint}: "
                                    f"{type(reason).__name__}: {str(reason)[:200]}") from None

    # Reading

    def objects(self, under: str = "") -> dict[str, str]:
        """Object name (below the prefix) -> ETag, of every object under `under`."""
        base = self.location.key(under)
        strip = len(self.location.prefix) + 1 if self.location.prefix else 0
        with self._errors(under):
            return {obj.object_name[strip:]: (obj.etag or "").strip('"')
                    for obj in self._client.list_objects(
                        self.location.bucket, prefix=base + "/" if base else "", recursive=True)}

    def read(self, name: str) -> bytes | None:
        """An object's content; None when it does not exist."""
        with self._errors(name):
            try:
                response = self._client.get_object(self.location.bucket, self.location.key(name))
            except S3Error as exc:
                if exc.code in MISSING:
                    return None
                raise
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def versions(self) -> dict[str, str]:
        """Version -> its manifest's ETag, for every version whose manifest exists."""
        return {name.split("/")[0]: etag for name, etag in self.objects().items()
                if name.count("/") == 1 and name.endswith("/" + MANIFEST)}

    def fetch(self, version: str, names: list[str], *, again: tuple[str, ...] = ()) -> Path:
        """The cache folder of `version` with every object of `names` that exists, fetched
        unless the cached copy was fetched from the same object (its ETag), or named in `again`;
        a file whose object is gone is removed from the cache."""
        folder = self._private(self.cache / version)
        listed = self.objects(version)
        etags_file = folder / ETAGS
        try:
            known = json.loads(etags_file.read_text())
        except (OSError, ValueError):
            known = {}
        fetched = {}
        for name in names:
            etag = listed.get(f"{version}/{name}")
            target = folder / name
            if etag is None:
                target.unlink(missing_ok=True)
                continue
            if name in again or known.get(name) != etag or not target.is_file():
                self._download(f"{version}/{name}", target)
            fetched[name] = etag
        _write_private(etags_file, json.dumps(fetched).encode())
        return folder

    def _download(self, name: str, target: Path) -> None:
        data = self.read(name)
        if data is None:
            target.unlink(missing_ok=True)
            return
        _write_private(target, data)

    # Writing

    def staging(self) -> Path:
        """A private folder, in the cache, to assemble a version in before publishing it."""
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=self._private(self.cache)))

    def publish(self, folder: Path, version: str) -> Path:
        """Upload a version assembled in `folder`, whole or not at all: every file, then its
        manifest last, so that no reader sees the version until all its files are there. Objects
        a failed publish of this version left (no manifest: nobody lists or loads them) are
        replaced. On a failure, what was uploaded is removed (as far as the store lets us) and
        the error says nothing was published. Returns the version's cache folder."""
        if self.read(f"{version}/{MANIFEST}") is not None:
            raise TrainingDataError(f"version {version} already exists in {self.uri()}; choose a "
                                    "new one")
        leftovers = list(self.objects(version))
        self.delete(leftovers)
        files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
        uploaded: list[str] = []
        try:
            for name in [*files, MANIFEST]:
                self.upload(folder / name, f"{version}/{name}")
                uploaded.append(f"{version}/{name}")
        except BaseException as exc:
            with contextlib.suppress(BucketUnavailable):
                self.delete(uploaded)
            if isinstance(exc, BucketUnavailable):
                raise BucketUnavailable(f"publishing {version} failed, nothing was published: "
                                        f"{exc}") from None
            raise
        target = self.cache / version
        shutil.rmtree(target, ignore_errors=True)
        folder.rename(target)
        for path in target.iterdir():
            path.chmod(0o600)
        (target / ETAGS).unlink(missing_ok=True)  # fetched again (by ETag) at the first use
        return target

    def upload(self, source: Path, name: str) -> None:
        self.write(name, Path(source).read_bytes())

    def write(self, name: str, data: bytes) -> None:
        with self._errors(name):
            self._client.put_object(self.location.bucket, self.location.key(name),
                                    io.BytesIO(data), len(data))

    def delete(self, names: list[str]) -> None:
        for name in names:
            with self._errors(name):
                self._client.remove_object(self.location.bucket, self.location.key(name))

    def _private(self, folder: Path) -> Path:
        """`folder`, created if missing, readable by this user only, as is every folder between
        it and the cache's root."""
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            for part in [folder, *folder.parents]:
                part.chmod(0o700)
                if part == self.root:
                    break
        except OSError as exc:
            raise BucketUnavailable(f"the model cache folder {folder} (APP_MODELS_CACHE) cannot "
                                    f"be used: {exc.strerror}") from None
        return folder


def _write_private(target: Path, data: bytes) -> None:
    """Write a file readable by this user only, whole: a temporary file renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
