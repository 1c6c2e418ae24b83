"""What ``harness attach`` was told, checked once and saved in the state directory.

The attachment lives in the same state directory as the local platform (``.harness/local`` by default):
one slot, either the harness's own service (``up``) or someone else's (``attach``), so every later command
(``status``, ``load``, ``run``) finds it without extra flags.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.errors import ConfigError
from harness.jsonfile import write_json_atomic

__all__ = ["ATTACHED_FILE", "AttachedSettings", "split_hostport"]

ATTACHED_FILE = "attached.json"


def split_hostport(value: str, what: str) -> tuple[str, int]:
    parts = urlsplit(value if "//" in value else f"//{value}")
    if not parts.hostname or parts.port is None:
        raise ConfigError(f"{what} {value!r} must name a host and a port (http://127.0.0.1:8000 or 127.0.0.1:8001)")
    return parts.hostname, parts.port


def _loopback(host: str, what: str, value: str) -> str:
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ConfigError(f"{what} {value!r}: give the IPv4 address, not a name (the harness blocks "
                          "traffic by address; e.g. 127.0.0.1)") from None
    if not address.is_loopback:
        raise ConfigError(f"{what} {value!r} is not on a loopback address (127.0.0.0/8): the local attach mode "
                          "acts only on services of this machine; use the kubernetes platform for a cluster")
    return str(address)


@dataclass(frozen=True)
class AttachedSettings:
    state_dir: Path
    http: str  # http://127.x.y.z:PORT
    grpc: str = ""  # 127.x.y.z:PORT, "" when the service offers no gRPC to the harness
    attached_ns: int = 0
    snapshot: dict[str, Any] = field(default_factory=dict)  # the service as it was when attached

    def __post_init__(self) -> None:
        if not self.http.startswith("http://"):
            raise ConfigError(f"--endpoint {self.http!r} must look like http://HOST:PORT")
        host, _ = split_hostport(self.http, "--endpoint")
        _loopback(host, "--endpoint", self.http)
        if self.grpc:
            ghost, _ = split_hostport(self.grpc, "--grpc-endpoint")
            _loopback(ghost, "--grpc-endpoint", self.grpc)

    @property
    def address(self) -> str:
        return split_hostport(self.http, "--endpoint")[0]

    @property
    def http_port(self) -> int:
        return split_hostport(self.http, "--endpoint")[1]

    def targets(self) -> list[tuple[str, list[int]]]:
        """(address, ports) the service listens on, as nftables needs them for a block."""
        by_address: dict[str, set[int]] = {self.address: {self.http_port}}
        if self.grpc:
            host, port = split_hostport(self.grpc, "--grpc-endpoint")
            by_address.setdefault(host, set()).add(port)
        return [(addr, sorted(ports)) for addr, ports in sorted(by_address.items())]

    def save(self) -> Path:
        path = self.state_dir / ATTACHED_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {**asdict(self), "state_dir": str(self.state_dir)})
        return path

    @classmethod
    def load(cls, state_dir: Path) -> AttachedSettings:
        path = state_dir / ATTACHED_FILE
        try:
            raw = json.loads(path.read_text())
            return cls(**{**raw, "state_dir": Path(raw["state_dir"])})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"cannot read the attachment at {path}: {exc}; run 'harness detach' and attach "
                              "again") from exc
