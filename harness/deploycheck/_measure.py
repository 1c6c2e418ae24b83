"""Measure what the checks compare against: the model's load time and its load-time memory peak.

One replica of the manifest is started on the local platform (its own loopback subnet and free ports, a
throwaway state directory), timed from start to ready, and its processes' memory high-water marks
(``VmHWM``: the server and its python-backend stub) are summed. Everything is taken down afterwards.
The manifest's startup probe is replaced by a patient one for the measurement (period 1 s, 600 failures),
so a budget too short for the load is measured and judged, instead of crash-looping the measurement.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.deployment import load_manifest_documents
from harness.platforms.local.procs import group_members

__all__ = ["Measured", "measure_load", "model_config_facts"]

BASELINE_MB = 200.0  # tritonserver + python stub without the model's arena (about 80 MB + stub, measured)


@dataclass(frozen=True)
class Measured:
    load_time_s: float
    peak_mb: float


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _hwm_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
        if match:
            return int(match.group(1)) / 1024
    return 0.0


def _patient(manifest: Path, target: Path) -> Path:
    docs = load_manifest_documents(manifest)
    for doc in docs:
        if doc.get("kind") == "Deployment":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            container["startupProbe"] = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 1,
                                         "failureThreshold": 600}
            break
    target.write_text(yaml.safe_dump_all(docs))
    return target


def measure_load(manifest: Path) -> Measured:
    """Start one replica of ``manifest`` locally; time start to ready and sum the memory high-water marks."""
    from harness.platforms.local.platform import LocalPlatform
    from harness.platforms.local.settings import LocalSettings

    subnet = f"127.{random.randint(20, 250)}.{random.randint(1, 250)}"
    front = f"{subnet}.1"
    with tempfile.TemporaryDirectory(prefix="harness-measure-") as tmp:
        patient = _patient(manifest, Path(tmp) / "manifest.yaml")
        settings = LocalSettings(state_dir=Path(tmp) / "state", manifest=patient, replicas=1,
                                 replica_address_base=f"{subnet}.2", front_address=front,
                                 http_port=_free_port(front), grpc_port=_free_port(front),
                                 stats_port=_free_port(front), prometheus=False)
        platform = LocalPlatform(settings)
        started = time.monotonic()
        try:
            status = platform.up()
            load_time = time.monotonic() - started
            pid = status.replicas[0].pid
            peak = sum(_hwm_mb(p) for p in group_members(pid)) if pid else 0.0
        finally:
            platform.down()
    return Measured(round(load_time, 2), round(peak, 1))


def model_config_facts(text: str) -> tuple[bool, float]:
    """(dynamic batching configured, arena_mb) from a Triton config.pbtxt."""
    batching = re.search(r"^\s*dynamic_batching\s*\{", text, re.MULTILINE) is not None
    match = re.search(r'key:\s*"arena_mb"\s*value:\s*\{\s*string_value:\s*"([0-9.]+)"', text)
    return batching, float(match.group(1)) if match else 0.0
