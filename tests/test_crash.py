"""Crash safety: a scoring process killed with SIGKILL loses nothing it returned."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import MODELS

from core.config import PROJ_ROOT
from core.store import open_file
from core.verification import verify_audit

KILLS = 8
CHILD = """
import sys, core
patient = dict(age=70, sex="male", weight_kg=80, egfr=50, potassium=4.6, diabetes=False,
               raas_inhibitor="arb", spironolactone_dose_mg=25, nyha_class="III", lvef=30,
               sbp=115, loop_diuretic=True, potassium_supplement=False, nsaid=False)
i = 0
while True:
    i += 1
    result = core.score({**patient, "patient_ref": f"SYN-{sys.argv[1]}-{i}"}, user="crash-test", source="form")
    if i == 1:
        print("ready", flush=True)  # the model is loaded: kills now land mid-scoring
    print(result.prediction_id, flush=True)  # only after core.score returned
"""


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_returned_prediction(tmp_path):
    db = tmp_path / "crash.duckdb"
    env = {**os.environ, "APP_DB": str(db), "APP_PATIENT_KEY": "k" * 40,
           "APP_MODELS": str(MODELS)}
    rng = random.Random(20261126)
    returned: list[str] = []
    for run in range(KILLS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(run)], stdout=subprocess.PIPE,
                                 text=True, env=env, cwd=PROJ_ROOT)
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.6))
            child.send_signal(signal.SIGKILL)
            out, _ = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        returned += [line for line in out.splitlines() if len(line) == 36]
    assert len(returned) > KILLS  # the kills landed mid-run, not before the first score
    store = open_file(db)
    try:
        problems, (seq, _) = verify_audit(store)
        assert problems == []
        missing = [pid for pid in returned if store.prediction(pid) is None]
        assert missing == []
        assert store.count("predictions") >= len(returned)
        assert seq == store.count("predictions")
    finally:
        store.close()
