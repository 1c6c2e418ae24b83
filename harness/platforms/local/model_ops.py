"""Triton's model-control API and model repository of one local replica (``harness.platforms.base.ModelControl``).

Loads and unloads go over gRPC: a load over HTTP stalls the server's other HTTP keep-alive clients for the
whole load (DESIGN.md), which would add the harness's own stall to what a lifecycle fault measures. The
repository edits and the burst are the standard-library operations the Kubernetes pods run too
(``harness.faults.triton_model``), applied to the replica's own copy of the repository.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import FaultError
from harness.faults import triton_model
from harness.faults.model_lifecycle import restore
from harness.faults.undo import UndoRecord

__all__ = ["UNDO_KIND", "LocalModelControl", "undo_record"]

UNDO_KIND = "model"


class LocalModelControl:
    undo_kind = UNDO_KIND

    def __init__(self, replica: str, http: str, grpc: str, repository: Path, store: Path) -> None:
        self.replica = replica
        self.http = http  # http://127.0.0.x:PORT
        self.grpc = grpc  # 127.0.0.x:PORT
        self.repository = repository
        self._store = store

    def _client(self) -> Any:
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(self.grpc)

    def index(self, model: str) -> list[dict[str, Any]]:
        from tritonclient.utils import InferenceServerException

        client = self._client()
        try:
            found = client.get_model_repository_index(as_json=True).get("models") or []
        except InferenceServerException as exc:
            raise FaultError(f"replica {self.replica}: cannot read Triton's repository index: {exc.message()}") from exc
        finally:
            client.close()
        return [dict(e) for e in found if e.get("name") == model]

    def server_ready(self) -> bool:
        try:
            return triton_model.ready(self.http)
        except OSError as exc:
            raise FaultError(f"replica {self.replica}: cannot ask Triton whether it is ready: {exc}") from exc

    def config(self, model: str) -> dict[str, Any]:
        from tritonclient.utils import InferenceServerException

        client = self._client()
        try:
            result: dict[str, Any] = client.get_model_config(model, as_json=True)["config"]
            return result
        except InferenceServerException as exc:
            raise FaultError(f"replica {self.replica}: cannot read the config of model {model!r}: "
                             f"{exc.message()}") from exc
        finally:
            client.close()

    def load(self, model: str, config: Mapping[str, Any] | None = None, timeout_s: float = 120.0) -> tuple[bool, str]:
        from tritonclient.utils import InferenceServerException

        client = self._client()
        try:
            client.load_model(model, config=json.dumps(dict(config)) if config else None, client_timeout=timeout_s)
            return True, ""
        except InferenceServerException as exc:
            return False, str(exc.message())
        finally:
            client.close()

    def unload(self, model: str, timeout_s: float = 60.0) -> tuple[bool, str]:
        from tritonclient.utils import InferenceServerException

        client = self._client()
        try:
            client.unload_model(model, client_timeout=timeout_s)
            return True, ""
        except InferenceServerException as exc:
            return False, str(exc.message())
        finally:
            client.close()

    def versions(self, model: str) -> list[str]:
        return triton_model.versions(str(self.repository), model)

    def add_version(self, model: str, version: str, failure: str, source: str) -> str:
        try:
            return triton_model.add_version(str(self.repository), model, version, failure, source)
        except (OSError, ValueError) as exc:
            raise FaultError(f"replica {self.replica}: cannot add version {version} of {model}: {exc}") from exc

    def remove_version(self, model: str, version: str) -> bool:
        return triton_model.remove_version(str(self.repository), model, version)

    def burst(self, model: str, count: int, concurrency: int, timeout_s: float = 10.0) -> dict[str, Any]:
        host, _, port = self.http.removeprefix("http://").rpartition(":")
        try:
            return triton_model.burst(host, int(port), model, count, concurrency, timeout_s)
        except OSError as exc:
            raise FaultError(f"replica {self.replica}: the burst could not start: {exc}") from exc

    def locator(self) -> dict[str, Any]:
        return {"platform": "local", "replica": self.replica, "http": self.http, "grpc": self.grpc,
                "repository": str(self.repository)}

    def store_dir(self) -> Path:
        return self._store

    @classmethod
    def from_locator(cls, locator: Mapping[str, Any], store: Path) -> LocalModelControl:
        return cls(str(locator["replica"]), str(locator["http"]), str(locator["grpc"]),
                   Path(str(locator["repository"])), store)


def undo_record(record: UndoRecord) -> None:
    """Undo kind ``model`` (a model-lifecycle change on a local replica): the watchdog, cleanup, the rollback."""
    restore(LocalModelControl.from_locator(record.payload["locator"], Path(".")), record.payload)  # no store needed
