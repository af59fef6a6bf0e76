"""The public front of ``cpr-serve``: size limits and one-line errors in front of Triton's HTTP and gRPC ports.

Triton listens on private loopback ports; the gateway listens where the user asked and forwards
every request unchanged, except that

- a request body larger than ``max_request_bytes`` is refused before it is read (HTTP 413; gRPC
  RESOURCE_EXHAUSTED), so no request size reaches Triton that the engine did not allow;
- an error answer never carries a traceback: a request the model refused (marked with
  :data:`BAD_REQUEST`) becomes HTTP 400 / gRPC INVALID_ARGUMENT with the model's one line, any other
  server error keeps its status with the last line of its message (:func:`public_error`);
- an HTTP infer request whose inputs declare more data than the limit, or an empty dimension, is
  refused with 400 before Triton sees it (:func:`check_declared_inputs`): Triton 2.51 allocates what
  a JSON request declares and aborts (std::bad_alloc) on a shape such as [1, 100000, 100000, 3];
- while Triton restarts, requests get HTTP 503 / gRPC UNAVAILABLE with one line.

HTTP/1.1 (request bodies with ``Content-Length`` or chunked). The HTTP side runs one asyncio loop
in a thread, the gRPC side a ``grpc.server`` forwarding raw message bytes.
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
from concurrent import futures
from dataclasses import dataclass
from http import HTTPStatus

from .codec import BAD_REQUEST

HEAD_LIMIT = 64 * 1024  # bytes of request line + headers
REQUEST_TIMEOUT_S = 120.0  # to receive one request body / get Triton's answer
DRAIN_LIMIT = 64 * 2**20  # a refused body up to this size is read and dropped, so the client sees the answer
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
              "content-length", "expect"}
INFER_PATH = re.compile(r"^/v2/models/[^/?]+(/versions/[^/?]+)?/infer/?(\?.*)?$")
#: bytes per element of each KServe v2 data type (BYTES: at least its 4-byte length prefix)
ELEMENT_BYTES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2, "UINT32": 4,
                 "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8, "BYTES": 4}
_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit)\b.*?: (.+)$")
RESTARTING = "the inference server is starting or restarting; try again shortly"


def public_error(status: int, message: str) -> tuple[int, str]:
    """(status, one line) a client may see for an error answer of Triton.

    A message holding :data:`BAD_REQUEST` gives 400 and the text after the marker (up to the end of
    its line); another multi-line message (a traceback) gives its last ``SomeError: text`` line; a
    one-line message is kept. ``status`` is kept unless the request was refused by the model.
    """
    at = message.rfind(BAD_REQUEST)
    if at >= 0:
        return 400, message[at + len(BAD_REQUEST):].splitlines()[0].strip() or "bad request"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return status, lines[0] if lines else "error"
    for line in reversed(lines):
        found = _ERROR_LINE.match(line)
        if found:
            return status, found.group(2).strip()
    return status, "internal server error (details in the cpr-serve log)"


def check_declared_inputs(inputs, limit: int) -> str | None:
    """Why the declared inputs of an infer request must not reach Triton, or None.

    Args:
        inputs: the request's ``inputs`` (KServe v2 JSON: dicts with name, datatype, shape).
        limit: the largest request in bytes; the declared data of all inputs together may not exceed it.
    """
    if not isinstance(inputs, list):
        return "'inputs' must be a list of tensors"
    total = 0
    for tensor in inputs:
        if not isinstance(tensor, dict):
            return "each of 'inputs' must be an object with name, datatype and shape"
        name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if datatype not in ELEMENT_BYTES:
            return f"input {name!r}: unknown datatype {datatype!r}"
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            return f"input {name!r}: shape must be a list of integers, got {shape!r}"
        if any(d <= 0 for d in shape):
            return f"input {name!r}: shape {shape} has an empty or negative dimension"
        count = 1
        for d in shape:
            count *= d
        total += count * ELEMENT_BYTES[datatype]
        if total > limit:
            return (f"input {name!r}: shape {shape} of {datatype} declares {count * ELEMENT_BYTES[datatype]:,} bytes, "
                    f"more than the server's limit of {limit:,} bytes (cpr-serve --max-request-mb)")
    return None


def _infer_request_problem(target: str, headers: dict, body: bytes, limit: int) -> str | None:
    """:func:`check_declared_inputs` on an HTTP infer request's JSON header; None for other requests."""
    if not INFER_PATH.match(target):
        return None
    length = headers.get("inference-header-content-length", "").strip()
    size = int(length) if length.isdigit() else len(body)
    try:
        header = json.loads(body[:size])
    except (ValueError, UnicodeDecodeError) as e:
        return f"the infer request's JSON is not valid: {e}"
    if not isinstance(header, dict):
        return "the infer request's JSON must be an object with 'inputs'"
    return check_declared_inputs(header.get("inputs"), limit)


