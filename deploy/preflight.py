"""Checks made before the container (or a VM) serves: see core/preflight.py, which every way of
starting the service runs. Exit 0 when all pass; else one line per problem on stderr and exit 78
(EX_CONFIG). Secret values are never printed.
"""

from __future__ import annotations

import sys

from core.preflight import problems
from core.store import close_all

EX_CONFIG = 78


def main() -> int:
    try:
        found, summary = problems()
    finally:
        close_all()
    if found:
        for problem in found:
            print(f"start: refusing to start: {problem}", file=sys.stderr)
        return EX_CONFIG
    print(f"start: checks passed: {summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
