#!/usr/bin/env bash
# Start the service: the container's entry point, and usable as is on a plain VM.
#
#   deploy/start.sh               check the settings and the store, then serve the app
#   deploy/start.sh COMMAND ...   run COMMAND with the same settings instead, for example
#                                 deploy/start.sh python -m core users list
#
# Configuration comes only from the environment: APP_* for the service (README, "Settings") and
# STREAMLIT_* for the web server (STREAMLIT_SERVER_PORT, STREAMLIT_SERVER_ADDRESS, ...). A secret
# can be given as a file instead, the way container secrets are mounted: APP_X_FILE=/run/secrets/x
# sets APP_X to the file's contents (trailing newlines dropped), as PGPASSWORD_FILE sets the
# PostgreSQL store's PGPASSWORD. Setting both is an error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# 78 is EX_CONFIG: the service is misconfigured, not broken.
die() {
  echo "start: $*" >&2
  exit 78
}

for file_var in $(compgen -e | grep -E '^(APP_[A-Z0-9_]+|PGPASSWORD)_FILE$' || true); do
  var="${file_var%_FILE}"
  path="${!file_var}"
  [[ -z "${!var:-}" ]] || die "both $var and $file_var are set; set only one"
  [[ -f "$path" && -r "$path" ]] || die "$file_var=$path is not a file that user $(id -u) can read"
  value="$(<"$path")"
  export "$var=$value"
  unset "$file_var"
done

if [[ $# -gt 0 ]]; then
  exec "$@"
fi

python deploy/preflight.py
# The one server process: the UI and the API (/api/v1), one worker (one process owns the store).
exec python -m uvicorn serve:app --host "${STREAMLIT_SERVER_ADDRESS:-0.0.0.0}" \
  --port "${STREAMLIT_SERVER_PORT:-8501}" --workers 1
