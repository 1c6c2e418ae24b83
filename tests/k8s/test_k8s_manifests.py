"""Every manifest the harness applies validates against the Kubernetes OpenAPI schemas of two versions.

kubernetes-validate ships the schemas, so this runs offline. Strict mode rejects unknown fields, so a
misspelt field fails here instead of being silently dropped by a cluster.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness.deployment import DEFAULT_MANIFEST, load_deployment, load_manifest_documents
from harness.errors import ConfigError
from harness.load.settings import LoadSettings
from harness.platforms.kubernetes.cluster_load import placement
from harness.platforms.kubernetes.load import LoadJob, render_load_objects
from harness.platforms.kubernetes.render import expiry, label, render_service
from harness.platforms.kubernetes.settings import MONITORING_MANIFEST

VERSIONS = ("1.29.0", "1.33.0")


def _validate(obj: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


def _rendered(gpus: int | None) -> list[dict[str, Any]]:
    return render_service(
        DEFAULT_MANIFEST, "20261128T070000Z-pod-kill", expiry(3600), replicas=3, gpus_per_replica=gpus
    )


def _network_policy() -> dict[str, Any]:
    from harness.platforms.kubernetes.faults import network_policy

    return network_policy(
        "harness-block-20261128t070000z-net-0badcafe",
        "20261128T070000Z-net",
        ["triton-abc-1", "triton-abc-2"],
        expiry(60),
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_reference_manifests_validate(version: str) -> None:
    docs = load_manifest_documents(DEFAULT_MANIFEST)
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "PodDisruptionBudget"}
    for doc in docs:
        _validate(doc, version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("gpus", [None, 0, 2])
def test_rendered_objects_validate(version: str, gpus: int | None) -> None:
    objects = _rendered(gpus)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Service", "PodDisruptionBudget", "Deployment"]
    for obj in objects:
        _validate(obj, version)
    container = objects[-1]["spec"]["template"]["spec"]["containers"][0]
    limits = container["resources"]["limits"]
    # A string: server-side apply rejects an integer quantity ("expected string") on a real API server.
    assert limits.get("nvidia.com/gpu") == {None: "1", 0: None, 2: "2"}[gpus]
    service = objects[1]
    assert all(port["protocol"] == "TCP" for port in service["spec"]["ports"]), "SSA needs the list key"


@pytest.mark.parametrize("version", VERSIONS)
def test_fault_and_load_objects_validate(version: str, tmp_path: Path) -> None:
    _validate(_network_policy(), version)
    profile = tmp_path / "steady.py"
    profile.write_text("# a profile\n")
    job = LoadJob(
        run_id="20261128T070000Z-load",
        namespace="ns",
        workers=3,
        image="harness:dev",
        profile=profile,
        settings=LoadSettings(http_url="http://triton.ns.svc.cluster.local:8000", users=30, rate=600.0),
        expires_at=expiry(60),
    )
    objects = render_load_objects(job)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Service", "Pod", "Pod", "Pod", "Pod"]
    for obj in objects:
        _validate(obj, version)
    ns = label({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "triton-chaos"}}, "up-x", expiry(60))
    _validate(ns, version)


def test_validation_really_rejects_mistakes() -> None:
    dep = _rendered(None)[-1]
    dep["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"httpGet": {"path": "/", "port": 8000}}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(dep, VERSIONS[0])
    dep = _rendered(None)[-1]
    dep["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(dep, VERSIONS[1])


def test_probes_cover_the_model_load_and_the_local_platform_still_reads_the_deployment() -> None:
    spec = load_deployment()
    assert spec.model_name == "mlp" and spec.replicas == 2
    assert dict(spec.ports) == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert spec.startup is not None and spec.liveness is not None
    # The startup probe must outlast the slowest model load before liveness can restart the pod.
    assert spec.startup.period_s * spec.startup.failure_threshold >= 60
    pod = next(d for d in load_manifest_documents(DEFAULT_MANIFEST) if d["kind"] == "Deployment")["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["spec"]["initContainers"][0]["volumeMounts"][1] == {"name": "models", "mountPath": "/models"}


def test_monitoring_manifest_is_prometheus_operator_shaped() -> None:
    docs = list(yaml.safe_load_all(MONITORING_MANIFEST.read_text()))
    assert {d["kind"] for d in docs} == {"ServiceMonitor", "PodMonitor"}
    for doc in docs:
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert doc["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "triton"}
    service_monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert service_monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_every_load_setting_reaches_the_pods_environment(tmp_path: Path) -> None:
    """Locust ignores -u/-r/-t when the profile has a shape, and the shape and users read HARNESS_*: so every
    setting travels in the environment of every pod, the per-process parts sized to one worker's share."""
    profile = tmp_path / "step.py"
    profile.write_text("# reads HARNESS_STEP_S\n")
    settings = LoadSettings(http_url="http://triton.ns.svc.cluster.local:8000",
                            grpc_target="triton.ns.svc.cluster.local:8001", protocol="grpc", users=500,
                            rate=5000.0, duration_s=600.0, timeout_s=1.5)
    job = LoadJob(run_id="20261206T070000Z-load", namespace="ns", workers=4, image="harness:dev", profile=profile,
                  settings=settings, env={"HARNESS_STEP_S": "5", "HARNESS_MODEL": "mlp"})
    pods = [o for o in render_load_objects(job) if o["kind"] == "Pod"]
    master = pods[0]["spec"]["containers"][0]["command"]
    assert not {"-u", "-r", "-t"} & set(master), "flags a shape ignores would only mislead"
    for pod in pods:
        env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
        assert env["HARNESS_USERS"] == "500" and env["HARNESS_RATE"] == "5000.0"
        assert env["HARNESS_DURATION"] == "600.0" and env["HARNESS_TIMEOUT_S"] == "1.5"
        assert env["HARNESS_PROTOCOL"] == "grpc" and env["HARNESS_GRPC_TARGET"] == "triton.ns.svc.cluster.local:8001"
        assert env["HARNESS_HTTP_URL"] == "http://triton.ns.svc.cluster.local:8000"
        assert env["HARNESS_STEP_S"] == "5" and env["HARNESS_MODEL"] == "mlp"
        # a worker runs 125 of the 500 users, so 1,250 of the 5,000 req/s: its cap, twice its timeout's worth
        assert env["HARNESS_MAX_INFLIGHT"] == str(int(1250 * 1.5 * 2) + 16)
    worker = pods[1]["spec"]["containers"][0]
    assert worker["resources"]["requests"]["cpu"] == "500m", "1,250 gRPC req/s at 2,500 per core"
    until_stopped = LoadJob(run_id="r", namespace="ns", workers=1, image="i", profile=profile,
                            settings=LoadSettings(duration_s=None))
    env = {e["name"]: e["value"] for e in render_load_objects(until_stopped)[2]["spec"]["containers"][0]["env"]}
    assert env["HARNESS_DURATION"] == "", "set but empty: the shape runs until the master is stopped"


def test_load_from_cluster_needs_the_kubernetes_platform() -> None:
    with pytest.raises(ConfigError, match="--load-from cluster needs --platform kubernetes"):
        placement(argparse.Namespace(platform="local", load_from="cluster"))
    assert placement(argparse.Namespace(platform="local", load_from=None)) == {}
    assert placement(argparse.Namespace(platform="kubernetes", load_from="local")) == {"harness_load_from": "local"}
