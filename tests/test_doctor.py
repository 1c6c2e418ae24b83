"""``harness doctor`` against this machine's real capabilities (as root, and as an unprivileged user when
tests run as root), and its fault decisions against prepared v1 and v2 hosts. ``harness run`` refuses
with doctor's own reason, before anything starts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from harness.doctor import experiment_faults, fault_support, refusal
from harness.faults.cgroups import MemoryController, find_memory_controller
from tests.cgroup_trees import USER, host, v1_host, v2_host

REPO = Path(__file__).resolve().parents[1]
HARNESS = [sys.executable, "-m", "harness.cli"]


def _doctor(command: list[str], tmp_path: Path) -> dict[str, object]:
    proc = subprocess.run([*command, "doctor", "--json", "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


def _row(data: dict[str, object], fault: str, platform: str = "local") -> dict[str, str]:
    rows = data["faults"]
    assert isinstance(rows, list)
    return next(r for r in rows if r["fault"] == fault and r["platform"] == platform)


def test_doctor_tells_what_this_machine_can_run(tmp_path: Path) -> None:
    data = _doctor(HARNESS, tmp_path)
    assert {(r["fault"], r["platform"]) for r in data["faults"]} == {  # type: ignore[union-attr]
        (f, p) for f in ("pod-kill", "network-policy-block", "slow-model-load", "gpu-memory-pressure",
                         "rolling-update", "probe-kills-slow-load", "corrupt-weights-rollout", "oom-at-load",
                         "model-unload", "bad-version-rollout", "queue-overflow")
        for p in ("local", "kubernetes")}
    assert _row(data, "pod-kill")["ok"]
    assert _row(data, "rolling-update")["ok"]
    for fault in ("model-unload", "bad-version-rollout", "queue-overflow"):  # the model-control API: no privilege
        assert _row(data, fault)["ok"] and _row(data, fault, "kubernetes")["ok"]
    for fault in ("rolling-update", "probe-kills-slow-load", "corrupt-weights-rollout", "oom-at-load"):
        k8s = _row(data, fault, "kubernetes")  # a template patch the real Deployment controller rolls out
        assert k8s["ok"] and k8s["how"], k8s
    nft = shutil.which("nft")
    can_block = os.geteuid() == 0 and nft is not None and subprocess.run(
        [nft, "list", "tables"], capture_output=True).returncode == 0
    assert _row(data, "network-policy-block")["ok"] == can_block
    pressure = _row(data, "gpu-memory-pressure")
    controller = find_memory_controller()
    if isinstance(controller, MemoryController) and not Path("/dev/nvidia0").exists():
        assert pressure["ok"] and str(controller.base) in pressure["how"]
    checks = {c["name"]: c for c in data["checks"]}  # type: ignore[union-attr]
    assert set(checks) == {"gpu", "nftables", "cgroup"}
    for check in data["checks"]:  # type: ignore[union-attr]
        assert check["ok"] or check["fix"], f"a no without a fix: {check}"


def _unprivileged() -> list[str]:
    """This harness, run as 'nobody' by the system's Python of the same version (the venv's may live under
    /root, which nobody may not enter)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to drop to 'nobody') and setpriv")
    python = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin:/usr/local/bin")
    if python is None:
        pytest.skip(f"no system python{sys.version_info.major}.{sys.version_info.minor} to run as 'nobody'")
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "HOME=/tmp",
            f"PATH={os.environ['PATH']}", f"PYTHONPATH={site}:{REPO}", python, "-m", "harness.cli"]


def test_run_refuses_as_an_unprivileged_user_with_doctors_reason() -> None:
    nobody = _unprivileged()
    with tempfile.TemporaryDirectory(prefix="harness-doctor-") as tmp:  # pytest's tmp_path is closed to others
        tmp_path = Path(tmp)
        tmp_path.chmod(0o777)
        doctor = _doctor(nobody, tmp_path)
        block = _row(doctor, "network-policy-block")
        assert not block["ok"] and "uid 65534" in block["reason"] and "root" in block["fix"]
        if "unprivileged user+network namespaces work here" in block["reason"]:
            assert "harness rootless demo" in block["fix"]
        proc = subprocess.run([*nobody, "run", "experiments/network-policy-block.yaml", "--state-dir",
                               str(tmp_path / "state")], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert block["reason"] in proc.stderr and block["fix"] in proc.stderr
        assert not (tmp_path / "state").exists()  # nothing started


def test_memory_pressure_decisions_on_prepared_hosts(tmp_path: Path) -> None:
    delegated = v2_host(tmp_path / "v2", own="/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope")
    ok = fault_support("gpu-memory-pressure", "local", host(delegated, USER))
    assert ok.ok and "cgroup v2" in ok.how and "user@1000.service" in ok.how
    no = fault_support("gpu-memory-pressure", "local", host(v1_host(tmp_path / "v1"), USER))
    assert not no.ok and "no usable GPU" in no.reason and "cgroup v1 delegates nothing" in no.reason
    assert "sudo" in no.fix
    assert "Fix: " in no.message() and no.fix in no.message()
    # on Kubernetes the hog runs in the pod: nothing of this machine's is needed
    assert fault_support("gpu-memory-pressure", "kubernetes", host(v1_host(tmp_path / "k"), USER)).ok


def test_faults_of_the_shipped_experiments() -> None:
    found = {p.stem: experiment_faults(yaml.safe_load(p.read_text())) for p in (REPO / "experiments").glob("*.yaml")}
    assert found == {"pod-kill": ["pod-kill"], "network-policy-block": ["network-policy-block"],
                     "slow-model-load": ["slow-model-load"],
                     "gpu-memory-pressure": ["gpu-memory-pressure", "pod-kill"],
                     "compound-pressure-during-restart": ["gpu-memory-pressure", "pod-kill"],
                     **{name: [name] for name in ("rolling-update", "probe-kills-slow-load", "corrupt-weights-rollout",
                                                  "oom-at-load", "model-unload", "bad-version-rollout",
                                                  "queue-overflow")}}


def test_refusal_knows_only_known_faults_and_platforms() -> None:
    assert refusal("pod-kill", "local") is None
    assert refusal("something-new", "local") is None
    assert refusal("network-policy-block", "nomad") is None


def test_kubernetes_network_block_row_follows_the_probe_never_a_constant() -> None:
    """Without a probe the row says enforcement was not probed; with one, what the probe found decides it."""
    unprobed = fault_support("network-policy-block", "kubernetes")
    assert "not probed" in unprobed.how and "harness doctor --platform kubernetes" in unprobed.how
    enforced = fault_support("network-policy-block", "kubernetes", k8s_probe={
        "enforced": True, "detail": "enforced: under a deny-all-ingress NetworkPolicy the connection timed out"})
    assert enforced.ok and "timed out" in enforced.how
    ignored = {"enforced": False, "detail": "not enforced: a pod still connected"}
    refused = fault_support("network-policy-block", "kubernetes",
                            k8s_probe={**ignored, "agent_refusal": "pass --allow-privileged-agent"})
    assert not refused.ok and "not enforced" in refused.reason and "--allow-privileged-agent" in refused.fix
    agent = fault_support("network-policy-block", "kubernetes", k8s_probe={**ignored, "agent_refusal": ""})
    assert agent.ok and "privileged agent" in agent.how
    unknown = fault_support("network-policy-block", "kubernetes",
                            k8s_probe={"enforced": None, "detail": "could not tell: no image"})
    assert not unknown.ok and "could not tell" in unknown.reason
