"""The model card, generated from a version's manifest, evaluation and spec: never by hand.
Every sentence comes from the spec, the manifest (which records the cleaning steps applied, the
routing rule and its warnings) or a fixed explanation of how this software works.

`python -m core model-card` writes MODEL_CARD.md for the shipped default version, and its
figures (calibration, ROC and decision curve, SVG) into MODEL_CARD-figures/ beside it;
`--check` exits non-zero when the file or a figure differs from what the artefact says (stale).
"""

from __future__ import annotations

from pathlib import Path

from core import figures as figs
from core.artifacts import Artefact
from core.evaluate import band_labels

DISCLAIMER = ("**SYNTHETIC DATA - NOT FOR CLINICAL USE.** This version was trained on synthetic "
              "data (its spec says so). Its numbers describe the software, not any real "
              "population.")


def _pct(x: float | None, digits: int = 0) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f}%"


def _ci(m: dict) -> str:
    if m.get("auroc") is None:
        return m.get("note", "n/a")
    lo, hi = m["auroc_ci95"]
    return f"{m['auroc']:.3f} (95% CI {lo:.3f}-{hi:.3f})"


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def figures_dir(path: Path) -> Path:
    """Where the figures of the card file at `path` live: `<name>-figures/` beside it."""
    return path.with_name(f"{path.stem}-figures")


def write(path: Path, artefact: Artefact) -> None:
    """Write the card to `path` and its figures beside it."""
    folder = figures_dir(path)
    folder.mkdir(exist_ok=True)
    for name, svg in figs.svgs(artefact).items():
        (folder / f"{name}.svg").write_text(svg)
    path.write_text(render(artefact, figures=f"{folder.name}/"))


def is_current(path: Path, artefact: Artefact) -> bool:
    """Whether the card file at `path`, and each of its figures, is exactly what `write` would
    write for this artefact."""
    folder = figures_dir(path)
    if not path.is_file() or path.read_text() != render(artefact, figures=f"{folder.name}/"):
        return False
    return all((folder / f"{name}.svg").is_file() and (folder / f"{name}.svg").read_text() == svg
               for name, svg in figs.svgs(artefact).items())


def _decision_sentence(artefact: Artefact) -> str:
    """The decision curve in words, at half, once and twice the action threshold."""
    data = figs.curve_data(artefact)
    t = artefact.manifest["action_threshold"]
    rows = {round(r["threshold"], 4): r for r in data["decision_curve"]}
    parts = []
    for x in sorted({round(t / 2, 2), round(t, 4), round(2 * t, 2)}):
        r = rows.get(x)
        if r:
            parts.append(f"at {_pct(x)}: {r['model'] * 100:.1f} with the model, "
                         f"{r['treat_all'] * 100:.1f} treating everyone, 0 treating no one")
    text = ("Net benefit per 100 patients (true positives found, less false positives weighted "
            "by the threshold's odds), held-out split: " + "; ".join(parts) + ".")
    return text + (f" {data['note']}" if data["note"] else "")


def _figures(artefact: Artefact, prefix: str | None) -> list[str]:
    lines = [_decision_sentence(artefact), ""]
    if prefix is None:
        return lines
    for name in figs.NAMES:
        lines += [f"![{figs.caption(name, artefact)}]({prefix}{name}.svg)", ""]
    return lines


def _dates(d: dict) -> str:
    dates = d.get("index_date_range")
    return f"index dates {dates[0]} to {dates[1]}" if dates else "index dates not recorded"


def _made(m: dict) -> str:
    if m["origin"] == "imported":
        return f"imported {m['created_at']} by {m['created_by']} (the team's fitted model, not retrained)"
    return f"trained {m['created_at']} by {m['created_by']}"


def _recording(spec) -> list[str]:
    o = spec.outcome
    dates = {"required": "with its date (required)", "optional": "with its date when known",
             "none": "without a date"}[o.event_date]
    lines = [f"- An outcome is recorded as yes or no: {o.event} {spec.horizon_text()}; an event "
             f"{dates}; 'no event' only once the {o.horizon_days}-day horizon has passed."]
    if o.measurement:
        m = o.measurement
        unit = f", in {m.unit}" if m.unit else ""
        lines.append(f"- Optionally with the measured value `{m.name}`: {m.label}{unit} "
                     f"({m.min:g} to {m.max:g}); a value {m.describe_event()} is the event, and "
                     "a value that contradicts the yes/no answer is refused.")
    return lines + [""]


