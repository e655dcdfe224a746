"""Input drift: the training distribution a version ships, the population stability index of a
recent window against it (near 0 for a window drawn like the training data, above the alert
threshold for a shifted one), weekly missing and out-of-range rates counted exactly, too few to
judge, a version without a distribution, the settings, the alert's conditions, and the page
section; on both backends where the store counts.

Versions here are written by hand from a spec and a synthetic training frame (any spec: the
counting never depends on the model), beside the suite's trained v1, which must ship one too."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from uuid import uuid4

import numpy as np
import pandas as pd
import pytest
from app_support import REPO, TIMEOUT
from conftest import MODELS, point_settings
from streamlit.testing.v1 import AppTest

from core import artifacts, auth, build, drift, preflight
from core import store as core_store
from core.artifacts import sha256_file
from core.audit import canonical_json
from core.clock import now_utc
from core.config import get_settings
from core.distribution import training_distribution
from core.errors import ArtefactMismatch, ConfigError
from core.features import model_frame
from core.spec import Spec, dump_spec, load_spec
from core.store import Event
from core.store.records import Prediction

SPEC = load_spec(REPO / "specs" / "hyperkalaemia.json")  # numbers, categories and yes/no inputs
OTHER_SPEC = load_spec(REPO / "specs" / "diabetes_progression.json")
SHIFTED = next(f for f in SPEC.features if f.numeric and f.required)  # the input that drifts
CATEGORY = next(f for f in SPEC.features if f.type == "category" and len(f.categories) > 2)


def synthetic(spec: Spec, n: int, seed: int, *, shift: str | None = None,
              flip: str | None = None) -> pd.DataFrame:
    """A model frame for any spec: numbers around the middle of their hard limits, categories
    with falling shares (`flip`: rising), yes/no 30% yes, a tenth of optional inputs missing;
    `shift`: that number moved up by two of its standard deviations."""
    rng = np.random.default_rng(seed)
    cols: dict = {}
    for f in spec.features:
        if f.numeric:
            sd = (f.hard_max - f.hard_min) / 12
            v = rng.normal((f.hard_min + f.hard_max) / 2 + (2 * sd if f.name == shift else 0), sd, n)
            v = np.round(v.clip(f.hard_min, f.hard_max), 0 if f.type == "integer" else 1)
        elif f.type == "boolean":
            v = (rng.random(n) < 0.3).astype(float)
        else:
            w = np.arange(len(f.categories), 0, -1, dtype=float)
            v = rng.choice(np.array(f.categories, dtype=object), n, p=(w[::-1] if f.name == flip else w) / w.sum())
        if not f.required:
            v = np.where(rng.random(n) < 0.1, np.nan if f.numeric else None, v)
        cols[f.name] = v
    return model_frame(pd.DataFrame(cols), spec)


def write_version(models: Path, version: str, spec: Spec, frame: pd.DataFrame, *,
                  with_distribution: bool = True) -> Spec:
    """A version folder with what drift reads: its spec (validated ranges from `frame`) and
    statistics, both hashed in its manifest. Returns the version's spec."""
    folder = models / version
    folder.mkdir(parents=True)
    spec = build.with_validated_ranges(spec, frame)
    stats = {"distribution": training_distribution(spec, frame, "a synthetic cohort")} if with_distribution else {}
    (folder / "spec.json").write_text(dump_spec(spec))
    (folder / "statistics.json").write_text(json.dumps(stats) + "\n")
    (folder / "manifest.json").write_text(json.dumps({
        "artefact_format": 2, "version": version, "created_at": "2026-01-01T00:00:00Z",
        "routing": {"expected_review_share": 0.2},
        "files": {name: sha256_file(folder / name) for name in ("spec.json", "statistics.json")}}))
    return spec


