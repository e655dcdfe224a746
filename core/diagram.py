"""The one-page architecture diagram of this deployment, as SVG drawn from core.deployment's
facts (never by hand): who calls the service and through which boundary, the server process
and the model it serves, the store and where patient data is kept for how long, the model
artefacts, backups, the identity provider, and the audit head published outside.

Plain SVG elements only (rectangles, lines, polygons, text), so that the governance page shows
it as it is and the PDF report (fpdf2) draws the same picture.
"""

from __future__ import annotations

import textwrap
from xml.sax.saxutils import escape

from core.deployment import Deployment

WIDTH, HEIGHT = 960, 600
FONT = "Helvetica, Arial, sans-serif"
INK, MUTED, ALERT = "#1f2937", "#4b5563", "#b91c1c"


def _text(x: float, y: float, text: str, *, size: float = 11, bold: bool = False,
          colour: str = INK) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (f'<text x="{x:g}" y="{y:g}" font-family="{FONT}" font-size="{size:g}"{weight} '
            f'fill="{colour}">{escape(text)}</text>')


def _wrap(text: str, width: float, size: float) -> list[str]:
    return textwrap.wrap(text, max(8, int(width / (size * 0.6)))) or [""]


def _box(x: float, y: float, w: float, h: float, title: str, lines: list[str], *,
         fill: str = "#f3f4f6", stroke: str = "#374151", dashed: bool = False,
         colour: str = INK) -> list[str]:
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    out = [f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="6" fill="{fill}" '
           f'stroke="{stroke}" stroke-width="1.5"{dash}/>']
    cy = y + 18
    for part in _wrap(title, w - 16, 12):
        out.append(_text(x + 8, cy, part, size=12, bold=True, colour=colour))
        cy += 15
    for line in lines:
        for part in _wrap(line, w - 16, 10):
            if cy > y + h - 4:
                return out
            out.append(_text(x + 8, cy, part, size=10, colour=MUTED if colour == INK else colour))
            cy += 13
    return out


def _arrow(x1: float, y1: float, x2: float, y2: float, label: str = "", *,
           colour: str = INK) -> list[str]:
    import math

    angle = math.atan2(y2 - y1, x2 - x1)
    ax, ay = x2 - 9 * math.cos(angle), y2 - 9 * math.sin(angle)
    px, py = 4 * math.sin(angle), -4 * math.cos(angle)
    out = [f'<line x1="{x1:g}" y1="{y1:g}" x2="{ax:.1f}" y2="{ay:.1f}" stroke="{colour}" '
           'stroke-width="1.5"/>',
           f'<polygon points="{x2:g},{y2:g} {ax + px:.1f},{ay + py:.1f} {ax - px:.1f},{ay - py:.1f}" '
           f'fill="{colour}"/>']
    if label:
        out.append(_text((x1 + x2) / 2 - 2.5 * len(label), min(y1, y2) - 4, label, size=9,
                         colour=MUTED))
    return out


def svg(d: Deployment) -> str:
    """The diagram as an SVG document (deterministic for the same facts)."""
    head_seq, head_hash = d.audit_head
    clients = [f"{name} ({', '.join(roles)})" for name, roles in d.api_clients] or \
        ["none registered (python -m core clients add)"]
    proxied = bool(d.proxy_networks)
    embedded = d.store.kind == "embedded"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}">',
             f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
             _text(20, 24, f"Architecture of this deployment: {d.model_title}", size=14, bold=True)]
    # The network boundary: everything inside is reached only through the proxy (when one is set).
    parts.append('<rect x="300" y="40" width="430" height="545" rx="10" fill="none" '
                 f'stroke="{MUTED if proxied else ALERT}" stroke-width="1.5" stroke-dasharray="8 5"/>')
    parts.append(_text(312, 58, "Network boundary" + ("" if proxied else " (not enforced here)"),
                       size=10, bold=True, colour=MUTED if proxied else ALERT))
    parts += _box(20, 70, 190, 100, "People (web browser)",
                  ["clinicians, reviewers, the PI and admins sign in to the Streamlit UI"])
    parts += _box(20, 195, 190, 150, "API clients (bearer tokens)", clients)
    if proxied:
        parts += _box(235, 160, 130, 110, "TLS proxy", ["HTTPS terminated here; trusted: "
                                                        + ", ".join(d.proxy_networks)],
                      fill="#ecfdf5", stroke="#047857")
    else:
        parts += _box(235, 160, 130, 110, "No TLS proxy", ["APP_TRUSTED_PROXIES is empty: "
                                                           "clients reach the port directly"],
                      fill="#fef2f2", stroke=ALERT, dashed=True, colour=ALERT)
    parts += _box(390, 70, 320, 505, f"Runs in: {d.runtime}", [d.runtime_detail],
                  fill="#f9fafb", stroke="#6b7280")
    parts += _box(405, 120, 290, 105, "Server process: uvicorn serve:app",
                  ["Streamlit UI and REST API /api/v1, one process",
                   f"serving model {d.serving_version}, sha256 {d.serving_sha256[:16]}..."
                   + (" (SYNTHETIC)" if d.synthetic else "")],
                  fill="#eff6ff", stroke="#1d4ed8")
    parts += _box(405, 250, 140, 80, "Model artefacts",
                  [d.artefacts, "read-only" if d.artefacts_read_only else "writable by the service"])
    store_lines = [d.store.where,
                   f"PHI: raw inputs and patient references (phi_inputs), kept {d.retention_days} "
                   "days, then purged; hashes, outputs and the audit chain stay"]
    if not embedded:
        store_lines.insert(1, "on the institution's database server")
    parts += _box(405, 355, 290, 120, d.store.label, store_lines,
                  fill="#fffbeb", stroke="#b45309")
    parts += _box(405, 495, 290, 65, "Backups", [f"{d.backups}: copies of the store, PHI "
                                                 "included, until deleted"])
    parts += _box(760, 70, 185, 140, "Sign-in", d.identity, fill="#f5f3ff", stroke="#6d28d9")
    parts += _box(760, 370, 185, 130, "Published outside",
                  ["the audit chain's head", f"{head_seq}:{head_hash[:16]}...",
                   "python -m core audit head, into a record the service cannot change"],
                  fill="#f0fdf4", stroke="#15803d")
    parts += _arrow(210, 120, 235, 190)
    parts += _arrow(210, 260, 235, 240)
    parts += _arrow(365, 215, 405, 175, "HTTPS" if proxied else "HTTP")
    parts += _arrow(470, 225, 470, 250)
    parts += _arrow(640, 225, 640, 355)
    parts += _arrow(550, 475, 550, 495)
    parts += _arrow(695, 150, 760, 140, "OIDC")
    parts += _arrow(695, 410, 760, 430, "head")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
