"""cpr-serve: serve artifacts on a Triton Inference Server (PyTriton) until SIGTERM / Ctrl-C.

Triton is started again when it dies (at most 5 times in 5 minutes; then cpr-serve exits 1 so
that a supervisor such as systemd or Kubernetes restarts the whole service, see
deploy/cpr-serve/).
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from .common import add_debug_arg, cli_main, nonnegative_int, port_number, positive_int, setup_logging


def build_parser() -> argparse.ArgumentParser:
    from ..serve.app import ServeOptions

    d = ServeOptions()
    p = argparse.ArgumentParser(
        prog="cpr-serve",
        description="Serve artifact folders (cpr-export) on NVIDIA Triton Inference Server through PyTriton: one "
                    "model per artifact named by its category (same category: versions 1, 2, ...), KServe v2 "
                    "HTTP and gRPC, Prometheus metrics, dynamic batching. Inputs: 'image' (uint8 H x W x 3 RGB) "
                    "or 'image_bytes' (encoded PNG/JPEG). Outputs: 'score', 'anomaly_map', 'is_anomalous'.")
    p.add_argument("artifacts", nargs="+", help="artifact folders written by cpr-export")
    p.add_argument("--host", default=d.host,
                   help=f"address to listen on (default {d.host}: this machine only; --host 0.0.0.0 opens the "
                        "server to every network interface)")
    p.add_argument("--http-port", type=port_number, default=d.http_port, help=f"KServe v2 HTTP/REST port (default {d.http_port})")
    p.add_argument("--grpc-port", type=port_number, default=d.grpc_port, help=f"KServe v2 gRPC port (default {d.grpc_port})")
    p.add_argument("--metrics-port", type=port_number, default=d.metrics_port, help=f"Prometheus metrics port, /metrics (default {d.metrics_port})")
    p.add_argument("--max-batch-size", type=positive_int, default=d.max_batch_size,
                   help="largest dynamic batch, in images (also the largest batch one request may send)")
    p.add_argument("--max-queue-delay-us", type=nonnegative_int, default=d.max_queue_delay_us,
                   help="how long a request may wait for others to batch with, in microseconds")
    p.add_argument("--instances", type=positive_int, default=d.instances, help="model instances (concurrent executions)")
    p.add_argument("--map-downscale", type=positive_int, default=d.map_downscale,
                   help="return anomaly maps at the input size divided by this factor (default 1: full size)")
    p.add_argument("--exit-timeout", type=nonnegative_int, default=d.exit_timeout_s,
                   help="seconds in-flight requests get to finish on shutdown")
    p.add_argument("--max-request-mb", type=positive_int, default=d.max_request_bytes // 2**20,
                   help=f"largest request accepted, in MiB (HTTP body or gRPC message; default "
                        f"{d.max_request_bytes // 2**20}: a 64-megapixel RGB image as a binary tensor); larger "
                        f"requests are refused (HTTP 413, gRPC RESOURCE_EXHAUSTED) before Triton sees them")
    p.add_argument("--log-verbose", type=nonnegative_int, default=d.log_verbose, help="Triton verbose log level")
    p.add_argument("--quiet", action="store_true", help="less logging")
    add_debug_arg(p)
    return p


@cli_main("cpr-serve")
def main(argv=None) -> int:
    from ..serve.app import RESTART_WINDOW_S, RESTARTS_PER_WINDOW, ServeOptions, Service

    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    options = ServeOptions(host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                           metrics_port=args.metrics_port, max_batch_size=args.max_batch_size,
                           max_queue_delay_us=args.max_queue_delay_us, instances=args.instances,
                           map_downscale=args.map_downscale, exit_timeout_s=args.exit_timeout,
                           log_verbose=args.log_verbose, max_request_bytes=args.max_request_mb * 2**20)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service = Service(args.artifacts, options)
    try:
        print(f"cpr-serve: ready: http {args.host}:{args.http_port}, grpc {args.host}:{args.grpc_port}, "
              f"metrics {args.host}:{args.metrics_port}", flush=True)
        while not stop.wait(1.0):
            if not service.keep_alive():
                print(f"cpr-serve: error: the Triton server keeps stopping (more than {RESTARTS_PER_WINDOW} restarts "
                      f"in {RESTART_WINDOW_S:.0f} s); giving up", file=sys.stderr, flush=True)
                return 1
    finally:
        service.stop()
    print("cpr-serve: stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