# The spec with the drifting number made a category: another version's input of the same name
RETYPED = SPEC.model_copy(update={"subgroups": [], "features": [
    f.model_copy(update={"type": "category", "categories": ["younger", "older"], "hard_min": None,
                         "hard_max": None}) if f.name == SHIFTED.name else f for f in SPEC.features]})


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """d1: the spec with a training distribution; d0: the same without (built before them); x1:
    the spec with one number made a category."""
    models = tmp_path_factory.mktemp("drift-models")
    train = synthetic(SPEC, 4000, seed=1)
    write_version(models, "d1", SPEC, train)
    write_version(models, "d0", SPEC, train, with_distribution=False)
    write_version(models, "x1", RETYPED, synthetic(RETYPED, 1000, seed=9))
    (models / "DEFAULT_VERSION").write_text("d1\n")
    return models


def payload(spec: Spec, row) -> dict:
    """A model frame's row as a validated payload's values (what phi_inputs records)."""
    out = {}
    for f in spec.features:
        v = row[f.name]
        missing = v is None or (isinstance(v, float) and np.isnan(v))
        out[f.name] = None if missing else bool(v) if f.type == "boolean" else \
            int(v) if f.type == "integer" else float(v) if f.numeric else str(v)
    return out


def record(store, version: str, inputs: list[dict], times: list[datetime]) -> None:
    """Predictions of `version` with these raw inputs, at these times."""
    events = []
    for values, at in zip(inputs, times, strict=True):
        pid = str(uuid4())
        rec = Prediction(
            prediction_id=pid, created_at=at, user_name="dr.test", source="form", patient_key=pid,
            input_sha256="0" * 64, risk=0.1, risk_low=0.05, risk_high=0.2, risk_class="low",
            confidence=0.99, routing="auto_finalised", reasons_json="[]", reason_codes=[],
            factors_json="[]", model_version=version, model_sha256="1" * 64)
        events.append(Event("prediction", "dr.test", at, pid, rec, phi={
            "prediction_id": pid, "created_at": at, "patient_ref": "P-1",
            "input_json": canonical_json(values)}))
    store.append(events)


def spread(frame: pd.DataFrame, spec: Spec, start: datetime, days: int) -> tuple[list, list]:
    """The frame's rows as payloads, spread evenly over `days` days from `start`."""
    step = timedelta(days=days) / len(frame)
    return ([payload(spec, r) for _, r in frame.iterrows()],
            [start + i * step for i in range(len(frame))])


def expected_psi(version_spec: Spec, models: Path, frame: pd.DataFrame) -> dict:
    """Each input's PSI computed here from the window's frame (the oracle for the store's counts)."""
    dist = json.loads((models / "d1" / "statistics.json").read_text())["distribution"]["features"]
    out = {}
    for f in version_spec.features:
        entry, col = dist[f.name], frame[f.name]
        missing = col.isna().to_numpy()
        if f.numeric:
            idx = np.searchsorted(entry["edges"], col[~missing].to_numpy(float), side="left")
            actual = list(np.bincount(idx, minlength=len(entry["shares"])))
            e = entry["shares"]
        else:
            text = [("true" if v else "false") if f.type == "boolean" else v for v in col[~missing]]
            actual = [text.count(k) for k in entry["values"]] + [0]
            e = [*entry["values"].values(), entry["other"]]
        a = np.maximum(np.array([*actual, missing.sum()]) / len(frame), 1e-4)
        e = np.maximum(np.array([*e, entry["missing"]]), 1e-4)
        out[f.name] = float(np.sum((a - e) * np.log(a / e)))
    return out


# ---- the training distribution ------------------------------------------------------------


@pytest.mark.parametrize("spec", [SPEC, OTHER_SPEC], ids=["numbers-categories-yes-no", "second-spec"])
def test_training_distribution_describes_every_input(spec):
    frame = synthetic(spec, 3000, seed=4)
    dist = training_distribution(spec, frame, "a synthetic cohort")
    assert dist["rows"] == 3000 and set(dist["features"]) == set(spec.names)
    for f in spec.features:
        entry, missing = dist["features"][f.name], float(frame[f.name].isna().mean())
        assert entry["missing"] == pytest.approx(missing, abs=1e-6)
        if f.numeric:
            edges = entry["edges"]
            assert edges == sorted(set(edges)) and len(entry["shares"]) == len(edges) + 1 <= 10
            assert sum(entry["shares"]) == pytest.approx(1 - missing, abs=1e-5)
            # each decile bin holds about a tenth of the values given (ties move a few)
            assert max(entry["shares"]) / (1 - missing) < 0.2
        else:
            expected = ["false", "true"] if f.type == "boolean" else f.categories
            assert list(entry["values"]) == expected and entry["other"] == 0
            assert sum(entry["values"].values()) == pytest.approx(1 - missing, abs=1e-5)


