"""The model card page: the generated card of a version, linked from every result."""

import json
import shutil

import pytest
from app_support import fill_form, signed_in, submit_score
from conftest import MODELS

from core.artifacts import sha256_file
from core.governance import snapshot
from core.serving import activate

pytestmark = pytest.mark.usefixtures("demo_app")


def test_model_card_page_shows_the_generated_card():
    at = signed_in("reviewer").switch_page("views/model_card.py").run()
    assert not at.exception
    text = "\n".join(m.value for m in at.markdown)
    for heading in ("## Model facts", "## Performance", "## Out-of-distribution policy"):
        assert heading in text
    assert "NOT FOR CLINICAL USE" in text
    assert at.selectbox(key="card_version").value == "v1"


def test_every_result_links_to_the_card_of_its_version():
    at = submit_score(fill_form(signed_in("clinician")))
    links = [el for el in at.get("page_link") if "model card" in el.proto.label.lower()]
    assert links and links[0].proto.label == "Full model card for version v1"
    assert "version=v1" in links[0].proto.query_string


@pytest.fixture
def second_version(tmp_path, monkeypatch):
    """A models folder with v1 (the default) and v2, a copy of it with a broken evaluation file
    whose recorded hash was updated too (it loads, but no card can be made from it)."""
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    for path in [models, *models.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    shutil.copytree(models / "v1", models / "v2")
    manifest = json.loads((models / "v2" / "manifest.json").read_text())
    manifest["version"] = "v2"
    (models / "v2" / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("APP_MODELS", str(models))
    return models


def break_card(models):
    evaluation = json.loads((models / "v2" / "evaluation.json").read_text())
    del evaluation["calibration_by_decile"]
    (models / "v2" / "evaluation.json").write_text(json.dumps(evaluation))
    manifest = json.loads((models / "v2" / "manifest.json").read_text())
    manifest["files"]["evaluation.json"] = sha256_file(models / "v2" / "evaluation.json")
    (models / "v2" / "manifest.json").write_text(json.dumps(manifest))


def test_model_card_page_opens_on_the_serving_version(second_version):
    assert signed_in("pi").switch_page("views/model_card.py").run().selectbox(
        key="card_version").value == "v1"
    activate("v2", by="demo-admin", reason="trial")
    at = signed_in("pi").switch_page("views/model_card.py").run()
    assert at.selectbox(key="card_version").value == "v2"
    assert "| Version | v2, trained" in "\n".join(m.value for m in at.markdown)


def test_governance_checks_the_card_of_the_serving_version(second_version):
    break_card(second_version)
    assert snapshot()["checklist"][0].status == "done"  # v1 serves; its card is fine
    activate("v2", by="demo-admin", reason="trial")
    item = snapshot()["checklist"][0]
    assert item.status == "not yet"
    assert item.evidence.startswith("the card of serving version v2 cannot be generated")


def test_model_card_page_draws_the_three_figures_where_the_card_places_them():
    at = signed_in("reviewer").switch_page("views/model_card.py").run()
    assert not at.exception
    assert len(at.get("image")) == 3
    shown = " ".join(str(m.value) for m in at.markdown)
    assert "figure:" not in shown and "Net benefit per 100 patients" in shown
