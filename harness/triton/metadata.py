"""What a Triton server says about itself and its models, read once, over HTTP or gRPC.

The load builds its requests from this (input names, datatypes, shapes, batching, output names) instead of
assuming the reference model, and reports name the service under test with it (server version, models and
their versions). Both protocols are read into the same frozen records, because a user may expose only one.
Nothing here imports gevent: the caller (the CLI, the fault runner) reads metadata before any load starts,
so a model that does not exist is a ``ConfigError`` and an unreachable server a ``PlatformError``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.errors import ConfigError, PlatformError

__all__ = [
    "DATATYPE_BYTES",
    "ModelInfo",
    "RepositoryModel",
    "ServerInfo",
    "TensorInfo",
    "TritonMetadata",
]

Protocol = Literal["http", "grpc"]

# Bytes per element of each fixed-size Triton datatype (BYTES is variable: a 4-byte length per element).
DATATYPE_BYTES: Mapping[str, int] = {
    "BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2, "INT32": 4,
    "INT64": 8, "FP16": 2, "BF16": 2, "FP32": 4, "FP64": 8,
}


@dataclass(frozen=True)
class TensorInfo:
    """One input or output. ``dims`` exclude the batch dimension; -1 marks a variable dimension."""

    name: str
    datatype: str
    dims: tuple[int, ...]
    optional: bool = False

    @property
    def variable(self) -> bool:
        return any(d < 0 for d in self.dims)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    versions: tuple[str, ...]
    platform: str  # the backend or platform the server reports ("python", "onnxruntime_onnx", ...)
    max_batch_size: int  # 0: the model does not batch, its dims are the whole request shape
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "versions": list(self.versions), "platform": self.platform,
                "max_batch_size": self.max_batch_size,
                "inputs": [{"name": t.name, "datatype": t.datatype, "dims": list(t.dims)} for t in self.inputs],
                "outputs": [{"name": t.name, "datatype": t.datatype, "dims": list(t.dims)} for t in self.outputs]}


@dataclass(frozen=True)
class RepositoryModel:
    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING, "" (not loaded)
    reason: str = ""


@dataclass(frozen=True)
class ServerInfo:
    name: str
    version: str
    extensions: tuple[str, ...]


def _int(value: Any) -> int:
    return int(value)  # gRPC's JSON spells int64 as strings


def _tensors(meta: Sequence[Mapping[str, Any]], config: Sequence[Mapping[str, Any]], batching: bool
             ) -> tuple[TensorInfo, ...]:
    """Metadata gives names, datatypes and shapes (batch dim included); the config says what is optional."""
    optional = {str(c.get("name")): bool(c.get("optional", False)) for c in config}
    out = []
    for t in meta:
        shape = tuple(_int(d) for d in t.get("shape") or ())
        dims = shape[1:] if batching and shape else shape
        name = str(t["name"])
        out.append(TensorInfo(name, str(t["datatype"]), dims, optional.get(name, False)))
    return tuple(out)


def model_info(metadata: Mapping[str, Any], config: Mapping[str, Any]) -> ModelInfo:
    """A ``ModelInfo`` from the JSON of ``/v2/models/<m>`` and ``/v2/models/<m>/config`` (either protocol)."""
    max_batch = _int(config.get("max_batch_size") or 0)
    return ModelInfo(
        name=str(metadata["name"]),
        versions=tuple(str(v) for v in metadata.get("versions") or ()),
        platform=str(metadata.get("platform") or config.get("backend") or config.get("platform") or ""),
        max_batch_size=max_batch,
        inputs=_tensors(metadata.get("inputs") or (), config.get("input") or (), max_batch > 0),
        outputs=_tensors(metadata.get("outputs") or (), config.get("output") or (), max_batch > 0),
    )


class TritonMetadata:
    """Read-only questions to one Triton endpoint: ``http://HOST:PORT`` or a gRPC ``HOST:PORT``."""

    def __init__(self, endpoint: str, protocol: Protocol = "http", timeout_s: float = 5.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.protocol = protocol
        self.timeout_s = timeout_s

    # -- transport -----------------------------------------------------------------------------------
    def _http(self, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(f"{self.endpoint}{path}", data=body, method="POST" if body else "GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            text = exc.read()[:500].decode(errors="replace")
            try:
                text = str(json.loads(text).get("error", text))
            except (ValueError, AttributeError):
                pass
            raise _NotFound(text) if exc.code in (400, 404) else PlatformError(
                f"{self.endpoint}{path} answered HTTP {exc.code}: {text}") from None
        except (OSError, ValueError) as exc:
            raise PlatformError(f"cannot read {self.endpoint}{path}: {exc}. Is Triton up there?") from None

    def _grpc(self, call: str, *args: Any) -> Any:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.endpoint)
        try:
            return getattr(client, call)(*args, as_json=True, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            if "NOT_FOUND" in status or "INVALID_ARG" in status:
                raise _NotFound(str(exc.message())) from None
            raise PlatformError(f"gRPC {self.endpoint} {call}: {exc.message()} ({status}). Is Triton up "
                                "there?") from None
        finally:
            client.close()

    # -- questions -----------------------------------------------------------------------------------
    def server(self) -> ServerInfo:
        raw = self._http("/v2") if self.protocol == "http" else self._grpc("get_server_metadata")
        return ServerInfo(str(raw.get("name", "")), str(raw.get("version", "")),
                          tuple(str(e) for e in raw.get("extensions") or ()))

    def repository(self) -> list[RepositoryModel]:
        """Every model the server's repository holds, with its state (the repository extension)."""
        try:
            raw = (self._http("/v2/repository/index", b"{}") if self.protocol == "http"
                   else (self._grpc("get_model_repository_index") or {}).get("models", []))
        except _NotFound:
            return []
        return [RepositoryModel(str(m.get("name", "")), str(m.get("version", "")), str(m.get("state", "")),
                                str(m.get("reason", ""))) for m in raw or ()]

    def model(self, name: str) -> ModelInfo:
        """Metadata and config of one model; ``ConfigError`` naming the models there when it is not served."""
        try:
            if self.protocol == "http":
                meta, config = self._http(f"/v2/models/{name}"), self._http(f"/v2/models/{name}/config")
            else:
                meta = self._grpc("get_model_metadata", name)
                config = self._grpc("get_model_config", name).get("config", {})
        except _NotFound as exc:
            raise ConfigError(f"model {name!r} is not served at {self.endpoint} ({exc}); "
                              f"{self.describe_models()}") from None
        return model_info(meta, config)

    def ready_models(self) -> list[str]:
        return sorted({m.name for m in self.repository() if m.state == "READY"})

    def describe_models(self) -> str:
        models = self.repository()
        if not models:
            return "the server lists no models (or does not offer the repository extension)"
        shown = [f"{m.name} v{m.version or '?'} {m.state or 'not loaded'}" + (f" ({m.reason})" if m.reason else "")
                 for m in models]
        return "models there: " + ", ".join(shown)


class _NotFound(Exception):
    """The server answered, and the thing asked for does not exist there."""
