"""People's text and files the product writes: nothing a person types becomes markup, a formula,
a hidden direction change or an unbounded record."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import store_oracle as oracle
from app_support import signed_in
from conftest import REPO, TYPICAL_PATIENT

import core
from core import auth
from core.batch import score_batch
from core.exports import frame_csv, safe_cell
from core.governance import record_signoff
from core.review import decide
from core.stop_switch import set_suspended

LINK_AND_IMAGE = "see [the notice](http://evil.example) ![x](http://evil.example/i.png) www.evil.example"
RLO = "\u202e"  # right-to-left override: "tnemeerga" reads as "agreement"


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3",
                                  "@SUM(A1)", "\tx", "\rx"])
def test_formula_like_text_is_written_as_text(text):
    assert safe_cell(text) == "'" + text
    frame = pd.DataFrame({"comment": [text], "risk": [-0.25], "count": [3]})
    row = next(csv.DictReader(io.StringIO(frame_csv(frame).decode())))
    assert row == {"comment": "'" + text, "risk": "-0.25", "count": "3"}  # numbers stay numbers


def test_batch_output_escapes_a_formula_in_a_rejected_row(any_store, tmp_path: Path):
    path, out = tmp_path / "in.csv", tmp_path / "out.csv"
    row = {**{k: ("yes" if v is True else "no" if v is False else v) for k, v in TYPICAL_PATIENT.items()},
           "patient_ref": "=HYPERLINK(\"http://evil.example\")", "age": "=1+1"}
    pd.DataFrame([row]).to_csv(path, index=False)
    score_batch(path, out, user="batch", progress=False)
    line = next(csv.DictReader(out.open()))
    assert line["status"] == "rejected"
    assert line["patient_ref"].startswith("'=") and not line["errors"].startswith("=")


def test_every_download_in_the_app_is_generated_by_a_callable_through_the_shared_writer():
    """A deferred download's /media/ address expires with the next run; CSV goes through one
    writer (core.exports) that escapes formulas."""
    for page in (REPO / "views").glob("*.py"):
        source = page.read_text()
        assert ".to_csv(" not in source, page
        for call in re.findall(r"st\.download_button\((.*?)\n", source):
            assert "lambda" in call, (page, call)


@pytest.mark.parametrize("bad, message", [(f"agree {RLO}tnemeerga", "text-direction"),
                                          ("ok\x07bell", "invisible control"),
                                          ("x" * 2001, "at most 2000")])
def test_a_review_comment_with_hidden_characters_or_too_long_is_refused(any_store, valid_payload,
                                                                        bad, message):
    queued = core.score({**valid_payload, "lvef": None}, user="dr.clin", source="form")
    with pytest.raises(core.InvalidInput) as caught:
        decide({"prediction_id": queued.prediction_id, "decision": "override_high"
                if queued.risk_class == "low" else "override_low",
                "reason_code": "recent medication change", "comment": bad}, user="rev",
               display_name="Dr Rev")
    assert caught.value.errors[0]["field"] == "comment" and message in caught.value.errors[0]["message"]
    assert bad not in caught.value.errors[0]["message"]
    assert any_store.count("review_decisions") == 0


def test_free_text_is_normalised_before_it_is_stored(any_store, valid_payload):
    queued = core.score({**valid_payload, "lvef": None}, user="dr.clin", source="form")
    d = decide({"prediction_id": queued.prediction_id, "decision": "agree",
                "reason_code": "other", "comment": "  Cafe\u0301\r\nsecond line  "},
               user="rev", display_name="Dr Rev")
    assert d["comment"] == "Caf\u00e9\nsecond line"  # NFC, one kind of line end, trimmed


@pytest.mark.parametrize("field, value", [("signer_name", f"Dr {RLO}A"), ("scope", "s" * 1001)])
def test_a_signoff_with_hidden_characters_or_no_length_limit_is_refused(any_store, field, value):
    args = {"signer_name": "Dr A", "signer_role": "IRB", "signed_on": "2026-11-01",
            "scope": "architecture", "model_version": "v1", field: value}
    with pytest.raises(core.InvalidInput) as caught:
        record_signoff(**args, by="admin")
    assert caught.value.errors[0]["field"] == field
    assert any_store.count("signoffs") == 0


def test_a_suspension_reason_is_shown_as_text_not_as_a_link_or_image(demo_app):
    set_suspended(True, by="demo-pi", reason=LINK_AND_IMAGE)
    at = signed_in("clinician")
    shown = next(e.value for e in at.error if "Model suspended" in e.value)
    assert "](" not in shown.replace("\\](", "") and "![" not in shown.replace("!\\[", "")
    assert "www\\.evil" in shown  # not an automatic link either


def test_a_suspension_reason_with_a_control_character_is_refused(any_store):
    with pytest.raises(ValueError, match="invisible control"):
        set_suspended(True, by="pi", reason="stop\x1b[31m now")


def test_a_printed_name_with_a_direction_override_is_refused(any_store):
    with pytest.raises(auth.UserError, match="text-direction"):
        auth.add_user("eve", roles=["pi"], password="a-long-password", display_name=f"Eve {RLO}",
                      by="admin")


def test_a_header_of_a_million_columns_is_one_short_problem(any_store, tmp_path: Path):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(1_000_000)) + "\n1\n")
    with pytest.raises(core.InvalidInput) as caught:
        score_batch(path, tmp_path / "out.csv", user="batch", progress=False)
    assert len(caught.value.errors) == 1 and "1000000 columns" in caught.value.errors[0]["message"]
    recorded = oracle.rows(any_store, "rejected_inputs").iloc[0]
    assert len(recorded["fields_json"]) < 1000


def test_a_payload_of_many_unknown_fields_is_recorded_with_a_bounded_list(any_store, valid_payload):
    with pytest.raises(core.InvalidInput) as caught:
        core.score({**valid_payload, **{f"x{i}": 1 for i in range(10_000)}}, user="dr", source="form")
    assert len(caught.value.errors) == core.InvalidInput.MAX_PROBLEMS
    assert caught.value.errors[-1]["message"] == f"and {10_000 - 49} more problems"
    fields = json.loads(oracle.rows(any_store, "rejected_inputs").iloc[0]["fields_json"])
    assert len(fields) == core.InvalidInput.MAX_PROBLEMS


def test_the_model_card_page_does_not_show_the_file_comment(demo_app):
    at = signed_in("reviewer").switch_page("views/model_card.py").run()
    assert not at.exception
    assert not any("<!--" in m.value for m in at.markdown)
