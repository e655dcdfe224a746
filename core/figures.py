"""The model card's figures, drawn as SVG from a version's held-out evaluation: the calibration
plot (observed against predicted risk by risk group, with 95% intervals), the ROC curve with the
action threshold marked, and the decision curve (net benefit of acting on the model against
treating everyone or no one, across plausible thresholds).

A version built by this release carries the curves in its evaluation (computed on the held-out
split at build time). An older version has only its ten risk groups: its calibration plot is
exact, and its ROC and decision curves are approximated from those groups, which each figure
then says in its caption.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from core.artifacts import Artefact
from core.evaluate import decision_thresholds, wilson

W, H = 520, 380
LEFT, RIGHT, TOP, BOTTOM = 62, 20, 46, 52
FONT = "Helvetica, Arial, sans-serif"
MODEL, REFERENCE, ALL, MARK = "#1d4ed8", "#6b7280", "#b45309", "#b91c1c"
NAMES = ("calibration", "roc", "decision")


def curve_data(artefact: Artefact) -> dict:
    """The curves of a version: {"calibration", "roc", "decision_curve", "exact", "note"}."""
    ev = artefact.evaluation
    if ev.get("curves") and ev["curves"].get("roc"):
        return {**ev["curves"], "exact": True, "note": ""}
    return {**_from_groups(ev, artefact.manifest["action_threshold"]), "exact": False,
            "note": "This version's evaluation predates stored curves: the ROC and decision "
                    "curves are approximated from its ten risk groups. Train or import it again "
                    "for the exact curves."}


def _from_groups(ev: dict, action: float) -> dict:
    groups = []
    for g in ev["calibration_by_decile"]:
        events = round(g["observed"] * g["n"])
        lo, hi = wilson(events, g["n"])
        groups.append({"group": g["decile"], "n": g["n"], "events": events,
                       "mean_predicted": g["mean_predicted"], "observed": g["observed"],
                       "observed_ci95": [round(lo, 4), round(hi, 4)]})
    n = sum(g["n"] for g in groups)
    pos = sum(g["events"] for g in groups)
    neg = n - pos
    fpr, tpr, thr = [0.0], [0.0], [1.0]
    tp = fp = 0
    for g in reversed(groups):  # the highest-risk group first
        tp += g["events"]
        fp += g["n"] - g["events"]
        fpr.append(round(fp / neg, 4) if neg else 0.0)
        tpr.append(round(tp / pos, 4) if pos else 0.0)
        thr.append(g["mean_predicted"])
    decision = []
    prevalence = pos / n if n else 0.0
    for t in decision_thresholds(action):
        odds = t / (1 - t)
        acted = [g for g in groups if g["mean_predicted"] >= t]
        tp_t = sum(g["events"] for g in acted)
        fp_t = sum(g["n"] - g["events"] for g in acted)
        decision.append({"threshold": t, "model": round(tp_t / n - fp_t / n * odds, 5) if n else 0.0,
                         "treat_all": round(prevalence - (1 - prevalence) * odds, 5)})
    return {"calibration": groups, "roc": {"fpr": fpr, "tpr": tpr, "threshold": thr},
            "decision_curve": decision}


def _ticks(lo: float, hi: float) -> list[float]:
    """Round tick values inside [lo, hi], four to eight of them, 0 among them when inside."""
    span = hi - lo
    step = next((m * 10.0 ** e for e in range(-3, 2) for m in (1, 2, 2.5, 5)
                 if span / (m * 10.0 ** e) <= 7), span)
    first = -(-lo // step) * step
    out, v = [], first
    while v <= hi + 1e-9:
        out.append(round(v, 6) + 0.0)
        v += step
    return out


class _Plot:
    """One chart: axes from (x0, x1) and (y0, y1) in data units, drawn into SVG parts."""

    def __init__(self, title: str, xlabel: str, ylabel: str, x: tuple[float, float],
                 y: tuple[float, float], *, y_percent: bool = True):
        self.x0, self.x1 = x
        self.y0, self.y1 = y
        self.pw, self.ph = W - LEFT - RIGHT, H - TOP - BOTTOM
        self.y_percent = y_percent
        self.parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
                      f'viewBox="0 0 {W} {H}">',
                      f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>',
                      self._text(LEFT, 18, title, 13, bold=True)]
        self._axes(xlabel, ylabel)

    def sx(self, v: float) -> float:
        return LEFT + (v - self.x0) / (self.x1 - self.x0) * self.pw

    def sy(self, v: float) -> float:
        return TOP + self.ph - (v - self.y0) / (self.y1 - self.y0) * self.ph

    def _text(self, x, y, text, size=10, *, bold=False, colour="#1f2937") -> str:
        weight = ' font-weight="bold"' if bold else ""
        return (f'<text x="{x:.1f}" y="{y:.1f}" font-family="{FONT}" font-size="{size}"{weight} '
                f'fill="{colour}">{escape(text)}</text>')

    @staticmethod
    def _label(v: float, percent: bool = True) -> str:
        return f"{v * 100:.0f}%" if percent else f"{v:.3f}".rstrip("0").rstrip(".")

    def _axes(self, xlabel: str, ylabel: str) -> None:
        p = self.parts
        for xv in _ticks(self.x0, self.x1):
            x = self.sx(xv)
            p.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + self.ph}" '
                     'stroke="#e5e7eb" stroke-width="1"/>')
            p.append(self._text(x - 12, TOP + self.ph + 15, self._label(xv), 9))
        for yv in _ticks(self.y0, self.y1):
            y = self.sy(yv)
            p.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + self.pw}" y2="{y:.1f}" '
                     'stroke="#e5e7eb" stroke-width="1"/>')
            p.append(self._text(LEFT - 40, y + 3, self._label(yv, self.y_percent), 9))
        p.append(f'<rect x="{LEFT}" y="{TOP}" width="{self.pw}" height="{self.ph}" fill="none" '
                 'stroke="#374151" stroke-width="1"/>')
        p.append(self._text(LEFT + self.pw / 2 - 3 * len(xlabel), H - 14, xlabel, 10))
        p.append(self._text(6, TOP - 8, ylabel, 10))

    def line(self, xs, ys, colour: str, *, width: float = 2, dashed: bool = False) -> None:
        points = " ".join(f"{self.sx(max(self.x0, min(self.x1, x))):.1f},"
                          f"{self.sy(max(self.y0, min(self.y1, y))):.1f}"
                          for x, y in zip(xs, ys, strict=True))
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                          f'stroke-width="{width}"{dash}/>')

    def point(self, x: float, y: float, colour: str, r: float = 3.5) -> None:
        self.parts.append(f'<circle cx="{self.sx(x):.1f}" cy="{self.sy(y):.1f}" r="{r}" '
                          f'fill="{colour}"/>')

    def interval(self, x: float, lo: float, hi: float, colour: str) -> None:
        x, y1, y2 = self.sx(x), self.sy(max(self.y0, lo)), self.sy(min(self.y1, hi))
        self.parts.append(f'<line x1="{x:.1f}" y1="{y1:.1f}" x2="{x:.1f}" y2="{y2:.1f}" '
                          f'stroke="{colour}" stroke-width="1.2"/>')
        for y in (y1, y2):
            self.parts.append(f'<line x1="{x - 3:.1f}" y1="{y:.1f}" x2="{x + 3:.1f}" y2="{y:.1f}" '
                              f'stroke="{colour}" stroke-width="1.2"/>')

    def legend(self, entries: list[tuple[str, str, bool]]) -> None:
        x, y = LEFT + 10, TOP + 14
        for label, colour, dashed in entries:
            dash = ' stroke-dasharray="5 4"' if dashed else ""
            self.parts.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 22}" y2="{y - 4}" '
                              f'stroke="{colour}" stroke-width="2"{dash}/>')
            self.parts.append(self._text(x + 28, y, label, 9))
            y += 14

    def svg(self) -> str:
        return "\n".join([*self.parts, "</svg>"]) + "\n"


def calibration_svg(artefact: Artefact, data: dict | None = None) -> str:
    data = data or curve_data(artefact)
    groups = data["calibration"]
    top = max(0.05, *(g["observed_ci95"][1] for g in groups), *(g["mean_predicted"] for g in groups))
    top = min(1.0, -(-top * 1.05 // 0.05) * 0.05)
    plot = _Plot("Calibration on the held-out split, by risk group", "Mean predicted risk",
                 "Observed rate (95% interval)", (0, top), (0, top))
    plot.line([0, top], [0, top], REFERENCE, width=1, dashed=True)
    xs = [g["mean_predicted"] for g in groups]
    plot.line(xs, [g["observed"] for g in groups], MODEL, width=1.2)
    for g in groups:
        plot.interval(g["mean_predicted"], *g["observed_ci95"], MODEL)
        plot.point(g["mean_predicted"], g["observed"], MODEL)
    plot.legend([("observed rate in each risk group", MODEL, False),
                 ("perfect calibration", REFERENCE, True)])
    return plot.svg()


def roc_svg(artefact: Artefact, data: dict | None = None) -> str:
    data = data or curve_data(artefact)
    roc, overall = data["roc"], artefact.evaluation["overall"]
    auc = overall.get("auroc")
    plot = _Plot("ROC curve on the held-out split" + (f" (AUROC {auc:.3f})" if auc else ""),
                 "False positive rate (1 - specificity)", "True positive rate (sensitivity)",
                 (0, 1), (0, 1))
    plot.line([0, 1], [0, 1], REFERENCE, width=1, dashed=True)
    plot.line(roc["fpr"], roc["tpr"], MODEL)
    t = artefact.manifest["action_threshold"]
    if overall.get("sensitivity") is not None and overall.get("specificity") is not None:
        x, y = 1 - overall["specificity"], overall["sensitivity"]
        plot.point(x, y, MARK, r=5)
        plot.parts.append(plot._text(plot.sx(x) + 8, plot.sy(y) + 14,
                                     f"action threshold {t * 100:g}%: sensitivity "
                                     f"{y * 100:.0f}%, specificity {(1 - x) * 100:.0f}%", 9,
                                     colour=MARK))
    plot.legend([("the model", MODEL, False), ("chance", REFERENCE, True)])
    return plot.svg()


def decision_svg(artefact: Artefact, data: dict | None = None) -> str:
    data = data or curve_data(artefact)
    rows = data["decision_curve"]
    ts = [r["threshold"] for r in rows]
    best = max(max(r["model"] for r in rows), max(r["treat_all"] for r in rows), 0.01)
    low = -best * 0.25
    plot = _Plot("Decision curve on the held-out split", "Threshold probability for acting",
                 "Net benefit (per patient)", (0, max(ts)), (low, best * 1.1), y_percent=False)
    plot.line(ts, [r["model"] for r in rows], MODEL)
    shown = [r for r in rows if r["treat_all"] >= low]  # down to the axis, then off the chart
    shown += [r for r in rows if r["treat_all"] < low][:1]
    plot.line([r["threshold"] for r in shown], [r["treat_all"] for r in shown], ALL, width=1.5)
    plot.line([0, max(ts)], [0, 0], REFERENCE, width=1.5, dashed=True)
    t = artefact.manifest["action_threshold"]
    x = plot.sx(t)
    plot.parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot.ph}" '
                      f'stroke="{MARK}" stroke-width="1.2" stroke-dasharray="3 3"/>')
    plot.parts.append(plot._text(x + 4, TOP + plot.ph - 8, f"action threshold {t * 100:g}%", 9,
                                 colour=MARK))
    plot.legend([("act on the model", MODEL, False), ("treat everyone", ALL, False),
                 ("treat no one", REFERENCE, True)])
    return plot.svg()


CAPTIONS = {
    "calibration": "Calibration: observed event rate against mean predicted risk in ten equal-"
                   "sized risk groups of the held-out split, with 95% intervals; the dashed line "
                   "is perfect calibration.",
    "roc": "ROC curve on the held-out split; the red point is the action threshold.",
    "decision": "Decision curve: the net benefit of acting on the model, against treating "
                "everyone or no one, at each threshold probability a clinician might act at; "
                "the model is worth using where its curve lies above both.",
}


def svgs(artefact: Artefact) -> dict[str, str]:
    """Every figure of a version, by name."""
    data = curve_data(artefact)
    return {"calibration": calibration_svg(artefact, data), "roc": roc_svg(artefact, data),
            "decision": decision_svg(artefact, data)}


def caption(name: str, artefact: Artefact) -> str:
    data = curve_data(artefact)
    return CAPTIONS[name] + (f" {data['note']}" if data["note"] and name != "calibration" else "")
