"""Attach to a Deployment the harness did not create: the test creates it through the API as a user would (no
harness label), the harness attaches, faults land on its pods, and ``detach`` (or ``down``) leaves the
Deployment and Service exactly as they were, with no harness object left in the namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.kubernetes.render import harness_selector
from harness.platforms.kubernetes.settings import KubernetesSettings
from harness.platforms.kubernetes.watcher import stop_watcher, watcher_pid
from harness.sandbox import SandboxStatus
from harness.sandbox.images import PAUSE_IMAGE
from tests.k8s.k8s_helpers import server_container, user_service_docs, wait_for

ROOT = Path(__file__).resolve().parents[2]
TEXTSTATS_INPUT = ROOT / "tests" / "data" / "textstats-input.json"
pytestmark = pytest.mark.timeout(600)


class UserCluster:
    """The user's side: the plain Kubernetes client, never the harness's."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(kubeconfig)
        self.core, self.apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        self.net = client.NetworkingV1Api(self.api)
        self.namespace = namespace

    def snapshot(self) -> dict[str, Any]:
        """The Deployment and Service as a reviewer would compare them (status and managedFields aside)."""
        dep = self.api.sanitize_for_serialization(self.apps.read_namespaced_deployment("search-inference",
                                                                                       self.namespace))
        svc = self.api.sanitize_for_serialization(self.core.read_namespaced_service("search-api", self.namespace))
        keep = ("uid", "generation", "labels", "annotations", "resourceVersion")
        return {"deployment": {"metadata": {k: dep["metadata"].get(k) for k in keep if k != "resourceVersion"},
                               "spec": dep["spec"]},
                "service": {"metadata": {k: svc["metadata"].get(k) for k in keep}, "spec": svc["spec"]}}

    def pods(self) -> list[Any]:
        return [p for p in self.core.list_namespaced_pod(self.namespace, label_selector="app=search-inference").items
                if p.metadata.deletion_timestamp is None]

    def harness_objects(self) -> list[str]:
        sel = harness_selector()
        found = [f"networkpolicy {p.metadata.name}" for p in
                 self.net.list_namespaced_network_policy(self.namespace, label_selector=sel).items]
        found += [f"configmap {c.metadata.name}" for c in
                  self.core.list_namespaced_config_map(self.namespace, label_selector=sel).items]
        found += [f"pod {p.metadata.name}" for p in
                  self.core.list_namespaced_pod(self.namespace, label_selector=sel).items]
        found += [f"pod label {p.metadata.name}" for p in self.pods()
                  if "harness.blocked-by" in (p.metadata.labels or {})]
        return found


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


@contextlib.contextmanager
def user_service(sandbox: SandboxStatus, replicas: int = 2, env: dict[str, str] | None = None) -> Iterator[UserCluster]:
    """The user's Deployment, ConfigMap and Service in a namespace of theirs, created with the plain client."""
    namespace = f"chaos-{uuid.uuid4().hex[:8]}"
    cluster = UserCluster(sandbox.kubeconfig, namespace)
    cluster.core.create_namespace({"metadata": {"name": namespace}})
    try:
        cm, dep, svc = user_service_docs(sandbox.triton_image, replicas=replicas)
        if env:
            server_container(dep)["env"] = [{"name": k, "value": v} for k, v in env.items()]
        cluster.core.create_namespaced_config_map(namespace, cm)
        cluster.apps.create_namespaced_deployment(namespace, dep)
        cluster.core.create_namespaced_service(namespace, svc)
        wait_for(lambda: len([p for p in cluster.pods() if all(c.ready for c in p.status.container_statuses or [])
                              and p.status.container_statuses]) == replicas, 180, "the user's pods ready")
        # A user's service has been serving for a while: wait until kube-proxy routes its new ClusterIP (on a
        # loaded node that lags the pods; before it, connections fail with "Network is unreachable").
        ip = cluster.core.read_namespaced_service(svc["metadata"]["name"], namespace).spec.cluster_ip
        wait_for(lambda: _answers(f"http://{ip}:80/v2/health/ready"), 60, "the user's Service to answer")
        yield cluster
    finally:
        cluster.core.delete_namespace(namespace)


