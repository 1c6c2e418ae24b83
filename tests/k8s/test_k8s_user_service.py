"""The user's own Triton Deployment on Kubernetes: ``harness up --manifest FILE`` with their names, ports, probes
and model (the second test model, textstats: a BYTES input and a variable dimension, in their own ConfigMap).

The harness is never told the model's shapes or the Service's ports: it finds the pods by the Deployment's own
selector, the Triton ports by the container's args, the Service by its selector, and builds the requests from
the server's metadata plus the user's sample file. A pod kill lands on their pods, the report names their
Deployment, image and model, and ``down`` removes only what ``up`` applied.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import ConfigError
from harness.events import EventKind, read_events
from harness.platforms.kubernetes.usermanifest import shape_from_documents
from harness.sandbox import SandboxStatus
from harness.sandbox.images import PAUSE_IMAGE
from harness.timeline import read_timeline
from tests.k8s.k8s_helpers import server_container, user_service_docs

ROOT = Path(__file__).resolve().parents[2]
TEXTSTATS_INPUT = ROOT / "tests" / "data" / "textstats-input.json"


def _cli(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=400, env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "reports"),
                                            **(env or {})})


def _problems(docs: list[dict[str, Any]]) -> str:
    with pytest.raises(ConfigError) as info:
        shape_from_documents(docs, Path("user.yaml"), "team-ns")
    return str(info.value)


def test_the_shape_of_a_users_manifest_is_read_not_assumed() -> None:
    shape = shape_from_documents(user_service_docs("img:1"), Path("user.yaml"), "team-ns")
    assert shape.deployment == "search-inference" and shape.service == "search-api"
    assert dict(shape.selector) == {"app": "search-inference", "tier": "serving"}
    assert dict(shape.ports) == {"http": 9000, "grpc": 9001, "metrics": 9002}  # from --http-port & co.
    assert dict(shape.service_ports) == {"http": 80, "grpc": 81}
    assert shape.container == "server" and shape.images == ("img:1", PAUSE_IMAGE)  # Triton's first


def test_a_manifest_the_harness_cannot_use_is_refused_before_anything() -> None:
    good = user_service_docs("img:1")
    assert "found 0" in _problems([d for d in good if d["kind"] != "Deployment"])
    two = [*copy.deepcopy(good), copy.deepcopy(good[1])]
    two[-1]["metadata"]["name"] = "other"
    assert "found 2 (search-inference, other)" in _problems(two)
    assert "no Service selects the pods" in _problems([d for d in good if d["kind"] != "Service"])
    no_ports = copy.deepcopy(good)
    server = server_container(no_ports[1])
    server["ports"], server["args"] = [{"name": "web", "containerPort": 7000}], []
    assert "no container exposes Triton's HTTP port (containers: log-shipper, server)" in _problems(no_ports)
    wrong_target = copy.deepcopy(good)
    wrong_target[2]["spec"]["ports"] = [{"name": "web", "port": 80, "targetPort": "prom"}]
    assert "has no port whose targetPort is Triton's HTTP port (9000)" in _problems(wrong_target)
    other_ns = copy.deepcopy(good)
    other_ns[2]["metadata"]["namespace"] = "prod-search"
    assert "says namespace 'prod-search'" in _problems(other_ns)
    secret = [*copy.deepcopy(good), {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}]
    assert "document 4 is a Secret" in _problems(secret)


def test_up_refuses_a_bad_manifest_without_contacting_a_cluster(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([d for d in user_service_docs("img:1") if d["kind"] != "Service"]))
    proc = _cli(tmp_path, "up", "--platform", "kubernetes", "--namespace", "team-ns", "--manifest", str(bad),
                "--kubeconfig", str(tmp_path / "no-such-kubeconfig"), "--k8s-state-dir", str(tmp_path / "k8s"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot deploy this manifest; nothing was applied" in proc.stderr and "no Service selects" in proc.stderr
    assert not (tmp_path / "k8s").exists()


def test_faults_that_need_the_reference_models_knobs_are_refused_for_a_users_service(tmp_path: Path) -> None:
    """A user's models ignore the load delay and the load-time arena, and the harness delivers no repository
    of theirs to corrupt: those faults could only come out void, so they are refused before anything runs,
    each with its reason. The reference service refuses none; a rolling update applies to any Deployment."""
    from harness.deployment import DEFAULT_MANIFEST
    from harness.platforms.kubernetes.platform import KubernetesPlatform
    from harness.platforms.kubernetes.settings import KubernetesSettings

    manifest = tmp_path / "search.yaml"
    manifest.write_text(yaml.safe_dump_all(user_service_docs("img:1")))

    def refused(path: Path) -> dict[str, str]:
        settings = KubernetesSettings(namespace="team-ns", namespace_confirmed=True, manifest=path,
                                      kubeconfig=str(tmp_path / "no-such-kubeconfig"), state_dir=tmp_path / "k8s")
        return KubernetesPlatform(settings).refused_actions()  # no cluster contacted: the manifest decides

    users = refused(manifest)
    assert sorted(users) == ["bad_version_rollout", "corrupt_weights_rollout", "oom_at_load", "probe_kills_slow_load",
                             "queue_overflow", "slow_model_load", "unload_model"]
    assert "--model-control-mode=explicit" in users["unload_model"]  # this server loads its models at start only
    assert "HARNESS_MODEL_LOAD_DELAY_S" in users["probe_kills_slow_load"] and "'server'" in users["oom_at_load"]
    assert "mounts no such ConfigMap" in users["corrupt_weights_rollout"]
    assert refused(DEFAULT_MANIFEST) == {}


@pytest.mark.timeout(600)
def test_users_deployment_up_pod_kill_report_and_down(sandbox: SandboxStatus, tmp_path: Path) -> None:
    from kubernetes import client, config

    namespace = f"chaos-{uuid.uuid4().hex[:8]}"
    manifest = tmp_path / "search.yaml"
    manifest.write_text(yaml.safe_dump_all(user_service_docs(sandbox.triton_image)))
    common = ["--platform", "kubernetes", "--namespace", namespace, "--kubeconfig", sandbox.kubeconfig,
              "--k8s-state-dir", str(tmp_path / "k8s")]
    api = config.new_client_from_config(sandbox.kubeconfig)
    core = client.CoreV1Api(api)
    # The namespace is the user's, with an object of theirs that down must leave alone.
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "keep-me"}, "data": {"a": "b"}})
        up = _cli(tmp_path, "up", *common, "--manifest", str(manifest))
        assert up.returncode == 0, up.stdout + up.stderr
        manifest.write_text("edited after up: later commands read the copy kept at up\n")
        status = _cli(tmp_path, "status", *common, "--json")
        details = json.loads(status.stdout)
        assert details["details"]["deployment"] == "search-inference" and details["details"]["service"] == "search-api"
        assert details["ready_replicas"] == 2 and details["endpoints"]["http"].endswith(":80")

        # --load-from local: the model's sample file stays on this machine (in-cluster pods could not read it)
        run = _cli(tmp_path, "run", str(ROOT / "experiments" / "pod-kill.yaml"), *common, "--load-from", "local",
                   "--warmup", "3", "--observation", "25", "--var", "recovery_wait_s=3", "--reports-dir",
                   str(tmp_path / "reports"), env={"HARNESS_INPUT_DATA": str(TEXTSTATS_INPUT)})
        assert run.returncode in (0, 1), run.stdout + run.stderr  # 1: a tier missed, which is a finding
        rep = next((tmp_path / "reports").glob("*/experiments/pod-kill/1"))
        info = json.loads((rep / "experiment.json").read_text())
        (landing,) = info["landings"]
        assert landing["landed"] and "replaced by" in landing["detail"] and info["void"] is None
        killed = info["injected"][0]["targets"]
        assert len(killed) == 1 and killed[0].startswith("search-inference-")
        events = [e for e in read_events(rep / "events.jsonl") if e.ts_ns >= info["fault_start_ns"]]
        assert any(e.replica == killed[0] and e.kind in (EventKind.KILLED, EventKind.STOPPED) for e in events)
        figures = json.loads((rep.parents[2] / "results.json").read_text())["experiments"][0]["runs"][0]
        assert figures["capacity_recovery_s"] is not None and figures["capacity_recovery_s"] > 0
        # The load learnt the model from the server: textstats, both sample entries, answered ok.
        plan = json.loads(next(rep.rglob("request-plan.json")).read_text())
        assert [m["name"] for m in plan["models"]] == ["textstats"]
        frame = read_timeline(rep / "timeline")
        assert (frame[frame["start_ns"] < info["fault_start_ns"]]["outcome"] == "ok").all()
        assert (frame["outcome"] == "ok").sum() > 50
        service = json.loads(next((tmp_path / "reports").glob("*/run.json")).read_text())["service"]
        assert service["platform"] == "kubernetes" and service["deployment"] == "search-inference"
        assert service["namespace"] == namespace and service["service_name"] == "search-api"
        assert service["image"] == f"{sandbox.triton_image}, {PAUSE_IMAGE}" and service["error"] == ""
        assert [(m["name"], m["version"], m["state"]) for m in service["models"]] == [("textstats", "1", "READY")]
    finally:
        down = _cli(tmp_path, "down", *common)
        left = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
        deployments = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
        services = core.list_namespaced_service(namespace).items
        core.delete_namespace(namespace)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "keep-me" in left and "search-inference-models" not in left  # only what up applied is gone
    assert not deployments and not services
