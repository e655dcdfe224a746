"""Top contributing factors for any model: for each input, how much the patient's risk changes
when that input alone is set to a typical value (the training median, or the most common
category or answer). Model-agnostic: it only calls the model's predict_proba. For a logistic
regression trained here the same numbers come from its coefficients directly (the model is
linear in its transformed inputs, so the change is exact); a test checks that both agree.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from core.features import Rows, group_by_owner, model_frame
from core.spec import Spec

TOP_FACTORS = 3
DESCRIPTION = (
    "Top contributing factors: for each input, the model's risk is computed again with that "
    "input alone set to a typical value (the median of the patients it was fitted on, or their "
    "most common category or answer). The inputs whose own value moves the risk most are "
    "shown, with whether this patient's value raises or lowers the risk compared with the "
    "typical value. It describes the model, not the patient's biology.")


def reference_values(spec: Spec, frame: pd.DataFrame) -> dict:
    """The typical value of each input in a model frame (median; most common value otherwise)."""
    out: dict = {}
    for f in spec.features:
        col = frame[f.name].dropna()
        if f.numeric:
            out[f.name] = float(np.median(col))
        elif f.type == "boolean":
            out[f.name] = bool(col.mean() >= 0.5)
        else:
            counts = col.value_counts()
            out[f.name] = max(f.categories, key=lambda c: (counts.get(c, 0), -f.categories.index(c)))
    return out


def perturbation_effects(logit_of: Callable[[pd.DataFrame], np.ndarray], frame: pd.DataFrame,
                         spec: Spec, reference: dict) -> np.ndarray:
    """Rows x features: logit(risk) minus logit(risk with that feature at its reference value).

    One model call for all of it: the frame and one copy per feature are stacked."""
    n = len(frame)
    copies = [frame]
    ref_frame = model_frame([reference], spec)
    for f in spec.features:
        changed = frame.copy()
        changed[f.name] = np.repeat(ref_frame[f.name].to_numpy(), n)
        copies.append(changed)
    eta = logit_of(pd.concat(copies, ignore_index=True))
    base = eta[:n]
    return np.column_stack([base - eta[n * (j + 1): n * (j + 2)] for j in range(len(spec.features))])


def perturbed(rows: Rows, spec: Spec, reference: Rows) -> Rows:
    """perturbation_effects' stacked rows without a DataFrame: the rows, then one copy per
    feature with that feature at its reference value (`reference`: the one reference row)."""
    n, names = len(rows), spec.names
    out = {}
    for j, name in enumerate(names):
        col = rows[name]
        stacked = np.empty(n * (len(names) + 1), dtype=col.dtype)
        stacked.reshape(len(names) + 1, n)[:] = col
        stacked[n * (j + 1): n * (j + 2)] = reference[name][0]
        out[name] = stacked
    return Rows(out)


def effects_of(eta: np.ndarray, n: int, spec: Spec) -> np.ndarray:
    """Rows x features from the logits of `perturbed` rows (as perturbation_effects gives)."""
    base = eta[:n]
    return np.column_stack([base - eta[n * (j + 1): n * (j + 2)] for j in range(len(spec.names))])


def linear_effects(z: np.ndarray, z_reference: np.ndarray, weights: np.ndarray,
                   owners: list[str], spec: Spec) -> np.ndarray:
    """The same effects for a model linear in its transformed inputs z (weights on the logit)."""
    return group_by_owner((z - z_reference) * weights, owners, spec.names)


def top_factors(effects: np.ndarray, spec: Spec) -> list[list[dict]]:
    """The TOP_FACTORS inputs with the largest effect, per row, with their direction."""
    top = np.argsort(-np.abs(effects), axis=1, kind="stable")[:, :TOP_FACTORS]
    values = np.take_along_axis(effects, top, axis=1).round(3).tolist()  # plain floats: fast
    names, labels = spec.names, [f.label for f in spec.features]
    return [[{"feature": names[j], "label": labels[j], "effect": e,
              "direction": "raises risk" if e > 0 else "lowers risk"}
             for j, e in zip(idx, row, strict=True) if e != 0]
            for idx, row in zip(top.tolist(), values, strict=True)]
