"""Model features: the one function that turns validated inputs into the model's frame,
used by training and scoring alike, and the preprocessing that lives inside the pipeline."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.spec import Spec

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer


class Rows:
    """The model's inputs for some patients: one array per spec feature, in spec order (numbers,
    and yes/no as 1/0, as floats with NaN for a missing value; categories as objects with None),
    exactly the columns of the model frame. The DataFrame itself is built only when asked for
    (`frame`): the compiled scoring path (core.compiled) never needs one."""

    __slots__ = ("columns", "n", "_frame")

    def __init__(self, columns: dict[str, np.ndarray], frame: pd.DataFrame | None = None):
        self.columns = columns
        self.n = len(next(iter(columns.values()))) if columns else 0
        self._frame = frame

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @property
    def frame(self) -> pd.DataFrame:
        """The model frame of these rows (what the pipeline's predict_proba takes)."""
        if self._frame is None:
            self._frame = pd.DataFrame(self.columns)
        return self._frame

    @classmethod
    def of(cls, x: Rows | pd.DataFrame) -> Rows:
        """Rows as they are, or the columns of a model frame (which is kept)."""
        if isinstance(x, Rows):
            return x
        return cls({name: x[name].to_numpy() for name in x.columns}, frame=x)


def model_rows(rows: Iterable[Mapping], spec: Spec) -> Rows:
    """The model's inputs for validated payloads, without a DataFrame (see model_frame)."""
    rows = list(rows)
    return Rows(_columns({f.name: [r.get(f.name) for r in rows] for f in spec.features}, spec))


def model_frame(rows: pd.DataFrame | Iterable[Mapping], spec: Spec) -> pd.DataFrame:
    """The spec's features in spec order with the dtypes the pipeline was fitted on."""
    if not isinstance(rows, pd.DataFrame):
        return model_rows(rows, spec).frame
    columns = {f.name: rows[f.name] if f.name in rows else [None] * len(rows)
               for f in spec.features}
    return pd.DataFrame(_columns(columns, spec), index=rows.index)


def _columns(columns: dict, spec: Spec) -> dict[str, np.ndarray]:
    out = {}
    for f in spec.features:
        col = columns[f.name]
        if f.type == "category":
            out[f.name] = np.array([None if _missing(v) else v for v in col], dtype=object)
        else:
            out[f.name] = np.array(col, dtype=float)  # None becomes NaN
    return out


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def build_preprocessor(spec: Spec) -> ColumnTransformer:
    """Few transformers (one per kind of feature), so one-row transforms stay fast."""
    # imported here: scoring and the modules that do not fit anything never load them
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    kinds = {
        "required": [f.name for f in spec.features if f.numeric and f.required],
        "optional": [f.name for f in spec.features if f.numeric and not f.required],
        "boolean": [f.name for f in spec.features if f.type == "boolean"],
        "category": [f.name for f in spec.features if f.type == "category"],
    }
    steps = {
        "required": StandardScaler(),
        # Missing optional values: impute the training median and add a was-missing column.
        "optional": Pipeline([
            ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]),
        "boolean": "passthrough",
        "category": OneHotEncoder(
            categories=[spec.feature(n).categories for n in kinds["category"]], drop="first",
            handle_unknown="ignore", sparse_output=False,
        ),
    }
    parts = [(kind, steps[kind], names) for kind, names in kinds.items() if names]
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=True)


def output_owners(preprocessor: ColumnTransformer, spec: Spec) -> list[str]:
    """For each transformed column, the name of the spec feature it came from."""
    owner = {}
    for f in spec.features:
        owner[f.name] = owner[f"missingindicator_{f.name}"] = f.name
        for c in f.categories or []:
            owner[f"{f.name}_{c}"] = f.name
    return [owner[name.split("__", 1)[1]] for name in preprocessor.get_feature_names_out()]


def group_by_owner(values: np.ndarray, owners: list[str], names: list[str]) -> np.ndarray:
    """Sum per-column values (rows x columns) into per-feature values (rows x features)."""
    return values @ _owner_matrix(tuple(owners), tuple(names))


@lru_cache(maxsize=16)
def _owner_matrix(owners: tuple[str, ...], names: tuple[str, ...]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    matrix = np.zeros((len(owners), len(names)))
    for j, owner in enumerate(owners):
        matrix[j, index[owner]] = 1.0
    matrix.setflags(write=False)
    return matrix
