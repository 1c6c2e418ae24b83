"""Memory pressure end to end on the sandbox, under in-cluster load: the shipped experiment as a user runs it.

Without a GPU the pressure is held in the target pod's memory cgroup by a privileged agent on its node, and
Triton's container (not the pod) is killed under it, so the kubelet restarts it inside the held cgroup: the
restart must meet the pressure (OOMKilled / CrashLoopBackOff), the pressure must hold until the release, and
afterwards no agent pod, no child cgroup and no undo record may be left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.platforms.kubernetes.api import KIND_BY_NAME
from harness.platforms.kubernetes.netagent import COMPONENT
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.sandbox import SandboxStatus
from tests.k8s.k8s_helpers import module_platform, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def pressured(sandbox: SandboxStatus, small_manifest: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubernetesPlatform]:
    with module_platform(sandbox, small_manifest, tmp_path_factory.mktemp("k8smemory")) as platform:
        yield platform


def _harness(platform: KubernetesPlatform, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    common = ["--platform", "kubernetes", "--namespace", platform.namespace, "--kubeconfig",
              platform.settings.kubeconfig, "--k8s-state-dir", str(platform.settings.state_dir),
              "--reports-dir", str(tmp_path / "reports")]
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv, *common], capture_output=True, text=True,
                          cwd=ROOT, timeout=500, env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "reports")})


def _agent_pods(platform: KubernetesPlatform) -> list[str]:
    pods = platform.api.list(KIND_BY_NAME["Pod"], platform.namespace)
    return [p["metadata"]["name"] for p in pods
            if (p["metadata"].get("labels") or {}).get(COMPONENT) in ("memagent", "containerkill")]


def _hog_cgroups(uids: list[str]) -> list[Path]:
    """The agent's child cgroups left under these pods' memory cgroups on this machine (the sandbox's node)."""
    found: list[Path] = []
    for root in (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")):
        for uid in uids:
            for pod_dir in [*root.rglob(f"*pod{uid}"), *root.rglob(f"*pod{uid.replace('-', '_')}.slice")]:
                found += list(pod_dir.glob("harness-hog-*"))
    return found


def test_pressure_holds_across_the_container_restart_and_leaves_nothing(pressured: KubernetesPlatform,
                                                                        agent_image: str, tmp_path: Path) -> None:
    uids = [p["metadata"]["uid"] for p in pressured.api.list(KIND_BY_NAME["Pod"], pressured.namespace,
                                                              pressured.selector)]
    run = _harness(pressured, tmp_path, "run", str(ROOT / "experiments" / "gpu-memory-pressure.yaml"),
                   "--allow-privileged-agent", "--agent-image", agent_image, "--warmup", "3", "--observation", "20",
                   "--var", "pressure_s=8", "--var", "recovery_wait_s=25")
    out = run.stdout + run.stderr
    assert run.returncode in (0, 1), out  # 1 only when the hypothesis or a tier says no: never void, never bad input
    rep = next((tmp_path / "reports").glob("*/experiments/gpu-memory-pressure/1"))
    info: dict[str, Any] = json.loads((rep / "experiment.json").read_text())
    assert not info.get("void"), info.get("void")
    assert (rep / "cluster-load.json").exists(), "the load did not run in the cluster"
    landings = [json.loads(line) for line in (rep / "landings.jsonl").read_text().splitlines() if line.strip()]
    assert [x["landed"] for x in landings] == [True, True, True], landings
    held_at_start, killed, held = landings
    hog = next(iter(held_at_start["measured"]["hogs"].values()))
    assert hog["target"] == "pod" and hog["free_mb"] <= 12, hog  # the pod's free memory at leave_free_mb (8) + 4
    assert "container stopped" in killed["detail"] or "restarted" in killed["detail"], killed
    assert all(s["state"] == "holding" for s in held["measured"]["hogs"].values()), held
    under = next(iter(held["measured"]["replicas_under_pressure"].values()))
    # the restarted container met the pressure: it crashed again (restarts, OOMKilled) or could not get ready
    assert under["restarts"] >= 1 or not under["ready"], under
    assert "pod-memory analogue" in info["analogue"], info
    results = json.loads(next((tmp_path / "reports").glob("*/results.json")).read_text())
    print("memory pressure on Kubernetes:", json.dumps({"under_pressure": under, "exit": run.returncode,
                                                        "experiments": results.get("experiments")})[:2000])
    # nothing left: agents, the child cgroup in the pod's memory cgroup, undo records
    wait_for(lambda: not _agent_pods(pressured), 60, "the agent pods to be gone")
    assert _hog_cgroups(uids) == []
    wait_for(lambda: pressured.fault_store().records() == [], 30, "the undo records gone")


def test_without_the_agent_it_is_refused_before_anything_runs(pressured: KubernetesPlatform, tmp_path: Path) -> None:
    run = _harness(pressured, tmp_path, "run", str(ROOT / "experiments" / "gpu-memory-pressure.yaml"))
    assert run.returncode == 2, run.stdout + run.stderr
    assert "--allow-privileged-agent" in run.stderr and "nothing was injected" in run.stderr, run.stderr
    assert not _agent_pods(pressured) and not list((tmp_path / "reports").glob("*/run.json"))
