"""How results read on the pages: plain-language meanings and number formats (no logic)."""

from __future__ import annotations

CONFIDENCE_MEANING = (
    "How sure the model is, given the statistical uncertainty of its own estimate, that the "
    "patient's true risk lies on the safe side of the boundary for the class shown: at or above "
    "the action threshold for 'high', below the safe-low bound for 'low'. Predictions below the "
    "confidence level in the routing rule go to clinical review."
)


def pct(x: float) -> str:
    """A probability as the pages show it: a percentage with one decimal."""
    return f"{x * 100:.1f}%"
