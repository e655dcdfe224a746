"""The model card's figures: the curves computed on the held-out split at build time, drawn from
the artefact's evaluation (calibration with intervals, ROC with the action threshold, decision
curve), approximated and said so for an older artefact, and kept current beside MODEL_CARD.md."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from core import figures
from core.evaluate import net_benefit, wilson
from core.model_card import figures_dir, is_current, render, write


def test_the_curves_are_computed_on_the_held_out_split_at_build(v1):
    ev, t = v1.evaluation, v1.manifest["action_threshold"]
    curves, overall = ev["curves"], ev["overall"]
    groups = curves["calibration"]
    assert [(g["n"], g["observed"]) for g in groups] == \
        [(d["n"], d["observed"]) for d in ev["calibration_by_decile"]]
    assert sum(g["events"] for g in groups) == overall["events"]
    for g in groups:
        assert g["observed_ci95"][0] <= g["observed"] <= g["observed_ci95"][1]
    roc = curves["roc"]
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)
    at = next(r for r in curves["decision_curve"] if r["threshold"] == t)
    n, odds = overall["n"], t / (1 - t)
    assert at["model"] == pytest.approx(overall["tp"] / n - overall["fp"] / n * odds, abs=1e-5)
    prevalence = overall["events"] / n
    assert at["treat_all"] == pytest.approx(prevalence - (1 - prevalence) * odds, abs=1e-5)


def test_net_benefit_and_wilson_on_known_numbers():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.2, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    model, everyone = net_benefit(y, p, 0.5)  # acts on 2: one true, one false positive
    assert model == pytest.approx(0.1 - 0.1 * 1.0) and everyone == pytest.approx(0.2 - 0.8)
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)


def points(svg: str, colour: str) -> list[tuple[float, float]]:
    line = re.search(rf'<polyline points="([^"]+)" fill="none" stroke="{colour}" stroke-width="2"', svg)
    return [tuple(map(float, p.split(","))) for p in line.group(1).split()]


def test_the_figures_draw_the_evaluation(v1):
    data = figures.curve_data(v1)
    assert data["exact"] and not data["note"]
    roc = figures.roc_svg(v1)
    overall = v1.evaluation["overall"]
    assert f"AUROC {overall['auroc']:.3f}" in roc
    assert len(points(roc, figures.MODEL)) == len(data["roc"]["fpr"])
    marker = re.search(rf'<circle cx="([\d.]+)" cy="([\d.]+)" r="5" fill="{figures.MARK}"/>', roc)
    plot_w = figures.W - figures.LEFT - figures.RIGHT
    plot_h = figures.H - figures.TOP - figures.BOTTOM
    assert float(marker.group(1)) == pytest.approx(figures.LEFT + (1 - overall["specificity"]) * plot_w, abs=0.1)
    assert float(marker.group(2)) == pytest.approx(figures.TOP + plot_h * (1 - overall["sensitivity"]), abs=0.1)
    assert f"action threshold {v1.manifest['action_threshold'] * 100:g}%" in roc
    calibration = figures.calibration_svg(v1)
    assert calibration.count(f'r="3.5" fill="{figures.MODEL}"') == 10  # one point per risk group
    decision = figures.decision_svg(v1)
    assert len(points(decision, figures.MODEL)) == len(data["decision_curve"])
    assert "treat everyone" in decision and "treat no one" in decision


def test_an_older_artefact_without_curves_is_approximated_and_says_so(v1):
    older = dataclasses.replace(v1, evaluation={k: v for k, v in v1.evaluation.items() if k != "curves"})
    data = figures.curve_data(older)
    assert not data["exact"] and "approximated from its ten risk groups" in data["note"]
    assert len(data["roc"]["fpr"]) == 11 and data["roc"]["tpr"][-1] == 1.0
    assert data["calibration"] == v1.evaluation["curves"]["calibration"]  # exact from the groups
    assert "approximated" in figures.caption("roc", older)
    assert "approximated" not in figures.caption("calibration", older)
    assert "approximated from its ten risk groups" in render(older)
    assert set(figures.svgs(older)) == set(figures.NAMES)


def test_the_card_links_its_figures_and_check_catches_a_stale_one(v1, tmp_path):
    card = tmp_path / "CARD.md"
    write(card, v1)
    text = card.read_text()
    for name in figures.NAMES:
        assert f"](CARD-figures/{name}.svg)" in text
    assert is_current(card, v1)
    roc = figures_dir(card) / "roc.svg"
    roc.write_text(roc.read_text().replace("AUROC", "AUC"))
    assert not is_current(card, v1)
    roc.unlink()
    assert not is_current(card, v1)
    assert "](" not in render(v1).split("## Performance", 1)[1].split("## Action threshold", 1)[0]
