"""The model card page: the generated card of a version, linked from every result."""

import pytest
from app_support import fill_form, signed_in, submit_score

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
