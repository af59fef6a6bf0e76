"""cpr-serve's gateway without Triton: a fake upstream HTTP server stands in for it (loopback only)."""
import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cpr_engine.serve.codec import BAD_REQUEST, error_message
from cpr_engine.serve.gateway import Upstream, _HttpGateway, _infer_request_problem, check_declared_inputs, public_error
from cpr_engine.serve.stock import free_loopback_ports
from cpr_engine.data import ImageReadError
from cpr_engine.errors import NonFiniteScoreError

TRACEBACK = ('Model execute error: Traceback (most recent call last):\n  File "/tmp/x/1/model.py", line 492, in '
             'execute\n    raise triton_responses_or_error\nc_python_backend_utils.TritonModelException: Traceback '
             '(most recent call last):\n  File "app.py", line 49, in infer\nValueError: {}\n\n\nAt:\n  model.py(501)')


@pytest.mark.parametrize("message, status, want", [
    (TRACEBACK.format(BAD_REQUEST + "image_bytes: corrupt file"), 500, (400, "image_bytes: corrupt file")),
    (TRACEBACK.format("NonFiniteScoreError: image 0: score is NaN"), 500, (500, "NonFiniteScoreError: image 0: score is NaN")),
    ("Request for unknown model: 'x' is not found", 404, (404, "Request for unknown model: 'x' is not found")),
    ("line one\n  line two", 500, (500, "internal server error (details in the cpr-serve log)")),
    ("", 500, (500, "error")),
])
def test_public_error(message, status, want):
    assert public_error(status, message) == want


def _tensor(shape, datatype="UINT8", name="image"):
    return {"name": name, "datatype": datatype, "shape": shape}


@pytest.mark.parametrize("inputs, words", [
    ([_tensor([1, 100000, 100000, 3])], "declares 30,000,000,000 bytes, more than the server's limit of 1,000"),
    ([_tensor([1, 10, 10, 3]), _tensor([1, 1000], "FP32", "other")], "'other': shape [1, 1000] of FP32 declares 4,000"),
    ([_tensor([1, 0, 0, 3])], "empty or negative dimension"),
    ([_tensor([1, -1, 5, 3])], "empty or negative dimension"),
    ([_tensor([1, 2.5, 3])], "shape must be a list of integers"),
    ([_tensor([1, 2, 3], "COMPLEX")], "unknown datatype 'COMPLEX'"),
    ({"image": 1}, "'inputs' must be a list"),
])
def test_declared_inputs_beyond_the_limit_are_refused(inputs, words):
    assert words in check_declared_inputs(inputs, limit=1000)


def test_declared_inputs_within_the_limit_pass():
    assert check_declared_inputs([_tensor([1, 10, 10, 3]), _tensor([1, 1], "BYTES", "b")], limit=1000) is None


def test_only_infer_requests_are_parsed_and_binary_tails_are_skipped():
    header = json.dumps({"inputs": [_tensor([1, 100, 100, 3])]}).encode()
    for target in ("/v2/models/grass/infer", "/v2/models/grass/versions/2/infer"):
        assert "declares 30,000 bytes" in _infer_request_problem(target, {}, header, 1000)
    assert _infer_request_problem("/v2/repository/index", {}, header, 1000) is None
    binary = header + b"\x00" * 10  # the JSON header, then binary tensor data
    assert "declares" in _infer_request_problem("/v2/models/m/infer", {"inference-header-content-length":
                                                                         str(len(header))}, binary, 1000)
    assert "not valid" in _infer_request_problem("/v2/models/m/infer", {}, b"{nope", 1000)


def test_error_message_marks_only_the_requests_fault():
    assert error_message(ImageReadError(None, "image_bytes: empty")) == BAD_REQUEST + "image_bytes: empty"
    assert error_message(ValueError("send exactly one\ninput")) == BAD_REQUEST + "send exactly one input"
    assert error_message(NonFiniteScoreError("score NaN")) == "NonFiniteScoreError: score NaN"


class _FakeTriton(BaseHTTPRequestHandler):
    """Echoes the request body (200), or answers like Triton does for errors: 500 + traceback JSON."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/fail":
            self._send(500, json.dumps({"error": TRACEBACK.format(BAD_REQUEST + "image_bytes: empty")}).encode())
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (body[:3], body[3:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._send(200, body, [("Inference-Header-Content-Length", "3")])

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


@pytest.fixture
def gateway():
    """A gateway (limit 1000 bytes) in front of the fake upstream; yields its HTTP port."""
    up_port, port = free_loopback_ports(2)
    upstream_server = ThreadingHTTPServer(("127.0.0.1", up_port), _FakeTriton)
    thread = threading.Thread(target=upstream_server.serve_forever, daemon=True)
    thread.start()
    gate = _HttpGateway("127.0.0.1", port, Upstream(up_port, 0), max_request_bytes=1000)
    yield port, upstream_server
    gate.stop()
    upstream_server.shutdown()


def _post(port, path, body, headers=None, connection=None):
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", path, body=body, headers=headers or {})
    answer = connection.getresponse()
    return connection, answer.status, dict(answer.getheaders()), answer.read()


def test_forwards_bodies_and_headers_on_one_connection(gateway):
    port, _ = gateway
    connection, status, headers, body = _post(port, "/echo", b"x" * 1000)
    assert (status, body, headers["Inference-Header-Content-Length"]) == (200, b"x" * 1000, "3")
    _, status, _, body = _post(port, "/chunked", b"abcdef", connection=connection)  # kept alive, chunked decoded
    assert (status, body) == (200, b"abcdef")


def test_refuses_too_large_bodies_forwards_chunked_ones(gateway):
    port, _ = gateway
    _, status, _, body = _post(port, "/echo", b"x" * 1001)
    assert status == 413 and "1,001 bytes exceeds the server's limit of 1,000" in json.loads(body)["error"]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/echo", body=iter([b"ab", b"cd"]), encode_chunked=True)
    answer = connection.getresponse()
    assert (answer.status, answer.read()) == (200, b"abcd")  # chunked bodies are forwarded
    connection.request("POST", "/echo", body=iter([b"x" * 600, b"y" * 600]), encode_chunked=True)
    answer = connection.getresponse()
    assert answer.status == 413 and "chunked request body exceeds" in json.loads(answer.read())["error"]


def test_traceback_becomes_one_line_400(gateway):
    port, _ = gateway
    _, status, _, body = _post(port, "/fail", b"{}")
    assert (status, json.loads(body)) == (400, {"error": "image_bytes: empty"})


def test_upstream_down_is_503(gateway):
    port, upstream_server = gateway
    upstream_server.shutdown()
    upstream_server.server_close()
    _, status, _, body = _post(port, "/echo", b"{}")
    assert status == 503 and "restarting" in json.loads(body)["error"]