@dataclass
class Upstream:
    """Where Triton listens (loopback); the ports change when Triton is started again."""

    http_port: int
    grpc_port: int
    host: str = "127.0.0.1"


def _json_error(status: int, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json")], json.dumps({"error": message}).encode()


class _HttpGateway:
    """HTTP/1.1 reverse proxy on one asyncio loop (its own thread)."""

    def __init__(self, host: str, port: int, upstream: Upstream, max_request_bytes: int):
        self.upstream, self.max_request_bytes = upstream, max_request_bytes
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._client, host, port, limit=HEAD_LIMIT))
        self.thread = threading.Thread(target=self.loop.run_forever, name="cpr-gateway-http", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        async def close():
            self.server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:  # open client connections
                task.cancel()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed the connection
                except asyncio.LimitOverrunError:
                    await self._answer(writer, *_json_error(431, f"request headers exceed {HEAD_LIMIT} bytes"), False)
                    return
                request_line, headers = _parse_head(head)
                keep_alive = _keep_alive(request_line, headers)
                refusal = self._refusal(request_line, headers)
                if refusal is not None:
                    await _drop_body(reader, headers)
                    await self._answer(writer, *refusal, False)
                    return
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    body = await asyncio.wait_for(_read_body(reader, headers, self.max_request_bytes, request=True),
                                                  REQUEST_TIMEOUT_S)
                except BodyTooLarge:
                    await self._answer(writer, *self._too_large("a chunked request body"), False)
                    return
                problem = _infer_request_problem(request_line.split(" ")[1], headers, body, self.max_request_bytes)
                answer = _json_error(400, problem) if problem else await self._forward(request_line, headers, body)
                await self._answer(writer, *answer, keep_alive)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            return
        finally:
            writer.close()

    def _refusal(self, request_line: str, headers: dict):
        """An error answer for a request that must not be forwarded, else None."""
        if len(request_line.split(" ")) != 3:
            return _json_error(400, f"malformed HTTP request line {request_line[:80]!r}")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return None  # counted while it is read
        length = headers.get("content-length", "0").strip()
        if not length.isdigit():
            return _json_error(400, f"Content-Length must be a byte count, got {length[:40]!r}")
        if int(length) > self.max_request_bytes:
            return self._too_large(f"request body of {int(length):,} bytes")
        return None

    def _too_large(self, what: str):
        return _json_error(413, f"{what} exceeds the server's limit of {self.max_request_bytes:,} bytes "
                                f"(cpr-serve --max-request-mb); send images as binary tensors or encoded "
                                f"PNG/JPEG, or raise the limit")

    async def _forward(self, request_line: str, headers: dict, body: bytes):
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream.host, self.upstream.http_port)
        except OSError:
            return _json_error(503, RESTARTING)
        try:
            lines = [request_line.rsplit(" ", 1)[0] + " HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in headers.forwarded()]
            lines += [f"Content-Length: {len(body)}", "Connection: close"]
            up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await up_writer.drain()
            status_line, response_headers = _parse_head(
                await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S))
            payload = await asyncio.wait_for(_read_body(up_reader, response_headers), REQUEST_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError) as e:
            return _json_error(503, f"the inference server did not answer ({type(e).__name__}); {RESTARTING}")
        finally:
            up_writer.close()
        status = int(status_line.split(" ")[1])
        if status >= 400:
            return _json_error(*public_error(status, _error_text(payload)))
        return status, response_headers.forwarded(), payload

    @staticmethod
    async def _answer(writer, status: int, headers: list, body: bytes, keep_alive: bool) -> None:
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines += [f"{k}: {v}" for k, v in headers]
        lines += [f"Content-Length: {len(body)}", f"Connection: {'keep-alive' if keep_alive else 'close'}"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()


class Headers(dict):
    """HTTP header fields: looked up by lower-case name, forwarded with their names as received."""

    def __init__(self, fields: list[tuple[str, str]]):
        super().__init__((name.lower(), value) for name, value in fields)
        self.fields = fields

    def forwarded(self) -> list[tuple[str, str]]:
        """The fields a proxy passes on (hop-by-hop ones and Content-Length dropped)."""
        return [(k, v) for k, v in self.fields if k.lower() not in HOP_BY_HOP]


def _reason(status: int) -> str:
    """The reason phrase of an HTTP status code ("Status" for one the standard library does not know)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def _parse_head(head: bytes) -> tuple[str, Headers]:
    """(first line, header fields) of an HTTP head ending in a blank line."""
    lines = head.decode("latin-1").split("\r\n")
    fields = [(name.strip(), value.strip()) for name, sep, value in (line.partition(":") for line in lines[1:]) if sep]
    return lines[0], Headers(fields)


async def _drop_body(reader: asyncio.StreamReader, headers: dict) -> None:
    """Read and drop a refused request body of at most ``DRAIN_LIMIT`` bytes (a client that is still
    sending would otherwise see a broken connection instead of the answer); larger ones are not read."""
    length = headers.get("content-length", "").strip()
    if headers.get("expect", "").lower() == "100-continue" or not length.isdigit() or int(length) > DRAIN_LIMIT:
        return
    left = int(length)
    while left > 0:
        chunk = await asyncio.wait_for(reader.read(min(left, 2**20)), REQUEST_TIMEOUT_S)
        if not chunk:
            return
        left -= len(chunk)


def _keep_alive(request_line: str, headers: dict) -> bool:
    connection = headers.get("connection", "").lower()
    return connection != "close" and (request_line.endswith("HTTP/1.1") or connection == "keep-alive")


class BodyTooLarge(Exception):
    """A chunked request body grew past the limit while it was read."""


async def _read_body(reader: asyncio.StreamReader, headers: dict, limit: int | None = None,
                     request: bool = False) -> bytes:
    """A message body: by Content-Length, chunked (at most ``limit`` bytes, else BodyTooLarge), or for a
    response without either up to the end of the connection (a request without either has none)."""
    if "chunked" not in headers.get("transfer-encoding", "").lower():
        if "content-length" in headers or request:
            return await reader.readexactly(int(headers.get("content-length", 0)))
        return await reader.read()
    parts, total = [], 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        total += size
        if limit is not None and total > limit:
            raise BodyTooLarge
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            await _skip_trailers(reader, chunk)
            return b"".join(parts)
        parts.append(chunk[:-2])


async def _skip_trailers(reader: asyncio.StreamReader, after_last_chunk: bytes) -> None:
    """Read the (usually empty) trailer section after the last chunk."""
    line = after_last_chunk
    while line != b"\r\n":
        line = await reader.readuntil(b"\r\n")


def _error_text(payload: bytes) -> str:
    try:
        return str(json.loads(payload)["error"])
    except (ValueError, KeyError, TypeError):
        return payload.decode("utf-8", "replace")


class _GrpcGateway:
    """gRPC front: every method forwarded as raw bytes; messages above the limit refused by gRPC itself."""

    STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"

    def __init__(self, host: str, port: int, upstream: Upstream, max_request_bytes: int, workers: int = 32):
        import grpc

        self._grpc, self.upstream = grpc, upstream
        self._channel, self._channel_port, self._lock = None, None, threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(workers, thread_name_prefix="cpr-gateway-grpc"),
                                  options=[("grpc.max_receive_message_length", max_request_bytes),
                                           ("grpc.max_send_message_length", -1)])
        self.server.add_generic_rpc_handlers([self])
        if self.server.add_insecure_port(f"{host}:{port}") == 0:
            raise OSError(f"cannot listen on {host}:{port} (gRPC)")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=2).wait(10)
        if self._channel is not None:
            self._channel.close()

    def channel(self):
        """The channel to Triton's current gRPC port (a new one after Triton was restarted elsewhere)."""
        with self._lock:
            if self._channel_port != self.upstream.grpc_port:
                if self._channel is not None:
                    self._channel.close()
                self._channel_port = self.upstream.grpc_port
                self._channel = self._grpc.insecure_channel(f"{self.upstream.host}:{self._channel_port}", options=[
                    ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
            return self._channel

    def service(self, details):
        """grpc.GenericRpcHandler: a forwarding handler for any method."""
        grpc, method = self._grpc, details.method
        if method == self.STREAM_METHOD:
            call = self.channel().stream_stream(method)
            return grpc.stream_stream_rpc_method_handler(
                lambda requests, context: self._stream(call, requests, context))
        call = self.channel().unary_unary(method)
        return grpc.unary_unary_rpc_method_handler(lambda request, context: self._unary(call, request, context))

    def _unary(self, call, request: bytes, context):
        try:
            return call(request, metadata=_forwarded_metadata(context), timeout=_deadline(context))
        except self._grpc.RpcError as e:
            self._abort(context, e)

    def _stream(self, call, requests, context):
        from tritonclient.grpc import service_pb2

        try:
            for raw in call(requests, metadata=_forwarded_metadata(context), timeout=_deadline(context)):
                response = service_pb2.ModelStreamInferResponse.FromString(raw)
                if response.error_message:
                    response.error_message = public_error(500, response.error_message)[1]
                yield response.SerializeToString()
        except self._grpc.RpcError as e:
            self._abort(context, e)

    def _abort(self, context, error) -> None:
        grpc, code = self._grpc, error.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            context.abort(code, RESTARTING)
        status, line = public_error(500, error.details() or "")
        context.abort(grpc.StatusCode.INVALID_ARGUMENT if status == 400 else code, line)


def _deadline(context) -> float | None:
    """Seconds left of the client's deadline (None when it set none: gRPC reports ~292 years)."""
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e9 else None


def _forwarded_metadata(context) -> list[tuple[str, str]]:
    return [(k, v) for k, v in context.invocation_metadata() if not k.startswith(":") and k != "user-agent"]


class Gateway:
    """The public HTTP and gRPC ports of ``cpr-serve`` in front of a Triton on ``upstream``.

    Args:
        host: address to listen on; http_port, grpc_port: public ports.
        upstream: Triton's loopback ports.
        max_request_bytes: the largest request body (HTTP) or message (gRPC) accepted.
    """

    def __init__(self, host: str, http_port: int, grpc_port: int, upstream: Upstream, max_request_bytes: int):
        if max_request_bytes < 1:
            raise ValueError(f"max_request_bytes must be >= 1, got {max_request_bytes}")
        self.http = _HttpGateway(host, http_port, upstream, max_request_bytes)
        try:
            self.grpc = _GrpcGateway(host, grpc_port, upstream, max_request_bytes)
        except BaseException:
            self.http.stop()
            raise

    def stop(self) -> None:
        """Close both listening ports (idempotent enough for a shutdown path)."""
        self.grpc.stop()
        self.http.stop()
