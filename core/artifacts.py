"""Artefact registry on disk: list, verify and load model versions.

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
import gc
import hashlib
import json
import threading
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

from core.errors import ArtefactMismatch
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

_cache: dict[tuple[str, str], Artefact] = {}
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


def list_versions(models_dir: Path) -> list[str]:
    """Version folders that have a manifest, oldest first by their creation time."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    found = [p for p in models_dir.iterdir()
             if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file()]
    return [p.name for p in sorted(found, key=lambda p: (read_manifest(p).get("created_at", ""), p.name))]


def default_version(models_dir: Path) -> str | None:
    marker = Path(models_dir) / DEFAULT_FILE
    return marker.read_text().strip() if marker.is_file() else None


def serving_version(activation: tuple | None, models_dir: Path) -> str | None:
    """The version that serves: the latest activation (version, sha256), else the shipped default."""
    return activation[0] if activation else default_version(models_dir)


def read_manifest(path: Path) -> dict:
    try:
        return json.loads((Path(path) / "manifest.json").read_text())
    except FileNotFoundError as exc:
        raise ArtefactMismatch(f"{path.name}: manifest.json is missing") from exc
    except json.JSONDecodeError as exc:
        raise ArtefactMismatch(f"{path.name}: manifest.json is not valid JSON") from exc


def read_title(models_dir: Path, version: str) -> str:
    """A version's short title from its spec (no model is loaded)."""
    try:
        return json.loads((Path(models_dir) / version / "spec.json").read_text())["title"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtefactMismatch(f"{version}: spec.json has no readable title") from exc


def verify(models_dir: Path, version: str) -> list[str]:
    """Every problem with a version's files (empty list: all files match their recorded hashes)."""
    path = Path(models_dir) / version
    if not path.is_dir():
        return [f"version {version} not found in {models_dir}"]
    try:
        manifest = read_manifest(path)
    except ArtefactMismatch as exc:
        return [str(exc)]
    if manifest.get("artefact_format") != ARTEFACT_FORMAT:
        return [f"{version}: made by an older release (artefact format "
                f"{manifest.get('artefact_format', 1)}); train or import it again"]
    problems = []
    recorded = manifest.get("files", {})
    for name in (manifest["model_file"], *DATA_FILES):
        if name not in recorded:
            problems.append(f"{version}/{name}: no hash recorded in the manifest")
        elif not (path / name).is_file():
            problems.append(f"{version}/{name}: file is missing")
        elif sha256_file(path / name) != recorded[name]:
            problems.append(f"{version}/{name}: sha256 does not match the manifest (file altered)")
    trained = manifest.get("libraries", {}).get("scikit-learn", "")
    here = installed_version("scikit-learn")  # not importing it: checking costs nothing
    if _major_minor(trained) != _major_minor(here):
        problems.append(f"{version}: trained with scikit-learn {trained}, this environment has "
                        f"{here}; retrain or install the training version")
    return problems


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


def load(models_dir: Path, version: str) -> Artefact:
    """Verify, then unpickle; cached per folder and version for the life of the process
    (a file altered after loading is caught by `models verify` and at the next start)."""
    path = Path(models_dir).resolve() / version
    key = (str(path), version)
    with _lock:
        if key in _cache:
            return _cache[key]
        problems = verify(models_dir, version)
        if problems:
            raise ArtefactMismatch("refusing to load model: " + "; ".join(problems))
        manifest = read_manifest(path)
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
