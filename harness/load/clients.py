"""The two ways a load user reaches Triton, each one call returning what the timeline needs.

Both build the request once (a real ``mlp`` payload: ``INPUT`` FP32 [batch, 16]) and, per request, only
send it, check the answer's size and classify failures, because at thousands of requests a second every
microsecond here is a microsecond the harness takes from the service it measures.

HTTP speaks Triton's binary tensor extension through ``geventhttpclient`` (the transport that
``tritonclient.http`` itself uses, gevent-native); the body is made by
``tritonclient.http.InferenceServerClient.generate_request_body``. tritonclient's ``infer()`` hides the
response headers, and the replica that answered is in the front's ``x-triton-replica`` header.

gRPC calls the ``GRPCInferenceService`` stub that ``tritonclient.grpc`` ships, with ``with_call`` so the
initial metadata (the replica) is visible; the channel's reconnect back-off is lowered so that recovery
is not hidden behind a client sleeping up to two minutes, and retries are disabled: the harness must see
every failure the service causes.

Importing this module imports gevent-aware libraries: only the load process does that.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import numpy as np

from harness.timeline import ErrorClass

__all__ = ["GRPC_CHANNEL_OPTIONS", "GrpcInfer", "HttpInfer", "Result", "classify_exception"]

REPLICA_HEADER = "x-triton-replica"
OUTPUT_WIDTH = 8  # PROBS is FP32 [batch, 8]

# outcome ok?, error class, status (HTTP / gRPC code, -1 none), replica, bytes received
Result = tuple[bool, str, int, str, int]

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


def _model_unavailable(text: str) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in _MODEL_UNAVAILABLE_HINTS)


def classify_exception(exc: BaseException) -> str:
    """The timeline's error class for a failure below HTTP/gRPC (no response at all)."""
    from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError

    if isinstance(exc, ConnectionRefusedError):
        return ErrorClass.CONNECTION_REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return ErrorClass.CONNECTION_RESET
    if isinstance(exc, HTTPConnectionClosed):
        return ErrorClass.CONNECTION_CLOSED
    if isinstance(exc, TimeoutError | socket.timeout):
        return ErrorClass.TIMEOUT
    if isinstance(exc, HTTPParseError):
        return ErrorClass.BAD_RESPONSE
    if isinstance(exc, OSError):
        if exc.errno == errno.ECONNREFUSED:
            return ErrorClass.CONNECTION_REFUSED
        if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            return ErrorClass.CONNECTION_RESET
        if exc.errno == errno.ETIMEDOUT:
            return ErrorClass.TIMEOUT
    import gevent

    if isinstance(exc, gevent.Timeout):
        return ErrorClass.TIMEOUT
    return ErrorClass.OTHER


def _payload(batch: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 16)).astype(np.float32)


class HttpInfer:
    """One keep-alive HTTP client (``concurrency`` connections) sending the prebuilt binary request."""

    def __init__(self, url: str, model: str, batch: int, timeout_s: float, concurrency: int = 1) -> None:
        import tritonclient.http as httpclient
        from geventhttpclient import HTTPClient

        data = _payload(batch)
        inp = httpclient.InferInput("INPUT", list(data.shape), "FP32")
        inp.set_data_from_numpy(data, binary_data=True)
        out = httpclient.InferRequestedOutput("PROBS", binary_data=True)
        body, json_size = httpclient.InferenceServerClient.generate_request_body([inp], outputs=[out])
        self.body: bytes = body
        self.headers = {"Content-Type": "application/octet-stream"}
        if json_size is not None:
            self.headers["Inference-Header-Content-Length"] = str(json_size)
        self.path = f"/v2/models/{model}/infer"
        self.output_bytes = batch * OUTPUT_WIDTH * 4
        self._client = HTTPClient.from_url(url, concurrency=concurrency, connection_timeout=timeout_s,
                                           network_timeout=timeout_s)

    def __call__(self) -> Result:
        try:
            response = self._client.post(self.path, body=self.body, headers=self.headers)
            payload = response.read()
        except Exception as exc:  # noqa: BLE001 - every failure is a timeline record, never a crash
            return False, classify_exception(exc), -1, "", 0
        status = response.status_code
        replica = response.get(REPLICA_HEADER) or ""
        if not isinstance(replica, str):
            replica = replica[0]
        if status != 200:
            text = payload[:300].decode(errors="replace")
            cls = ErrorClass.MODEL_UNAVAILABLE if _model_unavailable(text) else ErrorClass.HTTP_STATUS
            return False, cls, status, replica, len(payload)
        header_len = response.get("Inference-Header-Content-Length")
        if header_len is None or len(payload) != int(str(header_len)) + self.output_bytes:
            return False, ErrorClass.BAD_RESPONSE, status, replica, len(payload)
        return True, ErrorClass.NONE, status, replica, len(payload)

    def close(self) -> None:
        self._client.close()


def grpc_channel(target: str) -> Any:
    """A channel with gevent initialised first (else every call blocks the whole process)."""
    import grpc
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()
    return grpc.insecure_channel(target, options=list(GRPC_CHANNEL_OPTIONS))


class GrpcInfer:
    """Unary ``ModelInfer`` calls over one shared channel (HTTP/2 multiplexes users' requests)."""

    def __init__(self, channel: Any, model: str, batch: int, timeout_s: float) -> None:
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        data = _payload(batch)
        request = service_pb2.ModelInferRequest(model_name=model)
        tensor = request.inputs.add()
        tensor.name = "INPUT"
        tensor.datatype = "FP32"
        tensor.shape.extend(data.shape)
        request.raw_input_contents.append(data.tobytes())
        self.request = request
        self.timeout_s = timeout_s
        self.output_bytes = batch * OUTPUT_WIDTH * 4
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
        try:
            response, call = self._call(self.request, timeout=self.timeout_s)
        except self._rpc_error as exc:
            return self._failure(exc)
        except Exception as exc:  # noqa: BLE001 - every failure is a timeline record, never a crash
            return False, classify_exception(exc), -1, "", 0
        replica = self._replica(call.initial_metadata())
        raw = response.raw_output_contents
        size = len(raw[0]) if raw else 0
        if size != self.output_bytes:
            return False, ErrorClass.BAD_RESPONSE, 0, replica, size
        return True, ErrorClass.NONE, 0, replica, size

    def _failure(self, exc: Any) -> Result:
        code = exc.code()
        status = int(code.value[0])
        details = str(exc.details() or "")
        try:
            replica = self._replica(exc.initial_metadata())
        except Exception:  # noqa: BLE001 - metadata is optional on failures
            replica = ""
        if code == self._deadline:
            return False, ErrorClass.TIMEOUT, status, replica, 0
        lowered = details.lower()
        if code == self._unavailable and not replica:
            # no server answered: the transport's own words say what happened to the connection
            if "refused" in lowered:
                return False, ErrorClass.CONNECTION_REFUSED, status, replica, 0
            if "reset" in lowered:
                return False, ErrorClass.CONNECTION_RESET, status, replica, 0
            if "closed" in lowered or "eof" in lowered or "goaway" in lowered:
                return False, ErrorClass.CONNECTION_CLOSED, status, replica, 0
        if _model_unavailable(details):
            return False, ErrorClass.MODEL_UNAVAILABLE, status, replica, 0
        return False, ErrorClass.GRPC_STATUS, status, replica, 0
