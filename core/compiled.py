"""The model's pipeline compiled to array code, so that scoring one patient builds no pandas
DataFrame and runs none of scikit-learn's per-call validation.

`compile_model` reads the fitted pipeline's standard scikit-learn steps into numpy arithmetic:
SimpleImputer (with its missing-value indicator), StandardScaler, MinMaxScaler, RobustScaler,
MaxAbsScaler, OneHotEncoder and OrdinalEncoder (unknown and missing categories, a dropped
category and infrequent ones coded as the fitted encoder itself codes them: each category is
put through the encoder once, at compile time), ColumnTransformer (columns by name or position,
passthrough, drop, the remainder, weights), nested Pipelines and an identity
FunctionTransformer. The final estimator is compiled when it is a binary LogisticRegression, a
HistGradientBoostingClassifier with numeric splits, a random forest, extra-trees or decision
tree classifier, or any of these (or a pipeline of them) inside CalibratedClassifierCV with
sigmoid or isotonic calibration; any other estimator's own predict_proba is called on the
compiled matrix. Any other step, or a step of a type derived from these, raises NotCompiled:
then the whole pipeline serves.

Nothing compiled is trusted unchecked: `check` compares it with the pipeline's own
predict_proba (and, for the delta-method model, the transformed inputs) on the reference
patient and a fixed set of synthetic patients built from the spec (`check_rows`). Any
difference above TOLERANCE, any failure or warning, and the pipeline serves.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from core.errors import NotCompiled
from core.features import Rows, model_rows
from core.spec import Spec

TOLERANCE = 1e-12  # largest difference from the pipeline's own risk (and transformed inputs)
CHECK_SEED = 20260519  # the synthetic check rows are the same at every load
CHECK_RANDOM_ROWS = 64
TREE_ROWS = 1024  # rows walked through every tree at once
_UNKNOWN = "\x00a category no encoder was fitted on\x00"


# ---- the compiled model -----------------------------------------------------------------

class Compiled:
    """A pipeline as array code: `transform` gives what its final estimator receives, `proba`
    the probability of the event (the second column of the pipeline's predict_proba)."""

    def __init__(self, pre, head, describe: str):
        self.pre, self.head, self.describe = pre, head, describe
        self.category_columns: list[str] = []

    def inputs(self, rows: Rows) -> dict[str, np.ndarray]:
        """The columns as a many-row model frame gives them to the pipeline: a missing category
        is NaN there (pandas' text columns), None in Rows."""
        columns = rows.columns
        if not self.category_columns:
            return columns
        out = dict(columns)
        for name in self.category_columns:
            col = columns[name]
            if None in col.tolist():
                col = col.copy()
                col[np.equal(col, None)] = np.nan
                out[name] = col
        return out

    def transform(self, rows: Rows) -> np.ndarray:
        return _float(_matrix(self.pre(self.inputs(rows))))

    def proba(self, rows: Rows) -> np.ndarray:
        return self.head.proba(self.pre(self.inputs(rows)))


def compile_model(model, spec: Spec) -> Compiled:
    """The compiled form of a fitted model that takes the spec's model frame; NotCompiled
    naming the first step it cannot take."""
    from sklearn.pipeline import Pipeline

    if type(model) is Pipeline:
        *steps, (_, final) = model.steps
        pre = _chain([t for _, t in steps])
    else:
        final, pre = model, _Identity()
    head = _head(final)
    out = Compiled(pre, head, _describe(model))
    out.category_columns = [f.name for f in spec.features if f.type == "category"]
    return out


def _describe(model) -> str:
    steps = getattr(model, "steps", None)
    if steps:
        return " -> ".join(type(s).__name__ for _, s in steps)
    return type(model).__name__


# ---- blocks: what one step receives and returns -------------------------------------------

def _matrix(x, names=None) -> np.ndarray:
    """A block as the array a scikit-learn step makes of it: named columns (the model frame,
    or a part of it) become floats when every column is a number, objects otherwise."""
    if isinstance(x, np.ndarray):
        return x
    cols = [x[n] for n in names] if names is not None else list(x.values())
    if not cols:
        raise NotCompiled("a step receives no columns")
    if all(c.dtype.kind == "f" for c in cols):
        return np.column_stack(cols)
    out = np.empty((len(cols[0]), len(cols)), dtype=object)
    for j, c in enumerate(cols):
        out[:, j] = c
    return out


def _float(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.float64 else np.asarray(x, dtype=np.float64)


def _names(step) -> list[str] | None:
    names = getattr(step, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


class _Identity:
    def __call__(self, x):
        return x


class _Chain:
    def __init__(self, steps: list):
        self.steps = steps

    def __call__(self, x):
        for step in self.steps:
            x = step(x)
        return x


def _chain(steps: list):
    compiled = [_transformer(t) for t in steps if t is not None and not _is(t, "passthrough")]
    return compiled[0] if len(compiled) == 1 else _Chain(compiled)


def _is(value, text: str) -> bool:
    return isinstance(value, str) and value == text


def _transformer(t):
    """One fitted transformer as a function of its block."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        MaxAbsScaler,
        MinMaxScaler,
        OneHotEncoder,
        OrdinalEncoder,
        RobustScaler,
        StandardScaler,
    )

    kind = type(t)
    if kind is Pipeline:
        return _chain([s for _, s in t.steps])
    if kind is ColumnTransformer:
        return _Columns(t)
    if kind is SimpleImputer:
        return _Impute(t)
    if kind is StandardScaler:
        return _Affine(t, sub=t.mean_ if t.with_mean else None,
                       div=t.scale_ if t.with_std else None)
    if kind is RobustScaler:
        return _Affine(t, sub=t.center_ if t.with_centering else None,
                       div=t.scale_ if t.with_scaling else None)
    if kind is MaxAbsScaler:
        return _Affine(t, div=t.scale_)
    if kind is MinMaxScaler:
        return _Affine(t, mul=t.scale_, add=t.min_,
                       clip=tuple(t.feature_range) if t.clip else None)
    if kind in (OneHotEncoder, OrdinalEncoder):
        return _Lookup(t)
    if kind is FunctionTransformer and t.func is None:
        return _Identity()
    raise NotCompiled(f"{kind.__name__} is not a step the compiled path takes")


class _Columns:
    """ColumnTransformer: each transformer on its columns, the results side by side."""

    def __init__(self, ct):
        # A sparse output (one-hot columns, say) is computed dense: the same numbers.
        index = getattr(ct, "_transformer_to_input_indices", None)
        if index is None:
            raise NotCompiled("a ColumnTransformer without its fitted column indices")
        names = _names(ct)
        weights = ct.transformer_weights or {}
        self.by_name = names is not None
        self.parts = []
        for name, trans, columns in ct.transformers_:
            idx = list(index.get(name, []))
            if _is(trans, "drop") or not idx:
                continue
            if isinstance(columns, (str, int)):
                raise NotCompiled(f"ColumnTransformer part {name!r} selects one column as a "
                                  "1-d array")
            step = _Identity() if _is(trans, "passthrough") else _transformer(trans)
            selected = [names[i] for i in idx] if self.by_name else idx
            self.parts.append((step, selected, weights.get(name)))

    def __call__(self, x):
        blocks = []
        keys = None if isinstance(x, np.ndarray) or self.by_name else list(x)
        for step, selected, weight in self.parts:
            if isinstance(x, np.ndarray):
                if self.by_name:
                    raise NotCompiled("columns by name from an array")
                sub = x[:, selected]
            elif self.by_name:
                sub = {n: x[n] for n in selected}
            else:
                sub = {keys[i]: x[keys[i]] for i in selected}
            out = _matrix(step(sub))
            blocks.append(out if weight is None else out * weight)
        return np.hstack(blocks)


class _Impute:
    """SimpleImputer: each missing value replaced by its column's fitted statistic, then the
    missing-value indicator columns, as scikit-learn orders them."""

    def __init__(self, imp):
        self.names = _names(imp)
        mv = imp.missing_values
        self.nan = isinstance(mv, float) and math.isnan(mv)
        if not self.nan and mv is not None:
            raise NotCompiled(f"SimpleImputer with missing_values={mv!r}")
        self.missing_value = mv
        fit_dtype = imp._fit_dtype
        self.objects = fit_dtype.kind == "O"
        if fit_dtype.kind not in "fO":
            raise NotCompiled(f"SimpleImputer fitted on {fit_dtype}")
        stats = imp.statistics_
        fill_dtype = getattr(imp, "_fill_dtype", fit_dtype)
        if imp.keep_empty_features:
            self.keep = None
            self.fill = stats.astype(fill_dtype, copy=False)
        else:
            invalid = _missing_mask(stats.reshape(1, -1), nan=True).ravel()
            self.keep = np.flatnonzero(~invalid) if invalid.any() else None
            self.fill = stats[~invalid].astype(fill_dtype, copy=False)
        self.indicator = self.error_on_new = None
        if imp.add_indicator:
            ind = imp.indicator_
            if ind.features == "missing-only" and ind.error_on_new:
                self.error_on_new = set(ind.features_.tolist())
            self.indicator = ind.features_

    def __call__(self, x):
        X = _matrix(x, self.names)
        X = np.array(X, dtype=object if self.objects else np.float64)  # a copy, as sklearn's
        if self.nan:
            mask = _missing_mask(X, nan=True)
        else:
            mask = np.equal(X, self.missing_value)
        if self.indicator is not None and self.error_on_new is not None:
            new = set(np.flatnonzero(mask.any(axis=0)).tolist()) - self.error_on_new
            if new:
                raise NotCompiled("missing values where the indicator saw none")  # sklearn raises
        masked = mask
        if self.keep is not None:
            X, masked = X[:, self.keep], mask[:, self.keep]
        X = np.where(masked, self.fill[None, :], X)
        if not self.objects:
            X = X.astype(np.float64, copy=False)
        if self.indicator is None:
            return X
        return np.hstack((X, mask[:, self.indicator]))


def _missing_mask(X: np.ndarray, *, nan: bool) -> np.ndarray:
    """scikit-learn's mask of NaN: np.isnan for numbers, x != x for objects."""
    if X.dtype.kind == "f":
        return np.isnan(X)
    return np.not_equal(X, X).astype(bool)


class _Affine:
    """The scalers: (x - sub) / div, or x * mul + add then clipped (MinMaxScaler)."""

    def __init__(self, t, *, sub=None, div=None, mul=None, add=None, clip=None):
        self.names = _names(t)
        self.sub, self.div, self.mul, self.add, self.clip = sub, div, mul, add, clip

    def __call__(self, x):
        X = np.array(_matrix(x, self.names), dtype=np.float64)  # a copy
        if self.sub is not None:
            X -= self.sub
        if self.div is not None:
            X /= self.div
        if self.mul is not None:
            X *= self.mul
        if self.add is not None:
            X += self.add
        if self.clip is not None:
            np.clip(X, self.clip[0], self.clip[1], out=X)
        return X


class _Lookup:
    """OneHotEncoder and OrdinalEncoder: each input column's value picks its output columns
    from a table that the fitted encoder itself wrote, one row per category (and one for a
    missing value and one for an unknown category, or a refusal where the encoder refuses)."""

    def __init__(self, enc):
        from sklearn.preprocessing import OneHotEncoder

        self.names = _names(enc)
        cats = enc.categories_
        if type(enc) is OneHotEncoder:
            widths = getattr(enc, "_n_features_outs", None)
            if widths is None:
                raise NotCompiled("a OneHotEncoder without its output widths")
        else:
            widths = [1] * len(cats)
        starts = np.concatenate([[0], np.cumsum(widths)]).astype(int)
        numeric = all(c.dtype.kind in "iuf" for c in cats)
        base = [c[0] for c in cats]
        self.columns = []  # per input column: (codes: dict, table, missing row, unknown row)
        base_out = None
        for j, c in enumerate(cats):
            probes = [*c.tolist(), np.nan, _unknown(c, numeric)]
            outs = [_probe(enc, base, j, v, numeric) for v in probes]
            if base_out is None:
                base_out = next(o for o in outs if o is not None)
            lo, hi = starts[j], starts[j + 1]
            for o in outs:
                if o is not None and not _same_outside(o, base_out, lo, hi):
                    raise NotCompiled("an encoder whose columns are not one per input")
            rows = [o[lo:hi] if o is not None else None for o in outs]
            known = rows[:len(c)]
            if any(r is None for r in known):
                raise NotCompiled("an encoder that refuses one of its own categories")
            codes = {}
            for k, v in enumerate(c.tolist()):
                if not _is_missing(v):
                    codes.setdefault(v, k)
            table = np.array(known, dtype=base_out.dtype).reshape(len(c), hi - lo)
            self.columns.append((codes, table, rows[len(c)], rows[len(c) + 1]))
        self.dtype = base_out.dtype

    def __call__(self, x):
        X = _matrix(x, self.names)
        parts = []
        for j, (codes, table, missing, unknown) in enumerate(self.columns):
            col = X[:, j]
            if len(col) == 1:  # one patient: no index arrays
                parts.append(self._row(col[0], codes, table, missing, unknown).reshape(1, -1))
                continue
            parts.append(np.array([self._row(v, codes, table, missing, unknown) for v in col],
                                  dtype=self.dtype).reshape(len(col), table.shape[1]))
        return np.hstack(parts)

    @staticmethod
    def _row(v, codes, table, missing, unknown):
        if _is_missing(v):
            row = missing
        else:
            k = codes.get(v)
            row = table[k] if k is not None else unknown
        if row is None:
            raise NotCompiled("a value the encoder refuses")  # the pipeline raises its own error
        return row


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _unknown(categories: np.ndarray, numeric: bool):
    if not numeric:
        return _UNKNOWN
    finite = [float(v) for v in categories.tolist() if not _is_missing(v)]
    return (max(abs(v) for v in finite) if finite else 0.0) * 2 + 1.5


def _probe(enc, base: list, j: int, value, numeric: bool) -> np.ndarray | None:
    """The encoder's output for one row: `value` in column j, every other column at its first
    category; None when the encoder refuses it."""
    row = list(base)
    row[j] = value
    X = np.array([row], dtype=np.float64 if numeric else object)
    if enc_names := _names(enc):
        import pandas as pd

        X = pd.DataFrame({n: X[:, i] for i, n in enumerate(enc_names)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = enc.transform(X)
        except ValueError:
            return None
    out = out.toarray() if hasattr(out, "toarray") else np.asarray(out)
    return out[0]


def _same_outside(out: np.ndarray, base: np.ndarray, lo: int, hi: int) -> bool:
    rest = np.r_[out[:lo], out[hi:]]
    other = np.r_[base[:lo], base[hi:]]
    return bool(np.array_equal(rest, other, equal_nan=True))


# ---- final estimators -------------------------------------------------------------------

def _head(est):
    """The final estimator: `proba(block)` (and `decision(block)` where it has one)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    kind = type(est)
    classes = getattr(est, "classes_", None)
    if classes is None or len(classes) != 2:
        raise NotCompiled(f"{kind.__name__} is not a fitted two-class classifier")
    if kind is Pipeline:
        *steps, (_, final) = est.steps
        return _PipelineHead(_chain([t for _, t in steps]), _head(final))
    if kind is LogisticRegression:
        return _Logistic(est)
    if kind is CalibratedClassifierCV:
        return _Calibrated(est)
    if kind is HistGradientBoostingClassifier:
        return _trees_or_call(est, _HistTrees)
    if kind in (RandomForestClassifier, ExtraTreesClassifier, DecisionTreeClassifier):
        return _trees_or_call(est, _Forest)
    return _Call(est)


def _trees_or_call(est, compile_trees):
    try:
        return compile_trees(est)
    except NotCompiled:
        return _Call(est)


class _PipelineHead:
    def __init__(self, pre, head):
        self.pre, self.head = pre, head
        if hasattr(head, "decision"):
            self.decision = lambda x: head.decision(pre(x))

    def proba(self, x):
        return self.head.proba(self.pre(x))


class _Logistic:
    """LogisticRegression, two classes: expit(z . w + b)."""

    def __init__(self, lr):
        if lr.coef_.shape[0] != 1:
            raise NotCompiled("a LogisticRegression with more than one coefficient row")
        self.w, self.b = lr.coef_[0].astype(np.float64), float(lr.intercept_[0])
        self.names = _names(lr)

    def decision(self, x):
        return _float(_matrix(x, self.names)) @ self.w + self.b

    def proba(self, x):
        return expit(self.decision(x))


class _Forest:
    """Decision trees, evaluated side by side (one array step per level of depth): the forest's
    probability is the mean of its trees' leaf frequencies, as scikit-learn computes them."""

    def __init__(self, est):
        trees = getattr(est, "estimators_", None) or [est]
        if getattr(est, "n_outputs_", 1) != 1:
            raise NotCompiled("a multi-output forest")
        feature, threshold, left, right, miss, value, roots, depth = [], [], [], [], [], [], [], 0
        offset = 0
        for tree in trees:
            t = tree.tree_
            n = t.node_count
            leaf = t.children_left == -1
            ids = np.arange(n) + offset
            feature.append(np.where(leaf, 0, t.feature))
            threshold.append(t.threshold)
            left.append(np.where(leaf, ids, t.children_left + offset))
            right.append(np.where(leaf, ids, t.children_right + offset))
            mgl = getattr(t, "missing_go_to_left", None)
            miss.append(np.zeros(n, dtype=bool) if mgl is None else np.asarray(mgl, dtype=bool))
            v = t.value[:, 0, :]
            if v.shape[1] != 2:
                raise NotCompiled("a tree of more than two classes")
            normaliser = v.sum(axis=1)
            normaliser[normaliser == 0.0] = 1.0
            value.append(v[:, 1] / normaliser)
            roots.append(offset)
            depth = max(depth, int(t.max_depth))
            offset += n
        self.eval = _TreeArrays(feature, threshold, left, right, miss, value, roots, depth,
                                float32=True, names=_names(est))
        self.n = len(trees)

    def proba(self, x):
        return self.eval.leaf_values(x).sum(axis=1) / self.n


class _HistTrees:
    """HistGradientBoostingClassifier with numeric splits: the baseline plus every tree's leaf
    value, through expit."""

    def __init__(self, est):
        if getattr(est, "_preprocessor", None) is not None or (
                est.is_categorical_ is not None and np.any(est.is_categorical_)):
            raise NotCompiled("gradient boosting with categorical splits")
        if est.n_trees_per_iteration_ != 1:
            raise NotCompiled("gradient boosting of more than two classes")
        feature, threshold, left, right, miss, value, roots, depth = [], [], [], [], [], [], [], 0
        offset = 0
        for (predictor,) in est._predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise NotCompiled("gradient boosting with categorical splits")
            n = len(nodes)
            leaf = nodes["is_leaf"].astype(bool)
            ids = np.arange(n) + offset
            feature.append(np.where(leaf, 0, nodes["feature_idx"]))
            threshold.append(nodes["num_threshold"])
            left.append(np.where(leaf, ids, nodes["left"].astype(np.int64) + offset))
            right.append(np.where(leaf, ids, nodes["right"].astype(np.int64) + offset))
            miss.append(nodes["missing_go_to_left"].astype(bool))
            value.append(np.where(leaf, nodes["value"], 0.0))
            roots.append(offset)
            depth = max(depth, int(nodes["depth"].max()))
            offset += n
        self.eval = _TreeArrays(feature, threshold, left, right, miss, value, roots, depth,
                                float32=False, names=_names(est))
        self.baseline = float(np.asarray(est._baseline_prediction).ravel()[0])

    def decision(self, x):
        return self.baseline + self.eval.leaf_values(x).sum(axis=1)

    def proba(self, x):
        return expit(self.decision(x))


class _TreeArrays:
    """Many trees as flat node arrays; a leaf points to itself, so every tree is walked the same
    number of steps."""

    def __init__(self, feature, threshold, left, right, miss, value, roots, depth, *, float32,
                 names):
        self.feature = np.concatenate(feature).astype(np.intp)
        self.threshold = np.concatenate(threshold).astype(np.float64)
        # children[2 * node + went_left]
        self.children = np.column_stack([np.concatenate(right), np.concatenate(left)]
                                        ).astype(np.intp).ravel()
        self.missing_left = np.concatenate(miss)
        self.value = np.concatenate(value).astype(np.float64)
        self.roots = np.asarray(roots, dtype=np.intp)
        self.depth = depth
        self.float32, self.names = float32, names

    def leaf_values(self, x) -> np.ndarray:
        X = _float(_matrix(x, self.names))
        if self.float32:  # scikit-learn's trees compare float32 inputs with their thresholds
            X = X.astype(np.float32).astype(np.float64)
        if len(X) > TREE_ROWS:  # bounded memory: rows x trees node indices per block
            return np.concatenate([self._leaves(X[i:i + TREE_ROWS])
                                   for i in range(0, len(X), TREE_ROWS)])
        return self._leaves(X)

    def _leaves(self, X: np.ndarray) -> np.ndarray:
        n = len(X)
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        row = np.arange(n)[:, None] * X.shape[1]
        flat = X.ravel()
        nan = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            v = flat[row + self.feature[node]]
            left = v <= self.threshold[node]
            if nan:
                left = np.where(np.isnan(v), self.missing_left[node], left)
            node = self.children[2 * node + left]
        return self.value[node]


class _Calibrated:
    """CalibratedClassifierCV, two classes, sigmoid or isotonic: the mean of its calibrated
    classifiers' probabilities, each the calibrator of its estimator's decision function (or
    event probability)."""

    def __init__(self, cal):
        from sklearn.calibration import _SigmoidCalibration
        from sklearn.frozen import FrozenEstimator
        from sklearn.isotonic import IsotonicRegression

        self.parts = []
        for cc in cal.calibrated_classifiers_:
            if cc.method not in ("sigmoid", "isotonic") or len(cc.calibrators) != 1:
                raise NotCompiled(f"calibration by {cc.method!r}")
            outer = cc.estimator
            uses_decision = hasattr(outer, "decision_function")
            inner = outer.estimator if type(outer) is FrozenEstimator else outer
            head = _head(inner)
            score = head.decision if uses_decision else head.proba
            if uses_decision and not hasattr(head, "decision"):
                raise NotCompiled(f"{type(inner).__name__}'s decision function")
            c = cc.calibrators[0]
            if type(c) is _SigmoidCalibration:
                calibrate = _sigmoid(float(c.a_), float(c.b_))
            elif type(c) is IsotonicRegression:
                calibrate = _isotonic(c)
            else:
                raise NotCompiled(f"a {type(c).__name__} calibrator")
            self.parts.append((score, calibrate))

    def proba(self, x):
        total = 0.0
        for score, calibrate in self.parts:
            p = calibrate(np.asarray(score(x), dtype=np.float64).reshape(-1))
            total = total + np.where((1.0 < p) & (p <= 1.0 + 1e-5), 1.0, p)
        return total / len(self.parts)


def _sigmoid(a: float, b: float):
    return lambda t: expit(-(a * t + b))


def _isotonic(iso):
    xs, ys = np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_)
    if iso.out_of_bounds not in ("clip", "nan"):
        raise NotCompiled(f"isotonic calibration with out_of_bounds={iso.out_of_bounds!r}")
    clip = iso.out_of_bounds == "clip"
    if len(xs) == 1:
        return lambda t: np.full(t.shape, ys[0], dtype=np.float64)

    def calibrate(t):
        if clip:
            t = np.clip(t, iso.X_min_, iso.X_max_)
        return np.interp(t, xs, ys, left=np.nan, right=np.nan).astype(np.float64)

    return calibrate


class _Call:
    """Any other classifier: its own predict_proba (and decision_function) on the compiled
    array. Fitted with feature names, it would warn at each call with an array: a shallow copy
    without them (the same fitted state) takes the array."""

    def __init__(self, est):
        if not callable(getattr(est, "predict_proba", None)):
            raise NotCompiled(f"{type(est).__name__} has no predict_proba")
        self.names = _names(est)
        if self.names is not None:
            est = copy.copy(est)
            try:
                del est.feature_names_in_
            except AttributeError as exc:
                raise NotCompiled(f"{type(est).__name__} fitted with feature names") from exc
        self.est = est
        if callable(getattr(est, "decision_function", None)):
            self.decision = lambda x: np.asarray(est.decision_function(
                _float(_matrix(x, self.names))))

    def proba(self, x):
        return np.asarray(self.est.predict_proba(_float(_matrix(x, self.names))),
                          dtype=np.float64)[:, 1]


# ---- the load-time check ----------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """What the check found: whether the compiled path serves, and why (for the log and for
    what core reports about a loaded version)."""

    compiled: bool
    detail: str
    rows: int = 0
    max_difference: float | None = None


def check(compiled: Compiled, model, spec: Spec, reference: dict, pre=None, *,
          rows: Rows | None = None, what: str = "check rows") -> Check:
    """Compare the compiled path with the pipeline on `rows` (default: `check_rows`): the event
    probability, and the transformed inputs `pre.transform` gives (the delta-method model's)."""
    rows = check_rows(spec, reference) if rows is None else rows
    frame = rows.frame
    try:
        want = np.asarray(model.predict_proba(frame), dtype=np.float64)[:, 1]
        want_z = None if pre is None else np.asarray(pre.transform(frame), dtype=np.float64)
    except Exception as exc:  # the team's own pipeline: whatever it raises, compare nothing
        return Check(False, f"the pipeline itself fails on the {what} ({type(exc).__name__}: "
                            f"{exc})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got = compiled.proba(rows)
            got_z = None if pre is None else compiled.transform(rows)
            singles = _single_rows(rows, spec)
            got_single = [float(compiled.proba(r)[0]) for r in singles]
        except Exception as exc:  # a compiled step that does not fit this pipeline after all
            return Check(False, f"the compiled path fails on the {what} "
                                f"({type(exc).__name__}: {exc})")
    if caught:
        return Check(False, f"the compiled path warns: {caught[0].message}")
    diffs = [_difference(got, want)]
    if pre is not None:
        diffs.append(_difference(got_z, want_z))
    for r, p in zip(singles, got_single, strict=True):
        diffs.append(_difference(np.array([p]), np.asarray(model.predict_proba(r.frame),
                                                           dtype=np.float64)[:, 1]))
    worst = max(diffs)
    n = len(rows)
    if not worst <= TOLERANCE:
        return Check(False, f"the compiled path differs from the pipeline's predict_proba by "
                            f"{worst:.3g} (more than {TOLERANCE:g}) on {n} {what}", n, worst)
    return Check(True, f"compiled ({compiled.describe}); equal to the pipeline's predict_proba "
                       f"within {TOLERANCE:g} on {n} {what} (largest difference "
                       f"{worst:.2g})", n, worst)


def _difference(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return math.inf
    same_nan = np.isnan(got) == np.isnan(want)
    if not same_nan.all():
        return math.inf
    d = np.abs(got - want)[~np.isnan(want)]
    return float(d.max()) if d.size else 0.0


def _single_rows(rows: Rows, spec: Spec) -> list[Rows]:
    """The check rows with a missing category, each alone: a one-row model frame gives a
    missing category to the pipeline as None, a many-row one as NaN (pandas' text columns), and
    the compiled path must agree with both."""
    out = []
    for f in spec.features:
        if f.type != "category" or f.required:
            continue
        hit = np.flatnonzero(np.equal(rows[f.name], None))
        if hit.size:
            i = int(hit[0])
            out.append(Rows({k: v[i:i + 1] for k, v in rows.columns.items()}))
    return out


def check_rows(spec: Spec, reference: dict) -> Rows:
    """The rows the check compares on: the reference patient; each input alone at its hard
    limits, its validated range's ends and middle (numbers), each category and yes/no answer,
    and missing where it may be; then CHECK_RANDOM_ROWS patients drawn with a fixed seed within
    the hard limits, an optional value missing one time in five."""
    rows = [dict(reference)]
    for f in spec.features:
        rows += [{**reference, f.name: v} for v in _probe_values(f)]
    rng = np.random.default_rng(CHECK_SEED)
    for _ in range(CHECK_RANDOM_ROWS):
        row: dict[str, Any] = {}
        for f in spec.features:
            if not f.required and rng.random() < 0.2:
                row[f.name] = None
            elif f.numeric:
                v = float(rng.uniform(f.hard_min, f.hard_max))
                row[f.name] = round(v) if f.type == "integer" else v
            elif f.type == "boolean":
                row[f.name] = bool(rng.random() < 0.5)
            else:
                row[f.name] = f.categories[int(rng.integers(len(f.categories)))]
        rows.append(row)
    return model_rows(rows, spec)


def _probe_values(f) -> list:
    if f.numeric:
        lo, hi = f.validated_min, f.validated_max
        values = [f.hard_min, f.hard_max]
        if lo is not None and hi is not None:
            values += [lo, hi, (lo + hi) / 2]
        if f.type == "integer":
            values = [round(v) for v in values]
    elif f.type == "boolean":
        values = [True, False]
    else:
        values = list(f.categories)
    return values + ([None] if not f.required else [])
