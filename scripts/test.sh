#!/usr/bin/env bash
# One command: set up ./.venv, build the C++ example when OpenCV's dev package is present, and run
# the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if dpkg -s libopencv-dev >/dev/null 2>&1; then
  bash scripts/build_cpp.sh
else
  echo "scripts/test.sh: libopencv-dev not installed; skipping the C++ example (tests/test_cpp_api.py skips)"
fi
exec .venv/bin/python -m pytest -q "$@"
