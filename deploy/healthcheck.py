"""Container health check: exit 0 when Streamlit's health endpoint answers "ok".

Uses only the standard library (the slim image has no curl). The port and base path are the
ones the server was started with (STREAMLIT_SERVER_PORT, STREAMLIT_SERVER_BASE_URL_PATH).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def health_url() -> str:
    port = os.environ.get("STREAMLIT_SERVER_PORT", "8501")
    base = os.environ.get("STREAMLIT_SERVER_BASE_URL_PATH", "").strip("/")
    return f"http://127.0.0.1:{port}/{base + '/' if base else ''}_stcore/health"


def main() -> int:
    try:
        with urllib.request.urlopen(health_url(), timeout=4) as response:
            body = response.read().decode().strip()
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if body != "ok":
        print(f"unhealthy: health endpoint answered {body[:80]!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
