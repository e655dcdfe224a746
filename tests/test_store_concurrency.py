"""Two Store objects over one database (as two processes would be over a server database):
nothing either keeps in memory can be overtaken by the other. The stop switch one of them sets
is honoured by the other, both keep writing one valid chain, and the first decision wins."""

from __future__ import annotations

import threading

import pytest
from conftest import TYPICAL_PATIENT

import core
from core.config import get_settings
from core.errors import AlreadyDecided, ScoringSuspended
from core.features import model_frame
from core.review import decide
from core.scoring import record_predictions
from core.serving import active_artefact
from core.spec import validate_payload
from core.stop_switch import set_suspended
from core.store import Store, open_file
from core.verification import verify_audit


@pytest.fixture
def two(fresh_store):
    other = open_file(fresh_store.path)  # a second object, as another process would hold
    yield fresh_store, other
    other.close()


def score_with(store: Store, ref: str):
    settings = get_settings()
    artefact = active_artefact(store, settings)
    _, values = validate_payload(artefact.spec, {**TYPICAL_PATIENT, "patient_ref": ref})
    pred = artefact.predictor.predict(model_frame([values], artefact.spec))
    return record_predictions(store, artefact, [(ref, values)], pred, user="dr", source="form",
                              key=settings.patient_key_bytes())[0]


def test_a_suspension_by_one_is_honoured_by_the_other_at_once(two):
    first, second = two
    score_with(second, "A-1")
    second.service_state()  # the other object has read (and cached) "not suspended"
    set_suspended(True, by="pi", reason="investigating")  # through the first (process-wide) store
    with pytest.raises(ScoringSuspended):
        score_with(second, "A-2")  # refused inside its own write, whatever it had cached
    assert first.count("predictions") == 1 == second.count("predictions")
    assert verify_audit(second)[0] == []


def test_both_keep_writing_one_valid_chain_while_racing(two):
    first, second = two
    errors: list[Exception] = []

    def keep_scoring(store: Store, tag: str) -> None:
        try:
            for i in range(25):
                score_with(store, f"{tag}-{i}")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    workers = [threading.Thread(target=keep_scoring, args=(s, t)) for s, t in ((first, "F"), (second, "S"))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert first.count("predictions") == 50 and first.head()[0] == 50 == second.head()[0]
    assert verify_audit(first)[0] == []


def test_the_first_decision_wins_across_both(two):
    first, second = two
    queued = core.score({**TYPICAL_PATIENT, "patient_ref": "D-1", "lvef": None}, user="dr", source="form")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def decide_with(store: Store, name: str) -> None:
        barrier.wait()
        try:
            decide({"prediction_id": queued.prediction_id, "decision": "agree",
                    "reason_code": "other", "comment": name}, user=name, display_name=name,
                   store=store)
            outcomes.append("recorded")
        except AlreadyDecided:
            outcomes.append("already decided")

    workers = [threading.Thread(target=decide_with, args=(s, n)) for s, n in ((first, "r1"), (second, "r2"))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(outcomes) == ["already decided", "recorded"]
    assert first.count("review_decisions") == 1
    assert verify_audit(first)[0] == []
