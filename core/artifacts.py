"""Artefact registry: list, verify and load model versions, kept in a folder or in an
S3-compatible object store (APP_MODELS=s3://bucket/prefix; core.bucket fetches their files into
a private cache, and every file is checked here, against the manifest read from the bucket).

A version folder holds its model file, spec.json, statistics.json, evaluation.json and
manifest.json (which records the sha256 of every other file). Every file's hash is checked
BEFORE anything is loaded, and a scikit-learn of another major.minor version than the one the
model was made with is refused.

Model files: a version trained here is `model.skops` (skops.io), which loads without running
code: only the types in TRUSTED_TYPES, beyond skops's own defaults, are accepted, and a file
that needs any other is refused. An imported version keeps the team's own file as they gave it
(`model.pkl`, a pickle or joblib file); loading a pickle runs code, so the manifest records who
imported it and vouches for it, and the hash must match first.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import json
import shutil
import tempfile
import threading
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from core.config import S3Location, models_location
from core.errors import ArtefactMismatch, BucketUnavailable, SpecError
from core.predict import Predictor
from core.routing import RoutingRule
from core.spec import Spec, parse_spec

DATA_FILES = ("spec.json", "statistics.json", "evaluation.json")
DEFAULT_FILE = "DEFAULT_VERSION"  # names the version that serves when none was activated
ARTEFACT_FORMAT = 2
# Types skops does not trust by default that the estimators `python -m core train` fits need.
TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
]

Models = Path | S3Location | str  # APP_MODELS: a folder, or s3://bucket/prefix
_cache: dict[tuple[str, str], Artefact] = {}
_listed: dict[tuple[str, str], dict] = {}  # (a bucket version, its manifest's ETag) -> manifest
_lock = threading.Lock()


@dataclass(frozen=True)
class Artefact:
    """A verified, loaded model version."""

    version: str
    path: Path
    manifest: dict
    spec: Spec
    predictor: Predictor
    evaluation: dict

    @property
    def sha256(self) -> str:
        return self.manifest["files"][self.manifest["model_file"]]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def location(models: Models) -> Path | S3Location:
    """Where the versions are: a folder, or an S3 location (APP_MODELS=s3://bucket/prefix)."""
    if isinstance(models, S3Location):
        return models
    if isinstance(models, str) and models.startswith("s3://"):
        return models_location(models)
    return Path(models)


def _bucket(where: S3Location):
    from core.bucket import Bucket  # here: only an S3 location needs the client

    return Bucket(where)


def list_versions(models: Models) -> list[str]:
    """Versions that have a manifest, oldest first by their creation time."""
    where = location(models)
    if isinstance(where, S3Location):
        bucket = _bucket(where)
        created = {}
        for version, etag in bucket.versions().items():
            key = (bucket.uri(version), etag)
            if key not in _listed:
                with contextlib.suppress(ArtefactMismatch):
                    _listed[key] = _bucket_manifest(bucket, version)
            created[version] = _listed.get(key, {}).get("created_at", "")
        return sorted(created, key=lambda v: (created[v], v))
    if not where.is_dir():
        return []
    found = [p for p in where.iterdir()
             if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file()]
    return [p.name for p in sorted(found, key=lambda p: (read_manifest(p).get("created_at", ""), p.name))]


def default_version(models: Models) -> str | None:
    where = location(models)
    if isinstance(where, S3Location):
        data = _bucket(where).read(DEFAULT_FILE)
        return data.decode("utf-8", "replace").strip() if data is not None else None
    marker = where / DEFAULT_FILE
    return marker.read_text().strip() if marker.is_file() else None


def set_default(models: Models, version: str) -> None:
    """Name the version that serves until one is activated (DEFAULT_VERSION)."""
    where = location(models)
    if isinstance(where, S3Location):
        _bucket(where).write(DEFAULT_FILE, f"{version}\n".encode())
    else:
        (where / DEFAULT_FILE).write_text(f"{version}\n")


def serving_version(activation: tuple | None, models: Models) -> str | None:
    """The version that serves: the latest activation (version, sha256), else the shipped default."""
    return activation[0] if activation else default_version(models)


def read_manifest(path: Path) -> dict:
    """The manifest of a version folder on disk."""
    try:
        return json.loads((Path(path) / "manifest.json").read_text())
    except FileNotFoundError as exc:
        raise ArtefactMismatch(f"{path.name}: manifest.json is missing") from exc
    except json.JSONDecodeError as exc:
        raise ArtefactMismatch(f"{path.name}: manifest.json is not valid JSON") from exc


def manifest_of(models: Models, version: str) -> dict:
    """A version's manifest, from its folder or its bucket (ArtefactMismatch when it cannot be
    read)."""
    where = location(models)
    if isinstance(where, S3Location):
        return _bucket_manifest(_bucket(where), version)
    return read_manifest(where / version)


def _bucket_manifest(bucket, version: str) -> dict:
    data = bucket.read(f"{version}/manifest.json")
    if data is None:
        raise ArtefactMismatch(f"{bucket.uri(version)}: manifest.json is missing")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ArtefactMismatch(f"{bucket.uri(version)}: manifest.json is not valid JSON") from exc


def _version_file(models: Models, version: str, name: str) -> bytes | None:
    """The bytes of one file of a version, from its folder or its bucket (None: not there)."""
    where = location(models)
    if isinstance(where, S3Location):
        return _bucket(where).read(f"{version}/{name}")
    path = where / version / name
    return path.read_bytes() if path.is_file() else None


def _spec_json(models: Models, version: str) -> Any:
    data = _version_file(models, version, "spec.json")
    if data is None:
        where = location(models)
        if isinstance(where, S3Location):
            raise ArtefactMismatch(f"{where.uri(version)}/spec.json is missing")
        raise FileNotFoundError(where / version / "spec.json")
    return json.loads(data)


def read_title(models: Models, version: str) -> str:
    """A version's short title from its spec (no model is loaded)."""
    try:
        return _spec_json(models, version)["title"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtefactMismatch(f"{version}: spec.json has no readable title") from exc


def spec_of(models: Models, version: str) -> Spec:
    """A version's spec (no model is loaded): SpecError when it cannot be read."""
    try:
        raw = _spec_json(models, version)
    except (OSError, ValueError, ArtefactMismatch) as exc:
        raise SpecError(f"{version}: spec.json cannot be read") from exc
    return parse_spec(raw, source=f"{version}/spec.json")


def statistics_of(models: Models, version: str) -> dict:
    """A version's statistics.json (no model is loaded), checked against the sha256 its manifest
    records: ArtefactMismatch when it is missing, altered or unreadable."""
    manifest = manifest_of(models, version)
    data = _version_file(models, version, "statistics.json")
    if data is None:
        raise ArtefactMismatch(f"{version}: statistics.json is missing")
    if hashlib.sha256(data).hexdigest() != manifest.get("files", {}).get("statistics.json"):
        raise ArtefactMismatch(f"{version}: statistics.json does not match the sha256 its "
                               "manifest records")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ArtefactMismatch(f"{version}: statistics.json is not valid JSON") from exc


def verify(models: Models, version: str) -> list[str]:
    """Every problem with a version's files (empty list: all files match their recorded hashes)."""
    return _checked(models, version)[0]


def _checked(models: Models, version: str) -> tuple[list[str], Path, dict]:
    """(problems, the folder of the version's files, its manifest): for a bucket, the manifest
    is read from the bucket and the files are fetched into the cache, and every one is checked
    against it all the same; a cached file that no longer matches is fetched again."""
    where = location(models)
    if isinstance(where, S3Location):
        return _checked_in_bucket(where, version)
    path = where / version
    if not path.is_dir():
        return [f"version {version} not found in {models}"], path, {}
    try:
        manifest = read_manifest(path)
    except ArtefactMismatch as exc:
        return [str(exc)], path, {}
    problems = _format_problems(version, manifest)
    if problems:
        return problems, path, manifest
    found = _file_problems(path, manifest, version, "file is missing")
    return [*found.values(), *_library_problems(version, manifest)], path, manifest


def _checked_in_bucket(where: S3Location, version: str) -> tuple[list[str], Path, dict]:
    label = where.uri(version)
    try:
        bucket = _bucket(where)
        data = bucket.read(f"{version}/manifest.json")
        if data is None:
            return [f"version {version} not found in {where} (no {label}/manifest.json)"], \
                bucket.cache / version, {}
        try:
            manifest = json.loads(data)
        except ValueError:
            return [f"{label}/manifest.json is not valid JSON"], bucket.cache / version, {}
        problems = _format_problems(label, manifest)
        if problems:
            return problems, bucket.cache / version, manifest
        names = _names(manifest)
        path = bucket.fetch(version, names)
        found = _file_problems(path, manifest, label, "object is missing from the bucket")
        altered = tuple(name for name, problem in found.items() if "sha256" in problem)
        if altered:  # the cached copy changed, or the object did: fetch it again, check again
            path = bucket.fetch(version, names, again=altered)
            found = _file_problems(path, manifest, label, "object is missing from the bucket")
    except BucketUnavailable as exc:
        return [str(exc)], Path(), {}
    return [*found.values(), *_library_problems(label, manifest)], path, manifest


def _format_problems(label: str, manifest: dict) -> list[str]:
    if manifest.get("artefact_format") != ARTEFACT_FORMAT:
        return [f"{label}: made by an older release (artefact format "
                f"{manifest.get('artefact_format', 1)}); train or import it again"]
    return []


def _names(manifest: dict) -> list[str]:
    return [manifest["model_file"], *DATA_FILES]




def _file_problems(path: Path, manifest: dict, label: str, missing: str) -> dict[str, str]:
    """File name -> its problem, for every file that does not match the manifest."""
    problems = {}
    recorded = manifest.get("files", {})
    for name in _names(manifest):
        if name not in recorded:
            problems[name] = f"{label}/{name}: no hash recorded in the manifest"
        elif not (path / name).is_file():
            problems[name] = f"{label}/{name}: {missing}"
        elif sha256_file(path / name) != recorded[name]:
            problems[name] = f"{label}/{name}: sha256 does not match the manifest (file altered)"
    return problems


def _library_problems(label: str, manifest: dict) -> list[str]:
    trained = manifest.get("libraries", {}).get("scikit-learn", "")
    here = installed_version("scikit-learn")  # not importing it: checking costs nothing
    if _major_minor(trained) != _major_minor(here):
        return [f"{label}: trained with scikit-learn {trained}, this environment has "
                f"{here}; retrain or install the training version"]
    return []


def exists(models: Models, version: str) -> bool:
    """Whether a version of this name is there (a bucket: its manifest is)."""
    where = location(models)
    if isinstance(where, S3Location):
        return _bucket(where).read(f"{version}/manifest.json") is not None
    return (where / version).exists()


def staging_folder(models: Models, version: str) -> Path:
    """A new private folder to assemble a version in, before `publish` puts it in place."""
    where = location(models)
    if isinstance(where, S3Location):
        return _bucket(where).staging()
    where.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{version}.", dir=where))


def publish(models: Models, folder: Path, version: str) -> Path:
    """Put a version assembled in `folder` in place, whole or not at all: a folder is renamed
    into the models folder; in a bucket, its files are uploaded, the manifest last
    (core.bucket). Returns the folder of its files on disk."""
    where = location(models)
    if isinstance(where, S3Location):
        return _bucket(where).publish(folder, version)
    folder.chmod(0o755)
    folder.rename(where / version)
    return where / version


def publish_copy(source: Path, models: Models, version: str) -> Path:
    """Publish a copy of a version folder of `source` (check it first: `verify`)."""
    staging = staging_folder(models, version)
    try:
        for name in [*_names(read_manifest(Path(source) / version)), "manifest.json"]:
            shutil.copyfile(Path(source) / version / name, staging / name)
        return publish(models, staging, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_model(path: Path, manifest: dict):
    """The model object of a verified version (call verify first)."""
    file = path / manifest["model_file"]
    if manifest["model_format"] == "skops":
        import skops.io  # here: importing it costs a second, and only loading needs it

        untrusted = sorted(set(skops.io.get_untrusted_types(file=file)) - set(TRUSTED_TYPES))
        if untrusted:
            raise ArtefactMismatch(f"{path.name}: the model file needs types that are not "
                                   f"trusted: {', '.join(untrusted)}")
        return skops.io.load(file, trusted=TRUSTED_TYPES)
    if not manifest.get("provenance", {}).get("vouched_for_by"):
        raise ArtefactMismatch(f"{path.name}: a pickled model file that nobody vouched for at "
                               "import; refusing to load it")
    import joblib  # here: only loading a model needs scikit-learn and joblib

    return joblib.load(file)


def load(models: Models, version: str) -> Artefact:
    """Verify, then unpickle; cached per folder (or bucket) and version for the life of the
    process (a file altered after loading is caught by `models verify` and at the next start).
    From a bucket, the files are those fetched into the cache and checked just now."""
    where = location(models)
    place = where.uri(version) if isinstance(where, S3Location) else str(where.resolve() / version)
    key = (place, version)
    with _lock:
        if key in _cache:
            return _cache[key]
        problems, path, manifest = _checked(where, version)
        if problems:
            raise ArtefactMismatch("refusing to load model: " + "; ".join(problems))
        spec = parse_spec(json.loads((path / "spec.json").read_text()), source=f"{version}/spec.json")
        stats = json.loads((path / "statistics.json").read_text())
        pipeline = load_model(path, manifest)
        rule = RoutingRule(**{k: v for k, v in manifest["routing"].items()
                              if k in RoutingRule.model_fields})
        artefact = Artefact(version=version, path=path, manifest=manifest, spec=spec,
                            predictor=Predictor(pipeline, spec, stats, rule),
                            evaluation=json.loads((path / "evaluation.json").read_text()))
        _cache[key] = artefact
        _freeze()
        return artefact


def _freeze() -> None:
    """A loaded model stays for the life of the process: moved, with everything already there,
    out of the cyclic collector's sight, so that a full collection (which would otherwise walk
    every object of the model and of the libraries, a pause longer than many score calls) looks
    only at what came after. Given back at exit, for the interpreter's own clean-up."""
    global _unfreeze_at_exit
    gc.freeze()
    if not _unfreeze_at_exit:
        atexit.register(gc.unfreeze)
        _unfreeze_at_exit = True


_unfreeze_at_exit = False


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])
