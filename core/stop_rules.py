"""Stop rules: documented conditions under which the serving model may no longer deserve trust.

Each rule reads the serving version's predictions of the last `stop_rule_window_days` days that
have an outcome in force. A rule that is met raises a recommendation for the PI, shown on the
monitoring and governance pages (and sent as an alert); the PI acknowledges it with what they
decided (suspend scoring with the stop switch, investigate, or continue, with the reason). A
recommendation lasts until its rule is no longer met, or its version no longer serves. Raising,
acknowledging and clearing are each recorded (the stop_rule_events table, in the audit trail).

The rules, with the settings that set them (RUNBOOK.md "When to stop using the model"):
- calibration_slope: with at least stop_rule_min_outcomes outcomes, the calibration slope lies
  outside [stop_rule_slope_min, stop_rule_slope_max].
- low_risk_event_rate: with at least stop_rule_min_low_risk_outcomes outcomes among the
  auto-finalised low-risk predictions, their event rate is above the routing rule's target (the
  manifest's routing.low_risk_event_rate_target): patients sent home without review have events
  more often than the deployment was validated for.
- discrimination: with at least stop_rule_min_outcomes outcomes, the upper end of the AUROC's 95%
  interval is below the lower end of the held-out AUROC's (the manifest's metrics.auroc_ci95).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from core import artifacts, evaluate
from core.clock import now_utc
from core.conditions import Condition
from core.config import Settings, get_settings
from core.performance import too_few
from core.store import Event, Store, open_store
from core.store.records import StopRuleEvent
from core.text import actor, reason_text

MONITORING = "monitoring"  # who records a rule raised or cleared
DECISIONS = {"suspend": "suspend scoring now with the stop switch",
             "investigate": "keep scoring while the cause is investigated",
             "continue": "keep scoring: the rule's figures do not call for stopping (reason given)"}
TITLES = {"calibration_slope": "Calibration slope outside its range",
          "low_risk_event_rate": "Events among auto-finalised low-risk patients above the target",
          "discrimination": "Discrimination below the validated range"}


@dataclass(frozen=True)
class RuleCheck:
    """One rule on one version's recent outcomes: 'met', 'not_met', 'too_few' or 'not_applicable'
    (the artefact does not state the figure the rule compares with)."""

    rule: str
    model_version: str
    state: str
    statement: str  # the rule in words, with its thresholds
    evidence: str  # the figures it was judged on


@dataclass(frozen=True)
class Recommendation:
    """A rule met and not yet cleared, with its latest acknowledgement (None: not acknowledged)."""

    rule: str
    model_version: str
    raised_at: datetime
    evidence: str
    acknowledged: StopRuleEvent | None

    @property
    def title(self) -> str:
        return TITLES[self.rule]

    def message(self) -> str:
        return (f"Stop rule met for model {self.model_version}: {self.evidence} Consider suspending "
                "scoring with the stop switch on the governance page; acknowledge the "
                "recommendation there with what you decided.")


def check(store: Store, settings: Settings, now: datetime) -> list[RuleCheck]:
    """Every rule on the serving version's outcomes of the window ending now (none when no
    version serves)."""
    version = artifacts.serving_version(store.active_activation(), settings.models)
    if version is None:
        return []
    manifest = artifacts.manifest_of(settings.models, version)
    start = now - timedelta(days=settings.stop_rule_window_days)
    pairs = store.outcome_pairs((start, now + timedelta(seconds=1), version))
    window = f"predictions of the last {settings.stop_rule_window_days} days with an outcome"
    return [_slope(pairs, settings, version, window), _low_risk(pairs, settings, version, manifest, window),
            _discrimination(pairs, settings, version, manifest, window)]


def _counts(pairs: pd.DataFrame):
    y, p = pairs["event"].to_numpy(dtype=int), pairs["risk"].to_numpy(dtype=float)
    return y, p, len(y), int(y.sum())


def _slope(pairs: pd.DataFrame, s: Settings, version: str, window: str) -> RuleCheck:
    statement = (f"The calibration slope is outside {s.stop_rule_slope_min:g} to "
                 f"{s.stop_rule_slope_max:g}, with at least {s.stop_rule_min_outcomes} outcomes.")
    y, p, n, events = _counts(pairs)
    if too_few(n, events, s.stop_rule_min_outcomes):
        return RuleCheck("calibration_slope", version, "too_few", statement,
                         f"{n} outcomes with {events} events in the {window}.")
    slope = evaluate.calibration_slope(y, p)
    met = not s.stop_rule_slope_min <= slope <= s.stop_rule_slope_max
    return RuleCheck("calibration_slope", version, "met" if met else "not_met", statement,
                     f"Calibration slope {slope:.2f} on {n} outcomes ({events} events) in the "
                     f"{window}; the range is {s.stop_rule_slope_min:g} to {s.stop_rule_slope_max:g}.")


def _low_risk(pairs: pd.DataFrame, s: Settings, version: str, manifest: dict, window: str) -> RuleCheck:
    target = manifest.get("routing", {}).get("low_risk_event_rate_target")
    statement = (f"The event rate among auto-finalised low-risk patients is above the routing "
                 f"target ({target:.1%})" if target is not None else "The event rate among "
                 "auto-finalised low-risk patients is above the routing target") + \
        f", with at least {s.stop_rule_min_low_risk_outcomes} of their outcomes."
    if target is None:
        return RuleCheck("low_risk_event_rate", version, "not_applicable", statement,
                         "This version's manifest states no low-risk event-rate target.")
    low = pairs[(pairs["routing"] == "auto_finalised") & (pairs["risk_class"] == "low")]
    y, _, n, events = _counts(low)
    if n < s.stop_rule_min_low_risk_outcomes:
        return RuleCheck("low_risk_event_rate", version, "too_few", statement,
                         f"{n} outcomes among auto-finalised low-risk predictions in the {window}.")
    lo, hi = evaluate.wilson(events, n)
    rate = events / n
    return RuleCheck("low_risk_event_rate", version, "met" if rate > target else "not_met", statement,
                     f"{events} events among {n} auto-finalised low-risk patients ({rate:.1%}, 95% "
                     f"interval {lo:.1%} to {hi:.1%}) in the {window}; the target is at most {target:.1%}.")


def _discrimination(pairs: pd.DataFrame, s: Settings, version: str, manifest: dict,
                    window: str) -> RuleCheck:
    held_out = (manifest.get("metrics") or {}).get("auroc_ci95")
    statement = (f"The AUROC's 95% interval lies wholly below the held-out AUROC's "
                 f"({held_out[0]:.3f} to {held_out[1]:.3f})" if held_out else
                 "The AUROC's 95% interval lies wholly below the held-out AUROC's") + \
        f", with at least {s.stop_rule_min_outcomes} outcomes."
    if not held_out:
        return RuleCheck("discrimination", version, "not_applicable", statement,
                         "This version's manifest states no held-out AUROC interval.")
    y, p, n, events = _counts(pairs)
    if too_few(n, events, s.stop_rule_min_outcomes):
        return RuleCheck("discrimination", version, "too_few", statement,
                         f"{n} outcomes with {events} events in the {window}.")
    auc, lo, hi = evaluate.auroc_ci(y, p)
    return RuleCheck("discrimination", version, "met" if hi < held_out[0] else "not_met", statement,
                     f"AUROC {auc:.3f} (95% interval {lo:.3f} to {hi:.3f}) on {n} outcomes in the "
                     f"{window}; held out: {held_out[0]:.3f} to {held_out[1]:.3f}.")


def _open(records: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """Per (rule, version) whose latest raise is not cleared: that raise and its latest
    acknowledgement since."""
    out: dict[tuple[str, str], dict] = {}
    for row in records.itertuples(index=False):
        key = (row.rule, row.model_version)
        if row.action == "raised" and key not in out:
            out[key] = {"raised": row, "ack": None}
        elif row.action == "acknowledged" and key in out:
            out[key]["ack"] = StopRuleEvent(**row._asdict())
        elif row.action == "cleared":
            out.pop(key, None)
    return out


def refresh(store: Store | None = None, settings: Settings | None = None,
            now: datetime | None = None) -> list[Recommendation]:
    """Check the rules, record each recommendation newly raised or cleared, and return those in
    force (oldest first)."""
    return review(store, settings, now)[1]


def review(store: Store | None = None, settings: Settings | None = None,
           now: datetime | None = None) -> tuple[list[RuleCheck], list[Recommendation]]:
    """refresh(), and every rule's check as well (what the pages show)."""
    settings = settings or get_settings()
    store = store or open_store(settings.db)
    now = now or now_utc()
    checked = check(store, settings, now)
    checks = {(c.rule, c.model_version): c for c in checked}
    current = _open(store.stop_rule_records())
    events = []
    for key, c in checks.items():
        if c.state == "met" and key not in current:
            events.append(_event(c.rule, c.model_version, "raised", c.evidence, "", MONITORING, now))
    for key in current:
        c = checks.get(key)
        if c is None or c.state == "not_met":
            why = c.evidence if c else f"Model {key[1]} no longer serves."
            events.append(_event(key[0], key[1], "cleared", why, "", MONITORING, now))
    if events:
        store.append(events)
        current = _open(store.stop_rule_records())
    return checked, [Recommendation(rule, version, held["raised"].created_at, held["raised"].evidence,
                                    held["ack"]) for (rule, version), held in current.items()]


