"""The two ways a load user reaches Triton, each one call returning what the timeline needs.

Both take their requests prepared once from the run's request plan (``harness.load.prepared``: bytes
built from the server's own model metadata) and, per request, only send the next one, check that the
answer carries every expected output and classify failures, because at thousands of requests a second
every microsecond here is a microsecond the harness takes from the service it measures.

HTTP speaks Triton's binary tensor extension (a test checks the body is byte for byte what
``tritonclient.http.InferenceServerClient.generate_request_body`` makes). It is sent over plain keep-alive
gevent sockets (``HttpInfer``) because tritonclient's own transport, ``geventhttpclient``
(``GeventHttpInfer``, still selectable), costs about three times the CPU per request, and on a machine
shared with the service that CPU is taken from the service being measured. tritonclient's ``infer()``
would also hide the response headers, and the replica that answered is in the front's
``x-triton-replica`` header.

gRPC calls the ``GRPCInferenceService`` stub that ``tritonclient.grpc`` ships, with ``with_call`` so the
initial metadata (the replica) is visible; the channel's reconnect back-off is lowered so that recovery
is not hidden behind a client sleeping up to two minutes, and retries are disabled: the harness must see
every failure the service causes.

Importing this module imports gevent-aware libraries: only the load process does that.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from harness.load.prepared import PreparedRequest, cycle
from harness.timeline import QUEUE_FULL_TEXT, ErrorClass

__all__ = ["GRPC_CHANNEL_OPTIONS", "GeventHttpInfer", "GrpcInfer", "HttpInfer", "Result", "binary_request",
           "classify_exception", "payload_array"]

REPLICA_HEADER = "x-triton-replica"

# Plain str values, not the enum members: pyarrow converts a list of StrEnum members about a
# thousand times slower (measured 32 us vs 0.03 us per value), which made the timeline's flush
# the most expensive thing the load process did.
BAD_RESPONSE = ErrorClass.BAD_RESPONSE.value
CONNECTION_CLOSED = ErrorClass.CONNECTION_CLOSED.value
CONNECTION_REFUSED = ErrorClass.CONNECTION_REFUSED.value
CONNECTION_RESET = ErrorClass.CONNECTION_RESET.value
GRPC_STATUS = ErrorClass.GRPC_STATUS.value
HTTP_STATUS = ErrorClass.HTTP_STATUS.value
MODEL_UNAVAILABLE = ErrorClass.MODEL_UNAVAILABLE.value
NONE = ErrorClass.NONE.value
OTHER = ErrorClass.OTHER.value
QUEUE_FULL = ErrorClass.QUEUE_FULL.value
TIMEOUT = ErrorClass.TIMEOUT.value

# outcome ok?, error class, status (HTTP / gRPC code, -1 none), replica, bytes received, model
Result = tuple[bool, str, int, str, int, str]

GRPC_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_retries", 0),
    ("grpc.max_receive_message_length", 64 * 2**20),
)

# Triton's own words when the model (not the server) cannot take the request.
_MODEL_UNAVAILABLE_HINTS = ("not ready", "unknown model", "no available version", "is not found",
                            "unavailable model", "failed to load")


# Triton's words when the model's dynamic-batching queue is full (max_queue_size): load shedding by a
# server that is up, not an outage, so it gets a class of its own.
_QUEUE_FULL_HINT = QUEUE_FULL_TEXT


def _answer_class(text: str, otherwise: str) -> str:
    """The error class of a server's error answer, from its words; ``otherwise`` when they say nothing known."""
    lowered = text.lower()
    if _QUEUE_FULL_HINT in lowered:
        return QUEUE_FULL
    if any(hint in lowered for hint in _MODEL_UNAVAILABLE_HINTS):
        return MODEL_UNAVAILABLE
    return otherwise


class ConnectionClosed(Exception):
    """The server closed the connection before the whole response arrived."""


class BadResponse(Exception):
    """The bytes that came back are not an HTTP/1.1 response we understand."""


