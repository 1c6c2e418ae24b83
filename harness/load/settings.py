"""What one load process needs to know, parsed once at the edge into a frozen dataclass.

Every process of a run (the harness's own load process, its Locust workers, a worker started by hand on
another machine with plain ``locust --worker``) reads the same ``HARNESS_*`` environment variables, so a
setting means the same thing wherever the users run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from harness.errors import ConfigError

__all__ = ["CONNECTIONS", "ENV", "Connections", "HttpClient", "LoadSettings", "Protocol"]

Protocol = Literal["http", "grpc"]
HttpClient = Literal["sockets", "geventhttpclient"]
Connections = Literal["kept", "per-request"]
CONNECTIONS: tuple[Connections, ...] = ("kept", "per-request")

# Setting name -> environment variable. Profiles read the shape parameters (users, rate, duration) too.
ENV = {
    "http_url": "HARNESS_HTTP_URL",
    "grpc_target": "HARNESS_GRPC_TARGET",
    "protocol": "HARNESS_PROTOCOL",
    "timeout_s": "HARNESS_TIMEOUT_S",
    "users": "HARNESS_USERS",
    "rate": "HARNESS_RATE",
    "duration_s": "HARNESS_DURATION",
    "timeline_dir": "HARNESS_TIMELINE_DIR",
    "worker_id": "HARNESS_WORKER_ID",
    "max_inflight": "HARNESS_MAX_INFLIGHT",
    "http_client": "HARNESS_HTTP_CLIENT",
    "requests_file": "HARNESS_REQUESTS",
    "connections": "HARNESS_CONNECTIONS",
}


@dataclass(frozen=True)
class LoadSettings:
    """One load run's settings.

    ``rate`` > 0 switches to the open loop: each user issues ``rate / users`` requests per second on a
    fixed schedule whatever the latency, so the total follows the profile's user count (``rate`` at
    ``users``). ``rate`` = 0 is the closed loop: each user sends its next request when the last returned.
    ``duration_s`` None runs until stopped. ``timeline_dir`` None records no timeline (benchmarks only).
    ``requests_file``: the request plan (``harness.load.requests``) the caller made from the server's model
    metadata; None (plain ``locust -f`` runs) plans in this process from ``HARNESS_MODEL`` and friends.
    """

    http_url: str = "http://127.0.0.1:8000"
    grpc_target: str = ""  # HOST:PORT; "" derives HOST:8001 from http_url
    protocol: Protocol = "http"
    timeout_s: float = 2.0
    users: int = 10
    rate: float = 0.0
    duration_s: float | None = 60.0
    timeline_dir: Path | None = None
    worker_id: str = "0"
    max_inflight: int = 0  # open loop: cap on requests in flight per process; 0 = derived from rate
    http_client: HttpClient = "sockets"  # geventhttpclient: tritonclient's transport, 3x the CPU per request
    requests_file: Path | None = None
    # HTTP: "kept" (keep-alive connections, pooled, as most clients do) or "per-request" (a new connection
    # for every request, ``Connection: close``). Through a Kubernetes Service the two are different clients:
    # kube-proxy picks the pod per connection, so only per-request clients spread every request over the pods.
    connections: Connections = "kept"

    def __post_init__(self) -> None:
        problems = []
        if self.protocol not in ("http", "grpc"):
            problems.append(f"protocol {self.protocol!r} is neither 'http' nor 'grpc'")
        if not self.http_url.startswith("http://"):
            problems.append(f"HTTP endpoint {self.http_url!r} must look like http://HOST:PORT")
        if self.http_client not in ("sockets", "geventhttpclient"):
            problems.append(f"HTTP client {self.http_client!r} is neither 'sockets' nor 'geventhttpclient'")
        if self.connections not in CONNECTIONS:
            problems.append(f"connections {self.connections!r} is neither 'kept' nor 'per-request'")
        elif self.connections == "per-request" and self.protocol == "grpc":
            problems.append("per-request connections are an HTTP client's: gRPC sends every request over one "
                            "channel; use --protocol http, or kept connections")
        elif self.connections == "per-request" and self.http_client == "geventhttpclient":
            problems.append("per-request connections need the sockets HTTP client (HARNESS_HTTP_CLIENT=sockets)")
        if self.users < 0:
            problems.append(f"users is {self.users}; it must be 0 or more")
        if self.rate < 0:
            problems.append(f"rate is {self.rate:g} requests/s; it must be 0 (closed loop) or more")
        if self.timeout_s <= 0:
            problems.append(f"request timeout is {self.timeout_s:g}s; it must be more than 0")
        if self.duration_s is not None and self.duration_s <= 0:
            problems.append(f"duration is {self.duration_s:g}s; it must be more than 0 "
                            "(or unset: run until stopped)")
        if self.max_inflight < 0:
            problems.append(f"max in-flight is {self.max_inflight}; it must be 0 (derived) or more")
        if "-" in self.worker_id or "/" in self.worker_id:
            problems.append(f"worker id {self.worker_id!r} must not contain '-' or '/' "
                            "(it names timeline files)")
        if problems:
            raise ConfigError("bad load settings: " + "; ".join(problems))

    @property
    def grpc(self) -> str:
        if self.grpc_target:
            return self.grpc_target.removeprefix("grpc://")
        host = self.http_url.removeprefix("http://").rstrip("/").rsplit(":", 1)[0]
        return f"{host}:8001"

    @property
    def open_loop(self) -> bool:
        return self.rate > 0

    def per_user_rate(self) -> float:
        """Requests/s of one open-loop user: ``rate`` is reached at the profile's base user count."""
        return self.rate / max(self.users, 1)

    def inflight_cap(self) -> int:
        """Open loop: enough for every scheduled request to wait out its timeout, twice over."""
        if self.max_inflight:
            return self.max_inflight
        return max(64, int(self.rate * self.timeout_s * 2) + 16)

    def worker_share(self, workers: int) -> float:
        """The largest fraction of the users (so of an open loop's rate) one of ``workers`` processes runs.

        Locust hands each worker its share of the shape's users and each user keeps ``rate / users``, so
        the rate needs no split; what is per process (the in-flight cap, the CPU a worker needs) does.
        """
        if workers <= 1:
            return 1.0
        return min(1.0, math.ceil(max(self.users, 1) / workers) / max(self.users, 1))

    def for_workers(self, workers: int) -> LoadSettings:
        """One worker's settings when ``workers`` processes share this load: the in-flight cap sized to the
        worker's share of the rate (an explicit ``max_inflight`` is kept: it is per process already)."""
        if workers <= 1 or self.max_inflight or not self.open_loop:
            return self
        rate = self.rate * self.worker_share(workers)
        return replace(self, max_inflight=max(64, int(rate * self.timeout_s * 2) + 16))

    def with_worker(self, worker_id: str) -> LoadSettings:
        return replace(self, worker_id=worker_id)

    def to_env(self) -> dict[str, str]:
        out = {}
        for name, var in ENV.items():
            value = getattr(self, name)
            out[var] = "" if value is None else str(value)
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 overrides: Mapping[str, object] | None = None) -> LoadSettings:
        """Settings from ``HARNESS_*`` variables (unset ones keep their defaults); ``overrides`` win."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        converters: dict[str, type] = {"timeout_s": float, "users": int, "rate": float, "max_inflight": int}
        for name, var in ENV.items():
            raw = env.get(var)
            if raw is None:
                continue
            raw = raw.strip()
            try:
                if name == "duration_s":
                    values[name] = float(raw) if raw and float(raw) > 0 else None
                elif name in ("timeline_dir", "requests_file"):
                    values[name] = Path(raw) if raw else None
                elif name in converters:
                    values[name] = converters[name](raw)
                elif raw:
                    values[name] = raw
            except ValueError:
                raise ConfigError(f"environment variable {var}={raw!r} is not a valid {name}") from None
        values.update(overrides or {})
        return cls(**values)  # type: ignore[arg-type]
