"""Fixtures for the Kubernetes platform tests: one real cluster per session (``harness sandbox``), one
namespace per test.

The cluster is Kubernetes 1.20 built from Debian's source, running in its own network namespace (see
harness/sandbox/cluster.py). It needs root; without root these tests are skipped with the reason. The
first session on a fresh machine builds the binaries (about 11 minutes on two cores). Teardown checks
that ``down`` left the root namespace's firewall, kernel settings and routes exactly as they were.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.kubernetes.settings import KubernetesSettings
from harness.platforms.kubernetes.watcher import stop_watcher
from harness.sandbox import Sandbox, SandboxStatus
from harness.sandbox import host as sandbox_host
from harness.sandbox.manifest import write_small_manifest


def sandbox_leftovers(sandbox: Sandbox, pids: dict[str, int | None]) -> list[str]:
    """Anything of the sandbox still on the machine after ``down``."""
    from harness.sandbox.cluster import CGROUP, NETNS

    left = [f"{name} pid {pid}" for name, pid in pids.items() if pid and Path(f"/proc/{pid}").exists()]
    left += [f"container pid {pid}" for pid in sandbox_host.pids_in_cgroup(CGROUP)]
    left += [f"mount {m}" for m in sandbox_host.mounts_under([sandbox.dir, sandbox.containerd_root])]
    if Path(f"/run/netns/{NETNS}").exists():
        left.append(f"netns {NETNS}")
    left += [f"cgroup {h / CGROUP}" for h in sandbox_host.cgroup_hierarchies() if (h / CGROUP).exists()]
    if sandbox.dir.exists():
        left.append(f"directory {sandbox.dir}")
    return left


@pytest.fixture(scope="session")
def root_before() -> dict[str, object]:
    """The root namespace (firewall, kernel settings, links, routes) before the sandbox started. A sandbox a
    killed run left half up is taken down first: its kubelet's kernel settings are still in force until then,
    and the snapshot must be of the machine as it was."""
    if os.geteuid() != 0:
        pytest.skip("the real-cluster tests need root (network namespace, cgroups, mounts): run make test as root")
    Sandbox(progress=lambda line: print(f"[sandbox] {line}", flush=True)).clear_half_up()
    return sandbox_host.root_snapshot()


@pytest.fixture(scope="session")
def sandbox(root_before: dict[str, object]) -> Iterator[SandboxStatus]:
    cluster = Sandbox(progress=lambda line: print(f"[sandbox] {line}", flush=True))
    already = cluster.status().up
    before = root_before
    try:
        status = cluster.up()
    except BaseException:
        if not already:
            cluster.down()
        raise
    yield status
    if already:
        return  # someone's own sandbox: leave it running
    pids = dict(status.processes)
    cluster.down()
    after = sandbox_host.root_snapshot()
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    assert not changed, f"the sandbox changed the root namespace: {changed}"
    leftovers = sandbox_leftovers(cluster, pids)
    assert not leftovers, f"sandbox down left behind: {leftovers}"


@pytest.fixture(scope="session")
def agent_image(sandbox: SandboxStatus) -> str:
    """The privileged agents' image (network block, memory pressure, container kill), built once per session."""
    return Sandbox().agent_image()


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference manifest with requests a 2-core node can roll (a surge pod must fit too)."""
    return write_small_manifest(tmp_path_factory.mktemp("manifest") / "triton.yaml", grace_s=5)


@pytest.fixture
def make_k8s(
    sandbox: SandboxStatus, small_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., KubernetesPlatform]]:
    """Platforms in fresh namespaces of the sandbox, running the local Triton image; taken down after."""
    made: list[KubernetesPlatform] = []
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path / "reports"))

    def factory(**overrides: Any) -> KubernetesPlatform:
        values: dict[str, Any] = {
            "namespace": f"chaos-{uuid.uuid4().hex[:8]}",
            "namespace_confirmed": True,
            "kubeconfig": sandbox.kubeconfig,
            "state_dir": tmp_path / "state",
            "manifest": small_manifest,
            "image": sandbox.triton_image,
            "gpus_per_replica": 0,
            "ready_timeout_s": 240.0,
        }
        values.update(overrides)
        platform = KubernetesPlatform(KubernetesSettings(**values))
        made.append(platform)
        return platform

    yield factory
    for platform in made:
        if not platform.settings.dry_run:
            try:
                platform.down()
            except Exception:  # noqa: BLE001 - teardown must try every platform
                stop_watcher(platform.state)
