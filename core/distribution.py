"""The training distribution a version ships (statistics.json's "distribution"): the reference
that monitoring compares each input's recent values with (core.drift), and the population
stability index (PSI) that measures the difference.

Each input of the spec is described over the rows its validated ranges come from (the cleaned
training cohort; for an imported model, the held-out data supplied at import):

- a number: bins cut at the deciles of its values (repeated cut points once), each bin holding
  the values above its lower edge up to and including its upper edge, the first and last bins
  open-ended; the share of rows in each bin, and the share missing;
- a category or a yes/no input: the share of each value (yes/no as JSON writes it, "true" or
  "false"), the share missing, and an "other" share for any value the spec does not list
  (0 at training).

PSI = sum over the bins, the missing one included, of (a - e) x ln(a / e), with `a` the recent
share and `e` the training share; a share below FLOOR (an empty bin) counts as FLOOR, so that
its term stays finite.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.spec import Feature, Spec

QUANTILES = tuple(i / 10 for i in range(1, 10))  # the deciles: up to ten bins
FLOOR = 1e-4  # the share an empty bin counts as (1 in 10,000)
MISSING, OTHER = "missing", "other"
DIGITS = 6  # shares are kept to six decimals


def training_distribution(spec: Spec, frame: pd.DataFrame, source: str) -> dict:
    """Every spec input's distribution over the model frame `frame`; `source` says whose rows
    they are, in words."""
    return {"source": source, "rows": int(len(frame)),
            "method": "numbers: bins at the deciles; categories and yes/no: each value's share",
            "features": {f.name: _feature(f, frame[f.name]) for f in spec.features}}


def _feature(f: Feature, col: pd.Series) -> dict:
    n = max(len(col), 1)
    missing = col.isna().to_numpy()
    share = round(float(missing.sum()) / n, DIGITS)
    if f.numeric:
        values = col[~missing].to_numpy(dtype=float)
        edges = np.unique(np.quantile(values, QUANTILES)) if len(values) else np.array([])
        counts = np.bincount(bin_of(edges, values), minlength=len(edges) + 1)
        return {"kind": "numeric", "edges": edges.tolist(),
                "shares": [round(int(c) / n, DIGITS) for c in counts], "missing": share}
    keys = [key_of(f, v) for v in col[~missing]]
    return {"kind": f.type, "values": {k: round(keys.count(k) / n, DIGITS) for k in values_of(f)},
            "other": 0.0, "missing": share}


def values_of(f: Feature) -> list[str]:
    """The values a category or yes/no input can take, as the recorded inputs' JSON has them."""
    return ["false", "true"] if f.type == "boolean" else list(f.categories or [])


def key_of(f: Feature, value) -> str:
    """A model frame's value of a category or yes/no input as its recorded JSON text."""
    if f.type == "boolean":
        return "true" if bool(value) else "false"
    return str(value)


def bin_of(edges: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Each value's bin: 0 up to and including the first edge, ..., len(edges) above the last."""
    return np.searchsorted(np.asarray(edges, dtype=float), values, side="left")


def bins(entry: dict) -> list[tuple[str, float | None, float | None, float]]:
    """A numeric input's bins as (name, lower edge, upper edge, training share); an open end is
    None. The lower edge is excluded and the upper one included (as in `bin_of`)."""
    edges = entry["edges"]
    lows, highs = [None, *edges], [*edges, None]
    return [(_bin_name(lo, hi), lo, hi, s)
            for lo, hi, s in zip(lows, highs, entry["shares"], strict=True)]


def _bin_name(lo: float | None, hi: float | None) -> str:
    if lo is None and hi is None:
        return "any value"
    if lo is None:
        return f"up to {hi:g}"
    if hi is None:
        return f"above {lo:g}"
    return f"above {lo:g} up to {hi:g}"


def expected(entry: dict) -> list[tuple[str, float]]:
    """(bin, training share) for every bin of an input, numeric or not, in order: a number's
    bins from the lowest, or each value then "other"; the missing bin last."""
    if entry["kind"] == "numeric":
        out = [(name, share) for name, _, _, share in bins(entry)]
    else:
        out = [*entry["values"].items(), (OTHER, entry["other"])]
    return [*out, (MISSING, entry["missing"])]


def psi(expected_shares: Sequence[float], actual_shares: Sequence[float]) -> float:
    """The population stability index of `actual_shares` against `expected_shares` (the same
    bins, in the same order), each share floored at FLOOR."""
    e = np.maximum(np.asarray(expected_shares, dtype=float), FLOOR)
    a = np.maximum(np.asarray(actual_shares, dtype=float), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))