@pytest.fixture
def user(sandbox: SandboxStatus) -> Iterator[UserCluster]:
    with user_service(sandbox) as cluster:
        yield cluster


@pytest.fixture
def state(user: UserCluster, tmp_path: Path) -> Iterator[Path]:
    """The harness's state directory; whatever the test did, no attachment or watcher outlives it."""
    state = tmp_path / "k8s"
    yield state
    if (state / user.namespace / "settings.json").exists():
        platform = KubernetesPlatform(KubernetesSettings.load(state / user.namespace))
        if platform.attachment is not None:
            platform.down()
        stop_watcher(platform.state)


def test_attach_pod_kill_block_and_detach_leave_the_users_deployment_as_it_was(
        sandbox: SandboxStatus, user: UserCluster, state: Path, tmp_path: Path) -> None:
    common = ["--platform", "kubernetes", "--namespace", user.namespace, "--kubeconfig", sandbox.kubeconfig,
              "--k8s-state-dir", str(state)]

    def harness(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True,
                              cwd=ROOT, timeout=400, env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "r"),
                                                          **(env or {})})

    before = user.snapshot()
    # Bad attach arguments: a clear error naming the namespace and the name; nothing recorded.
    proc = harness("attach", *common, "--deployment", "nope")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"no Deployment 'nope' in namespace '{user.namespace}'" in proc.stderr and "search-inference" in proc.stderr
    proc = harness("attach", *common, "--deployment", "search-inference", "--service", "nope")
    assert proc.returncode == 2 and f"no Service 'nope' in namespace {user.namespace}" in proc.stderr
    assert not (state / user.namespace / "attached.json").exists()

    proc = harness("attach", *common, "--deployment", "search-inference")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Service search-api" in proc.stdout and "textstats v1 READY" in proc.stdout
    refused = proc.stdout.split("Refused here: ")[1]  # the attached container's own limits and env decide
    assert "slow_model_load" in refused and "container 'server'" in refused and "memory_pressure" not in refused
    attached = json.loads((state / user.namespace / "attached.json").read_text())
    assert attached["deployment"]["uid"] == before["deployment"]["metadata"]["uid"]
    assert attached["service"]["name"] == "search-api" and attached["shape"]["service_ports"]["http"] == 80
    assert harness("up", *common).returncode == 4  # the harness's own service cannot go over it

    # A fault the service cannot undergo is refused with the reason, and nothing is injected.
    reports = tmp_path / "reports"
    proc = harness("run", str(ROOT / "experiments" / "slow-model-load.yaml"), *common, "--reports-dir", str(reports))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nothing was injected" in proc.stderr and "HARNESS_MODEL_LOAD_DELAY_S" in proc.stderr
    assert not reports.exists() and user.snapshot() == before

    # The textstats model needs its sample file, which stays on this machine: in-cluster load pods could not read
    # it, so that is refused before anything runs; the sandbox's root namespace reaches the Service itself.
    refused = harness("run", str(ROOT / "experiments" / "pod-kill.yaml"), *common, "--reports-dir", str(reports),
                      env={"HARNESS_INPUT_DATA": str(TEXTSTATS_INPUT)})
    assert refused.returncode == 2 and "--load-from local" in refused.stderr, refused.stdout + refused.stderr
    assert not reports.exists() and user.snapshot() == before
    run = harness("run", str(ROOT / "experiments" / "pod-kill.yaml"), *common, "--load-from", "local", "--warmup", "3",
                  "--observation", "25", "--var", "recovery_wait_s=3", "--reports-dir", str(reports),
                  env={"HARNESS_INPUT_DATA": str(TEXTSTATS_INPUT)})
    assert run.returncode in (0, 1), run.stdout + run.stderr
    rep = next(reports.glob("*/experiments/pod-kill/1"))
    info = json.loads((rep / "experiment.json").read_text())
    (landing,) = info["landings"]
    assert landing["landed"] and "replaced by" in landing["detail"] and info["void"] is None
    assert info["injected"][0]["targets"][0].startswith("search-inference-")
    figures = json.loads((rep.parents[2] / "results.json").read_text())["experiments"][0]["runs"][0]
    assert figures["capacity_recovery_s"] is not None and figures["capacity_recovery_s"] > 0  # from its pods' events
    service = json.loads(next(reports.glob("*/run.json")).read_text())["service"]
    assert (service["deployment"], service["namespace"], service["service_name"]) == (
        "search-inference", user.namespace, "search-api")
    assert service["image"] == f"{sandbox.triton_image}, {PAUSE_IMAGE}"  # Triton's image first, then the sidecar
    assert [m["name"] for m in service["models"]] == ["textstats"]
    wait_for(lambda: len(user.pods()) == 2, 60, "the Deployment back at two pods")
    # The sandbox's bridge plugin does not enforce NetworkPolicy: the probe, aimed at the user's own port 9000,
    # still connects, so the block must come out "not enforced" (void), never as a block that landed.
    block = harness("run", str(ROOT / "experiments" / "network-policy-block.yaml"), *common, "--load-from", "local",
                    "--warmup", "3", "--observation", "3", "--var", "block_s=2", "--var", "recovery_wait_s=2",
                    "--var", "analysis={stability_period_s: 3}", "--reports-dir", str(reports),
                    env={"HARNESS_INPUT_DATA": str(TEXTSTATS_INPUT)})
    assert block.returncode == 5, block.stdout + block.stderr
    info = json.loads(next(reports.glob("*/experiments/network-policy-block/1/experiment.json")).read_text())
    assert info["void"] and "not enforced" in info["void"], info["void"]
    assert user.harness_objects() == []  # its rollback removed the policy and the pod labels

    # A network block left in place (a crashed run): the policy and pod labels exist until detach.
    platform = KubernetesPlatform(KubernetesSettings.load(state / user.namespace))
    victim = platform.replica_names()[0]
    record = platform.fault_ops().block_network([victim], "crashed-run", 600)
    assert user.harness_objects() == [f"networkpolicy {record['policy']}", f"pod label {victim}"]

    proc = harness("detach", *common)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"networkpolicy {record['policy']}" in proc.stdout and "exactly as they were" in proc.stdout
    after = user.snapshot()
    for part in ("deployment", "service"):
        assert after[part]["spec"] == before[part]["spec"]
        assert after[part]["metadata"]["labels"] == before[part]["metadata"]["labels"]
        assert after[part]["metadata"]["annotations"] == before[part]["metadata"]["annotations"]
    assert after["deployment"]["metadata"]["generation"] == before["deployment"]["metadata"]["generation"]
    assert after["service"]["metadata"]["resourceVersion"] == before["service"]["metadata"]["resourceVersion"]
    assert user.harness_objects() == [] and len(user.pods()) == 2
    assert not (state / user.namespace / "attached.json").exists()
    assert not watcher_pid(platform.state)

    # down on an attached Deployment detaches; it never deletes the user's objects.
    assert harness("attach", *common, "--deployment", "search-inference", "--service", "search-api").returncode == 0
    time.sleep(0.5)
    down = harness("down", *common)
    assert down.returncode == 0 and "left running, exactly as at attach" in down.stdout, down.stdout + down.stderr
    assert user.snapshot() == after and len(user.pods()) == 2


