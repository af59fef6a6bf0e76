#!/usr/bin/env bash
# Build the C++ runtime (cpr::runtime) and the example app into build/cpp (CPU only; the CUDA
# kernels are compiled by the Python build). Needs: apt-get install libopencv-dev nlohmann-json3-dev libssl-dev
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/cpp -DCMAKE_BUILD_TYPE=Release -DCPR_BUILD_PYTHON=OFF -DCPR_BUILD_RUNTIME=ON -DCPR_WITH_CUDA=OFF
cmake --build build/cpp -j "${CPR_BUILD_JOBS:-2}"
echo "cpr-engine: C++ example built: $(pwd)/build/cpp/inspect_folder"