def classify_exception(exc: BaseException) -> str:
    """The timeline's error class for a failure below HTTP/gRPC (no response at all)."""
    from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError

    if isinstance(exc, ConnectionClosed):
        return CONNECTION_CLOSED
    if isinstance(exc, BadResponse):
        return BAD_RESPONSE
    if isinstance(exc, ConnectionRefusedError):
        return CONNECTION_REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return CONNECTION_RESET
    if isinstance(exc, HTTPConnectionClosed):
        return CONNECTION_CLOSED
    if isinstance(exc, TimeoutError | socket.timeout):
        return TIMEOUT
    if isinstance(exc, HTTPParseError):
        return BAD_RESPONSE
    if isinstance(exc, OSError):
        if exc.errno == errno.ECONNREFUSED:
            return CONNECTION_REFUSED
        if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            return CONNECTION_RESET
        if exc.errno == errno.ETIMEDOUT:
            return TIMEOUT
    import gevent

    if isinstance(exc, gevent.Timeout):
        return TIMEOUT
    return OTHER


def payload_array(batch: int) -> npt.NDArray[np.float32]:
    """The reference model's input for tools outside the load process (the benchmark's ``wrk``)."""
    return np.random.default_rng(0).standard_normal((batch, 16)).astype(np.float32)


