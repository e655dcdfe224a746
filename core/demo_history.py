"""The demo's seeded history: about 12 weeks of SYNTHETIC activity for a fresh demo-mode store,
so every page shows its figures on first run. Demo mode only; a demo file (it assumes the
demo's model and cohort, core.synthetic).

What it records, ending now: predictions on weekdays (a few at weekends) for synthetic
patients of the demo cohort, scored by the serving model through the scoring code (risk,
interval, routing and reasons are the model's own), and the inputs validation refused; over
the last DRIFT_WEEKS weeks a growing share of patients comes from a renal clinic, so eGFR falls,
some values below the validated range and some missing (refused: eGFR is required). Review
decisions, signed in the demo reviewer's name, on most predictions routed to review: mostly
agreeing, overriding in both directions with reasons and comments, a few recent ones left
waiting. Outcomes for most predictions past the outcome horizon, drawn from the cohort's true
risk (core.synthetic.true_risk), so real-world calibration and AUROC mean something.

Marked as demo data in the store: every seeded row's user_name (and its audit entry's actor) is
DEMO_USER, 'demo-history', a name no account can take outside demo mode and none has inside it;
predictions and rejected inputs have source SEEDED_SOURCE, 'demo_history', which no page,
command or API call can record (core.scoring); outcomes have that source too; and one row of
the demo_history table says when it was seeded, the range of times it covers and its counts.
Everything goes through the store's one append path (one transaction per table), so the audit
chain holds every row. Seeded once: never on a store that holds predictions or a seeding.
"""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from core import outcomes, review, scoring, synthetic
from core.auth import DEMO_ACCOUNTS
from core.clock import now_utc
from core.config import Settings, get_settings
from core.errors import AlreadySeeded, ConfigError
from core.features import model_frame
from core.serving import active_artefact
from core.spec import validate_many
from core.store import Event, Store, open_store
from core.store.records import DemoHistorySeeded

DEMO_USER = "demo-history"
SEEDED_SOURCE = scoring.SEEDED_SOURCE
REVIEWER = "demo-reviewer"  # the demo account whose name signs the seeded decisions
WEEKS, DRIFT_WEEKS = 12, 4
RANDOM_SEED = 20260301  # the same draws every time; the times follow `now`
DEMO_OUTCOME = "hyperkalaemia_42d"  # the demo model's outcome: any other model is not seeded
OPTIONAL_MISSING = {"weight_kg": 0.04, "lvef": 0.06, "sbp": 0.03}  # as in the cohort's extract
# Reason codes and comments of the seeded decisions, by decision (used when configured)
COMMENTS = {
    "override_high": [
        ("recent medication change", "Trimethoprim started this week; potassium likely to rise."),
        ("recent medication change", "ACE inhibitor dose doubled at the last clinic visit."),
        ("clinical context not captured by the model", "Hyperkalaemia on a previous MRA trial."),
        ("clinical context not captured by the model", "Acute kidney injury last month; renal "
                                                       "function not yet stable."),
    ],
    "override_low": [
        ("suspected lab or entry error", "Baseline potassium from a haemolysed sample; repeat "
                                         "4.3 mmol/L."),
        ("suspected lab or entry error", "eGFR typed from an old result; today's is 64."),
        ("clinical context not captured by the model", "Potassium binder already prescribed by "
                                                       "the renal team; weekly checks booked."),
        ("other", "Stable on this RAAS inhibitor dose for years; potassium never above 4.8."),
    ],
    "agree": [("clinical context not captured by the model", ""),
              ("other", "Checked the record: nothing the model does not know.")],
}


def seed(store: Store | None = None, settings: Settings | None = None,
         now: datetime | None = None, *, days: int = WEEKS * 7) -> dict:
    """Seed the store with the synthetic history of `days` days ending `now` (the demo's: 12
    weeks); returns what it recorded ("seeded" False, with the reason, when it did nothing).
    ConfigError outside demo mode."""
    settings = settings or get_settings()
    if not settings.demo:
        raise ConfigError("the synthetic demo history is seeded in demo mode only (APP_DEMO=1): "
                          "a production store never holds synthetic records")
    store = store or open_store(settings.db)
    started = time.perf_counter()
    try:
        _refuse_if_seeded(store)
        artefact = active_artefact(store, settings)
        if artefact.spec.outcome.name != DEMO_OUTCOME or \
                set(artefact.spec.names) != set(synthetic.CLEAN_FEATURES):
            return {"seeded": False, "reason": f"model {artefact.version} is not the demo's"}
        summary = _seed(store, settings, artefact, now or now_utc(), days)
    except AlreadySeeded as exc:
        return {"seeded": False, "reason": str(exc)}
    return {"seeded": True, **summary, "seconds": round(time.perf_counter() - started, 2)}


def seeded(store: Store | None = None) -> dict | None:
    """The latest seeding of the store's demo history (its demo_history row), or None."""
    store = store or open_store(get_settings().db)
    if not store.count(DemoHistorySeeded.table):
        return None
    return list(store.iter_rows(DemoHistorySeeded.table))[-1]


