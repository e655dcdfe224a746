"""How sure the model is about one patient's risk: the uncertainty that decides routing.

Two methods, each described for clinicians in DESCRIPTIONS (the manifest, the model card and the
governance page quote it):

- `delta_method` (a logistic regression trained here): a normal distribution on the logit of the
  risk, with the standard error from the coefficients' covariance (the delta method).
- `held_out_neighbours` (any other model, trained or imported): a Beta distribution for the true
  risk, from what happened to the calibration patients whose predicted risk is closest to this
  patient's (Jeffreys prior: events + 1/2, non-events + 1/2).

Each gives, per prediction, the probability that the true risk lies above or below a boundary,
and a 95% interval. Confidence (core.routing) is one of those probabilities.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betainc, expit, ndtr
from scipy.stats import beta as beta_dist

from core.routing import logit

Z95 = 1.959964
MIN_NEIGHBOURS = 30
NEIGHBOUR_SHARE = 0.10  # of the calibration split, at least MIN_NEIGHBOURS
DESCRIPTIONS = {
    "delta_method": (
        "Confidence is the probability, given the statistical uncertainty of the model's own "
        "coefficients (estimated from the training patients by the delta method), that the "
        "patient's true risk lies on the safe side of the boundary for the class shown. It "
        "reflects how much data the model learned from, not measurement error in the inputs or "
        "changes in the population."),
    "held_out_neighbours": (
        "Confidence is the probability that the patient's true risk lies on the safe side of the "
        "boundary for the class shown, judged from what actually happened to the {k} calibration "
        "patients (held out from training) whose predicted risk was closest to this patient's: "
        "their event rate and its uncertainty. It reflects how well the model's risks matched "
        "outcomes near this risk, not measurement error in the inputs or changes in the "
        "population."),
}
INTERVALS = {
    "delta_method": "The 95% interval is the range of risks the model's coefficients support.",
    "held_out_neighbours": (
        "The 95% interval is the range of event rates consistent with what happened to the "
        "closest calibration patients, widened to include the model's own estimate."),
}


class Normal:
    """Delta method: the logit of the true risk ~ Normal(eta, se)."""

    def __init__(self, eta: np.ndarray, se: np.ndarray):
        self.eta = np.asarray(eta, dtype=float)
        self.se = np.maximum(np.asarray(se, dtype=float), 1e-9)

    def p_above(self, boundary: float) -> np.ndarray:
        return ndtr((self.eta - logit(boundary)) / self.se)

    def p_below(self, boundary: float) -> np.ndarray:
        return ndtr((logit(boundary) - self.eta) / self.se)

    def interval(self) -> tuple[np.ndarray, np.ndarray]:
        return expit(self.eta - Z95 * self.se), expit(self.eta + Z95 * self.se)


class Beta:
    """Held-out neighbours: the true risk ~ Beta(events + 1/2, non-events + 1/2)."""

    def __init__(self, events: np.ndarray, n: np.ndarray, risk: np.ndarray):
        self.a = np.asarray(events, dtype=float) + 0.5
        self.b = np.asarray(n, dtype=float) - np.asarray(events, dtype=float) + 0.5
        self.risk = np.asarray(risk, dtype=float)

    def p_above(self, boundary: float) -> np.ndarray:
        return 1 - betainc(self.a, self.b, boundary)

    def p_below(self, boundary: float) -> np.ndarray:
        return betainc(self.a, self.b, boundary)

    def interval(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = beta_dist.ppf([[0.025], [0.975]], self.a, self.b)
        return np.minimum(lo, self.risk), np.maximum(hi, self.risk)


def neighbour_count(n: int) -> int:
    """How many calibration patients count as 'closest': 10% of them, at least 30 (all if fewer)."""
    return min(n, max(MIN_NEIGHBOURS, round(NEIGHBOUR_SHARE * n)))


def fit_neighbours(eta: np.ndarray, y: np.ndarray) -> dict:
    """The statistics the held-out-neighbours method keeps: the calibration patients' logits in
    order, the running count of their events, and how many neighbours to use."""
    order = np.argsort(eta, kind="mergesort")
    return {"logits": np.round(eta[order], 6).tolist(),
            "events_cumsum": [0, *np.cumsum(y[order]).astype(int).tolist()],
            "k": neighbour_count(len(y))}


class Neighbours:
    """Event counts among the k calibration patients ranked closest to a predicted risk."""

    def __init__(self, stats: dict):
        self.logits = np.asarray(stats["logits"], dtype=float)
        self.cumsum = np.asarray(stats["events_cumsum"], dtype=float)
        self.k = int(stats["k"])

    def counts(self, eta: np.ndarray, own: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(events, n) in the window of k patients centred on each logit; `own`: the outcome of a
        calibration patient scored against its own split, left out of its window."""
        n_all = len(self.logits)
        pos = np.searchsorted(self.logits, eta)
        start = np.clip(pos - self.k // 2, 0, n_all - self.k)
        events = self.cumsum[start + self.k] - self.cumsum[start]
        n = np.full(len(eta), float(self.k))
        if own is not None:
            events, n = events - own, n - 1
        return events, n

    def distribution(self, eta: np.ndarray, own: np.ndarray | None = None) -> Beta:
        events, n = self.counts(eta, own)
        return Beta(events, n, expit(eta))
