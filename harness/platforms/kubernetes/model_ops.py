"""Triton's model-control API and model repository of one pod (``harness.platforms.base.ModelControl``).

Every operation is the standard-library program ``harness.faults.triton_model`` run inside the Triton
container through exec (``python3 -c``), against ``localhost`` and the container's own model repository (the
reference Deployment's ``emptyDir``, filled by its init container): the same code the local platform runs.
The image has no tritonclient, so loads go over HTTP and stall the pod's other HTTP keep-alive clients for
the duration of the load (DESIGN.md); the model-lifecycle docs say so.

A pod that is replaced takes its repository edits and its model state with it: an undo that finds the pod
gone has nothing left to undo.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import FaultError
from harness.faults.model_lifecycle import restore
from harness.faults.undo import UndoRecord
from harness.platforms.kubernetes.spec_ops import SpecHost

__all__ = ["UNDO_KIND", "KubernetesModelControl", "PodGone", "sweep", "undo_with"]

UNDO_KIND = "k8s-model"


class PodGone(FaultError):
    """The pod no longer exists: whatever was changed inside it went with it."""


def _source() -> str:
    return (resources.files("harness") / "faults" / "triton_model.py").read_text(encoding="utf-8")


class KubernetesModelControl:
    undo_kind = UNDO_KIND

    def __init__(self, platform: SpecHost, pod: str) -> None:
        self.platform = platform
        self.replica = pod
        self.port = platform.spec.port("http")
        repository = next((a.split("=", 1)[1] for a in platform.spec.args if a.startswith("--model-repository=")),
                          "/models")
        self.repository = repository

    def _run(self, op: str, exec_s: float = 60.0, **kwargs: Any) -> Any:
        from harness.platforms.kubernetes import faults

        api = self.platform.api
        if api.get(f"/api/v1/namespaces/{self.platform.namespace}/pods/{self.replica}") is None:
            raise PodGone(f"pod {self.replica} no longer exists in namespace {self.platform.namespace}")
        code, out, err = faults.exec_raw(api, self.platform.namespace, self.replica,
                                         ["python3", "-c", _source(), op, json.dumps(kwargs)],
                                         timeout_s=exec_s + 30, container=self.platform.shape.container)
        try:
            answer = json.loads(str(out).strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise FaultError(f"pod {self.replica}: {op} in the Triton container failed (exit {code}): "
                             f"{(str(err) or str(out)).strip()[:300]}") from None
        if "error" in answer:
            raise FaultError(f"pod {self.replica}: {answer['error']}")
        return answer["result"]

    @property
    def _base(self) -> str:
        return f"http://localhost:{self.port}"

    def index(self, model: str) -> list[dict[str, Any]]:
        return list(self._run("index", base=self._base, model=model))

    def server_ready(self) -> bool:
        return bool(self._run("ready", base=self._base))

    def config(self, model: str) -> dict[str, Any]:
        return dict(self._run("config", base=self._base, model=model))

    def load(self, model: str, config: Mapping[str, Any] | None = None, timeout_s: float = 120.0) -> tuple[bool, str]:
        ok, why = self._run("load", timeout_s, base=self._base, model=model,
                            full_config=dict(config) if config else None, timeout_s=timeout_s)
        return bool(ok), str(why)

    def unload(self, model: str, timeout_s: float = 60.0) -> tuple[bool, str]:
        ok, why = self._run("unload", timeout_s, base=self._base, model=model, timeout_s=timeout_s)
        return bool(ok), str(why)

    def versions(self, model: str) -> list[str]:
        return [str(v) for v in self._run("versions", repository=self.repository, model=model)]

    def add_version(self, model: str, version: str, failure: str, source: str) -> str:
        return str(self._run("add_version", repository=self.repository, model=model, version=version,
                             failure=failure, source=source))

    def remove_version(self, model: str, version: str) -> bool:
        return bool(self._run("remove_version", repository=self.repository, model=model, version=version))

    def burst(self, model: str, count: int, concurrency: int, timeout_s: float = 10.0) -> dict[str, Any]:
        return dict(self._run("burst", timeout_s * 3, host="localhost", port=self.port, model=model, count=count,
                              concurrency=concurrency, timeout_s=timeout_s))

    def locator(self) -> dict[str, Any]:
        return {"platform": "kubernetes", "replica": self.replica, "namespace": self.platform.namespace,
                "state_dir": str(self.platform.settings.state_dir)}

    def store_dir(self) -> Path:
        return self.platform.state / "faults"


def sweep(platform: SpecHost) -> list[str]:
    """Undo this machine's model-lifecycle records for this namespace whose run died (``harness cleanup``, the
    control's sweep); the watchdog normally gets there first. Live runs' records are theirs to undo."""
    from harness.faults.undo import UndoStore

    store = UndoStore(platform.state / "faults", {UNDO_KIND: partial(undo_with, platform)})
    done = []
    for rec in store.orphaned():
        if rec.kind == UNDO_KIND and rec.payload.get("locator", {}).get("namespace") == platform.namespace:
            store.undo(rec)
            done.append(f"model change on pod {rec.payload['locator'].get('replica')} (run {rec.run_id}): "
                        f"{rec.description}")
    return done


def undo_with(platform: SpecHost, record: UndoRecord) -> None:
    """Undo kind ``k8s-model`` through ``platform`` (this namespace's): reach the pod again (exec) and restore; a
    pod that is gone took the change with it. The watchdog reconnects with the saved settings first."""
    try:
        restore(KubernetesModelControl(platform, str(record.payload["locator"]["replica"])), record.payload)
    except PodGone:
        return
