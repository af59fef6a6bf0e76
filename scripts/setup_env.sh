#!/usr/bin/env bash
# Create ./.venv with everything cpr-engine needs (idempotent). Usage: bash scripts/setup_env.sh
# TORCH_SPEC overrides the torch requirement (e.g. TORCH_SPEC=torch for the registry's CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[dev]"