def _refuse_if_seeded(store: Store) -> None:
    if store.count("predictions") or store.count(DemoHistorySeeded.table):
        raise AlreadySeeded("the store already holds predictions or a seeded history")


def _seed(store: Store, settings: Settings, artefact, now: datetime, days: int) -> dict:
    """Draw and score the history, then append it: the seeding's own row first (so a store that
    holds any seeded row says so), guarded against a seeding that came first."""
    rng = np.random.default_rng(RANDOM_SEED)
    times = _times(rng, now, days)
    latent = _patients(rng, times, now)
    payloads = _payloads(rng, latent)
    good, bad = validate_many(artefact.spec, payloads, strict=True)
    scored = [i for i, _, _ in good]
    inputs = [(ref, values) for _, ref, values in good]
    events = scoring.prediction_events(
        artefact, inputs, artefact.predictor.predict(model_frame([v for _, v in inputs], artefact.spec)),
        user=DEMO_USER, source=SEEDED_SOURCE, key=settings.patient_key_bytes(),
        seeded_at=[times[i] for i in scored]) if inputs else []
    truth = synthetic.true_risk(latent)[scored]
    decisions = _decisions(rng, events, truth, artefact.predictor.rule.action_threshold, now)
    results = _outcomes(rng, events, latent.iloc[scored], truth, now)
    first = min(times, default=now)
    last = max((ev.at for ev in [*events, *decisions, *results]), default=now)
    record = DemoHistorySeeded(
        seeding_id=str(uuid.uuid4()), created_at=now, user_name=DEMO_USER, first_at=first,
        last_at=last, predictions=len(events), rejected_inputs=len(bad),
        review_decisions=len(decisions), outcomes=len(results), description=(
            f"Synthetic demo history ({days} days): predictions of synthetic patients scored "
            f"by model {artefact.version}, review decisions, outcomes; eGFR drifts over the last "
            f"{DRIFT_WEEKS} weeks. Rows marked user_name '{DEMO_USER}', source '{SEEDED_SOURCE}'."))
    store.append([Event("demo_history_seeded", DEMO_USER, now, record.seeding_id, record)],
                 precondition=lambda: _refuse_if_seeded(store))
    store.append(events)
    scoring.record_rejections(store, artefact, [(payloads[i], errors) for i, errors in bad],
                              user=DEMO_USER, source=SEEDED_SOURCE,
                              seeded_at=[times[i] for i, _ in bad])
    store.append(decisions)
    store.append(results)
    routed = sum(ev.record.routing == "review" for ev in events)
    return {"first_at": first, "last_at": last, "predictions": len(events),
            "routed_to_review": routed, "rejected_inputs": len(bad),
            "review_decisions": len(decisions), "pending_reviews": routed - len(decisions),
            "outcomes": len(results)}


def _times(rng: np.random.Generator, now: datetime, days: int) -> list[datetime]:
    """When each patient was scored: 18 to 34 a weekday in clinic hours, 0 to 3 a weekend
    day, over the `days` days up to `now`; in time order."""
    out = []
    for days_ago in range(days - 1, -1, -1):
        day = now.date() - timedelta(days=days_ago)
        n = int(rng.integers(18, 35) if day.weekday() < 5 else rng.integers(0, 4))
        opening = datetime.combine(day, datetime.min.time()) + timedelta(hours=8)
        seconds = np.sort(rng.integers(0, 10 * 3600, n))
        out += [opening + timedelta(seconds=int(s)) for s in seconds]
    return [t for t in out if t <= now]


def _patients(rng: np.random.Generator, times: list[datetime], now: datetime) -> pd.DataFrame:
    """One synthetic patient per time (clean values); in the drift weeks a share that grows to
    60% comes from a renal clinic: eGFR around 16 (some below the validated 8)."""
    df = synthetic.eligible_patients(len(times), seed=RANDOM_SEED)
    days_ago = np.array([(now - t).total_seconds() / 86400 for t in times])
    drift = np.clip((DRIFT_WEEKS * 7 - days_ago) / (DRIFT_WEEKS * 7), 0, 1) * 0.6
    renal = rng.random(len(df)) < drift
    egfr = np.round(np.clip(rng.normal(16.0, 7.0, len(df)), 3.0, 45.0), 1)
    potassium = df["potassium"] + 0.008 * (df["egfr"] - egfr)  # the cohort's eGFR-potassium link
    df["egfr"] = np.where(renal, egfr, df["egfr"])
    df["potassium"] = np.where(renal, np.round(np.clip(potassium, 3.0, 6.0), 1), df["potassium"])
    df["renal_clinic"] = renal
    return df


