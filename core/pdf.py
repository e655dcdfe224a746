"""Printable PDF of the generated documents, drawn with fpdf2 from the Markdown they are made
of: headings, paragraphs with **bold** and `code`, bullet lists, pipe tables, and figures
(`![caption](figure:NAME)`, NAME's SVG drawn in place). Only that subset is used by what this
product generates (core.report, core.model_card), so nothing else needs to be understood.

Text is set in DejaVu Sans when the system has it (Latin, Greek, Cyrillic and many more
scripts; a character it has no glyph for, such as CJK, is left out and logged); otherwise in the
PDF's own Helvetica, which holds Latin-1 only: other characters are then printed as '?'.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"),
             Path("/usr/local/share/fonts"))
IMAGE = re.compile(r"^!\[(?P<caption>[^\]]*)\]\(figure:(?P<name>[\w-]+)(\.svg)?\)$")
ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~:$])")


def _font_files() -> tuple[Path, Path] | None:
    for folder in FONT_DIRS:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


def _plain(text: str) -> str:
    """Markdown inline text as printed: escapes undone, code spans' backticks dropped."""
    return ESCAPE.sub(r"\1", text.replace("`", ""))


class Document:
    """One PDF: a title, then Markdown and figures appended in order."""

    def __init__(self, title: str, *, footer: str = ""):
        from fpdf import FPDF  # here: only printing needs it

        pdf = FPDF(format="A4", unit="mm")
        pdf.set_title(title)
        pdf.set_creator("clinical-risk-service")
        pdf.set_auto_page_break(True, margin=15)
        pdf.set_margins(15, 15, 15)
        fonts = _font_files()
        if fonts:
            pdf.add_font("Body", "", str(fonts[0]))
            pdf.add_font("Body", "B", str(fonts[1]))
            self.family, self.unicode = "Body", True
        else:
            self.family, self.unicode = "Helvetica", False

        def draw_footer() -> None:  # fpdf2 calls it at the end of every page
            pdf.set_y(-11)
            pdf.set_font(self.family, "", 7)
            pdf.set_text_color(90, 90, 90)
            pdf.cell(0, 5, self._safe(f"{footer}   page {pdf.page_no()}"), align="R")
            pdf.set_text_color(0, 0, 0)

        pdf.footer = draw_footer
        pdf.add_page()
        self.pdf = pdf

    def _safe(self, text: str) -> str:
        return text if self.unicode else text.encode("latin-1", "replace").decode("latin-1")

    def _font(self, size: float, bold: bool = False) -> None:
        self.pdf.set_font(self.family, "B" if bold else "", size)

    def _inline(self, text: str, size: float = 9.5, height: float = 4.6) -> None:
        """A paragraph with **bold** runs, wrapped to the page width."""
        pdf = self.pdf
        pdf.set_x(pdf.l_margin)
        for i, part in enumerate(re.split(r"\*\*", text)):
            if part:
                self._font(size, bold=i % 2 == 1)
                pdf.write(height, self._safe(_plain(part)))
        pdf.ln(height + 1.6)

    def heading(self, text: str, level: int) -> None:
        size = {1: 16, 2: 13, 3: 11, 4: 10}.get(level, 10)
        pdf = self.pdf
        if level <= 2 and pdf.get_y() > pdf.h - 50:
            pdf.add_page()
        pdf.ln(2 if level > 2 else 3)
        self._font(size, bold=True)
        pdf.multi_cell(0, size * 0.5, self._safe(_plain(text.replace("**", ""))), align="L")
        pdf.ln(1)

    def table(self, rows: list[list[str]]) -> None:
        if not rows:
            return
        header, body = rows[0], rows[1:]
        columns = len(header)
        lengths = [max(len(_plain(r[i])) if i < len(r) else 0 for r in rows) for i in range(columns)]
        weights = [min(max(n, 8), 60) for n in lengths]
        self._font(7.5)
        pdf = self.pdf
        with pdf.table(col_widths=weights, text_align="LEFT", line_height=3.6,
                       padding=0.8, first_row_as_headings=True) as table:
            for row in [header, *body]:
                cells = table.row()
                for i in range(columns):
                    cells.cell(self._safe(_plain((row[i] if i < len(row) else "").replace("**", ""))))
        pdf.ln(2)

    def figure(self, svg: str, caption: str, *, width: float = 180) -> None:
        pdf = self.pdf
        text = svg if self.unicode else self._safe(svg)
        if self.unicode:
            text = text.replace('font-family="Helvetica, Arial, sans-serif"', 'font-family="Body"')
        ratio = _ratio(text)
        height = width * ratio
        if pdf.get_y() + height + 10 > pdf.h - pdf.b_margin:
            pdf.add_page()
        pdf.image(io.BytesIO(text.encode()), x=pdf.l_margin + (pdf.epw - width) / 2, w=width)
        self._font(8)
        pdf.set_x(pdf.l_margin)
        pdf.multi_cell(0, 4, self._safe(_plain(caption)), align="L")
        pdf.ln(2)

    def markdown(self, text: str, figures: Callable[[str], str | None] = lambda name: None) -> None:
        """Append Markdown (the subset above); `figures(name)` gives a figure's SVG."""
        text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
        lines = text.split("\n")
        i, paragraph = 0, []

        def flush() -> None:
            if paragraph:
                self._inline(" ".join(paragraph))
                paragraph.clear()

        while i < len(lines):
            line = lines[i].rstrip()
            heading = re.match(r"^(#{1,6}) (.*)$", line)
            image = IMAGE.match(line.strip())
            if not line.strip():
                flush()
            elif heading:
                flush()
                self.heading(heading.group(2), len(heading.group(1)))
            elif image:
                flush()
                svg = figures(image.group("name"))
                if svg:
                    wide = _ratio(svg) < 0.7  # a diagram across the page, a chart narrower
                    self.figure(svg, image.group("caption"), width=180 if wide else 125)
            elif line.startswith("|"):
                flush()
                rows = []
                while i < len(lines) and lines[i].startswith("|"):
                    cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip())[1:-1]]
                    if not all(re.fullmatch(r":?-{3,}:?", c) for c in cells if c):
                        rows.append(cells)
                    i += 1
                self.table(rows)
                continue
            elif re.match(r"^\s*[-*] ", line):
                flush()
                self._font(9.5)
                self.pdf.set_x(self.pdf.l_margin)
                item = re.sub(r"^\s*[-*] ", "", line)
                while i + 1 < len(lines) and lines[i + 1].startswith("  ") and lines[i + 1].strip() \
                        and not re.match(r"^\s*[-*] ", lines[i + 1]):
                    i += 1
                    item += " " + lines[i].strip()
                self._inline("- " + item)
            else:
                paragraph.append(line.strip())
            i += 1
        flush()

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def _ratio(svg: str) -> float:
    """height / width of an SVG from its viewBox."""
    box = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg)
    return float(box.group(2)) / float(box.group(1)) if box else 0.6
