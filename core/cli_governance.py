"""The `python -m core governance` commands: print the evaluator report (PDF or Markdown), and
record the deploy-or-stay assessment."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path


def add_parsers(sub) -> None:
    g = sub.add_parser("governance", help="the evaluator report and the deploy-or-stay assessment")
    gsub = g.add_subparsers(dest="action", required=True)
    r = gsub.add_parser("report", help="print the evaluator report from the live store")
    r.add_argument("--pdf", type=Path, help="write the printable PDF here")
    r.add_argument("--markdown", type=Path, help="write the Markdown report here")
    r.add_argument("--by", default=getpass.getuser(), help="who prints it (named in the report)")


def _checked_output(path: Path) -> str | None:
    from core.config import get_settings
    from core.file_guard import protected_reason

    reason = protected_reason(path, get_settings())
    return f"{path} {reason}; choose another name" if reason else None


def run_governance(args) -> int:
    from core import report
    from core.governance import snapshot

    outputs = [p for p in (args.pdf, args.markdown) if p is not None]
    if not outputs:
        print("error: name the report's file: --pdf FILE and/or --markdown FILE", file=sys.stderr)
        return 2
    for path in outputs:
        problem = _checked_output(path)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    snap = snapshot(by=args.by)
    head = report.current_head()
    if args.pdf:
        args.pdf.write_bytes(report.pdf(snap, by=args.by, head=head))
        print(f"wrote {args.pdf}: evaluator report of model {snap['artefact'].version}, audit head "
              f"{head[0]}:{head[1]}")
    if args.markdown:
        args.markdown.write_text(report.markdown(snap, by=args.by, head=head))
        print(f"wrote {args.markdown}: evaluator report of model {snap['artefact'].version}, "
              f"audit head {head[0]}:{head[1]}")
    return 0


COMMANDS = {"governance": run_governance}
