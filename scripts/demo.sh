#!/usr/bin/env bash
# One command: set up ./.venv and run the offline demo (build data, train, evaluate, export, predict).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/cpr-demo "$@"
