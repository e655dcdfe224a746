"""Checks made before the app serves, so a misconfigured service stops at once with a clear reason.

1. The settings parse, and outside demo mode a patient key (32+ characters) is set.
2. The store opens: created and migrated if new; refused if another process holds it.
3. The serving model version's files match their recorded sha256.

Exit 0 when all pass; else one line per problem on stderr and exit 78 (EX_CONFIG).
Secret values are never printed.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from core import artifacts
from core.config import get_settings
from core.errors import CoreError
from core.store import close_all, open_store

EX_CONFIG = 78


def _problems() -> tuple[list[str], str]:
    try:
        settings = get_settings()
        settings.patient_key_bytes()
    except ValidationError as exc:
        # Only the messages: the error's own text would echo the offending value (a secret).
        return [f"APP_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}" if err["loc"]
                else err["msg"] for err in exc.errors()], ""
    except CoreError as exc:
        return [str(exc)], ""
    try:
        active = open_store(settings.db).active_activation()
    except CoreError as exc:
        return [str(exc)], ""
    finally:
        close_all()
    version = artifacts.serving_version(active, settings.models)
    if version is None:
        return [f"no model version to serve in {settings.models} (no activation, no DEFAULT_VERSION)"], ""
    problems = artifacts.verify(settings.models, version)
    mode = "DEMO mode" if settings.demo else "production mode"
    return problems, f"{mode}; store {settings.db}; serving model {version} from {settings.models}"


def main() -> int:
    problems, summary = _problems()
    if problems:
        for problem in problems:
            print(f"start: refusing to start: {problem}", file=sys.stderr)
        return EX_CONFIG
    print(f"start: checks passed: {summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
