#!/usr/bin/env bash
# Set everything up and serve the synthetic demo sectors on http://127.0.0.1:8000 (first run
# generates the demo data). Extra arguments go to `cutout serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/cutout serve --demo "$@"
