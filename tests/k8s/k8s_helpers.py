"""Helpers shared by the Kubernetes platform tests (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.events import Event, read_events
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.kubernetes.settings import KubernetesSettings
from harness.sandbox import SandboxStatus
from harness.sandbox.images import PAUSE_IMAGE


def wait_for(predicate: Callable[[], Any], timeout_s: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def shared_platform(sandbox: SandboxStatus, manifest: Path, tmp: Path,
                    **overrides: Any) -> Iterator[KubernetesPlatform]:
    """One platform, up, in a fresh namespace, for a whole test module (module fixtures cannot use make_k8s)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_REPORTS_DIR", str(tmp / "reports"))
        values: dict[str, Any] = {"namespace": f"chaos-{uuid.uuid4().hex[:8]}", "namespace_confirmed": True,
                                  "kubeconfig": sandbox.kubeconfig, "state_dir": tmp / "state", "manifest": manifest,
                                  "image": sandbox.triton_image, "gpus_per_replica": 0, "ready_timeout_s": 240.0}
        platform = KubernetesPlatform(KubernetesSettings(**{**values, **overrides}))
        platform.up()
        try:
            yield platform
        finally:
            platform.down()


def events_of(platform: KubernetesPlatform) -> list[Event]:
    return list(read_events(platform.events_path()))


TEXTSTATS = Path(__file__).resolve().parents[1] / "data" / "model_repository" / "textstats"


def user_service_docs(image: str, name: str = "search-inference", service: str = "search-api",
                      replicas: int = 2) -> list[dict[str, Any]]:
    """A Triton service as a user would write it, nothing like the reference manifest: its own names and
    labels (no harness label), Triton on non-default ports with names of its own (set by --http-port & co.),
    a tcpSocket liveness probe, a Service on other ports, a sidecar as the pod's first container, and the second
    test model (textstats: a BYTES input and a variable dimension) delivered by its own ConfigMap and init
    container."""
    labels = {"app": name, "tier": "serving"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-models", "labels": {"team": "search"}},
         "data": {"config.pbtxt": (TEXTSTATS / "config.pbtxt").read_text(),
                  "model.py": (TEXTSTATS / "1" / "model.py").read_text()}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "labels": {"team": "search"}, "annotations": {"owner": "search-team"}},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": {**labels, "release": "rc1"}},
                               "spec": {"terminationGracePeriodSeconds": 5,
                                        "initContainers": [{
                                            "name": "fetch-models", "image": image,
                                            "command": ["sh", "-c", "mkdir -p /models/textstats/1 && cp "
                                                        "/src/config.pbtxt /models/textstats/ && cp /src/model.py "
                                                        "/models/textstats/1/"],
                                            "volumeMounts": [{"name": "src", "mountPath": "/src"},
                                                             {"name": "models", "mountPath": "/models"}]}],
                                        "containers": [{
                                            # a sidecar first: exec and env patches must find Triton's
                                            "name": "log-shipper", "image": PAUSE_IMAGE, "command": ["/pause"],
                                            "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}},
                                        }, {
                                            "name": "server", "image": image, "command": ["tritonserver"],
                                            "args": ["--model-repository=/models", "--http-port=9000",
                                                     "--grpc-port=9001", "--metrics-port=9002"],
                                            "ports": [{"name": "api", "containerPort": 9000},
                                                      {"name": "rpc", "containerPort": 9001},
                                                      {"name": "prom", "containerPort": 9002}],
                                            "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "api"},
                                                               "periodSeconds": 1, "failureThreshold": 2},
                                            "livenessProbe": {"tcpSocket": {"port": "api"}, "periodSeconds": 5,
                                                              "initialDelaySeconds": 30},
                                            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                          "limits": {"memory": "1Gi"}},
                                            "volumeMounts": [{"name": "models", "mountPath": "/models"}]}],
                                        "volumes": [{"name": "models", "emptyDir": {}},
                                                    {"name": "src", "configMap": {"name": f"{name}-models"}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "labels": {"team": "search"}},
         "spec": {"selector": labels, "ports": [{"name": "web", "port": 80, "targetPort": "api"},
                                                {"name": "rpc", "port": 81, "targetPort": "rpc"}]}},
    ]


def server_container(deployment: dict[str, Any]) -> dict[str, Any]:
    """The Triton container ("server") of a Deployment made from ``user_service_docs``."""
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "server")
