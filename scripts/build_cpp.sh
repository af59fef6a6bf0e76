#!/usr/bin/env bash
# Build the C++ runtime (cpr::runtime) and the example app into build/cpp (CPU kernels; the CUDA
# kernels are compiled by the Python build). The network runs in OpenCV DNN, and in TensorRT too
# when CMake finds TensorRT and the CUDA toolkit (CPR_WITH_TENSORRT=AUTO). Arguments go to the CMake
# configure step, e.g. -DCPR_WITH_TENSORRT=ON -DTENSORRT_ROOT=/opt/tensorrt.
# Needs: apt-get install libopencv-dev nlohmann-json3-dev libssl-dev libopenblas-dev
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/cpp -DCMAKE_BUILD_TYPE=Release -DCPR_BUILD_PYTHON=OFF -DCPR_BUILD_RUNTIME=ON -DCPR_WITH_CUDA=OFF "$@"
cmake --build build/cpp -j "${CPR_BUILD_JOBS:-2}"
echo "cpr-engine: C++ example built: $(pwd)/build/cpp/inspect_folder"