def test_detach_restores_an_env_patch_left_on_the_users_deployment_and_names_it(
        sandbox: SandboxStatus, tmp_path: Path) -> None:
    """A Deployment whose model reads the load delay may take the slow-load env patch; a run that died with it
    in place leaves the undo record in the cluster, and detach restores it and says why the generation moved."""
    delay = "HARNESS_MODEL_LOAD_DELAY_S"
    with user_service(sandbox, replicas=1, env={delay: ""}) as user:
        before = user.snapshot()
        platform = KubernetesPlatform(KubernetesSettings(namespace=user.namespace, namespace_confirmed=True,
                                                         kubeconfig=sandbox.kubeconfig, state_dir=tmp_path / "k8s"))
        try:
            platform.attach_deployment("search-inference")
            assert "slow_model_load" not in platform.refused_actions()
            platform.fault_ops().restart_with_env({delay: "1"}, "died-run", platform.replica_names())
            patched = user.snapshot()["deployment"]
            assert "harness/env-patch" in patched["metadata"]["annotations"]
            assert server_container(patched)["env"] == [{"name": delay, "value": "1"}]
            report = platform.detach()
        finally:
            if platform.attachment is not None and (platform.state / "attached.json").exists():
                platform.down()
        assert report.undone[0] == "env patch of deployment search-inference (run died-run)"
        (change,) = report.changes
        # Each patch moves the generation (annotations too, on a Deployment): say it, and that the spec is as it was.
        assert "generation 1 -> " in change and "env-patch" in change and "spec is as it was" in change
        assert report.unchanged
        after = user.snapshot()["deployment"]
        assert after["spec"] == before["deployment"]["spec"]
        assert after["metadata"]["annotations"] == before["deployment"]["metadata"]["annotations"] | {
            "deployment.kubernetes.io/revision": after["metadata"]["annotations"]["deployment.kubernetes.io/revision"]}
        assert after["metadata"]["labels"] == before["deployment"]["metadata"]["labels"]
        assert not watcher_pid(platform.state)


