"""Serving on a real Triton Inference Server, loopback only: cpr-serve (PyTriton) and a stock repository.

Skipped when PyTriton / tritonclient are not installed, unless CPR_REQUIRE_SERVE=1 (then they must be).
One server per fixture, on ports found free at run time; every server process is killed in teardown.
"""
import importlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from cpr_engine.data import read_image
from cpr_engine.exporter import export_artifact
from cpr_engine.runtime.detector import ArtifactDetector

pytestmark = pytest.mark.needs_native


def _require(module: str):
    if os.environ.get("CPR_REQUIRE_SERVE") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


_require("pytriton")
_require("tritonclient.http")
_require("tritonclient.grpc")

from tritonclient.utils import InferenceServerException  # noqa: E402

from cpr_engine.client import RemoteDetector, wait_until_ready  # noqa: E402
from cpr_engine.serve.stock import free_loopback_ports, prepare_backends, start_server  # noqa: E402

# Server and in-process results run the same network and kernels; only the batch composition
# (dynamic batching) differs, which changes float rounding at most.
RTOL = 1e-5
START_TIMEOUT_S = 180
MODEL = "grass"
MAX_REQUEST_MB = 8  # cpr-serve's request limit in these tests


def stop(process: subprocess.Popen, sig=signal.SIGTERM, timeout_s: float = 60) -> int:
    """Send ``sig`` and wait; SIGKILL when it does not exit in time. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def log_tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def assert_same(got, want, rtol=RTOL):
    """Remote predictions equal in-process ones (score, map at the input size, verdict)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.score == pytest.approx(w.score, rel=rtol)
        assert g.anomaly_map.shape == w.anomaly_map.shape and g.anomaly_map.dtype == np.float32
        np.testing.assert_allclose(g.anomaly_map, w.anomaly_map, rtol=rtol, atol=rtol * float(w.anomaly_map.max()))
        assert g.is_anomalous == w.is_anomalous


@pytest.fixture(scope="module")
def artifact(tiny_detector, tmp_path_factory):
    return export_artifact(tiny_detector, tmp_path_factory.mktemp("serve") / "grass", trt="no")["artifact"]


@pytest.fixture(scope="module")
def local(artifact):
    return ArtifactDetector.load(artifact)


@pytest.fixture(scope="module")
def images(demo_root):
    return [read_image(p) for p in sorted(Path(demo_root, "grass", "test").glob("*/*.png"))]


class Server:
    """A started server process with its URLs and log file."""

    def __init__(self, process, ports, log):
        self.process, self.log = process, log
        self.http, self.grpc, self.metrics = (f"{scheme}://127.0.0.1:{p}" for scheme, p in
                                              zip(("http", "grpc", "http"), ports))

    def url(self, protocol: str) -> str:
        return self.http if protocol == "http" else self.grpc


def start(launch, log: Path) -> Server:
    """``launch(ports, log_file) -> Popen`` on 3 free ports (http, grpc, metrics); waits until the model is ready."""
    ports = free_loopback_ports(3)
    with open(log, "wb") as out:
        process = launch(ports, out)
    server = Server(process, ports, log)
    try:
        wait_until_ready(server.http, [MODEL], START_TIMEOUT_S, process)
    except Exception as e:
        stop(process, signal.SIGKILL)
        pytest.fail(f"server did not start: {e}\n{log_tail(log)}")
    return server


