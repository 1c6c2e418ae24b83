"""The Kubernetes platform against a real Kubernetes 1.20 (``harness sandbox``): lifecycle, events, faults,
capacity from real pod status, exec, cleanup and safety.

Pods run the local Triton image (the nvidia-pytriton server with the reference model), so probes,
restarts, exec and Service routing are the cluster's own. The sandbox's bridge CNI does not enforce
NetworkPolicy, which one test pins down: a network block there must never be reported as effective.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from k8s_helpers import events_of, wait_for

from harness.errors import ConfigError, FaultError, PlatformError
from harness.events import EventKind
from harness.platforms.base import FaultTarget, Platform
from harness.platforms.kubernetes.api import KIND_BY_NAME
from harness.platforms.kubernetes.faults import BLOCKED_BY, ENV_PATCH
from harness.platforms.kubernetes.render import EXPIRES, MANAGED_BY, RUN_ID
from harness.sandbox import SandboxStatus

pytestmark = pytest.mark.timeout(600)
_KIND = KIND_BY_NAME


def _env(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env") or []}


def _get(platform, kind: str, name: str) -> dict | None:  # type: ignore[no-untyped-def]
    api = platform.api
    return api.get(f"{api.resolve(_KIND[kind]).collection(platform.namespace)}/{name}")


def _list(platform, kind: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return platform.api.list(_KIND[kind], platform.namespace)


def test_up_status_down(make_k8s) -> None:
    platform = make_k8s()
    assert isinstance(platform, Platform) and isinstance(platform.fault_ops(), FaultTarget)
    status = platform.up()
    ns = platform.namespace
    assert status.up and status.ready_replicas == 2 and len(status.replicas) == 2
    assert len({r.uid for r in status.replicas}) == 2 and all(r.uid for r in status.replicas)
    for replica in status.replicas:
        assert replica.address.startswith("10.214.") and replica.restarts == 0 and replica.reason == ""
        assert replica.metrics == f"http://{replica.address}:8002/metrics"
    # The Service's DNS name does not resolve on this host; its ClusterIP is routed into the sandbox.
    assert status.endpoints.http.startswith("http://10.215.") and status.endpoints.http.endswith(":8000")
    with urllib.request.urlopen(f"{status.endpoints.http}/v2/health/ready", timeout=5) as answer:
        assert answer.status == 200
    with urllib.request.urlopen(status.endpoints.metrics[0], timeout=5) as answer:
        assert b"nv_inference_request_success" in answer.read()
    # 1.20 serves PodDisruptionBudgets only as policy/v1beta1: the manifest's policy/v1 was translated.
    assert not platform.api.serves("policy/v1") and platform.api.serves("policy/v1beta1")
    for kind in ("Deployment", "Service", "ConfigMap", "PodDisruptionBudget"):
        obj = _get(platform, kind, "triton" if kind != "ConfigMap" else "triton-model-repository")
        assert obj is not None, kind
        assert obj["metadata"]["labels"][MANAGED_BY] == "triton-resilience-harness"
        assert obj["metadata"]["labels"][RUN_ID].startswith("up-")
        assert EXPIRES in obj["metadata"]["annotations"]
    pods = [r.name for r in status.replicas]
    wait_for(
        lambda: {(e.kind, e.replica) for e in events_of(platform)}
        >= {(EventKind.STARTED, pods[0]), (EventKind.READY, pods[0]), (EventKind.READY, pods[1])},
        what="started/ready events",
    )
    assert any(e.kind == EventKind.PLATFORM_UP for e in events_of(platform))

    report = platform.down()
    assert "deployment triton" in report.removed and "poddisruptionbudget triton" in report.removed
    assert f"namespace {ns}" in report.removed
    assert not _list(platform, "Pod")
    assert {e.replica for e in events_of(platform) if e.kind == EventKind.STOPPED} >= set(pods)
    assert events_of(platform)[-1].kind == EventKind.PLATFORM_DOWN

    # up right after down: the namespace is still being deleted, and the API refused the first object (403,
    # "being terminated"), leaving a half-applied service; up waits for the namespace to go instead
    assert platform.up().ready_replicas == 2
    platform.down()


def test_faults_on_real_pods(make_k8s) -> None:
    """Pod kill, a container exit, NetworkPolicy (not enforced here), memory pressure and reload by exec."""
    platform = make_k8s()
    platform.up()
    ops = platform.fault_ops()
    a, b = platform.replica_names()
    uid_a = next(r.uid for r in platform.status().replicas if r.name == a)

    # Pod kill: the Deployment replaces it; capacity comes back in the real pod status.
    ops.kill_replica(a, grace_s=0)
    platform.wait_rolled_out(120)
    after = platform.status()
    assert after.ready_replicas == 2 and a not in platform.replica_names()
    assert uid_a not in {r.uid for r in after.replicas}
    killed = wait_for(lambda: [e for e in events_of(platform) if e.kind == EventKind.KILLED and e.replica == a],
                      what="killed event")
    assert [e for e in events_of(platform) if e.kind == EventKind.READY and e.ts_ns > killed[0].ts_ns]
    with pytest.raises(FaultError, match="not pods of Deployment"):
        ops.kill_replica("some-other-pod")
    a, b = platform.replica_names()

    # NetworkPolicy: applied, labelled, unique per run; the bridge CNI does not enforce it, and the
    # in-cluster probe says so (connected) instead of pretending the block landed.
    assert ops.connect_probe(a) is True
    first = ops.block_network([a], "20261128T070000Z-net-1")
    second = ops.block_network([b], "20261128T070500Z-net-2")
    json.dumps(first)
    assert first["policy"] != second["policy"]
    policy = _get(platform, "NetworkPolicy", first["policy"])
    assert policy is not None and policy["spec"]["podSelector"] == {"matchLabels": {BLOCKED_BY: first["policy"]}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    pod_a = _get(platform, "Pod", a)
    assert pod_a is not None and pod_a["metadata"]["labels"][BLOCKED_BY] == first["policy"]
    assert ops.connect_probe(a) is True, "the policy exists but nothing enforces it"
    ops.unblock_network(first)
    ops.unblock_network(second)
    assert not _list(platform, "NetworkPolicy")
    pod_a = _get(platform, "Pod", a)
    assert pod_a is not None and BLOCKED_BY not in pod_a["metadata"]["labels"]
    # A closed port is refused, not "cannot tell".
    status_a = next(r for r in platform.status().replicas if r.name == a)
    code = ops.exec_in_replica(b, ["python3", "-c", "import socket,sys\ntry:\n socket.create_connection(("
                                        f"{status_a.address!r}, 8999), timeout=1)\nexcept OSError: print('refused')"])
    assert code.strip() == "refused"

    # exec runs in the pod with its env; a failing command raises with its stderr.
    assert ops.exec_in_replica(a, ["sh", "-c", "echo delay=$HARNESS_MODEL_LOAD_DELAY_S"]) == "delay=\n"
    # Execs at once (the network block probes its targets in parallel) beside REST calls: each exec has a client
    # of its own, so the platform's REST client is never left speaking websocket ("Handshake status 200 OK").
    with ThreadPoolExecutor(max_workers=6) as pool:
        outs = list(pool.map(lambda i: ops.exec_in_replica((a, b)[i % 2], ["echo", str(i)]), range(12)))
        lists = [pool.submit(platform.replica_names) for _ in range(6)]
    assert outs == [f"{i}\n" for i in range(12)] and all(sorted(f.result()) == sorted([a, b]) for f in lists)
    assert sorted(platform.replica_names()) == sorted([a, b])
    with pytest.raises(FaultError, match="exited with 3"):
        ops.exec_in_replica(a, ["sh", "-c", "echo oops >&2; exit 3"])

    # Memory pressure (no GPU): the container analogue holds the pod's limit (1 GiB) minus its usage.
    pressure = ops.memory_pressure([a], "20261128T074500Z-mem", 700.0, 60.0)
    json.dumps(pressure)
    assert pressure["target"] == "container" and "analogue" in pressure["analogue"]

    def held() -> dict | None:
        try:
            text = ops.exec_in_replica(a, ["cat", pressure["status_file"]])
        except FaultError:
            return None
        return json.loads(text) if text.strip() else None

    hog = wait_for(lambda: (h := held()) and h["held_mb"] > 50 and h, timeout_s=30, what="hog status")
    assert 650 <= hog["free_mb"] <= 760, hog
    ops.release_memory(pressure)
    # Gone, or a zombie: the container's PID 1 (tritonserver) does not reap the orphaned hog.
    pid = pressure["pods"][a]
    alive = f"test -e /proc/{pid} && ! grep -q 'State:.*Z' /proc/{pid}/status && echo alive || echo gone"
    wait_for(lambda: "gone" in ops.exec_in_replica(a, ["sh", "-c", alive]), what="the hog to stop")

    # Model reload through Triton's model-control API, from inside the pod.
    ok, why = ops.reload_model(a, parameters={"load_delay_s": "0"}, timeout_s=60)
    assert ok, why

    # A container that exits is restarted in place: restarts +1, events exited and restarted.
    ops.exec_in_replica(b, ["kill", "-TERM", "1"])
    replica = wait_for(lambda: next((r for r in platform.status().replicas if r.name == b and r.restarts >= 1
                                     and r.ready), None), timeout_s=120, what="restart of the exited container")
    assert replica.restarts == 1
    kinds = wait_for(lambda: (k := [e.kind for e in events_of(platform) if e.replica == b])
                     and EventKind.RESTARTED in k and k, what="restart events")
    assert EventKind.EXITED in kinds and kinds.index(EventKind.EXITED) < kinds.index(EventKind.RESTARTED)


def test_env_patch_rolls_pods_restores_and_cleanup(make_k8s) -> None:
    platform = make_k8s()
    platform.up()
    ops = platform.fault_ops()
    before = set(platform.replica_names())
    record = ops.restart_with_env({"HARNESS_MODEL_LOAD_DELAY_S": "1", "EXTRA": "x"}, "20261128T071000Z-slow")
    json.dumps(record)
    # The API server drops an empty value (omitempty); the fake API server used to keep it.
    assert record["previous_env"] == [{"name": "HARNESS_MODEL_LOAD_DELAY_S"}]
    platform.wait_rolled_out(180)
    after = platform.replica_names()
    assert not before & set(after), "every pod was replaced by the rolling restart"
    pod = _get(platform, "Pod", after[0])
    assert pod is not None and _env(pod) == {"HARNESS_MODEL_LOAD_DELAY_S": "1", "EXTRA": "x"}
    assert ops.exec_in_replica(after[0], ["sh", "-c", "echo $EXTRA"]) == "x\n"
    with pytest.raises(FaultError, match="already carries an env patch"):
        ops.restart_with_env({"X": "1"}, "another-run")
    ops.restore_env(record)
    platform.wait_rolled_out(180)
    dep = _get(platform, "Deployment", "triton")
    assert dep is not None and ENV_PATCH not in (dep["metadata"].get("annotations") or {})

    # cleanup: faults of a crashed run go, those of a live run stay until it finishes.
    a, b = platform.replica_names()
    live_run = "20261128T072000Z-live"
    run_dir = Path(os.environ["HARNESS_REPORTS_DIR"]) / live_run
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"schema": 1, "run_id": live_run, "status": "running"}))
    live = ops.block_network([a], live_run)
    crashed = ops.block_network([b], "20261128T071500Z-crashed")
    expired = ops.block_network([b], "20261128T071600Z-expired", 0.001)
    assert f"networkpolicy {expired['policy']}" in platform.sweep_faults(only_orphaned=True)
    text = platform.cleanup().describe()
    assert f"networkpolicy {crashed['policy']}" in text
    assert [p["metadata"]["name"] for p in _list(platform, "NetworkPolicy")] == [live["policy"]]
    assert _get(platform, "Service", "triton") is not None, "the service of the current up is live"
    (run_dir / "run.json").write_text(json.dumps({"schema": 1, "run_id": live_run, "status": "completed"}))
    platform.cleanup()
    assert not _list(platform, "NetworkPolicy")
    assert not [p for p in _list(platform, "Pod") if BLOCKED_BY in p["metadata"]["labels"]]


def test_refuses_objects_it_did_not_create(make_k8s) -> None:
    platform = make_k8s()
    api = platform.api
    api.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": platform.namespace}})
    try:
        api.request("POST", _KIND["Service"].collection(platform.namespace), body={
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "triton", "labels": {"team": "search"}},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}]},
        })
        with pytest.raises(PlatformError, match="did not create: Service triton"):
            platform.up()
        svc = _get(platform, "Service", "triton")
        assert svc is not None and svc["metadata"]["labels"] == {"team": "search"}
        assert _get(platform, "Deployment", "triton") is None
        platform.cleanup()
        assert _get(platform, "Service", "triton") is not None, "cleanup never touches it either"
    finally:
        api.delete(f"/api/v1/namespaces/{platform.namespace}")


def test_production_context_and_namespace_allow_list(make_k8s, sandbox: SandboxStatus, tmp_path: Path) -> None:
    """A refused context receives no request: its server is a listening socket that must see no connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    config = json.loads(Path(sandbox.kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{listener.getsockname()[1]}"
    config["contexts"][0]["name"] = config["current-context"] = "gke_acme_prod-eu"
    prod = tmp_path / "prod"
    prod.write_text(json.dumps(config))
    platform = make_k8s(kubeconfig=str(prod))
    with pytest.raises(ConfigError, match="production pattern"):
        platform.status()
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    with pytest.raises(ConfigError, match="not on the allow-list"):
        make_k8s(namespace="staging", namespace_confirmed=False, allowed_namespaces=("triton-chaos",))
    make_k8s(namespace="triton-chaos", namespace_confirmed=False, allowed_namespaces=("triton-chaos",))


def test_dry_run_cli_and_chaosk8s(make_k8s, sandbox: SandboxStatus, tmp_path: Path) -> None:
    """Dry run makes no change; the CLI's up/status/down; chaosk8s acts on the same cluster."""
    env = {**os.environ, "HARNESS_K8S_STATE_DIR": str(tmp_path / "state"), "HARNESS_REPORTS_DIR": str(tmp_path),
           "KUBECONFIG": sandbox.kubeconfig}
    base = [sys.executable, "-m", "harness.cli"]
    probe = make_k8s()
    ns = probe.namespace
    args = ["--platform", "kubernetes", "--namespace", ns, "--kubeconfig", sandbox.kubeconfig]
    dry = subprocess.run([*base, "up", *args, "--dry-run", "--gpus-per-replica", "0"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert f"PATCH /apis/apps/v1/namespaces/{ns}/deployments/triton?fieldManager=" in dry.stdout
    assert probe.api.get(f"/api/v1/namespaces/{ns}") is None, "dry-run created nothing"

    image = ["--image", sandbox.triton_image, "--gpus-per-replica", "0", "--manifest", str(probe.settings.manifest)]
    up = subprocess.run([*base, "up", *args, *image, "--replicas", "1", "--json"],
                        capture_output=True, text=True, env=env, timeout=300)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["ready_replicas"] == 1
    status = subprocess.run([*base, "status", *args], capture_output=True, text=True, env=env, timeout=60)
    assert status.returncode == 0 and "1/1 replicas ready" in status.stdout, status.stderr
    victim = json.loads(up.stdout)["replicas"][0]["name"]
    script = f"""
from chaosk8s.pod.actions import terminate_pods
print(terminate_pods(label_selector="app.kubernetes.io/name=triton", name_pattern="^{victim}$", all=True,
                     grace_period=0, ns="{ns}"))
"""
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert killed.returncode == 0 and victim in killed.stdout, killed.stderr
    down = subprocess.run([*base, "down", *args], capture_output=True, text=True, env=env, timeout=180)
    assert down.returncode == 0 and "deployment triton" in down.stdout, down.stderr
    assert probe.api.get(f"/api/v1/namespaces/{ns}") is None or not probe.api.list(_KIND["Pod"], ns)


def test_every_command_accepts_the_kubernetes_arguments() -> None:
    """The platform arguments are shared by every command: they must not clash with a command's own."""
    from harness.cli import build_parser

    parser = build_parser()
    for command in ("up", "status", "down", "cleanup", "run"):
        extra = ["experiments/pod-kill.yaml"] if command == "run" else []
        args = parser.parse_args([command, *extra, "--platform", "kubernetes", "--namespace", "ns", "--context",
                                  "kind-x", "--kubeconfig", "k", "--gpus-per-replica", "0"])
        assert (args.platform, args.namespace, args.context, args.gpus_per_replica) == ("kubernetes", "ns", "kind-x", 0)