def binary_request(batch: int = 1) -> tuple[bytes, int]:
    """(body, JSON header length) of the binary-tensor HTTP request, built without tritonclient.

    For tools outside the load process (the benchmark's ``wrk``); a test checks it is byte for byte
    what ``tritonclient.http`` generates.
    """
    import json

    data = payload_array(batch)
    header = json.dumps({
        "inputs": [{"name": "INPUT", "shape": list(data.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": data.nbytes}}],
        "outputs": [{"name": "PROBS", "parameters": {"binary_data": True}}],
    }, separators=(",", ":")).encode()
    return header + data.tobytes(), len(header)


class GeventHttpInfer:
    """``geventhttpclient`` (tritonclient.http's own transport): ``HARNESS_HTTP_CLIENT=geventhttpclient``.

    About three times the CPU per request of ``HttpInfer`` (measured: ~80 vs ~25 us), which on a
    machine shared with the service halves the load one process can offer; kept as a cross-check.
    """

    def __init__(self, url: str, requests: list[PreparedRequest], timeout_s: float, concurrency: int = 1) -> None:
        from geventhttpclient import HTTPClient

        self._next = cycle([
            (f"/v2/models/{r.model}/infer", r.http_body,
             {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(r.http_json_size)},
             r, r.needles) for r in requests
        ]).__next__
        self._client = HTTPClient.from_url(url, concurrency=concurrency, connection_timeout=timeout_s,
                                           network_timeout=timeout_s)

    def __call__(self) -> Result:
        path, body, headers, request, needles = self._next()
        try:
            response = self._client.post(path, body=body, headers=headers)
            payload = response.read()
        except Exception as exc:  # noqa: BLE001 - every failure is a timeline record, never a crash
            return False, classify_exception(exc), -1, "", 0, request.model
        status = response.status_code
        replica = response.get(REPLICA_HEADER) or ""
        if not isinstance(replica, str):
            replica = replica[0]
        if status != 200:
            text = payload[:300].decode(errors="replace")
            cls = _answer_class(text, HTTP_STATUS)
            return False, cls, status, replica, len(payload), request.model
        header_len = response.get("Inference-Header-Content-Length")
        if header_len is None or not request.http_ok(int(str(header_len)), payload, needles):
            return False, BAD_RESPONSE, status, replica, len(payload), request.model
        return True, NONE, status, replica, len(payload), request.model

    def close(self) -> None:
        self._client.close()


class HttpInfer:
    """Triton's binary-tensor HTTP request over plain keep-alive sockets (gevent-patched).

    Each request is built once into the exact bytes to send; a response is parsed only as far as the
    timeline needs (status, length, replica header) and the outputs are checked by name in its JSON
    header. ``pooled``: one instance shared by every open-loop request of the process, holding as many
    idle connections as were ever in flight; otherwise one connection, for one closed-loop user. A
    connection idle for more than ``IDLE_RECONNECT_S`` is replaced before use, so a server's keep-alive
    expiry is never recorded as a failure of the service. ``per_request``: a new connection for every
    request, which asks the server to close it (``Connection: close``) and is never pooled: a client whose
    every request a Kubernetes Service routes afresh (kube-proxy picks the pod per connection).
    """

    IDLE_RECONNECT_S = 5.0
    # How long a resolved address is used before the name is resolved again: the TTL CoreDNS gives a Service's
    # record by default. Resolving for every new connection put the cluster's DNS inside each request's time:
    # a Service name has fewer dots than the pods' ``ndots:5``, so each lookup first walks the search domains
    # (up to eight queries through gevent's resolver threads), and when an outage makes every request open a
    # connection those lookups queue. Measured on the sandbox in a block of both pods: a request recorded as
    # started 0.26 s before the lift sent its SYN after it and was answered within the objective, and the
    # harness put the recovery 0.10 to 0.44 s before the lift, where the prober (which resolves once) saw it
    # at the lift; resolving once per TTL, the two agreed within 18 ms.
    RESOLVE_TTL_S = 30.0

    def __init__(self, url: str, requests: list[PreparedRequest], timeout_s: float, pooled: bool = False,
                 per_request: bool = False) -> None:
        hostport = url.removeprefix("http://").split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        self.address = (host.strip("[]"), int(port))
        wire = []
        for r in requests:
            head = (f"POST /v2/models/{r.model}/infer HTTP/1.1\r\nHost: {hostport}\r\n"
                    "Content-Type: application/octet-stream\r\n"
                    f"Inference-Header-Content-Length: {r.http_json_size}\r\n"
                    f"Content-Length: {len(r.http_body)}\r\n"
                    + ("Connection: close\r\n" if per_request else "") + "\r\n")
            wire.append((head.encode() + r.http_body, r, r.needles))
        self._next = cycle(wire).__next__
        self.timeout_s = timeout_s
        self.pooled = pooled
        self.per_request = per_request
        self._idle: list[tuple[socket.socket, float]] = []
        self._resolved: list[tuple[str, int]] = []
        self._resolved_until = 0.0

    def _addresses(self, now: float) -> list[tuple[str, int]]:
        """The addresses the name resolves to, as ``socket.create_connection`` would try them, resolved again
        after ``RESOLVE_TTL_S`` (a failed resolution raises and is a failed request, and is tried again next)."""
        if now >= self._resolved_until or not self._resolved:
            found = socket.getaddrinfo(*self.address, type=socket.SOCK_STREAM)
            self._resolved = list(dict.fromkeys((str(info[4][0]), int(info[4][1])) for info in found))
            self._resolved_until = now + self.RESOLVE_TTL_S
        return self._resolved

    def _connect(self) -> socket.socket:
        failed: OSError | None = None
        for address in self._addresses(time.monotonic()):  # in order, as create_connection tries them
            try:
                sock = socket.create_connection(address, timeout=self.timeout_s)
            except OSError as exc:
                failed = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise failed or OSError(f"{self.address[0]} resolved to no address")

    def _checkout(self, now: float) -> socket.socket:
        while self._idle:
            sock, since = self._idle.pop()
            if now - since < self.IDLE_RECONNECT_S:
                return sock
            sock.close()
        return self._connect()

    def __call__(self) -> Result:
        data, request, needles = self._next()
        sock = None
        try:
            sock = self._checkout(time.monotonic())
            sock.sendall(data)
            status, replica, header_len, keep, payload = _read_response(sock)
        except Exception as exc:  # noqa: BLE001 - every failure is a timeline record, never a crash
            if sock is not None:
                sock.close()
            return False, classify_exception(exc), -1, "", 0, request.model
        if keep and not self.per_request:
            self._idle.append((sock, time.monotonic()))
        else:
            sock.close()
        if status != 200:
            text = payload[:300].decode(errors="replace")
            cls = _answer_class(text, HTTP_STATUS)
            return False, cls, status, replica, len(payload), request.model
        if not request.http_ok(header_len, payload, needles):
            return False, BAD_RESPONSE, status, replica, len(payload), request.model
        return True, NONE, status, replica, len(payload), request.model

    def close(self) -> None:
        for sock, _ in self._idle:
            sock.close()
        self._idle.clear()


def _read_response(sock: socket.socket) -> tuple[int, str, int, bool, bytes]:
    """(status, replica, inference header length or -1, keep-alive?, body) of one HTTP/1.1 response."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionClosed("connection closed before the response headers")
        buf += chunk
        if len(buf) > 65536:
            raise BadResponse("response headers longer than 64 KiB")
    lines = buf[:end].split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.") or len(lines[0]) < 12:
        raise BadResponse(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
    status = int(lines[0][9:12])
    length = -1
    replica = ""
    header_len = -1
    keep = lines[0][7:8] == b"1"
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"x-triton-replica":
            replica = value.strip().decode(errors="replace")
        elif name == b"inference-header-content-length":
            header_len = int(value)
        elif name == b"connection":
            keep = value.strip().lower() != b"close"
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    body = buf[end + 4:]
    if chunked:
        return status, replica, header_len, keep, _read_chunked(sock, body)
    if length < 0:  # body until the server closes
        parts = [body]
        while chunk := sock.recv(65536):
            parts.append(chunk)
        return status, replica, header_len, False, b"".join(parts)
    while len(body) < length:
        chunk = sock.recv(max(65536, length - len(body)))
        if not chunk:
            raise ConnectionClosed("connection closed in the middle of the response body")
        body += chunk
    if len(body) > length:
        raise BadResponse("more bytes than the response's Content-Length")
    return status, replica, header_len, keep, body


def _read_chunked(sock: socket.socket, buf: bytes) -> bytes:
    out: list[bytes] = []
    while True:
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionClosed("connection closed in a chunked response")
            buf += chunk
        size_line, buf = buf.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        while len(buf) < size + 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionClosed("connection closed in a chunked response")
            buf += chunk
        if size == 0:
            return b"".join(out)
        out.append(buf[:size])
        buf = buf[size + 2:]


def grpc_channel(target: str) -> Any:
    """A channel with gevent initialised first (else every call blocks the whole process)."""
    import grpc
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()
    return grpc.insecure_channel(target, options=list(GRPC_CHANNEL_OPTIONS))


class GrpcInfer:
    """Unary ``ModelInfer`` calls over one shared channel (HTTP/2 multiplexes users' requests)."""

    def __init__(self, channel: Any, requests: list[PreparedRequest], timeout_s: float) -> None:
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        wire = []
        for r in requests:
            request = service_pb2.ModelInferRequest(model_name=r.model)
            for name, datatype, shape, raw in r.inputs:
                tensor = request.inputs.add()
                tensor.name = name
                tensor.datatype = datatype
                tensor.shape.extend(shape)
                request.raw_input_contents.append(raw)
            wire.append((request, r))
        self._next = cycle(wire).__next__
        self.timeout_s = timeout_s
        self._call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call
        self._rpc_error = grpc.RpcError
        self._deadline = grpc.StatusCode.DEADLINE_EXCEEDED
        self._unavailable = grpc.StatusCode.UNAVAILABLE

    @staticmethod
    def _replica(metadata: Any) -> str:
        for key, value in metadata or ():
            if key == REPLICA_HEADER:
                return str(value)
        return ""

    def __call__(self) -> Result:
        message, request = self._next()
        try:
            response, call = self._call(message, timeout=self.timeout_s)
        except self._rpc_error as exc:
            return (*self._failure(exc), request.model)
        except Exception as exc:  # noqa: BLE001 - every failure is a timeline record, never a crash
            return False, classify_exception(exc), -1, "", 0, request.model
        replica = self._replica(call.initial_metadata())
        size = sum(len(r) for r in response.raw_output_contents)
        if not request.grpc_ok(response):
            return False, BAD_RESPONSE, 0, replica, size, request.model
        return True, NONE, 0, replica, size, request.model

    def _failure(self, exc: Any) -> tuple[bool, str, int, str, int]:
        code = exc.code()
        status = int(code.value[0])
        details = str(exc.details() or "")
        try:
            # A trailers-only error response (Triton's errors through HAProxy) carries the front's header in
            # the trailing metadata: without it the failure could not be attributed to the replica.
            replica = self._replica(exc.initial_metadata()) or self._replica(exc.trailing_metadata())
        except Exception:  # noqa: BLE001 - metadata is optional on failures
            replica = ""
        if code == self._deadline:
            return False, TIMEOUT, status, replica, 0
        lowered = details.lower()
        if code == self._unavailable and not replica:
            # no server answered: the transport's own words say what happened to the connection
            if "refused" in lowered:
                return False, CONNECTION_REFUSED, status, replica, 0
            if "reset" in lowered:
                return False, CONNECTION_RESET, status, replica, 0
            if "closed" in lowered or "eof" in lowered or "goaway" in lowered:
                return False, CONNECTION_CLOSED, status, replica, 0
        return False, _answer_class(details, GRPC_STATUS), status, replica, 0
