"""Per-process state of a load run, owned by the Locust ``Environment`` it belongs to.

One ``LoadContext`` per load process holds the settings, the requests (prepared once from the run's
request plan), the timeline writer, the shared transports and the open-loop request pool. It hangs off
the Locust ``Environment`` (Locust's own "one object owns the run" idea)
instead of module globals, so two environments in one process never share anything.
Plain ``locust -f loadprofiles/...`` runs get one lazily, from ``HARNESS_*`` variables.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

from harness.load.clients import GeventHttpInfer, GrpcInfer, HttpInfer, Result, grpc_channel
from harness.load.prepared import PreparedRequest, schedule
from harness.load.settings import LoadSettings
from harness.timeline import TimelineWriter

__all__ = ["LoadContext", "context_for"]

_ATTR = "harness_load_context"


class RequestFailed(Exception):
    """A failed request as Locust's statistics show it: its timeline error class and status."""


@dataclass
class LoadContext:
    settings: LoadSettings
    requests: list[PreparedRequest] = field(default_factory=list)
    writer: TimelineWriter | None = None
    dropped: int = 0  # open loop: scheduled requests not sent because the client was saturated
    _pool: Any = None
    _channel: Any = None
    _shared_http: Any = None
    _flusher: Any = None
    _transports: list[Any] = field(default_factory=list)
    _failures: dict[str, Exception] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: LoadSettings, plan: dict[str, Any] | None = None) -> LoadContext:
        import gevent
        import gevent.pool

        requests = schedule(plan if plan is not None else load_plan(settings))
        writer = None
        if settings.timeline_dir is not None:
            writer = TimelineWriter(settings.timeline_dir, worker=settings.worker_id)
            _warm_up_arrow()
        ctx = cls(settings=settings, requests=requests, writer=writer)
        ctx._pool = gevent.pool.Pool(settings.inflight_cap())
        if writer is not None:
            ctx._flusher = gevent.spawn(ctx._flush_forever)
        return ctx

    def _flush_forever(self) -> None:
        """Flush at least once a second even when no request completes (a dead, silent endpoint)."""
        import gevent

        assert self.writer is not None
        while True:
            gevent.sleep(self.writer.flush_interval_s)
            self.writer.flush()

    # -- transports ----------------------------------------------------------------------------------
    def new_infer(self) -> Any:
        """A callable that sends one request: per user for closed-loop HTTP, shared otherwise."""
        s = self.settings
        if s.protocol == "grpc":
            if self._channel is None:
                self._channel = grpc_channel(s.grpc)
            return GrpcInfer(self._channel, self.requests, s.timeout_s)
        if s.open_loop:
            if self._shared_http is None:
                if s.http_client == "geventhttpclient":
                    self._shared_http = GeventHttpInfer(s.http_url, self.requests, s.timeout_s,
                                                        concurrency=s.inflight_cap())
                else:
                    self._shared_http = HttpInfer(s.http_url, self.requests, s.timeout_s, pooled=True,
                                                  per_request=s.connections == "per-request")
                self._transports.append(self._shared_http)
            return self._shared_http
        infer: Any
        if s.http_client == "geventhttpclient":
            infer = GeventHttpInfer(s.http_url, self.requests, s.timeout_s)
        else:
            infer = HttpInfer(s.http_url, self.requests, s.timeout_s, per_request=s.connections == "per-request")
        self._transports.append(infer)
        return infer

    def spawn(self, fn: Any) -> bool:
        """Open loop: start one request now unless the in-flight cap is reached."""
        if self._pool.full():
            self.dropped += 1
            return False
        self._pool.spawn(fn)
        return True

    def record(self, start_ns: int, latency_s: float, result: Result) -> None:
        if self.writer is not None:
            ok, error_class, status, replica, _, _ = result
            self.writer.record(start_ns, latency_s, "ok" if ok else "error", error_class, status, replica,
                               self.settings.protocol)

    def failure(self, error_class: str, status: int) -> Exception:
        """What Locust's statistics show for a failed request; one instance per message, reused."""
        key = f"{error_class} (status {status})" if status >= 0 else str(error_class)
        err = self._failures.get(key)
        if err is None:
            err = self._failures[key] = RequestFailed(key)
        return err

    # -- end -----------------------------------------------------------------------------------------
    def close(self, drain_s: float | None = None) -> None:
        """Wait for open-loop requests still in flight (they end within the timeout), then flush."""
        wait = self.settings.timeout_s + 1.0 if drain_s is None else drain_s
        deadline = time.monotonic() + wait
        if self._pool is not None:
            self._pool.join(timeout=max(0.0, deadline - time.monotonic()))
            self._pool.kill(block=False)
        if self._flusher is not None:
            self._flusher.kill(block=False)
        if self.writer is not None:
            self.writer.close(dropped=self.dropped)
        for transport in self._transports:
            transport.close()
        if self._channel is not None:
            self._channel.close()


def load_plan(settings: LoadSettings) -> dict[str, Any]:
    """The run's request plan: read when ``requests_file`` exists (Locust workers read their master's),
    else made here from the server's metadata and ``HARNESS_MODEL`` & co., and written there.

    The load process (or its master) plans once, after the profile is loaded and before it says ready, so
    a model or input it cannot build is a ``ConfigError`` in the handshake and no request is sent; the
    metadata is never read per request.
    """
    from harness.load.requests import RequestOptions, plan_requests, read_plan, write_plan
    from harness.triton.metadata import TritonMetadata

    path = settings.requests_file
    if path is not None and path.exists():
        return read_plan(path)
    endpoint = settings.grpc if settings.protocol == "grpc" else settings.http_url
    plan = plan_requests(TritonMetadata(endpoint, settings.protocol), RequestOptions.from_env())
    if path is not None:
        write_plan(plan, path)
    return plan


def _warm_up_arrow() -> None:
    """Pay pyarrow's lazy imports (pandas, ~0.2-0.3 s of CPU) now, not in the first flush under load.

    Left to the first flush they stalled every user for a third of a second once and showed up in the
    benchmark as a 10 us/request "timeline cost".
    """
    import pyarrow as pa

    pa.array([0], type=pa.int64())


def default_worker_id(environment: Any) -> str:
    """``0`` in a single process; ``HOST_PID`` for a Locust worker started by hand."""
    from locust.runners import WorkerRunner

    if isinstance(environment.runner, WorkerRunner):
        suffix = environment.runner.client_id.rsplit("_", 1)[-1][:8]
        return f"{socket.gethostname().replace('-', '_')}_{suffix}"
    return "0"


def context_for(environment: Any) -> LoadContext:
    """The environment's context, created on first use for plain ``locust`` runs."""
    ctx: LoadContext | None = getattr(environment, _ATTR, None)
    if ctx is None:
        import os

        overrides: dict[str, object] = {}
        if not os.environ.get("HARNESS_WORKER_ID"):
            overrides["worker_id"] = default_worker_id(environment)
        if environment.host and not os.environ.get("HARNESS_HTTP_URL"):
            overrides["http_url"] = environment.host.rstrip("/")
        ctx = LoadContext.create(LoadSettings.from_env(overrides=overrides))
        attach(environment, ctx)
        environment.events.quitting.add_listener(lambda **_: ctx.close())
    return ctx


def attach(environment: Any, ctx: LoadContext) -> None:
    setattr(environment, _ATTR, ctx)