@pytest.fixture(scope="module")
def served(artifact, tmp_path_factory):
    """cpr-serve on the artifact: dynamic batching up to 8, 2 instances."""
    def launch(ports, out):
        command = [sys.executable, "-m", "cpr_engine.cli.serve", str(artifact), "--host", "127.0.0.1",
                   "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
                   "--max-batch-size", "8", "--max-queue-delay-us", "2000", "--instances", "2",
                   "--max-request-mb", str(MAX_REQUEST_MB)]
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    server = start(launch, tmp_path_factory.mktemp("serve_log") / "cpr-serve.log")
    yield server
    stop(server.process, signal.SIGKILL)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_remote_equals_in_process(served, local, images, protocol):
    with RemoteDetector(served.url(protocol), MODEL) as remote:
        assert_same(remote.predict(images, batch_size=3), local.predict(images))
        single = remote.predict(images[0])
        assert_same([single], [local.predict(images[0])])
        bgr = remote.predict(np.stack(images[:2])[..., ::-1], color="BGR")
        assert_same(bgr, local.predict(images[:2]))


def test_encoded_png_and_jpeg(served, local, images):
    from cpr_engine.serve.codec import decode_image_bytes

    png = [cv2.imencode(".png", im[..., ::-1])[1].tobytes() for im in images[:3]]
    jpeg = cv2.imencode(".jpg", images[3][..., ::-1])[1].tobytes()
    with RemoteDetector(served.http, MODEL) as remote:
        assert_same(remote.predict_encoded(png), local.predict(images[:3]))
        assert_same([remote.predict_encoded(jpeg)], [local.predict(decode_image_bytes(jpeg))])


def test_concurrent_clients(served, local, images):
    """16 clients x 50 requests (HTTP and gRPC) under dynamic batching: no error, every result correct."""
    want = local.predict(images)
    n_clients, n_requests, budget_s = 16, 50, 240

    def client(k: int) -> int:
        with RemoteDetector(served.url("grpc" if k % 2 else "http"), MODEL, timeout_s=60) as remote:
            for i in range(n_requests):
                j = (k + i) % len(images)
                assert_same([remote.predict(images[j])], [want[j]])
        return n_requests

    start_time = time.monotonic()
    with ThreadPoolExecutor(n_clients) as pool:
        futures = [pool.submit(client, k) for k in range(n_clients)]
        done = sum(f.result(timeout=budget_s) for f in futures)
    assert done == n_clients * n_requests
    assert time.monotonic() - start_time < budget_s


def _infer_raw(url: str, name: str, array: np.ndarray, datatype: str):
    import tritonclient.http as http

    client = http.InferenceServerClient(url.split("://")[1], network_timeout=30)
    tensor = http.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    try:
        return client.infer(MODEL, [tensor])
    finally:
        client.close()


def _corrupt_png(image):
    data = bytearray(cv2.imencode(".png", image)[1].tobytes())
    data[60:90] = b"\x00" * 30  # inside the compressed pixel data: CRC and inflate fail
    return bytes(data)


BAD_REQUESTS = {  # case -> (input name, array builder, datatype, words the error must contain)
    "corrupt_png": ("image_bytes", lambda im: np.array([[_corrupt_png(im)]], dtype=np.object_), "BYTES",
                    ["image_bytes", "corrupt"]),
    "not_an_image": ("image_bytes", lambda im: np.array([[b"hello"]], dtype=np.object_), "BYTES",
                     ["image_bytes", "not a recognised image format"]),
    "float32": ("image", lambda im: im[None].astype(np.float32), "FP32", ["FP32", "UINT8"]),
    "four_channels": ("image", lambda im: np.concatenate([im, im[..., :1]], axis=2)[None], "UINT8", ["shape"]),
    "no_channel_dim": ("image", lambda im: im[None, :, :, 0], "UINT8", ["shape"]),
    "no_batch_dim": ("image", lambda im: im, "UINT8", ["batch-size"]),  # 96 x 96 x 3 read as a batch of 96
}


def assert_one_line(message: str) -> None:
    """An error a client sees: one line, no server-side traceback."""
    assert "\n" not in message and "Traceback" not in message and 'File "' not in message, message


