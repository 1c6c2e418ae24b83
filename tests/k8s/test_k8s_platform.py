"""The Kubernetes platform against the fake API server: lifecycle, events, faults, cleanup, safety.

What this proves: the platform's REST calls (paths, verbs, content types, bodies) are ones a Kubernetes
API server accepts and they have the intended effect on objects and on the events file; the watcher
turns pod changes into the shared events schema. What it does not prove: scheduling, image pulls, GPU
allocation, probes against a real Triton, NetworkPolicy enforcement (docs/kubernetes.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from k8s_helpers import events_of, wait_for

from harness.errors import ConfigError, FaultError, PlatformError
from harness.events import EventKind
from harness.platforms.base import Platform
from harness.platforms.kubernetes.faults import BLOCKED_BY, ENV_PATCH
from harness.platforms.kubernetes.render import EXPIRES, MANAGED_BY, RUN_ID
from harness.testing.k8s_fake import FakeCluster

pytestmark = pytest.mark.timeout(120)


def _env(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env") or []}


def test_up_status_down(make_k8s, fake: FakeCluster) -> None:
    platform = make_k8s(gpus_per_replica=2)
    assert isinstance(platform, Platform)
    status = platform.up()
    ns = platform.namespace
    assert status.up and status.ready_replicas == 2 and len(status.replicas) == 2
    for replica in status.replicas:
        assert replica.address.startswith("10.244.") and replica.restarts == 0 and replica.reason == ""
        assert replica.metrics == f"http://{replica.address}:8002/metrics"
    assert status.endpoints.http == f"http://triton.{ns}.svc.cluster.local:8000"
    assert status.details["gpus_per_replica"] == 2
    # Every object carries the run label and an expiry; the model repository travels in a ConfigMap.
    kinds = {"deployments", "services", "configmaps", "poddisruptionbudgets"}
    for plural in kinds:
        objs = fake.objects(plural, ns)
        assert objs, plural
        for obj in objs:
            assert obj["metadata"]["labels"][MANAGED_BY] == "triton-resilience-harness"
            assert obj["metadata"]["labels"][RUN_ID].startswith("up-")
            assert EXPIRES in obj["metadata"]["annotations"]
    cm = fake.get("configmaps", ns, "triton-model-repository")
    assert cm is not None and "mlp__1__weights__w1.npy" in cm["binaryData"] and "mlp__1__model.py" in cm["data"]
    assert "kind: KIND_GPU" in cm["data"]["mlp__config.pbtxt"]
    dep = fake.get("deployments", ns, "triton")
    assert dep is not None
    limits = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "2"  # quantities come back as strings
    items = dep["spec"]["template"]["spec"]["volumes"][1]["configMap"]["items"]
    assert {"key": "mlp__1__weights__w1.npy", "path": "mlp/1/weights/w1.npy"} in items
    pods = [r.name for r in status.replicas]
    kinds_seen = wait_for(
        lambda: (
            {(e.kind, e.replica) for e in events_of(platform)}
            >= {(EventKind.STARTED, pods[0]), (EventKind.READY, pods[0]), (EventKind.READY, pods[1])}
            and True
        ),
        what="started/ready events",
    )
    assert kinds_seen
    assert any(e.kind == EventKind.PLATFORM_UP for e in events_of(platform))
    assert all(e.platform == "kubernetes" for e in events_of(platform))

    report = platform.down()
    assert "deployment triton" in report.removed and f"namespace {ns}" in report.removed
    assert not fake.objects("pods", ns) and not fake.objects("deployments", ns)
    stopped = {e.replica for e in events_of(platform) if e.kind == EventKind.STOPPED}
    assert set(pods) <= stopped
    assert events_of(platform)[-1].kind == EventKind.PLATFORM_DOWN


def test_kill_replica_is_replaced_and_recorded(make_k8s, fake: FakeCluster) -> None:
    platform = make_k8s(replicas=3)
    platform.up()
    victim = platform.replica_names()[0]
    platform.kill_replica(victim, grace_s=0)
    assert victim not in platform.replica_names()
    platform.wait_rolled_out(30)
    names = platform.replica_names()
    assert len(names) == 3 and victim not in names
    events = wait_for(
        lambda: [e for e in events_of(platform) if e.kind == EventKind.KILLED and e.replica == victim],
        what="killed event",
    )
    replacement = [e for e in events_of(platform) if e.kind == EventKind.STARTED and e.ts_ns > events[0].ts_ns]
    assert replacement, "the replacement pod's start was recorded after the kill"
    with pytest.raises(FaultError, match="not pods of Deployment"):
        platform.kill_replica("some-other-pod")


def test_crash_backoff_and_restart_events(make_k8s, fake: FakeCluster) -> None:
    platform = make_k8s(replicas=1)
    platform.up()
    pod = platform.replica_names()[0]
    fake.crash_container(platform.namespace, pod, reason="OOMKilled")
    status = platform.status()
    assert status.replicas[0].reason == "CrashLoopBackOff" and status.replicas[0].restarts == 1
    assert status.replicas[0].state == "backoff" and not status.replicas[0].ready
    wait_for(lambda: platform.status().replicas[0].ready, what="ready after back-off")
    kinds = wait_for(
        lambda: (
            [e.kind for e in events_of(platform) if e.replica == pod][-1:] == [EventKind.READY]
            and [e.kind for e in events_of(platform) if e.replica == pod]
        ),
        what="events after restart",
    )
    tail = kinds[kinds.index(EventKind.EXITED) :]
    assert tail == [
        EventKind.EXITED,
        EventKind.BACKOFF,
        EventKind.NOT_READY,
        EventKind.RESTARTED,
        EventKind.READY,
    ]
    exited = next(e for e in events_of(platform) if e.kind == EventKind.EXITED)
    assert exited.reason == "OOMKilled"


def test_network_block_is_unique_per_run_and_undone(make_k8s, fake: FakeCluster) -> None:
    platform = make_k8s()
    platform.up()
    ns = platform.namespace
    a, b = platform.replica_names()
    first = platform.block_network([a], "20261128T070000Z-net-1")
    second = platform.block_network([b], "20261128T070500Z-net-2")
    json.dumps(first)  # the undo record is written to disk by the runner
    assert first["policy"] != second["policy"]
    policies = {p["metadata"]["name"]: p for p in fake.objects("networkpolicies", ns)}
    assert set(policies) == {first["policy"], second["policy"]}
    policy = policies[first["policy"]]
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {BLOCKED_BY: first["policy"]}},
        "policyTypes": ["Ingress"],
        "ingress": [],
    }
    assert policy["metadata"]["labels"][RUN_ID] == "20261128t070000z-net-1"
    pod_a = fake.get("pods", ns, a)
    assert pod_a is not None and pod_a["metadata"]["labels"][BLOCKED_BY] == first["policy"]
    platform.unblock_network(first)
    assert [p["metadata"]["name"] for p in fake.objects("networkpolicies", ns)] == [second["policy"]]
    pod_a = fake.get("pods", ns, a)
    assert pod_a is not None and BLOCKED_BY not in pod_a["metadata"]["labels"]
    pod_b = fake.get("pods", ns, b)
    assert pod_b is not None and pod_b["metadata"]["labels"][BLOCKED_BY] == second["policy"]
    platform.unblock_network(second)
    assert not fake.objects("networkpolicies", ns)


def test_env_patch_rolls_pods_and_restores(make_k8s, fake: FakeCluster) -> None:
    platform = make_k8s()
    platform.up()
    before = set(platform.replica_names())
    record = platform.restart_with_env({"HARNESS_MODEL_LOAD_DELAY_S": "3", "EXTRA": "x"}, "20261128T071000Z-slow")
    json.dumps(record)
    assert record["previous_env"] == [{"name": "HARNESS_MODEL_LOAD_DELAY_S", "value": ""}]
    platform.wait_rolled_out(30)
    after = platform.replica_names()
    assert not before & set(after), "every pod was replaced by the rolling restart"
    pod = fake.get("pods", platform.namespace, after[0])
    assert pod is not None and _env(pod) == {"HARNESS_MODEL_LOAD_DELAY_S": "3", "EXTRA": "x"}
    # exec runs in the pod, with the pod's env, over the v4.channel.k8s.io WebSocket.
    assert platform.exec_in_replica(after[0], ["sh", "-c", "echo delay=$HARNESS_MODEL_LOAD_DELAY_S"]) == "delay=3\n"
    with pytest.raises(FaultError, match="exited with 3"):
        platform.exec_in_replica(after[0], ["sh", "-c", "echo oops >&2; exit 3"])
    with pytest.raises(FaultError, match="already carries an env patch"):
        platform.restart_with_env({"X": "1"}, "another-run")
    platform.restore_env(record)
    platform.wait_rolled_out(30)
    dep = fake.get("deployments", platform.namespace, "triton")
    assert dep is not None and ENV_PATCH not in dep["metadata"]["annotations"]
    pod = fake.get("pods", platform.namespace, platform.replica_names()[0])
    assert pod is not None and _env(pod) == {"HARNESS_MODEL_LOAD_DELAY_S": ""}


def test_cleanup_removes_stale_faults_and_keeps_live_ones(make_k8s, fake: FakeCluster, tmp_path: Path) -> None:
    platform = make_k8s()
    platform.up()
    ns = platform.namespace
    a, b = platform.replica_names()
    live_run = "20261128T072000Z-live"
    run_dir = Path(os.environ["HARNESS_REPORTS_DIR"]) / live_run
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"schema": 1, "run_id": live_run, "status": "running"}))
    live = platform.block_network([a], live_run)
    crashed = platform.block_network([b], "20261128T071500Z-crashed")  # no run directory: not running
    platform.restart_with_env({"HARNESS_MODEL_LOAD_DELAY_S": "1"}, "20261128T071500Z-crashed")
    report = platform.cleanup()
    text = report.describe()
    assert f"networkpolicy {crashed['policy']}" in text and "env patch of deployment triton" in text
    assert [p["metadata"]["name"] for p in fake.objects("networkpolicies", ns)] == [live["policy"]]
    dep = fake.get("deployments", ns, "triton")
    assert dep is not None and ENV_PATCH not in dep["metadata"]["annotations"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "HARNESS_MODEL_LOAD_DELAY_S", "value": ""}
    ]
    assert fake.get("services", ns, "triton") is not None, "the service of the current up is live"
    # Once the run has finished, its objects go too.
    (run_dir / "run.json").write_text(json.dumps({"schema": 1, "run_id": live_run, "status": "completed"}))
    platform.wait_rolled_out(30)
    platform.cleanup()
    assert not fake.objects("networkpolicies", ns)
    assert not [p for p in fake.objects("pods", ns) if BLOCKED_BY in p["metadata"]["labels"]]


def test_production_context_and_namespace_allow_list(fake: FakeCluster, tmp_path: Path, make_k8s) -> None:
    prod = fake.write_kubeconfig(tmp_path / "prod", context="gke_acme_prod-eu")
    before = len(fake.requests)
    platform = make_k8s(kubeconfig=str(prod))
    with pytest.raises(ConfigError, match="production pattern"):
        platform.status()
    assert len(fake.requests) == before, "a refused context receives no request at all"
    overridden = make_k8s(kubeconfig=str(prod), allow_production=True)
    assert overridden.status().up is False
    with pytest.raises(ConfigError, match="not on the allow-list"):
        make_k8s(namespace="staging", namespace_confirmed=False, allowed_namespaces=("triton-chaos",))
    make_k8s(namespace="triton-chaos", namespace_confirmed=False, allowed_namespaces=("triton-chaos",))


def test_refuses_objects_it_did_not_create(make_k8s, fake: FakeCluster) -> None:
    from harness.testing.k8s_fake import RESOURCES

    platform = make_k8s()
    fake.add_namespace(platform.namespace)
    services = next(r for r in RESOURCES if r.plural == "services")
    fake.create(
        services,
        platform.namespace,
        {"metadata": {"name": "triton", "labels": {"team": "search"}}, "spec": {"ports": [{"port": 80}]}},
    )
    with pytest.raises(PlatformError, match="did not create: Service triton"):
        platform.up()
    svc = fake.get("services", platform.namespace, "triton")
    assert svc is not None and svc["metadata"]["labels"] == {"team": "search"}
    assert not fake.objects("deployments", platform.namespace)
    platform.cleanup()
    assert fake.get("services", platform.namespace, "triton") is not None, "cleanup never touches it either"


def test_dry_run_prints_calls_and_makes_none(fake: FakeCluster, kubeconfig: Path, tmp_path: Path) -> None:
    before = len(fake.requests)
    env = {**os.environ, "HARNESS_K8S_STATE_DIR": str(tmp_path / "state")}
    base = [sys.executable, "-m", "harness.cli"]
    args = ["--platform", "kubernetes", "--namespace", "dry", "--kubeconfig", str(kubeconfig), "--dry-run"]
    up = subprocess.run(
        [*base, "up", *args, "--gpus-per-replica", "0"], capture_output=True, text=True, env=env, timeout=60
    )
    assert up.returncode == 0, up.stderr
    assert "PATCH /apis/apps/v1/namespaces/dry/deployments/triton?fieldManager=triton-resilience-harness" in up.stdout
    assert "PATCH /api/v1/namespaces/dry/configmaps/triton-model-repository" in up.stdout
    assert "GET /api/v1/namespaces/dry" in up.stdout
    down = subprocess.run([*base, "down", *args], capture_output=True, text=True, env=env, timeout=60)
    assert down.returncode == 0, down.stderr
    assert "GET /apis/networking.k8s.io/v1/namespaces/dry/networkpolicies?labelSelector=" in down.stdout
    assert len(fake.requests) == before, "dry-run made no API call"


def test_cli_up_status_down(fake: FakeCluster, kubeconfig: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HARNESS_K8S_STATE_DIR": str(tmp_path / "state"),
        "HARNESS_REPORTS_DIR": str(tmp_path),
    }
    base = [sys.executable, "-m", "harness.cli"]
    args = ["--platform", "kubernetes", "--namespace", "cli-ns", "--kubeconfig", str(kubeconfig)]
    up = subprocess.run(
        [*base, "up", *args, "--replicas", "1", "--json"], capture_output=True, text=True, env=env, timeout=90
    )
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["ready_replicas"] == 1
    status = subprocess.run([*base, "status", *args], capture_output=True, text=True, env=env, timeout=60)
    assert status.returncode == 0 and "1/1 replicas ready" in status.stdout, status.stderr
    down = subprocess.run([*base, "down", *args], capture_output=True, text=True, env=env, timeout=60)
    assert down.returncode == 0 and "deployment triton" in down.stdout, down.stderr
    assert not fake.objects("pods", "cli-ns")
    prod = subprocess.run(
        [
            *base,
            "status",
            "--platform",
            "kubernetes",
            "--namespace",
            "x",
            "--kubeconfig",
            str(fake.write_kubeconfig(tmp_path / "p", context="production")),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert prod.returncode == 2 and "--i-know-this-is-production" in prod.stderr


def test_chaosk8s_talks_to_the_fake(make_k8s, fake: FakeCluster, kubeconfig: Path, tmp_path: Path) -> None:
    """chaosk8s reads $KUBECONFIG when kubernetes is imported, so it runs in a process started with it."""
    platform = make_k8s()
    platform.up()
    victim = platform.replica_names()[0]
    script = f"""
