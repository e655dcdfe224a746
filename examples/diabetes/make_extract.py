"""Write the example cohort for "Adopt your own model" (RUNBOOK.md) in the generic extract format.

The cohort is the diabetes data set that scikit-learn ships (442 patients, ten baseline
measurements, a disease progression score one year later). Patients younger than 20 are left
out, as the spec's extraction_exclusions records. With --heldout, a share of the patients is
written to a second file instead: data the team kept back from fitting, for import-model.

    python examples/diabetes/make_extract.py --out extract.csv [--heldout heldout.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes

COLUMNS = {"s1": "tc", "s2": "ldl", "s3": "hdl", "s4": "tch", "s5": "ltg", "s6": "glu"}
PROGRESSION_THRESHOLD = 200  # the spec's outcome.measurement.event_threshold
HELDOUT_SHARE = 0.45
SEED = 20261126


def extract():
    frame = load_diabetes(scaled=False, as_frame=True).frame.rename(columns=COLUMNS)
    frame.insert(0, "patient_id", [f"DIA-{i + 1:04d}" for i in range(len(frame))])
    frame["age"] = frame["age"].astype(int)
    frame["sex"] = frame["sex"].astype(int).astype(str)
    frame["progression_1y"] = (frame.pop("target") >= PROGRESSION_THRESHOLD).astype(int)
    young = frame["age"] < 20
    print(f"left out at extraction: {int(young.sum())} patients younger than 20")
    return frame[~young]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the extract (CSV)")
    parser.add_argument("--heldout", type=Path, help="also split off held-out data (CSV)")
    args = parser.parse_args(argv)
    frame = extract()
    if args.heldout:
        held = np.random.default_rng(SEED).random(len(frame)) < HELDOUT_SHARE
        frame[held].to_csv(args.heldout, index=False)
        print(f"wrote {args.heldout}: {int(held.sum())} patients held out")
        frame = frame[~held]
    frame.to_csv(args.out, index=False)
    print(f"wrote {args.out}: {len(frame)} patients, {int(frame['progression_1y'].sum())} events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
