"""A research team's own model, fitted as it would be in their notebook, and saved for
`python -m core import-model` (RUNBOOK.md, "Adopt your own model", way 2).

Their preprocessing and estimator are their own choice: here one-hot coding of the sex code,
median imputation, and histogram gradient boosting. The pipeline takes a table with the spec's
columns and gives probabilities with predict_proba; it is saved with joblib.

    python examples/diabetes/fit_team_model.py --data extract.csv --out team_model.joblib
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

NUMERIC = ["age", "bmi", "bp", "tc", "ldl", "hdl", "tch", "ltg", "glu"]


def fit(data: pd.DataFrame) -> Pipeline:
    features = data[[*NUMERIC, "sex"]].astype({"sex": str})
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([
            ("numbers", SimpleImputer(strategy="median"), NUMERIC),
            ("sex", OneHotEncoder(handle_unknown="ignore"), ["sex"]),
        ])),
        ("boost", HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05,
                                                 max_leaf_nodes=8, random_state=1)),
    ])
    return pipeline.fit(features, data["progression_1y"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the team's training data (CSV)")
    parser.add_argument("--out", type=Path, required=True, help="where to save the pipeline")
    args = parser.parse_args(argv)
    data = pd.read_csv(args.data, dtype={"sex": str})
    joblib.dump(fit(data), args.out)
    print(f"wrote {args.out}: fitted on {len(data)} patients")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