def test_trained_versions_ship_their_distribution_and_it_is_hash_checked(tmp_path):
    stats = artifacts.statistics_of(MODELS, "v1")  # the suite's v1, trained by core.train
    spec = artifacts.spec_of(MODELS, "v1")
    assert set(stats["distribution"]["features"]) == set(spec.names)
    assert stats["distribution"]["rows"] == read_rows(MODELS / "v1")
    tampered = tmp_path / "models"
    write_version(tampered, "t1", SPEC, synthetic(SPEC, 500, seed=5))
    path = tampered / "t1" / "statistics.json"
    path.write_text(path.read_text().replace('"missing": 0.0', '"missing": 0.5', 1))
    with pytest.raises(ArtefactMismatch, match="statistics.json does not match"):
        artifacts.statistics_of(tampered, "t1")


def read_rows(folder: Path) -> int:
    return json.loads((folder / "manifest.json").read_text())["data"]["patients_included"]


# ---- drift on the store's counts (both backends) -------------------------------------------


def test_psi_near_zero_like_training_and_alert_when_shifted(any_store, models, monkeypatch):
    """An earlier window drawn like the training data, then a recent one with one number moved
    up and one category's shares reversed; each figure equals the PSI computed here."""
    monkeypatch.setenv("APP_MODELS", str(models))
    settings, now = get_settings(), now_utc()
    spec = artifacts.spec_of(models, "d1")
    alike = synthetic(SPEC, 400, seed=2)
    shifted = synthetic(SPEC, 400, seed=3, shift=SHIFTED.name, flip=CATEGORY.name)
    record(any_store, "d1", *spread(alike, spec, now - timedelta(days=62), 25))
    record(any_store, "d1", *spread(shifted, spec, now - timedelta(days=29), 28))

    earlier = drift.drift(any_store, settings, now - timedelta(days=90), now - timedelta(days=35), now=now)
    assert set(earlier.inputs["level"]) == {"ok"} and (earlier.inputs["n"] == 400).all()
    assert earlier.inputs["psi"].max() < settings.drift_psi_warn
    oracle = expected_psi(spec, models, alike)
    assert dict(zip(earlier.inputs["feature"], earlier.inputs["psi"], strict=True)) == \
        pytest.approx(oracle, abs=1e-4)
    assert earlier.conditions() == []

    recent = drift.drift(any_store, settings, now - timedelta(days=90), now, now=now)
    psi = dict(zip(recent.inputs["feature"], recent.inputs["psi"], strict=True))
    assert psi == pytest.approx(expected_psi(spec, models, shifted), abs=1e-4)
    levels = dict(zip(recent.inputs["feature"], recent.inputs["level"], strict=True))
    assert levels[SHIFTED.name] == levels[CATEGORY.name] == "alert"
    assert {v for k, v in levels.items() if k not in (SHIFTED.name, CATEGORY.name)} == {"ok"}
    assert recent.inputs["feature"].iloc[0] in (SHIFTED.name, CATEGORY.name)  # sorted by PSI
    assert recent.inputs["psi"].is_monotonic_decreasing
    bins = recent.bins[recent.bins["feature"] == SHIFTED.name]
    assert bins["window_share"].sum() == pytest.approx(1) and bins["training_share"].sum() == pytest.approx(1, abs=1e-4)

    found = drift.conditions(any_store, settings, now)
    assert sorted(c.key for c in found) == sorted(f"drift:d1:{f.name}" for f in (SHIFTED, CATEGORY))
    message = next(c for c in found if c.key.endswith(SHIFTED.name))
    assert message.kind == "drift" and SHIFTED.label in message.title
    assert f"{psi[SHIFTED.name]:.2f}" in message.message and "alert threshold 0.25" in message.message
    assert "400 predictions" in message.message and "P-1" not in message.message
    monkeypatch.setenv("APP_DRIFT_PSI_ALERT", str(max(psi.values()) + 0.01))
    assert drift.conditions(any_store, get_settings(), now) == []