import json
from pathlib import Path
from chaosk8s.pod.probes import pods_in_phase
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.kubernetes.settings import KubernetesSettings
from harness.platforms.kubernetes.faults import _chaosk8s_sees
s = KubernetesSettings(namespace={platform.namespace!r}, namespace_confirmed=True,
                       kubeconfig={str(kubeconfig)!r}, state_dir=Path({str(tmp_path / "sub")!r}))
p = KubernetesPlatform(s)
p.api
with _chaosk8s_sees(p._target) as same:
    assert same
assert pods_in_phase(label_selector="app.kubernetes.io/name=triton", phase="Running",
                     ns={platform.namespace!r})
p.kill_replica({victim!r}, grace_s=0)
print(json.dumps(p.replica_names()))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )
    assert done.returncode == 0, done.stderr
    assert victim not in json.loads(done.stdout.strip().splitlines()[-1])
    platform.wait_rolled_out(30)
    assert victim not in platform.replica_names()


def test_fake_objects_deserialise_into_the_clients_typed_models(make_k8s, fake: FakeCluster) -> None:
    """The typed client models are strict (pydantic): everything the fake serves must fit them."""
    from kubernetes import client

    platform = make_k8s()
    platform.up()
    record = platform.block_network(platform.replica_names()[:1], "20261128T073000Z-typed")
    api = platform.api.client
    ns = platform.namespace
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    pods = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/name=triton")
    assert len(pods.items) == 2 and all(p.status.container_statuses[0].ready for p in pods.items)
    dep = apps.read_namespaced_deployment("triton", ns)
    assert dep.status.ready_replicas == 2
    assert core.read_namespaced_service("triton", ns).spec.ports[0].port == 8000
    assert core.read_namespaced_config_map("triton-model-repository", ns).binary_data
    assert core.list_namespaced_event(ns).items
    assert client.NetworkingV1Api(api).read_namespaced_network_policy(record["policy"], ns).spec.policy_types == [
        "Ingress"
    ]
    assert client.PolicyV1Api(api).read_namespaced_pod_disruption_budget("triton", ns).spec.max_unavailable == 1
    assert client.VersionApi(api).get_code().git_version.endswith("fake")