def _check_bad_requests(server: Server, local, image) -> None:
    """Each bad request: HTTP 400 with one line naming the problem; the next request is served."""
    for case, (name, build, datatype, words) in BAD_REQUESTS.items():
        with pytest.raises(InferenceServerException) as error:
            _infer_raw(server.http, name, build(image), datatype)
        message = error.value.message()
        assert all(w.lower() in message.lower() for w in words), f"{case}: {message}"
        assert error.value.status() == "400", f"{case}: HTTP {error.value.status()}: {message}"
        assert_one_line(message)
        with RemoteDetector(server.http, MODEL) as remote:  # the next request is served
            assert_same([remote.predict(image)], [local.predict(image)])


def test_bad_requests_are_refused_by_name(served, local, images):
    _check_bad_requests(served, local, images[0])


def _grpc_infer(url: str, name: str, array: np.ndarray, datatype: str):
    import tritonclient.grpc as grpc_client

    client = grpc_client.InferenceServerClient(url.split("://")[1])
    tensor = grpc_client.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    try:
        return client.infer(MODEL, [tensor], client_timeout=60)
    finally:
        client.close()


def _json_infer(url: str, array: np.ndarray) -> tuple[int, dict]:
    """POST a KServe v2 JSON body (pixels as a JSON list): (HTTP status, decoded answer)."""
    return _post_json(url, {"inputs": [{"name": "image", "shape": list(array.shape), "datatype": "UINT8",
                                        "data": array.ravel().tolist()}]})


def _post_json(url: str, request_body: dict) -> tuple[int, dict]:
    """POST a JSON infer request with urllib: (HTTP status, decoded answer)."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{url}/v2/models/{MODEL}/infer", data=json.dumps(request_body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("case", ["corrupt_png", "not_an_image", "float32", "four_channels"])
def test_bad_requests_over_grpc_are_invalid_argument(served, local, images, case):
    import grpc

    name, build, datatype, words = BAD_REQUESTS[case]
    with pytest.raises(InferenceServerException) as error:
        _grpc_infer(served.grpc, name, build(images[0]), datatype)
    message = error.value.message()
    assert error.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT), f"{error.value.status()}: {message}"
    assert all(w.lower() in message.lower() for w in words), message
    assert_one_line(message)
    with RemoteDetector(served.grpc, MODEL) as remote:
        assert_same([remote.predict(images[0])], [local.predict(images[0])])


def test_request_size_limit(served, local, images):
    """Requests above --max-request-mb are refused before Triton reads them (HTTP 413, gRPC
    RESOURCE_EXHAUSTED), one line; a JSON body of several MB within the limit (the reporter's case
    that killed tritonserver: a >= 4 MB JSON infer request) is answered; the server answers after each."""
    import grpc

    big = np.random.default_rng(0).integers(0, 256, (1, 1800, 1800, 3), dtype=np.uint8)  # 9.7 MB > 8 MiB
    with pytest.raises(InferenceServerException) as error:
        _infer_raw(served.http, "image", big, "UINT8")
    assert error.value.status() == "413" and "limit" in error.value.message()
    assert_one_line(error.value.message())
    with pytest.raises(InferenceServerException) as error:
        _grpc_infer(served.grpc, "image", big, "UINT8")
    assert error.value.status() == str(grpc.StatusCode.RESOURCE_EXHAUSTED), error.value
    status, answer = _json_infer(served.http, big[:, :1000, :1000])  # a 14 MB JSON body
    assert status == 413 and "limit" in answer["error"], (status, answer)
    lie = {"inputs": [{"name": "image", "shape": [1, 100000, 100000, 3], "datatype": "UINT8", "data": [1, 2, 3]}]}
    status, answer = _post_json(served.http, lie)  # Triton would allocate 30 GB and abort (std::bad_alloc)
    assert status == 400 and "declares 30,000,000,000 bytes" in answer["error"], (status, answer)
    lie["inputs"][0]["shape"] = [1, 0, 0, 3]
    status, answer = _post_json(served.http, lie)
    assert status == 400 and "empty" in answer["error"], (status, answer)
    assert "stopped unexpectedly" not in served.log.read_text(errors="replace")
    reporter = big[:, :700, :700]  # 1.5 MB of pixels, 6.7 MB of JSON
    status, answer = _json_infer(served.http, reporter)
    assert status == 200, answer
    score = {o["name"]: o["data"] for o in answer["outputs"]}["score"][0]
    assert score == pytest.approx(local.predict(reporter[0]).score, rel=RTOL)
    for url in (served.http, served.grpc):
        with RemoteDetector(url, MODEL) as remote:
            assert_same([remote.predict(images[0])], [local.predict(images[0])])


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    names = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name_end = text.rindex(")")
        child, parent = int(text.split(" ", 1)[0]), int(text[name_end + 2:].split()[1])
        children.setdefault(parent, []).append(child)
        names[child] = text[text.index("(") + 1:name_end]
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append((child, names[child]))
            todo.append(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the tritonserver process")
def test_killed_triton_comes_back(served, local, images):
    """SIGKILL of the tritonserver process (as a crash would end it): cpr-serve starts it again on the
    same public ports and the next requests are answered correctly."""
    servers = [pid for pid, name in _descendants(served.process.pid) if name == "tritonserver"]
    assert len(servers) == 1, _descendants(served.process.pid)
    os.kill(servers[0], signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if [pid for pid, name in _descendants(served.process.pid) if name == "tritonserver"] not in ([], servers):
            break
        time.sleep(0.5)
    wait_until_ready(served.http, [MODEL], START_TIMEOUT_S, served.process)
    for url in (served.http, served.grpc):
        with RemoteDetector(url, MODEL) as remote:
            assert_same(remote.predict(images[:3]), local.predict(images[:3]))
    assert "starting it again" in served.log.read_text(errors="replace")


def test_deploy_probes_answer(served):
    """The Kubernetes probes of deploy/cpr-serve answer 200 through cpr-serve's gateway."""
    import urllib.request

    from tests.helpers.deploy import probe_paths

    for path in sorted(probe_paths()):
        assert urllib.request.urlopen(f"{served.http}{path}", timeout=10).status == 200, path


