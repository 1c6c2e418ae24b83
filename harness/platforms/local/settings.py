"""Settings of the local platform, parsed once at the edge and saved beside its state.

The supervisor reads the saved copy, so what ``up`` was asked for is exactly what runs, and reports can
say which time scale and retry setting produced their numbers.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.deployment import DEFAULT_MANIFEST
from harness.errors import ConfigError
from harness.jsonfile import write_json_atomic

__all__ = ["LocalSettings", "default_state_dir"]


def default_state_dir() -> Path:
    """``$HARNESS_STATE_DIR``, else ``.harness/local`` in the working directory."""
    return Path(os.environ.get("HARNESS_STATE_DIR") or Path.cwd() / ".harness" / "local").absolute()


@dataclass(frozen=True)
class LocalSettings:
    state_dir: Path = field(default_factory=default_state_dir)
    manifest: Path = DEFAULT_MANIFEST
    replicas: int | None = None  # None: the Deployment's spec.replicas
    replica_address_base: str = "127.0.0.2"  # replica i binds base + i
    front_address: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    prometheus_port: int = 9090
    stats_port: int = 8404
    prometheus: bool = True
    scrape_interval_s: float = 1.0
    # Multiplies probe periods, back-off and its reset window; < 1 only to make tests fast.
    time_scale: float = 1.0
    # A plain Kubernetes Service does not retry; a mesh does. Off by default, always visible.
    retries: bool = False
    queue_delay_ms: float = 50.0
    model_instances: int = 1
    # GPUs pinned to each replica (CUDA_VISIBLE_DEVICES, round-robin); None: 1 when a GPU is visible, else 0.
    gpus_per_replica: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 180.0
    # The user's own model repository, served instead of the reference model (every model in it is loaded).
    model_repository: Path | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.replicas is not None and self.replicas < 1:
            problems.append(f"replicas must be at least 1, got {self.replicas}")
        for name in ("http_port", "grpc_port", "prometheus_port", "stats_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                problems.append(f"{name.replace('_', ' ')} must be 1..65535, got {port}")
        for name in ("replica_address_base", "front_address"):
            try:
                addr = ipaddress.IPv4Address(getattr(self, name))
            except ValueError:
                problems.append(f"{name.replace('_', ' ')} is not an IPv4 address: {getattr(self, name)!r}")
                continue
            if not addr.is_loopback:
                problems.append(f"{name.replace('_', ' ')} {addr} is not a loopback (127.0.0.0/8) address")
        if not 0.01 <= self.time_scale <= 10:
            problems.append(f"time scale must be within 0.01..10, got {self.time_scale}")
        if self.gpus_per_replica is not None and self.gpus_per_replica < 0:
            problems.append(f"GPUs per replica must be 0 or more, got {self.gpus_per_replica}")
        if self.scrape_interval_s <= 0:
            problems.append("scrape interval must be positive")
        if problems:
            raise ConfigError("invalid local platform settings:\n  - " + "\n  - ".join(problems))

    def replica_address(self, index: int) -> str:
        addr = ipaddress.IPv4Address(self.replica_address_base) + index
        if not addr.is_loopback:
            raise ConfigError(f"replica {index} would get {addr}, outside 127.0.0.0/8; lower the base address")
        return str(addr)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["state_dir"] = str(self.state_dir)
        out["manifest"] = str(self.manifest)
        out["model_repository"] = str(self.model_repository) if self.model_repository else None
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LocalSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["state_dir"] = Path(values["state_dir"])
        values["manifest"] = Path(values["manifest"])
        if values.get("model_repository"):
            values["model_repository"] = Path(values["model_repository"])
        return cls(**values)

    def save(self) -> Path:
        path = self.state_dir / "settings.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_json())
        return path

    @classmethod
    def load(cls, state_dir: Path) -> LocalSettings:
        path = state_dir / "settings.json"
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read the local platform's settings at {path}: {exc}") from exc
