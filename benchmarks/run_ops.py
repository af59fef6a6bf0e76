"""Native kernels vs the PyTorch reference, op by op, on one machine.

    python benchmarks/run_ops.py                      # every op, variants cpr/fast/faster, N = 30
    python benchmarks/run_ops.py --ops nn_search --n-train 300 --json out.json

For each op and input case it prints the reference time, the native time (median of --repeat calls
after --warmup calls, both run in this process on the same inputs, CPU tensors in, CPU tensors out:
the times include the zero-copy NumPy views and the output allocation, nothing is cached between
calls), their ratio, the bytes one call must move at least (inputs read once + outputs written) and
the native rate in GB/s. Then the bank bytes per training image of each variant in fp32 and fp16.
Inputs are built like the tests' (tests/helpers/cases.py): unit-norm random descriptors, random
normalized histograms.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cpr_engine import CPRConfig, ops  # noqa: E402
from tests.helpers.cases import random_hists, unit_descriptors  # noqa: E402

OPS = ("codebook_histogram", "hist_match", "top_k", "nn_search", "postprocess")
VARIANTS = ("cpr", "fast", "faster")


# ---------------------------------------------------------------------------------------------
# inputs: each case is (name, kwargs for the op, bytes moved)

def nn_search_case(variant: str, n_train: int, bank_dtype=torch.float32, image_size: int = 320, seed: int = 0):
    """One image of a variant's configuration: both scales in one call, K from the preset."""
    cfg = CPRConfig.preset(variant, image_size=image_size)
    g = torch.Generator().manual_seed(seed)
    d, k = cfg.descriptor_dim, cfg.top_k
    queries, banks = [], []
    for stride in (4, 8):
        side = image_size // stride
        queries.append(unit_descriptors((1, d, side, side), g))
        banks.append(unit_descriptors((n_train, d, side, side), g).to(bank_dtype))
    index = torch.randperm(n_train, generator=g)[:k].repeat(1 + k // n_train)[:k][None]
    item = banks[0].element_size()
    moved = sum(q.numel() * 4 + k * q.numel() * item + q[:, 0].numel() * 4 for q in queries) + index.numel() * 8
    name = f"{variant}: D={d} {image_size // 4}^2 r={cfg.windows[0]} + {image_size // 8}^2 r={cfg.windows[1]}, " \
           f"K={k}, N={n_train}, {str(bank_dtype).replace('torch.', '')} bank"
    return name, dict(query=queries, bank=banks, index=index, window=list(cfg.windows)), moved


def hist_match_case(n_refs: int = 1000, batch: int = 1, grid: int = 5, n_codes: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = torch.from_numpy(random_hists(batch, grid * grid, n_codes + 1, rng))
    r = torch.from_numpy(random_hists(n_refs, grid * grid, n_codes + 1, rng))
    kept = round(grid * grid * 0.8)
    moved = (q.numel() + r.numel()) * 4 + batch * n_refs * 4
    return f"B={batch} vs N={n_refs}, {grid * grid} blocks x {n_codes + 1} bins, keep {kept}", \
        dict(query=q, refs=r, kept_blocks=kept), moved


def top_k_case(n_refs: int = 1000, batch: int = 1, k: int = 10, seed: int = 0):
    d = torch.rand(batch, n_refs, generator=torch.Generator().manual_seed(seed))
    return f"B={batch}, N={n_refs}, k={k}", dict(distances=d, k=k), d.numel() * 4 + batch * k * 8


def codebook_histogram_case(channels: int, side: int = 80, n_codes: int = 12, grid: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(1, channels, side, side, generator=g)
    c = torch.randn(n_codes, channels, generator=g)
    moved = f.numel() * 4 + c.numel() * 4 + side * side * 8 + grid * grid * (n_codes + 1) * 4
    return f"C={channels}, {side}x{side}, M={n_codes}, grid {grid}", dict(features=f, centers=c, grid=grid), moved


def postprocess_case(image_size: int = 320, batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    maps = [torch.rand(batch, image_size // 4, image_size // 4, generator=g),
            torch.rand(batch, image_size // 8, image_size // 8, generator=g)]
    fg = torch.rand(batch, image_size // 4, image_size // 4, generator=g)
    moved = sum(m.numel() for m in maps) * 4 + fg.numel() * 4 + batch * image_size ** 2 * 4 + batch * 4
    return f"B={batch}, {image_size // 4}^2 + {image_size // 8}^2 -> {image_size}^2, sigma 4, top 512", \
        dict(local_maps=maps, foreground=fg, image_size=image_size, sigma=4.0, top_t=512), moved


def cases(op: str, variants, n_train: int):
    if op == "nn_search":
        out = []
        for v in variants:
            out.append(nn_search_case(v, n_train))
            out.append(nn_search_case(v, n_train, torch.float16))
        return out
    if op == "hist_match":
        return [hist_match_case(1000), hist_match_case(300, batch=300)]
    if op == "top_k":
        return [top_k_case(1000), top_k_case(300, batch=300)]
    if op == "codebook_histogram":
        return [codebook_histogram_case(24), codebook_histogram_case(256)]
    if op == "postprocess":
        return [postprocess_case()]
    raise ValueError(op)


# ---------------------------------------------------------------------------------------------
# timing

def time_call(fn, repeat: int, warmup: int) -> float:
    """Median wall time of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "backend": ops.backend(), "cuda_kernels": ops.cuda_available()}
    if ops.native_available():
        from cpr_engine import _C

        info["cpu_isa"] = _C.cpu_isa()
    return info


def bank_bytes() -> list[dict]:
    rows = []
    for v in VARIANTS:
        cfg = CPRConfig.preset(v)
        s = cfg.image_size
        values = cfg.descriptor_dim * ((s // 4) ** 2 + (s // 8) ** 2)
        rows.append({"variant": v, "descriptor_dim": cfg.descriptor_dim, "image_size": s,
                     "fp32_bytes": values * 4, "fp16_bytes": values * 2})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--n-train", type=int, default=30, help="training images N in the nn_search bank (default 30)")
    p.add_argument("--repeat", type=int, default=20, help="timed native calls per case (median)")
    p.add_argument("--ref-repeat", type=int, default=5, help="timed reference calls per case (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    if not ops.native_available():
        print(f"cpr_engine._C is not built ({ops.native_error()}); build it with `pip install -e .`")
        return 1

    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']} ({info['torch_threads']} threads); "
          f"native CPU kernels: {info.get('cpu_isa')}; CUDA kernels compiled: {info['cuda_kernels']}")
    print("times: median wall ms per call, CPU tensors in and out, same inputs for both implementations\n")
    results = []
    with torch.no_grad():
        for op in args.ops:
            fn = getattr(ops, op)
            print(f"## {op}")
            print(f"{'case':<72} {'ref ms':>9} {'native ms':>10} {'ratio':>7} {'MB moved':>9} {'GB/s':>7}")
            for name, kwargs, moved in cases(op, args.variants, args.n_train):
                ref = time_call(lambda: fn(**kwargs, impl="reference"), args.ref_repeat, 1)
                nat = time_call(lambda: fn(**kwargs, impl="native"), args.repeat, args.warmup)
                row = {"op": op, "case": name, "reference_ms": ref, "native_ms": nat, "ratio": ref / nat,
                       "bytes_moved": moved, "native_gb_per_s": moved / (nat * 1e-3) / 1e9}
                results.append(row)
                print(f"{name:<72} {ref:9.3f} {nat:10.3f} {ref / nat:6.1f}x {moved / 1e6:9.2f} "
                      f"{row['native_gb_per_s']:7.2f}")
            print()
    print("## bank bytes per training image (both scales)")
    print(f"{'variant':<8} {'D':>4} {'size':>5} {'fp32 MB':>9} {'fp16 MB':>9}")
    banks = bank_bytes()
    for r in banks:
        print(f"{r['variant']:<8} {r['descriptor_dim']:>4} {r['image_size']:>5} {r['fp32_bytes'] / 1e6:9.3f} "
              f"{r['fp16_bytes'] / 1e6:9.3f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "n_train": args.n_train, "results": results,
                                         "bank_bytes_per_image": banks}, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
