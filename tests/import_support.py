"""Helpers for the tests that adopt a second, differently shaped model: the diabetes cohort that
scikit-learn ships, its spec, a team's own fitted pipelines, and models that must be refused."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import REPO, TEST_PATIENT_KEY

from core import store as core_store

EXAMPLE = REPO / "examples" / "diabetes"
DIABETES_SPEC = REPO / "specs" / "diabetes_progression.json"
# What no page, file or card of another team's model may show: the demonstration's own words.
DEMO_WORDS = re.compile(r"potassium|hyperkal|spironolactone|heart failure|HFrEF|42[- ]day|42 days",
                        re.IGNORECASE)


def example(name: str):
    """One of the example scripts of examples/diabetes/, imported as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def diabetes_files(folder: Path) -> dict[str, Path]:
    """The example's files: the whole extract, and a team's training part and held-out part."""
    make = example("make_extract")
    files = {"extract": folder / "extract.csv", "training": folder / "training.csv",
             "heldout": folder / "heldout.csv"}
    make.main(["--out", str(files["extract"])])
    make.main(["--out", str(files["training"]), "--heldout", str(files["heldout"])])
    return files


def team_pipeline(training: Path):
    """The team's histogram-gradient-boosting pipeline, fitted as their notebook does."""
    return example("fit_team_model").fit(pd.read_csv(training, dtype={"sex": str}))


def spec_with(path: Path, **changes) -> Path:
    """A copy of the diabetes spec with top-level changes, written beside `path`."""
    raw = json.loads(DIABETES_SPEC.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))
    return path


def serve_from(models: Path, db: Path, monkeypatch) -> core_store.Store:
    """Point the settings at a models folder and a fresh store (production mode)."""
    monkeypatch.setenv("APP_MODELS", str(models))
    monkeypatch.setenv("APP_DB", str(db))
    monkeypatch.setenv("APP_PATIENT_KEY", TEST_PATIENT_KEY)
    monkeypatch.setenv("APP_DEMO", "0")
    return core_store.open_store(db)


class ConstantModel:
    """Says the same for everyone: no discrimination."""

    classes_ = np.array([0, 1])

    def fit(self, x, y):
        return self

    def predict_proba(self, x):
        return np.tile([0.7, 0.3], (len(x), 1))


class OutOfRangeModel:
    """Returns 'probabilities' above 1."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x):
        score = np.asarray(x["bmi"], dtype=float) / 20
        return np.column_stack([1 - score, score])


def environment(models: Path, db: Path) -> dict[str, str]:
    env = {**os.environ, "APP_MODELS": str(models), "APP_DB": str(db),
           "APP_PATIENT_KEY": TEST_PATIENT_KEY}
    env.pop("APP_DEMO", None)
    return env
