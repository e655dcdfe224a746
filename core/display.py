"""How results read on the pages: plain-language meanings and number formats (no logic)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.artifacts import Artefact


def pct(x: float) -> str:
    """A probability as the pages show it: a percentage with one decimal."""
    return f"{x * 100:.1f}%"


def confidence_text(x: float) -> str:
    """A confidence as every page shows it: never 100%, above 99.9% as '> 99.9%'."""
    return "> 99.9%" if x > 0.999 else pct(x)


def confidence_meaning(artefact: Artefact) -> str:
    """What a version's confidence means, in the clinician's paragraph from its manifest."""
    return (artefact.manifest["confidence"]["description"] + " Predictions below the "
            "confidence level in the routing rule go to clinical review.")


def field_label(label: str, *, required: bool, unit: str = "") -> str:
    """A form field's label with its unit and whether it must be given, in one pair of brackets:
    "Age (years, required)", "Weight (kg, optional)", "Patient reference (study ID, required)"."""
    marks = ", ".join(m for m in (unit, "required" if required else "optional") if m)
    if label.endswith(")"):
        return f"{label[:-1]}, {marks})"
    return f"{label} ({marks})"
