"""Fixtures for the Kubernetes platform tests: one fake API server per module, one namespace per test.

The fake is a real HTTP server (harness.testing.k8s_fake); the platform reaches it through a kubeconfig
file, exactly as it reaches a cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.kubernetes.settings import KubernetesSettings
from harness.testing.k8s_fake import FakeCluster


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeCluster]:
    with FakeCluster(tmp_path_factory.mktemp("fake"), ready_delay_s=0.3) as cluster:
        yield cluster


@pytest.fixture
def kubeconfig(fake: FakeCluster, tmp_path: Path) -> Path:
    return fake.write_kubeconfig(tmp_path / "kubeconfig", context="kind-staging")


@pytest.fixture
def make_k8s(
    fake: FakeCluster, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., KubernetesPlatform]]:
    """Platforms in fresh namespaces of the fake; each is taken down after the test."""
    made: list[KubernetesPlatform] = []
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path / "reports"))

    def factory(**overrides: Any) -> KubernetesPlatform:
        values: dict[str, Any] = {
            "namespace": f"chaos-{uuid.uuid4().hex[:8]}",
            "namespace_confirmed": True,
            "kubeconfig": str(kubeconfig),
            "state_dir": tmp_path / "state",
            "ready_timeout_s": 30.0,
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
                platform._stop_watcher()
