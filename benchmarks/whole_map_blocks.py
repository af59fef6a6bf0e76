"""Time the whole-map search (``ops._whole_map_search``) for several similarity-block sizes.

    python -m benchmarks.whole_map_blocks [--n 231] [--k 10] [--side 40] [--dim 40] [--calls 20]

One query against K of N random unit banks (maps side x side, D channels), the blocks given as
floats per block (the 1024-row setting of earlier versions first). Prints ms per call.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import cpr_engine.ops as ops


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("n", 231), ("k", 10), ("side", 40), ("dim", 40), ("calls", 20)):
        p.add_argument(f"--{name}", type=int, default=default)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    bank = unit(rng.standard_normal((args.n, args.dim, args.side, args.side), dtype=np.float32))
    query = unit(rng.standard_normal((1, args.dim, args.side, args.side), dtype=np.float32))
    index = rng.integers(0, args.n, (1, args.k))
    columns = args.k * args.side * args.side
    for label, block in (("1024 rows", 1024 * columns), ("256 K floats", 1 << 18), ("1 M floats (default)", 1 << 20),
                         ("4 M floats", 1 << 22)):
        ops.GLOBAL_BLOCK_FLOATS = block
        ops._whole_map_search(query, bank, index)
        start = time.perf_counter()
        for _ in range(args.calls):
            ops._whole_map_search(query, bank, index)
        print(f"{label:22} {(time.perf_counter() - start) / args.calls * 1000:7.1f} ms per call")


if __name__ == "__main__":
    main()
