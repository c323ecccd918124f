#!/usr/bin/env bash
# Create .venv (if missing) and install the project with the given extras, pinned by
# requirements/constraints.txt so installs are fast and reproducible. Usage: scripts/bootstrap.sh [EXTRAS]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
fi
[ -n "$PY" ] || { echo "bootstrap: no python3 found (Python 3.11.5 or later is required)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PY" -c 'import sys; sys.exit(sys.version_info[:3] < (3, 11, 5))' \
    || { echo "bootstrap: $("$PY" -V 2>&1) is too old: the pinned constraints need Python 3.11.5 or later" >&2; exit 1; }
  echo "bootstrap: creating .venv with $($PY --version 2>&1)" >&2
  "$PY" -m venv .venv
fi
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  spec="."
  [ -n "$extras" ] && spec=".[$extras]"
  echo "bootstrap: installing $spec (pinned by requirements/constraints.txt)" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -c requirements/constraints.txt -e "$spec"
  touch "$stamp"
fi
