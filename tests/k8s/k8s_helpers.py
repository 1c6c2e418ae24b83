"""Helpers shared by the Kubernetes platform tests (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from harness.events import Event, read_events
from harness.platforms.kubernetes.platform import KubernetesPlatform


def wait_for(predicate: Callable[[], Any], timeout_s: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def events_of(platform: KubernetesPlatform) -> list[Event]:
    return list(read_events(platform.events_path()))