def acknowledge(rule: str, model_version: str, *, decision: str, note: str, by: str,
                store: Store | None = None) -> StopRuleEvent:
    """Record the PI's answer to a recommendation in force; 'suspend' also turns the stop switch on."""
    from core.stop_switch import set_suspended

    by = actor(by)
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
    note = reason_text(note, "acknowledging a stop-rule recommendation")
    store = store or open_store(get_settings().db)
    if (rule, model_version) not in _open(store.stop_rule_records()):
        raise ValueError(f"no recommendation of rule {rule} is in force for model {model_version}")
    at = now_utc()
    event = _event(rule, model_version, "acknowledged", "", f"{decision}: {note}", by, at)
    store.append([event])
    if decision == "suspend":
        set_suspended(True, by=by, reason=f"stop rule {rule} met for model {model_version}: {note}")
    return event.record


def conditions(store: Store, settings: Settings, now: datetime) -> list[Condition]:
    """The recommendations in force, as conditions an alert is sent for."""
    return [Condition(key=f"stop_rule:{r.rule}:{r.model_version}", kind="stop_rule",
                      title=f"{r.title} (model {r.model_version})", message=r.message())
            for r in refresh(store, settings, now)]


def history(store: Store | None = None) -> pd.DataFrame:
    """Every recommendation event, oldest first."""
    return (store or open_store(get_settings().db)).stop_rule_records()


def _event(rule: str, version: str, action: str, evidence: str, note: str, by: str,
           at: datetime) -> Event:
    return Event(f"stop_rule_{action}", by, at, f"{rule}:{version}", StopRuleEvent(
        event_id=str(uuid.uuid4()), created_at=at, user_name=by, rule=rule, model_version=version,
        action=action, evidence=evidence, note=note))