def test_metrics_endpoint(served):
    import urllib.request

    text = urllib.request.urlopen(f"{served.metrics}/metrics", timeout=10).read().decode()
    assert f'nv_inference_request_success{{model="{MODEL}"' in text


def test_sigterm_stops_gracefully(served):
    """Runs last among the cpr-serve tests: SIGTERM ends the server cleanly (exit code 0)."""
    assert stop(served.process, signal.SIGTERM, timeout_s=60) == 0, log_tail(served.log)
    assert "cpr-serve: stopped" in served.log.read_text(errors="replace")


def test_stock_repository_kill_and_restart(tiny_detector, local, images, tmp_path):
    """cpr-export --triton-repo -> the wheel's tritonserver binary serves it; SIGKILL, restart, serves again."""
    from cpr_engine.cli.export import main as export_main

    tiny_detector.save(tmp_path / "model.pt")
    repo = tmp_path / "repo"
    assert export_main([str(tmp_path / "model.pt"), "-o", str(tmp_path / "artifact"), "--trt", "no",
                        "--triton-repo", str(repo), "--quiet"]) == 0
    assert (repo / MODEL / "config.pbtxt").is_file() and (repo / MODEL / "1" / "model.py").is_file()
    backends = prepare_backends(tmp_path / "server")

    for attempt in range(2):
        server = start(lambda ports, out: start_server(repo, backends, *ports, log=out),
                       tmp_path / f"tritonserver_{attempt}.log")
        try:
            for protocol in ("http", "grpc"):
                with RemoteDetector(server.url(protocol), MODEL) as remote:
                    assert_same(remote.predict(images, batch_size=4), local.predict(images))
            if attempt == 0:
                _check_bad_requests(server, local, images[0])
        finally:
            stop(server.process, signal.SIGKILL)
        assert server.process.returncode == -signal.SIGKILL