def test_detach_names_every_difference_and_the_fault_that_moved_the_generation() -> None:
    from harness.platforms.kubernetes.attach import Attachment, compare
    from harness.platforms.kubernetes.usermanifest import shape_from_documents

    _cm, dep, svc = user_service_docs("img:1")
    dep["metadata"].update(uid="u1", generation=1)
    svc["metadata"].update(uid="s1")
    shape = shape_from_documents([dep, svc], Path("user.yaml"))
    found = Attachment(namespace="team", run_id="attach-x", attached_ns=0, shape=shape,
                       deployment={**{k: dep["metadata"].get(k) for k in ("name", "uid", "generation")},
                                   "labels": dep["metadata"]["labels"], "annotations": dep["metadata"]["annotations"],
                                   "spec": dep["spec"]},
                       service={"name": "search-api", "uid": "s1", "generation": None,
                                "labels": svc["metadata"]["labels"], "annotations": {}, "spec": svc["spec"]})
    assert compare(found, dep, svc, []) == []
    rolled = {**dep, "metadata": {**dep["metadata"], "generation": 3,
                                  "annotations": {**dep["metadata"]["annotations"],
                                                  "deployment.kubernetes.io/revision": "3"}}}
    notes = [{"kind": "env-patch", "env": {"HARNESS_MODEL_LOAD_DELAY_S": "5"}, "run_id": "r1"}]
    (line,) = compare(found, rolled, svc, notes)
    assert "generation 1 -> 3" in line and "env-patch" in line and "its spec is as it was" in line
    (line,) = compare(found, rolled, svc, [])
    assert "changed by someone else" in line
    scaled = {**dep, "spec": {**dep["spec"], "replicas": 5}, "metadata": {**dep["metadata"], "labels": {"team": "x"}}}
    changes = compare(found, scaled, None, [])
    assert any("spec.replicas differs" in c for c in changes)
    assert any("label team: 'search' -> 'x'" in c for c in changes)
    assert any("Service team/search-api no longer exists" in c for c in changes)


def test_attach_is_refused_before_any_request_on_a_production_context_or_without_a_deployment(
        tmp_path: Path) -> None:
    """The production refusal and the argument checks hold for attach too: the refused context's server (a
    listening socket) sees no connection, and nothing is recorded."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "gke_acme_prod-eu",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{listener.getsockname()[1]}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "gke_acme_prod-eu", "context": {"cluster": "c", "user": "u"}}]}))
    common = ["--platform", "kubernetes", "--kubeconfig", str(kubeconfig), "--k8s-state-dir", str(tmp_path / "k8s")]

    def harness(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True,
                              cwd=ROOT, timeout=60)

    proc = harness("attach", *common, "--namespace", "team-ns", "--deployment", "search-inference")
    assert proc.returncode == 2 and "production pattern" in proc.stderr, proc.stderr
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    proc = harness("attach", *common, "--namespace", "team-ns")
    assert proc.returncode == 2 and "needs --deployment NAME" in proc.stderr
    proc = harness("attach", *common, "--deployment", "search-inference")
    assert proc.returncode == 2 and "no namespace: pass --namespace NAME" in proc.stderr
    proc = harness("detach", *common, "--namespace", "team-ns")
    assert proc.returncode == 4 and "nothing is attached in namespace team-ns" in proc.stderr
    assert not list((tmp_path / "k8s").rglob("attached.json"))
