"""A store with rows in every event table, made by the product's own calls: the audit tests'
common ground (every column checked, the bulk check against the walk)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import MODELS, TEST_PATIENT_KEY, TYPICAL_PATIENT
from pydantic import SecretStr

import core
from core import alerts, auth, clients, demo_history, stop_rules
from core import store as core_store
from core.assessment import FIELDS as ASSESSMENT_FIELDS
from core.assessment import record_assessment
from core.cds_feedback import OVERRIDE_SYSTEM, record_feedback
from core.conditions import Condition
from core.config import get_settings
from core.governance import record_signoff
from core.maintenance import purge_expired, record_configuration
from core.outcomes import record_outcome
from core.review import decide
from core.serving import activate
from core.stop_switch import set_suspended
from core.store import Store


@contextmanager
def every_table_store(path: Path, ref: str, *, comment: str = "checked",
                      more_scores: int = 0) -> Iterator[Store]:
    """The store at `path` with at least one row in each event table but audit_verifications:
    a day of the demo's seeded history (made in demo mode, first: it is seeded only into a
    store without predictions), patients named `ref`-..., a review (CDS feedback, assessment)
    comment, `more_scores` further predictions. Closed after."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"APP_DB": str(path), "APP_MODELS": str(MODELS), "APP_DEMO": "1"}.items():
            mp.setenv(name, value)
        mp.delenv("APP_PATIENT_KEY", raising=False)
        # a day that ends as a Monday's clinic opens: the seeding's own row, no predictions
        assert demo_history.seed(now=datetime(2026, 11, 2, 8, 0), days=1)["predictions"] == 0
        for name, value in {"APP_DB": str(path), "APP_MODELS": str(MODELS), "APP_DEMO": "0",
                            "APP_PATIENT_KEY": TEST_PATIENT_KEY}.items():
            mp.setenv(name, value)
        store = core_store.open_store(path)
        record_configuration(store, get_settings(), by="setup")
        auth.add_user("alice", roles=["admin"], password="a-long-password", by="setup")
        auth.record_access("alice", "sign_in", "password", source="10.0.0.1")
        clients.add_client("lab-system", roles=["clinician"], by="alice")
        activate("v1", by="alice", reason="validated")
        queued = core.score({**TYPICAL_PATIENT, "patient_ref": f"{ref}-Q", "lvef": None}, user="dr",
                            source="form")
        with pytest.raises(core.InvalidInput):
            core.score({**TYPICAL_PATIENT, "patient_ref": f"{ref}-X", "age": "old"}, user="dr",
                       source="form")
        decide({"prediction_id": queued.prediction_id, "decision": "agree", "reason_code": "other",
                "comment": comment}, user="rev", display_name="Dr Rev")
        record_outcome({"prediction_id": queued.prediction_id, "event": True,
                        "event_date": date.today(), "measured_value": 6.0, "source": "lab"},
                       user="dr")
        shown = core.score({**TYPICAL_PATIENT, "patient_ref": f"{ref}-C"}, user="client:lab-system",
                           source="api")
        record_feedback([{"prediction_id": shown.prediction_id, "outcome": "overridden",
                          "override_reason_system": OVERRIDE_SYSTEM,
                          "override_reason_code": "already-addressed",
                          "override_reason_display": "Already addressed in the care plan",
                          "user_comment": comment,
                          "outcome_timestamp": datetime(2026, 11, 2, 9, 30, tzinfo=UTC)}],
                        user="client:lab-system")
        record_signoff(signer_name="Dr IRB", signer_role="IRB", signed_on="2026-11-01",
                       scope="architecture", model_version="v1", by="alice")
        record_assessment({field: True for field in ASSESSMENT_FIELDS} | {"capacity_to_run": False},
                          notes=comment, by="alice", respondent_name="Alice PI", model_version="v1")
        # A stop rule raised (on one outcome no rule can be met: the record is appended directly).
        store.append([stop_rules._event("calibration_slope", "v1", "raised", comment, "",
                                        stop_rules.MONITORING, datetime(2026, 11, 3, 8, 0))])
        unreachable = get_settings().model_copy(update={  # a closed port: a failed alert
            "alert_webhook_url": SecretStr("http://127.0.0.1:9/hook"), "alert_timeout_seconds": 2})
        alerts.check(settings=unreachable, by="alice", providers=[lambda *_: [Condition(
            "queue_age", "queue_age", "Review queue", f"{comment}: 1 waiting")]])
        for i in range(more_scores):
            core.score({**TYPICAL_PATIENT, "patient_ref": f"{ref}-{i}", "age": 50 + i}, user="dr",
                       source="form")
        set_suspended(True, by="alice", reason="checking")
        purge_expired(store, days=1, by="dpo")
        try:
            yield store
        finally:
            core_store.close_all()
