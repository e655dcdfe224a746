"""The runbook's retraining commands, run as written on the shipped cohort."""

import os
import re
import shutil
import subprocess

import pytest

from core.config import PROJ_ROOT

RUNBOOK = (PROJ_ROOT / "RUNBOOK.md").read_text()


def retrain_commands() -> list[str]:
    block = re.search(r"<!-- retrain-commands -->\n```sh\n(.*?)\n```\n<!-- end retrain-commands -->",
                      RUNBOOK, re.S)
    assert block, "RUNBOOK.md lost its marked retraining commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_runbook_has_every_required_section():
    for heading in ("Deploy from the repository on a fresh laptop", "Configure sign-in",
                    "Upgrade and roll back a model version", "Retrain on a new cohort",
                    "2. Write the feature spec", "Back up and restore", "Retention schedule",
                    "When the same-direction override alert fires", "The stop switch",
                    "Deploy on a VM with Docker"):
        assert f"# {heading}\n" in RUNBOOK, heading


@pytest.mark.slow
def test_retraining_commands_run_as_written(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(PROJ_ROOT / "model_artifacts", models)
    env = {**os.environ, "APP_MODELS": str(models), "APP_DB": str(tmp_path / "store.duckdb"),
           "APP_PATIENT_KEY": "k" * 40, "TMPDIR": str(tmp_path)}
    env.pop("APP_DEMO", None)
    outputs = []
    for command in retrain_commands():
        proc = subprocess.run(["bash", "-c", command], cwd=PROJ_ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
        outputs.append(proc.stdout)
    assert (models / "v2" / "manifest.json").is_file()
    assert "v2: OK" in outputs[1]
    assert (tmp_path / "model-card-v2.md").read_text().startswith("# Model card")
    assert "active: v2" in outputs[3]
    listed = next(line for line in outputs[4].splitlines() if line.startswith("v2 "))
    assert listed.rstrip().endswith("*")
    assert not (PROJ_ROOT / "model_artifacts" / "v2").exists()