def test_weekly_missing_and_out_of_range_counted_exactly(any_store, models, monkeypatch):
    """A hand-built window over two weeks: too few to judge, and every rate counted exactly; the
    version without a distribution is said so, and still has its rates."""
    monkeypatch.setenv("APP_MODELS", str(models))
    settings, now = get_settings(), now_utc()
    spec = artifacts.spec_of(models, "d1")
    number = next(f for f in spec.features if f.numeric and not f.required)
    shifted = spec.feature(SHIFTED.name)
    typical = payload(spec, synthetic(SPEC, 1, seed=6).iloc[0])
    typical.update({f.name: round((f.validated_min + f.validated_max) / 2) for f in spec.features
                    if f.numeric})
    monday = datetime.combine((now - timedelta(days=20)).date(), datetime.min.time())
    monday -= timedelta(days=monday.weekday())
    week1 = [typical,
             {**typical, shifted.name: shifted.validated_min - 1},
             {**typical, number.name: None},
             {**typical, shifted.name: shifted.validated_min, number.name: None}]  # at the limit: in
    week2 = [{**typical, shifted.name: shifted.validated_max + 1},
             {**typical, number.name: number.validated_max + 1}]
    record(any_store, "d1", week1 + week2,
           [monday + timedelta(hours=9 + i) for i in range(4)] +
           [monday + timedelta(days=7, hours=9 + i) for i in range(2)])
    record(any_store, "d0", [typical] * 3, [monday + timedelta(days=7, hours=12)] * 3)

    report = drift.drift(any_store, settings, monday, monday + timedelta(days=14), now=now)
    assert report.versions == {"d0": drift.NO_REFERENCE}
    d1 = report.inputs[report.inputs["model_version"] == "d1"]
    assert set(d1["level"]) == {"too_few"} and d1["psi"].isna().all() and set(d1["n"]) == {6}
    d0 = report.inputs[report.inputs["model_version"] == "d0"]
    assert set(d0["level"]) == {"no_reference"} and len(d0) == len(spec.features)
    weekly = report.weekly.set_index(["model_version", "feature", "week"])
    weeks = [pd.Timestamp(monday), pd.Timestamp(monday + timedelta(days=7))]
    got = {(k, w): tuple(weekly.loc[("d1", k, w), ["predictions", "missing", "out_of_range"]].astype(int))
           for k in (SHIFTED.name, number.name) for w in weeks}
    assert got == {(SHIFTED.name, weeks[0]): (4, 0, 1), (SHIFTED.name, weeks[1]): (2, 0, 1),
                   (number.name, weeks[0]): (4, 2, 0), (number.name, weeks[1]): (2, 0, 1)}
    assert weekly.loc[("d1", number.name, weeks[0]), "missing_rate"] == 0.5
    assert weekly.loc[("d1", SHIFTED.name, weeks[1]), "out_of_range_rate"] == 0.5
    assert pd.isna(weekly.loc[("d1", CATEGORY.name, weeks[0]), "out_of_range_rate"])
    assert tuple(weekly.loc[("d0", SHIFTED.name, weeks[1]), ["predictions", "missing"]]) == (3, 0)

    monkeypatch.setenv("APP_DRIFT_MIN_PREDICTIONS", "6")
    judged = drift.drift(any_store, get_settings(), monday, monday + timedelta(days=14), "d1", now=now)
    assert judged.inputs["psi"].notna().all() and judged.versions == {}
    gone = drift.drift(any_store, settings, monday, now, "no-such-version", now=now)
    assert list(gone.versions) == ["no-such-version"] and gone.inputs.empty


