"""Shipped experiments run unchanged with ``--platform kubernetes`` against a real cluster.

The pod is deleted through the API, the Deployment replaces it, the kubelet's probes decide readiness,
and the load runs where clients are: Locust master and worker pods in the cluster (the default,
``--load-from cluster``, with the sandbox's harness image), calling the Service by its cluster DNS name, so
kube-proxy spreads requests over the pods as it does for users of a plain Service. (The network-policy block's
"not enforced" void on the sandbox's bridge plugin, and its agent route, are in test_k8s_netblock.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from harness.events import EventKind, read_events
from harness.platforms.kubernetes.api import KIND_BY_NAME
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.kubernetes.settings import KubernetesSettings
from harness.sandbox import SandboxStatus
from harness.timeline import read_timeline
from tests.k8s.k8s_helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


def test_pod_kill_experiment_unchanged_on_kubernetes(sandbox: SandboxStatus, small_manifest: Path,
                                                     tmp_path: Path) -> None:
    namespace = f"chaos-{uuid.uuid4().hex[:8]}"
    common = ["--platform", "kubernetes", "--namespace", namespace, "--kubeconfig", sandbox.kubeconfig,
              "--k8s-state-dir", str(tmp_path / "k8s")]

    def harness(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True,
                              cwd=ROOT, timeout=400,
                              env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "reports")})

    up = harness("up", *common, "--image", sandbox.triton_image, "--gpus-per-replica", "0",
                 "--manifest", str(small_manifest))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        # Not the sandbox (same cluster, another kubeconfig path) and no image: refused before anything runs.
        elsewhere = tmp_path / "kubeconfig"
        elsewhere.write_text(Path(sandbox.kubeconfig).read_text())
        refused = harness("run", str(ROOT / "experiments" / "pod-kill.yaml"), *common, "--kubeconfig", str(elsewhere),
                          "--reports-dir", str(tmp_path / "refused"))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "--load-image" in refused.stderr and "Nothing was injected" in refused.stderr
        assert not list((tmp_path / "refused").glob("*/experiments")), "no repetition started"

        # Ctrl-C while the load's pods are being scheduled: recorded as an interrupted repetition with its
        # fields (the report refused the run before: "name must be a non-empty string", exit 2), nothing left.
        stopped = tmp_path / "stopped"

        def starting() -> bool:
            records = stopped.glob("*/experiments/pod-kill/1/cluster-load.json")
            return any('"starting"' in p.read_text() for p in records)

        argv = ["run", str(ROOT / "experiments" / "pod-kill.yaml"), *common, "--reports-dir", str(stopped)]
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                env={**os.environ, "HARNESS_REPORTS_DIR": str(stopped)})
        wait_for(starting, 240, "the in-cluster load to start")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, out
        info = json.loads(next(stopped.glob("*/experiments/pod-kill/1/experiment.json")).read_text())
        assert info["status"] == "interrupted" and info["name"] == "pod-kill" and not info.get("injected"), info
        assert "report:" in out, out
        api = KubernetesPlatform(KubernetesSettings(namespace=namespace, namespace_confirmed=True,
                                                    kubeconfig=sandbox.kubeconfig, state_dir=tmp_path / "k8s")).api
        assert not [o["metadata"]["name"] for kind in ("Pod", "Service", "ConfigMap")
                    for o in api.list(KIND_BY_NAME[kind], namespace)
                    if o["metadata"]["name"].startswith("harness-load-")]

        run = harness("run", str(ROOT / "experiments" / "pod-kill.yaml"), *common, "--warmup", "3", "--rate", "50",
                      "--observation", "40", "--var", "recovery_wait_s=3", "--reports-dir", str(tmp_path / "reports"))
        assert run.returncode in (0, 1), run.stdout + run.stderr  # 1: a tier missed, which is a finding
        rep = next((tmp_path / "reports").glob("*/experiments/pod-kill/1"))
        info = json.loads((rep / "experiment.json").read_text())
        killed = info["injected"][0]["targets"]
        assert len(killed) == 1 and killed[0] in info["replicas"]
        events = [e for e in read_events(rep / "events.jsonl") if e.ts_ns >= info["fault_start_ns"]]
        assert any(e.replica == killed[0] and e.kind in (EventKind.KILLED, EventKind.STOPPED) for e in events)
        replacement = [e for e in events if e.kind == EventKind.READY and e.replica not in info["replicas"]]
        assert replacement, "the replacement pod never became ready"
        results = json.loads((rep.parents[2] / "results.json").read_text())
        figures = results["experiments"][0]["runs"][0]
        assert figures["capacity_recovery_s"] is not None and figures["capacity_recovery_s"] > 0
        assert figures.get("requests", 1) != 0
        # Through a plain Service no response says which pod answered: the ready-to-serving gap is reported
        # as unknown, never guessed, and the replacement's ready signal (with its probe period) is listed.
        readiness = figures["readiness"]
        assert readiness["replica_known"] is False and "per replica" in readiness["why_unknown"]
        assert replacement[0].replica in [r["replica"] for r in readiness["ready_after_fault"]]
        assert replacement[0].details.get("readiness_period_s") is not None
        assert "replica that answered UNKNOWN" in run.stdout
        (landing,) = info["landings"]
        assert landing["landed"] and "replaced by" in landing["detail"] and info["void"] is None
        # the load ran in the cluster, and its whole timeline came back into the repetition's directory
        load = info["load"]
        assert load["from"] == "cluster" and load["target"] == f"http://triton.{namespace}.svc.cluster.local:8000"
        frame = read_timeline(rep / "timeline")
        assert set(frame["worker"]) == {"w0"}, "the timeline is the worker pod's"
        assert frame["start_ns"].min() < info["fault_start_ns"] < frame["start_ns"].max()
        assert frame["start_ns"].max() > info["observation_end_ns"] - 3e9, "the load ran through the observation"
        # measured from the client view: a recovery time, or on a starved shared node a censored "> x s" with
        # its bound; never inconclusive
        assert figures["ttr_state"] in ("recovered", "no-impact", "censored"), figures
        assert (figures["time_to_recover_s"] if figures["ttr_state"] != "censored"
                else figures["time_to_recover_lower_bound_s"]) is not None, figures
        left = [o["metadata"]["name"] for kind in ("Pod", "Service", "ConfigMap")
                for o in api.list(KIND_BY_NAME[kind], namespace) if o["metadata"]["name"].startswith("harness-load-")]
        assert not left, f"load objects left behind: {left}"
        assert not (rep / "timeline-live").exists()
    finally:
        down = harness("down", *common)
        assert down.returncode == 0, down.stdout + down.stderr


def test_gameday_live_view_shows_the_in_cluster_loads_figures(sandbox: SandboxStatus, small_manifest: Path,
                                                                tmp_path: Path) -> None:
    """A ``--yes`` game day on the cluster: its live lines carry the per-second figures of the load's pods (a
    few seconds behind, and saying so), and the view's copies of their chunks are not left behind."""
    namespace = f"chaos-{uuid.uuid4().hex[:8]}"
    common = ["--platform", "kubernetes", "--namespace", namespace, "--kubeconfig", sandbox.kubeconfig,
              "--k8s-state-dir", str(tmp_path / "k8s")]
    reports = tmp_path / "reports"

    def harness(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True,
                              cwd=ROOT, timeout=400, env={**os.environ, "HARNESS_REPORTS_DIR": str(reports)})

    up = harness("up", *common, "--image", sandbox.triton_image, "--gpus-per-replica", "0",
                 "--manifest", str(small_manifest))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        runbook = tmp_path / "runbook.yaml"
        runbook.write_text(yaml.safe_dump({
            "title": "cluster game day",
            "load": {"harness_profile": str(ROOT / "loadprofiles" / "steady.py"), "harness_users": 4,
                     "harness_rate": 40, "harness_warmup_s": 4, "harness_observation_s": 8,
                     "analysis": {"stability_period_s": 4}},
            "steps": [{"name": "kill", "experiment": str(ROOT / "experiments" / "pod-kill.yaml"),
                       "vars": {"recovery_wait_s": 3}}]}))
        day = harness("gameday", str(runbook), "--yes", *common, "--reports-dir", str(reports))
        assert day.returncode in (0, 1), day.stdout + day.stderr
        figures = [line for line in day.stdout.splitlines() if "(in the cluster, the second" in line]
        assert len(figures) >= 3, day.stdout
        rates = [float(line.split("requests/s", 1)[1].split()[0]) for line in figures]
        assert max(rates) >= 20, figures  # 40 req/s asked, open loop; a busy node may lose some
        print("game day live lines with the load in the cluster:", *figures[:3], sep="\n  ")
        rep = next(reports.glob("*gameday*/experiments/kill/1"))  # a step is named by the runbook
        assert (rep / "cluster-load.json").exists() and not (rep / "timeline-view").exists()
    finally:
        down = harness("down", *common)
        assert down.returncode == 0, down.stdout + down.stderr