def _payloads(rng: np.random.Generator, latent: pd.DataFrame) -> list[dict]:
    """What was sent for each patient (JSON types): optional values sometimes missing; about 1%
    with a potassium typed ten times too large or left out; some renal-clinic eGFRs left out."""
    columns = ["patient_ref", *synthetic.CLEAN_FEATURES]
    rows = [dict(zip(columns, values, strict=True))
            for values in zip(*(latent[c].tolist() for c in columns), strict=True)]
    n = len(rows)
    gone = {name: rng.random(n) < share for name, share in OPTIONAL_MISSING.items()}
    typo, no_potassium = rng.random(n) < 0.006, rng.random(n) < 0.004
    no_egfr = latent["renal_clinic"].to_numpy() & (rng.random(n) < 0.08)
    for i, row in enumerate(rows):
        for name, missing in gone.items():
            if missing[i]:
                row.pop(name)
        if typo[i]:
            row["potassium"] = round(row["potassium"] * 10, 1)
        if no_potassium[i]:
            row.pop("potassium")
        if no_egfr[i]:
            row.pop("egfr")
    return rows


def _decisions(rng: np.random.Generator, events: list[Event], truth: np.ndarray,
               threshold: float, now: datetime) -> list[Event]:
    """A decision on most predictions routed to review, hours after it; the reviewer overrides
    more often where the true risk is on the other side of the threshold. Left waiting: those
    whose decision time is still to come, and about a third of the last four days'."""
    codes = get_settings().review_reason_codes
    name = DEMO_ACCOUNTS[REVIEWER][1]
    routed = [(i, ev) for i, ev in enumerate(events) if ev.record.routing == "review"]
    waiting = {i for i, ev in routed if ev.at > now - timedelta(days=4) and rng.random() < 0.35}
    old = [i for i, ev in routed if now - timedelta(days=3) < ev.at < now - timedelta(days=1)]
    waiting |= set(old[:2])  # some waiting for more than a day
    out = []
    for i, ev in routed:
        at = _working_hours(rng, ev.at + timedelta(
            hours=float(np.clip(rng.lognormal(np.log(4.0), 1.0), 0.2, 96))))
        if i in waiting or at > now:
            continue
        low = ev.record.risk_class == "low"
        other_side = truth[i] >= 0.75 * threshold if low else truth[i] < threshold
        p_override = (0.30 if other_side else 0.03) if low else (0.35 if other_side else 0.05)
        decision = ("override_high" if low else "override_low") if rng.random() < p_override \
            else "agree"
        options = [(c, text) for c, text in COMMENTS[decision] if c in codes]
        pick = 0 if decision == "agree" and rng.random() < 0.85 else rng.integers(len(options) or 1)
        code, comment = options[pick] if options else (codes[0], "")
        if not comment and (decision != "agree" or code == "other"):
            comment = "Seeded demo decision."
        d = review.checked({"prediction_id": ev.record.prediction_id, "decision": decision,
                            "reason_code": code, "comment": comment}, codes)
        record = review.decision_record(d, ev.record.risk_class, user=DEMO_USER,
                                        display_name=name, at=at)
        out.append(Event("review_decision", DEMO_USER, at, d.prediction_id, record))
    return sorted(out, key=lambda e: e.at)


def _working_hours(rng: np.random.Generator, at: datetime) -> datetime:
    """`at`, or when it falls outside 07:00 to 19:00, early in the next working morning."""
    if 7 <= at.hour < 19:
        return at.replace(microsecond=0)
    day = at.date() + timedelta(days=1 if at.hour >= 19 else 0)
    return datetime.combine(day, datetime.min.time()) + timedelta(
        hours=8, seconds=int(rng.integers(0, 7200)))


def _outcomes(rng: np.random.Generator, events: list[Event], latent: pd.DataFrame,
              truth: np.ndarray, now: datetime) -> list[Event]:
    """An outcome for 92% of the predictions past the horizon, recorded up to a week after
    it (not yet, when that is still to come); the event drawn from the true risk, the highest
    potassium measured as the cohort's follow-up draws it."""
    if not events:
        return []
    definition = outcomes.outcome_of(events[0].record.model_version)  # one version seeds
    horizon = definition.horizon_days
    potassium = latent["potassium"].to_numpy()
    out = []
    for i, ev in enumerate(events):
        start: date = ev.at.date()
        due = datetime.combine(start + timedelta(days=horizon), datetime.min.time())
        at = due + timedelta(hours=9, seconds=int(rng.integers(0, 7 * 86400)))
        event = bool(rng.random() < truth[i])
        if rng.random() >= 0.92 or at > now:
            continue
        value = (min(synthetic.HYPERKALAEMIA_THRESHOLD + rng.exponential(0.45), 7.2) if event
                 else float(np.clip(potassium[i] + rng.normal(0.1, 0.3), 3.0, 5.4)))
        o = outcomes.checked({
            "prediction_id": ev.record.prediction_id, "event": event,
            "event_date": start + timedelta(days=int(rng.integers(2, horizon + 1))) if event else None,
            "measured_value": None if rng.random() < 0.05 else round(value, 1),
            "source": SEEDED_SOURCE})
        record = outcomes.outcome_record(o, {"created_at": ev.at}, definition, user=DEMO_USER,
                                         now=at)
        out.append(Event("outcome", DEMO_USER, at, o.prediction_id, record))
    return sorted(out, key=lambda e: e.at)
