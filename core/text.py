"""People's free text: normalised before it is stored, and shown as text, never as markup.

What a reviewer, a signer or an administrator types is kept for ever in the audit trail, so it
is checked like any input: Unicode normalised (NFC), invisible control characters and text-
direction overrides refused (they can make a comment read differently from what is stored),
and lengths limited. Shown on a page or in a Markdown report, it is escaped, so a link or an
image in a suspension reason stays a line of text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator

# Explicit direction marks, embeddings, overrides and isolates, and the invisible separators
# that have no business in a clinical note.
_DIRECTION = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_INVISIBLE = set("\u200b\u2028\u2029\ufeff")
# What can start markup inside a line: emphasis, code, links and images ([...]), HTML and
# entities, tables, strikethrough, maths ($), and Streamlit's :directives[...] and :icons:.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~$&]|:(?=[A-Za-z/]))")


def clean_text(value: str, *, max_length: int, multiline: bool = False) -> str:
    """`value` normalised and stripped; ValueError (naming the problem, never echoing the
    text) when it holds control or direction characters or is longer than max_length."""
    text = unicodedata.normalize("NFC", value).replace("\r\n", "\n").replace("\r", "\n")
    if not multiline:
        text = re.sub(r"[\t\n]+", " ", text)
    text = text.strip()
    allowed = "\n\t" if multiline else ""
    for ch in text:
        if ch in _DIRECTION:
            raise ValueError(f"contains a text-direction control character (U+{ord(ch):04X}); "
                             "remove it")
        if ch in _INVISIBLE or (unicodedata.category(ch) == "Cc" and ch not in allowed):
            raise ValueError(f"contains an invisible control character (U+{ord(ch):04X}); "
                             "remove it")
    if len(text) > max_length:
        raise ValueError(f"must be at most {max_length} characters (it has {len(text)})")
    return text


def free_text(max_length: int, *, multiline: bool = False):
    """A pydantic field type for people's free text (see clean_text)."""
    return Annotated[str, AfterValidator(
        lambda v: clean_text(v, max_length=max_length, multiline=multiline))]


def md_text(value: object) -> str:
    """`value` as literal text inside Markdown: every character Markdown (or Streamlit's own
    directives such as :red[...] and :material/icon:) could read as markup is escaped."""
    escaped = _MARKDOWN.sub(r"\\\1", str(value))
    return re.sub(r"(?i)\b(www)\.", r"\1\\.", escaped)  # "www." alone would become a link


def md_cell(value: object) -> str:
    """`value` as literal text inside one cell of a Markdown table (one line, no bare `|`)."""
    return md_text(re.sub(r"\s*\n\s*", " ", str(value)))


def reason_text(value: str | None, what: str) -> str:
    """A recorded reason (a suspension, an activation): required, one line of people's text."""
    text = clean_text(value or "", max_length=500)
    if not text:
        raise ValueError(f"{what} needs a reason")
    return text


def actor(user: object) -> str:
    """The signed-in user's name that a change is recorded under; ValueError when there is none."""
    if not isinstance(user, str) or not user.strip():
        raise ValueError("every recorded change needs the signed-in user's name")
    return user
