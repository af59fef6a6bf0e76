#!/usr/bin/env bash
# cpr-bench for every variant x backend at batch 1 (and batch 8 for faster), one after another.
# Usage: bash benchmarks/cpu_bench_all.sh [OUT_DIR]   (default ./bench_out): one .json and .txt per row.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench_out}
mkdir -p "$OUT"
bench() { local name=$1; shift; .venv/bin/cpr-bench --quiet --json "$OUT/$name.json" "$@" > "$OUT/$name.txt" 2>&1; }
for v in faster fast cpr; do
  runs=50; [ "$v" = cpr ] && runs=20
  for be in torch onnxruntime graph; do
    bench "${v}_${be}_b1" --variant "$v" --backend "$be" --runs "$runs"
  done
  bench "${v}_ortfp16_b1" --variant "$v" --backend onnxruntime --fp16 --runs "$runs"
done
for be in torch onnxruntime; do
  bench "faster_${be}_b8" --variant faster --backend "$be" --batch 8 --runs 20
done
grep -h "latency per image" "$OUT"/*.txt
