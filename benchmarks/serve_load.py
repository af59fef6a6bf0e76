"""Load benchmark: Triton serving (cpr-serve) vs the in-process Detector, same machine, same run.

For each server setting (dynamic batching off / on) a ``cpr-serve`` (PyTriton) and the wheel's
stock ``tritonserver`` on a written model repository (Python backend) are started on free loopback
ports; C clients (threads, one ``RemoteDetector`` each) send one image per request for a fixed
time, C = 1, 2, 4, ..., 32. The in-process rows run C threads sharing one ``ArtifactDetector``; all servers run at once and the
rows are interleaved per client count.
Prints a Markdown table: throughput (images/s) and p50 / p99 latency (ms).

    python benchmarks/serve_load.py --artifact ART [--seconds 5] [--protocol grpc]
    python benchmarks/serve_load.py --artifact ART --server grpc://host:8001   # a running server
Without --artifact a ``faster`` model is trained for a few steps on the demo set and exported
(needs the train extra; speed does not depend on how well it is trained).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from cpr_engine.client import RemoteDetector, wait_until_ready
from cpr_engine.runtime.artifact import read_manifest
from cpr_engine.runtime.detector import ArtifactDetector
from cpr_engine.serve.spec import model_name
from cpr_engine.serve.stock import free_loopback_ports

BATCH_SETTINGS = {"no batching": (1, 0), "dynamic batching (8, 2 ms)": (8, 2000)}


def build_artifact(out: Path) -> Path:
    """Train a ``faster`` model for a few steps on the demo grass category and export it."""
    from cpr_engine import Detector
    from cpr_engine.data import build_demo
    from cpr_engine.exporter import export_artifact

    root = build_demo(out / "demo", seed=0, categories=("grass",), n_train=8, n_test_good=1, n_test_defect=1)
    det = Detector("faster", device="cpu", steps=4, batch_size=4).fit(f"{root}/grass", texture=True, category="grass")
    return Path(export_artifact(det, out / "artifact", trt="no")["artifact"])


def run_load(make_predict, image: np.ndarray, clients: int, seconds: float) -> dict:
    """C threads, each calling its own ``make_predict()`` on ``image`` until time is up."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def worker(k: int) -> None:
        try:
            predict = make_predict()
            predict(image)  # warm-up (connection, first call)
            start.wait()
            end = time.perf_counter() + seconds
            while (t0 := time.perf_counter()) < end:
                predict(image)
                latencies[k].append(time.perf_counter() - t0)
        except BaseException as e:  # reported below
            errors.append(e)
            start.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass
    t_start = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]!r}")
    wall = time.perf_counter() - t_start
    all_ms = np.concatenate([np.asarray(lat) for lat in latencies]) * 1e3
    return {"images_per_s": len(all_ms) / wall, "p50_ms": float(np.percentile(all_ms, 50)),
            "p99_ms": float(np.percentile(all_ms, 99)), "requests": len(all_ms)}


def start_server(launch, model: str, log: Path):
    """``launch(http, grpc, metrics, log_file) -> Popen`` on free loopback ports; returns (process, http, grpc urls)."""
    http, grpc, metrics = free_loopback_ports(3)
    with open(log, "wb") as out:
        process = launch(http, grpc, metrics, out)
    try:
        wait_until_ready(f"http://127.0.0.1:{http}", [model], 180, process)
    except BaseException:
        process.kill()
        raise
    return process, f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}"


def cpr_serve(artifact: Path, max_batch: int, delay_us: int, instances: int):
    """Launcher of ``cpr-serve`` (PyTriton) with these batching settings."""
    def launch(http, grpc, metrics, out):
        command = [sys.executable, "-m", "cpr_engine.cli.serve", str(artifact), "--host", "127.0.0.1",
                   "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
                   "--max-batch-size", str(max_batch), "--max-queue-delay-us", str(delay_us),
                   "--instances", str(instances), "--quiet"]
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return launch


def stock_server(artifact: Path, work: Path, max_batch: int, delay_us: int, instances: int):
    """Launcher of the wheel's ``tritonserver`` on a repository written for these settings."""
    from cpr_engine.serve.stock import prepare_backends, start_server as start_stock
    from cpr_engine.triton_repo import write_repository

    repo = work / f"repo_{max_batch}_{delay_us}_{instances}"
    write_repository([artifact], repo, max_batch_size=max_batch, max_queue_delay_us=delay_us, instances=instances)
    backends = prepare_backends(work / "server")
    return lambda http, grpc, metrics, out: start_stock(repo, backends, http, grpc, metrics, log=out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", type=Path, help="artifact folder (default: train and export a small one)")
    p.add_argument("--server", help="benchmark this running server (http://host:port or grpc://host:port) only")
    p.add_argument("--protocol", choices=("http", "grpc"), default="grpc", help="client protocol (own servers)")
    p.add_argument("--concurrency", default="1,2,4,8,16,32", help="comma-separated client counts")
    p.add_argument("--seconds", type=float, default=5.0, help="measuring time per row")
    p.add_argument("--image-size", type=int, default=256, help="square RGB test image side (random pixels)")
    p.add_argument("--instances", type=int, default=1, help="model instances of each server")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="serve_load_"))
    artifact = args.artifact or build_artifact(work)
    manifest = read_manifest(artifact, verify=False)
    model = model_name(manifest)
    image = np.random.default_rng(0).integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8)
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"model {model!r} variant {manifest.get('variant')} image_size {manifest['image_size']}, "
          f"request: one {args.image_size}x{args.image_size} RGB uint8 image, {args.seconds:.0f} s per row",
          flush=True)
    local = ArtifactDetector.load(artifact)
    if args.server:
        targets = [(f"server {args.server}", None)]
    else:
        targets = [(f"cpr-serve {args.protocol}, {name}", cpr_serve(artifact, *setting, args.instances))
                   for name, setting in BATCH_SETTINGS.items()]
        targets += [(f"stock tritonserver {args.protocol}, {name}", stock_server(artifact, work, *setting,
                                                                                  args.instances))
                    for name, setting in BATCH_SETTINGS.items()]
    processes, urls = [], {}
    try:  # all servers up at once, rows interleaved per client count: load drifts on a shared machine
        for k, (name, launch) in enumerate(targets):
            if launch is None:
                urls[name] = args.server
                continue
            process, http, grpc = start_server(launch, model, work / f"server_{k}.log")
            processes.append(process)
            urls[name] = grpc if args.protocol == "grpc" else http
        rows = []
        for c in levels:
            rows.append(("in-process Detector", c, run_load(lambda: local.predict, image, c, args.seconds)))
            print(rows[-1], flush=True)
            for name, url in urls.items():
                rows.append((name, c, run_load(lambda: RemoteDetector(url, model).predict, image, c, args.seconds)))
                print(rows[-1], flush=True)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
    print("\n| setting | clients | images/s | p50 ms | p99 ms | requests |\n|---|---|---|---|---|---|")
    for name, c, r in rows:
        print(f"| {name} | {c} | {r['images_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