def _subgroup_rows(spec, ev: dict) -> list[list]:
    rows = []
    for group in spec.subgroups:
        f = spec.feature(group.feature)
        order = ([label for label, _, _ in band_labels(f, group.bands)] if f.numeric else None)
        values = ev["subgroups"].get(f.name, {})
        for key in order or list(values):
            v = values.get(key)
            if v is None:
                continue
            rows.append([f"{f.label} {key}", v["n"], v["events"], _ci(v), v.get("brier", "n/a"),
                         v.get("calibration_slope", "n/a"), _pct(v["sensitivity"]),
                         _pct(v["specificity"])])
    return rows


def render(artefact: Artefact, *, figures: str | None = None) -> str:
    """The whole card as Markdown, deterministic for a given artefact. `figures`: the folder
    (a link prefix) its figures are linked from; None: the figures are not linked (a page
    draws them itself)."""
    m, ev, spec = artefact.manifest, artefact.evaluation, artefact.spec
    r, overall, d = m["routing"], ev["overall"], m["data"]
    achieved = r["achieved_on_test"]
    lines = [f"# Model card: {spec.model_name}, version {m['version']}", "",
             "<!-- Generated by `python -m core model-card` from model_artifacts/"
             f"{m['version']}/. Do not edit by hand; `make test` fails when it is stale. -->", ""]
    if m.get("synthetic_data"):
        lines += [DISCLAIMER, ""]
    if r["warnings"]:
        lines += ["**Routing warning:** " + " ".join(r["warnings"]), ""]
    lines += ["## Model facts", ""]
    lines += _table(["Fact", "Value"], [
        ["Predicts", f"{spec.outcome.label}: {spec.outcome.definition}"],
        ["Index event and horizon", f"{spec.outcome.horizon_days} days from "
                                    f"{spec.index.description}"],
        ["Intended users", spec.intended_users],
        ["Output", "Calibrated risk (%), 95% interval, risk class, confidence, routing, top "
                   "contributing factors"],
        ["Action threshold", f"{_pct(m['action_threshold'])} - {m['action']}"],
        ["Discrimination (held-out)", _ci(overall)],
        ["Calibration (held-out)", f"slope {overall.get('calibration_slope', 'n/a')}, "
                                   "calibration-in-the-large "
                                   f"{overall.get('calibration_in_the_large', 'n/a')}, Brier "
                                   f"{overall.get('brier', 'n/a')}"],
        ["At the threshold", f"sensitivity {_pct(overall['sensitivity'])}, specificity "
                             f"{_pct(overall['specificity'])}, PPV {_pct(overall['ppv'])}, NPV {_pct(overall['npv'])}"],
        ["Sent to clinical review", f"{_pct(r['expected_review_share'])} expected (held-out)"
                                    + ("; routing fallback in force" if r["warnings"] else "")],
        ["Data", f"{d['patients_included']} patients, {d['events']} events, {_dates(d)}"],
        ["Version", f"{m['version']}, {_made(m)}"],
    ])
    lines += ["Calibration slope: 1 is ideal; below 1 the risks are too extreme, above 1 too "
              "modest. Calibration-in-the-large: the intercept of a logistic model of the outcome "
              "with logit(risk) as an offset (slope fixed at 1); 0 is ideal, above 0 the model "
              "underestimates risk on average, below 0 it overestimates it.", "",
              "## Intended use and users", "", spec.description, "", spec.intended_use, "",
              f"Users: {spec.intended_users}", "",
              "## Out of scope, and when to stop using the model", ""]
    lines += [f"- {item}" for item in spec.out_of_scope]
    lines += ["- Stop (suspend scoring with the stop switch) when: a stop rule's recommendation on "
              "the monitoring page holds and is not explained (the calibration slope outside its "
              "range, events among auto-finalised low-risk patients above the routing target, or "
              "the AUROC's interval below the held-out one; RUNBOOK.md \"When to stop using the "
              "model\"); the same-direction override alert persists after review; the inputs drift "
              "from the training data; the audit chain fails verification; the patient population "
              "or protocol changes.", "",
              "## Training data" if m["origin"] == "trained" else "## Held-out data", ""]
    at_extraction = ("including the exclusions the team made when it drew the extract"
                     if spec.extraction_exclusions else
                     "the spec records no exclusions made when the extract was drawn")
    lines += [f"Source: `{d['file']}` (sha256 `{d['sha256']}`), cleaning recipe "
              f"`{d['cleaning_recipe']}`. Inclusion and exclusion, in order ({at_extraction}):", ""]
    lines += _table(["Step", "What it does", "Excluded", "Remaining"],
                    [[s["step"], s["description"], s["excluded"], s["rows_after"]] for s in d["flow"]])
    lines += [_splits(m), "", "## Cleaning and preprocessing", "",
              "Cleaning steps applied, in order (besides the exclusions above):", ""]
    lines += [f"- `{t['step']}`: {t['description']}" for t in d["transformations"]]
    lines += ["", f"The model: {m['model']}. {m['preprocessing']}", "",
              "## Outcome and horizon", "",
              f"{spec.outcome.label} (`{spec.outcome.name}`): {spec.outcome.definition} Horizon: "
              f"{spec.outcome.horizon_days} days from {spec.index.description}.", ""]
    lines += _recording(spec)
    lines += ["## Features", ""]
    lines += _table(["Feature", "Unit", "Type", "Required", "Hard limits", "Validated range"], [
        [f.label, f.unit or "-", f.type, "yes" if f.required else "no",
         f"{f.hard_min:g}-{f.hard_max:g}" if f.numeric else ", ".join(f.categories or []) or "yes/no",
         f.describe_validated() or "-"] for f in spec.features])
    lines += ["## Performance (held-out test split)", ""]
    rows = [["All", overall["n"], overall["events"], _ci(overall), overall.get("brier", "n/a"),
             overall.get("calibration_slope", "n/a"), _pct(overall["sensitivity"]),
             _pct(overall["specificity"])]] + _subgroup_rows(spec, ev)
    lines += _table(["Group", "n", "Events", "AUROC", "Brier", "Cal. slope", "Sensitivity",
                     "Specificity"], rows)
    lines += ["Calibration by risk decile:", ""]
    lines += _table(["Decile", "n", "Mean predicted", "Observed"],
                    [[c["decile"], c["n"], _pct(c["mean_predicted"], 1), _pct(c["observed"], 1)]
                     for c in ev["calibration_by_decile"]])
    lines += _figures(artefact, figures)
    lines += ["## Action threshold and routing rule", "", r["description"], "",
              f"Error target: upper 95% bound of the {spec.outcome.event} rate among auto-finalised "
              f"low-risk predictions at most {_pct(r['low_risk_event_rate_target'], 1)}. Achieved "
              f"on the held-out split: event rate {_pct(achieved['event_rate_auto_low'], 1)} "
              f"(upper 95% bound {_pct(achieved['event_rate_auto_low_upper95'], 1)}) among "
              f"{_pct(achieved['share_auto_low'])} auto-finalised low; "
              f"{_pct(achieved['event_rate_auto_high'], 1)} among {_pct(achieved['share_auto_high'])} "
              f"auto-finalised high; {_pct(achieved['share_review'])} sent to review "
              f"(event rate {_pct(achieved['event_rate_review'], 1)}).", ""]
    lines += [f"- Warning: {w}" for w in r["warnings"]] + ([""] if r["warnings"] else [])
    lines += [r["workload"], "", m["confidence"]["description"], "",
              m["explanation"]["description"], "",
              "## Out-of-distribution policy", "", m["ood_policy"], "",
              "## Known limitations", ""]
    lines += [f"- {item}" for item in [*spec.known_limitations, *m["limitations"]]]
    lines += ["", "## Retraining in short", "",
              "Follow RUNBOOK.md, section \"Adopt your own model\": write or adapt the spec, then "
              "either run `python -m core train --data EXTRACT --spec SPEC --version NEW --by NAME` "
              "or import a fitted pipeline with `python -m core import-model`, verify the version, "
              "read its model card, then activate it with a reason. The previous version stays "
              "available for rollback.", "",
              "## Version and hashes", ""]
    lines += _table(["File", "sha256"], [[k, f"`{v}`"] for k, v in m["files"].items()])
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    lines += [f"Libraries: {libs}. " + _provenance(m), ""]
    if m.get("synthetic_data"):
        lines += [DISCLAIMER, ""]
    return "\n".join(lines)


def _splits(m: dict) -> str:
    sp = m["splits"]
    names = {"train": "training", "calibration": "calibration", "test": "held-out test"}
    parts = ", ".join(f"{names[k]} {v['n']} ({v['events']} events)" for k, v in sp.items())
    return f"Splits (stratified, seed {m['random_seed']}): {parts}."


def _provenance(m: dict) -> str:
    if m["origin"] != "imported":
        return f"Git commit at training: `{m.get('git_commit') or 'unknown'}`."
    p = m["provenance"]
    recal = p["recalibration"]
    return (f"Imported from `{p['pipeline_file']}` (sha256 `{p['pipeline_sha256']}`), a "
            f"{p['format']} file that {p['vouched_for_by']} vouched for at import (loading a "
            f"pickle runs code); pickled with {p['pickled_with']}. "
            + ("Recalibrated at import: " + recal["description"] if recal else
               "Not recalibrated: the team's own probabilities are served."))
