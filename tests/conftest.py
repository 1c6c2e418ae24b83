"""Shared fixtures: every test that starts real processes gets its own loopback subnet and ports.

Tests run as root on CI and may run beside other harness instances, so nothing uses fixed addresses:
each platform gets a random 127.X.Y.0/24 for its replicas, a random front address and free ports.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.platforms.local.platform import LocalPlatform
from harness.platforms.local.settings import LocalSettings


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def random_subnet() -> str:
    """A random 127.X.Y prefix unlikely to collide with another test or a user's instance."""
    return f"127.{random.randint(20, 250)}.{random.randint(1, 250)}"


def local_settings(tmp_path: Path, **overrides: object) -> LocalSettings:
    subnet = random_subnet()
    front = f"{subnet}.1"
    values: dict[str, object] = {
        "state_dir": tmp_path / "state",
        "replica_address_base": f"{subnet}.2",
        "front_address": front,
        "http_port": free_port(front),
        "grpc_port": free_port(front),
        "prometheus_port": free_port(front),
        "stats_port": free_port(front),
        "time_scale": 0.2,
        "queue_delay_ms": 1.0,
        "ready_timeout_s": 120.0,
    }
    values.update(overrides)
    return LocalSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def make_platform(tmp_path: Path) -> Iterator[object]:
    """Factory for local platforms; every platform it made is taken down after the test."""
    made: list[LocalPlatform] = []

    def factory(**overrides: object) -> LocalPlatform:
        platform = LocalPlatform(local_settings(tmp_path / f"p{len(made)}", **overrides))
        made.append(platform)
        return platform

    yield factory
    for platform in made:
        try:
            platform.down()
        except Exception:  # noqa: BLE001 - teardown must try every platform
            platform.cleanup()