def test_kubernetes_platform_is_a_fault_target(make_k8s) -> None:
    from harness.platforms.base import FaultTarget

    assert isinstance(make_k8s(), FaultTarget)


def test_runner_signatures_memory_pressure_reload_and_sweep(make_k8s, fake: FakeCluster) -> None:
    """The calls harness.chaos makes (positional max_s / names), the in-pod hog, reload and the sweeper."""
    import time as _time

    from harness.platforms.base import FaultTarget

    platform = make_k8s(gpus_per_replica=0)
    platform.up()
    assert isinstance(platform, FaultTarget)
    a, b = platform.replica_names()
    # block_network(targets, run_id, max_duration_s) with a deadline already past: the sweeper lifts it.
    record = platform.block_network([a], "20261128T074000Z-sweep", 0.001)
    _time.sleep(1.1)  # expiry has one-second resolution
    assert f"networkpolicy {record['policy']}" in platform.sweep_faults(only_orphaned=True)
    assert not fake.objects("networkpolicies", platform.namespace)
    # restart_with_env(env, run_id, targets): the record names the selection; the Deployment rolls.
    env_record = platform.restart_with_env({"HARNESS_MODEL_LOAD_DELAY_S": "1"}, "20261128T074000Z-sweep", [b])
    assert env_record["replicas"] == [b]
    platform.restore_env(env_record)
    platform.wait_rolled_out(30)
    # Memory pressure without GPUs: the container-memory analogue runs inside the pod, against the pod's
    # cgroup files (here written by the test: 40 MiB used of a 100 MiB limit, leave 20 MiB free).
    pod = platform.replica_names()[0]
    cgroup = fake.pod_root(platform.namespace, pod) / "sys" / "fs" / "cgroup"
    cgroup.mkdir(parents=True)
    (cgroup / "memory.max").write_text(str(100 << 20))
    (cgroup / "memory.current").write_text(str(40 << 20))
    pressure = platform.memory_pressure([pod], "20261128T074500Z-mem", 20.0, 30.0)
    json.dumps(pressure)
    assert pressure["target"] == "container" and "analogue" in pressure["analogue"]
    status_file = fake.pod_root(platform.namespace, pod) / pressure["status_file"].lstrip("/")
    held = wait_for(lambda: status_file.exists() and json.loads(status_file.read_text()), what="hog status")
    # The test's usage file does not grow with the hog, so the hog counts what it holds as the usage.
    assert 40 <= held["held_mb"] <= 80 and held["free_mb"] >= 20
    hog_pid = pressure["pods"][pod]
    assert Path(f"/proc/{hog_pid}").exists()
    platform.release_memory(pressure)
    wait_for(
        lambda: (
            not Path(f"/proc/{hog_pid}").exists() or b"zombie" in Path(f"/proc/{hog_pid}/status").read_bytes().lower()
        ),
        what="the hog to stop",
    )
    # Reload from inside the pod: no Triton listens in the fake's pod, so it fails and says why.
    ok, why = platform.reload_model(pod, parameters={"load_delay_s": "0"}, timeout_s=5)
    assert not ok and "cannot reach Triton in the pod" in why


def test_every_command_accepts_the_kubernetes_arguments() -> None:
    """The platform arguments are shared by every command: they must not clash with a command's own."""
    from harness.cli import build_parser

    parser = build_parser()
    for command in ("up", "status", "down", "cleanup", "run"):
        extra = ["experiments/pod-kill.yaml"] if command == "run" else []
        args = parser.parse_args(
            [
                command,
                *extra,
                "--platform",
                "kubernetes",
                "--namespace",
                "ns",
                "--context",
                "kind-x",
                "--kubeconfig",
                "k",
                "--gpus-per-replica",
                "0",
            ]
        )
        assert (args.platform, args.namespace, args.context, args.gpus_per_replica) == ("kubernetes", "ns", "kind-x", 0)
