"""The runbook's command blocks, run as written: retraining on the shipped cohort, and adopting
another team's model both ways (retrain, import)."""

import os
import re
import shutil
import subprocess

import pytest
from conftest import MODELS
from import_support import DEMO_WORDS

from core.config import PROJ_ROOT

RUNBOOK = (PROJ_ROOT / "RUNBOOK.md").read_text()


def commands(marker: str) -> list[str]:
    block = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)\n```\n<!-- end {marker} -->", RUNBOOK, re.S)
    assert block, f"RUNBOOK.md lost its marked block {marker}"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_runbook_has_every_required_section():
    for heading in ("Deploy from the repository on a fresh laptop", "Configure sign-in",
                    "Upgrade and roll back a model version", "Keep artefacts in object storage",
                    "Retrain on a new cohort",
                    "2. Write the feature spec", "Adopt your own model", "1. Write the spec",
                    "2. Put the data in the generic format (`\"cleaning\": \"clean\"`)",
                    "3. Way 1: retrain here", "4. Way 2: import the team's fitted model",
                    "5. Read the routing rule, its warnings and the workload",
                    "6. Activate it, and make it the default", "Spec reference",
                    "Back up and restore", "Retention schedule",
                    "When the same-direction override alert fires", "The stop switch",
                    "Deploy on a VM with Docker"):
        assert f"# {heading}\n" in RUNBOOK, heading


def run_block(marker: str, tmp_path) -> tuple[list[str], object]:
    """Run a block's commands one by one as the runbook says, against a copy of the suite's
    models folder and a fresh store; return their outputs."""
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    for path in [models, *models.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    env = {**os.environ, "APP_MODELS": str(models), "APP_DB": str(tmp_path / "store.duckdb"),
           "APP_PATIENT_KEY": "k" * 40, "TMPDIR": str(tmp_path)}
    env.pop("APP_DEMO", None)
    outputs = []
    for command in commands(marker):
        proc = subprocess.run(["bash", "-c", command], cwd=PROJ_ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
        outputs.append(proc.stdout + proc.stderr)
    return outputs, models


@pytest.mark.slow
def test_retraining_commands_run_as_written(tmp_path):
    outputs, models = run_block("retrain-commands", tmp_path)
    assert (models / "v2" / "manifest.json").is_file()
    assert "v2: OK" in outputs[1]
    assert (tmp_path / "model-card-v2.md").read_text().startswith("# Model card")
    assert "active: v2" in outputs[3]
    listed = next(line for line in outputs[4].splitlines() if line.startswith("v2 "))
    assert listed.rstrip().endswith("*")
    assert not (PROJ_ROOT / "model_artifacts" / "v2").exists()


@pytest.mark.slow
def test_adopting_by_retraining_runs_as_written(tmp_path):
    outputs, models = run_block("adopt-retrain-commands", tmp_path)
    assert "left out at extraction: 3 patients younger than 20" in outputs[0]
    assert "expected review share" in outputs[1] and "A diabetes clinic" in outputs[1]
    assert "diabetes-rf-1: OK" in outputs[2]
    card = (tmp_path / "model-card-diabetes-rf-1.md").read_text()
    assert "Marked progression at one year" in card and "random forest" in card
    assert "| under_20 | Patients younger than 20 at the baseline visit (at extraction) | 3 |" in card
    assert not DEMO_WORDS.search(card)
    assert "active: diabetes-rf-1" in outputs[4]
    assert not (PROJ_ROOT / "model_artifacts" / "diabetes-rf-1").exists()


@pytest.mark.slow
def test_adopting_by_import_runs_as_written(tmp_path):
    outputs, models = run_block("adopt-import-commands", tmp_path)
    assert "patients held out" in outputs[0] and "fitted on" in outputs[1]
    assert "expected review share" in outputs[2]
    assert "diabetes-hgb-1: OK" in outputs[3]
    card = (tmp_path / "model-card-diabetes-hgb-1.md").read_text()
    assert "## Held-out data" in card and "vouched for at import" in card
    assert "HistGradientBoostingClassifier" in card and not DEMO_WORDS.search(card)
    assert "active: diabetes-hgb-1" in outputs[5]
    listed = next(line for line in outputs[6].splitlines() if line.startswith("diabetes-hgb-1 "))
    assert "imported" in listed and listed.rstrip().endswith("*")
    assert (models / "diabetes-hgb-1" / "model.pkl").read_bytes() == (tmp_path / "team_model.joblib").read_bytes()