def test_an_input_named_alike_with_another_type_in_another_version(any_store, models, monkeypatch):
    """Each version's values are read as its own spec types them: a name that is a number in one
    version and a category in another is binned as a number only for the first."""
    monkeypatch.setenv("APP_MODELS", str(models))
    now = now_utc()
    record(any_store, "x1", *spread(synthetic(RETYPED, 120, seed=10), RETYPED, now - timedelta(days=9), 8))
    spec = artifacts.spec_of(models, "d1")
    record(any_store, "d1", *spread(synthetic(SPEC, 120, seed=11), spec, now - timedelta(days=9), 8))
    report = drift.drift(any_store, get_settings(), now - timedelta(days=10), now, now=now)
    assert len(report.inputs) == 2 * len(SPEC.features) and report.inputs["psi"].notna().all()
    assert set(report.inputs["level"]) <= {"ok", "warn"}  # 120 predictions: some noise
    shares = report.bins[report.bins["feature"] == SHIFTED.name].groupby("model_version")["bin"].apply(list)
    assert shares["x1"] == ["younger", "older", "other", "missing"]
    assert shares["d1"][0].startswith("up to") and shares["d1"][-1] == "missing"


@pytest.mark.parametrize(("name", "value", "words"), [
    ("APP_DRIFT_PSI_ALERT", "0.05", "APP_DRIFT_PSI_ALERT (0.05) must be above APP_DRIFT_PSI_WARN"),
    ("APP_DRIFT_PSI_WARN", "-1", "APP_DRIFT_PSI_WARN"),
    ("APP_DRIFT_WINDOW_DAYS", "0", "APP_DRIFT_WINDOW_DAYS"),
    ("APP_DRIFT_MIN_PREDICTIONS", "many", "APP_DRIFT_MIN_PREDICTIONS"),
])
def test_settings_out_of_range_refuse_the_start_naming_the_setting(monkeypatch, tmp_path, name, value, words):
    point_settings(monkeypatch, str(tmp_path / "store.duckdb"))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="settings are invalid"):
        get_settings()
    found, _ = preflight.problems(model=False)
    assert len(found) == 1 and words in found[0]


# ---- the page ------------------------------------------------------------------------------


def test_monitoring_page_shows_the_drift_section(models, tmp_path, monkeypatch):
    point_settings(monkeypatch, str(tmp_path / "store.duckdb"))
    monkeypatch.setenv("APP_MODELS", str(models))
    store, now = core_store.open_store(get_settings().db), now_utc()
    spec = artifacts.spec_of(models, "d1")
    try:
        record(store, "d1", *spread(synthetic(SPEC, 150, seed=7, shift=SHIFTED.name), spec,
                                    now - timedelta(days=20), 19))
        record(store, "d0", *spread(synthetic(SPEC, 10, seed=8), spec, now - timedelta(days=5), 4))
        at = AppTest.from_file(str(REPO / "views" / "monitoring.py"), default_timeout=TIMEOUT)
        at.session_state["user"] = auth.User("dr.pi", "Dr PI", ("pi",))
        at.run()
        assert not at.exception
        assert "Input drift" in [h.value for h in at.header]
        table = next(d.value for d in at.dataframe if "level_words" in d.value.columns)
        assert table["input"].iloc[0] == f"{SHIFTED.label} (model d1)"
        assert table["psi"].dropna().is_monotonic_decreasing
        assert set(table.loc[table["model_version"] == "d0", "level_words"]) == {"no training distribution"}
        names = {json.loads(c.proto.spec)["name"] for c in at.get("vega_lite_chart")}
        assert {"drift_psi", "drift_rates"} <= names
        [warning] = [w.value for w in at.warning]
        assert warning.startswith(f"{SHIFTED.label}, an input of model d1, has a population stability index")
        assert f"Model d0: {drift.NO_REFERENCE}." in [i.value for i in at.info]
        assert any("drift covers that period at most" in c.value for c in at.caption)
    finally:
        core_store.close_all()
