"""The Locust user that sends inferences to Triton and records every request in the timeline.

Closed loop (``HARNESS_RATE`` unset or 0): each user sends its next request as soon as the last one
returned, over its own keep-alive connection, like a synchronous client.
Open loop (``HARNESS_RATE`` > 0): each user is a pacer issuing ``rate / users`` requests per second on a
fixed schedule, each in its own greenlet, whatever the latency, so a slow or dead service still sees the
same offered load and every scheduled request lands in the timeline (as a timeout if need be).
The process-wide in-flight cap bounds memory; requests it refuses are counted as ``dropped`` (client
saturation, never sent, so not in the timeline) and reported at the end of the run.

Importing this module imports Locust (which monkey-patches the process): only load processes and
locustfiles do.
"""

from __future__ import annotations

import random
import time
from typing import Any

from locust import User, task

from harness.load.clients import Result
from harness.load.context import LoadContext, context_for

__all__ = ["TritonUser"]

BURST_S = 0.05


class TritonUser(User):
    """Inference user; protocol, endpoint, rate and timeout come from the run's ``LoadSettings``."""

    abstract = False

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self._ctx: LoadContext = context_for(environment)
        self._infer = self._ctx.new_infer()
        s = self._ctx.settings
        self._names = {r.model: f"{s.protocol} infer {r.model}" for r in self._ctx.requests}
        self._fire = environment.events.request.fire
        self._protocol = s.protocol
        self._open = s.open_loop
        self._interval = 1.0 / s.per_user_rate() if s.open_loop else 0.0
        self._next = time.monotonic() + random.random() * self._interval

    def wait_time(self) -> float:
        if not self._open:
            return 0.0
        self._next += self._interval
        delay = self._next - time.monotonic()
        if delay < -1.0:
            # this process fell more than a second behind its schedule (CPU starved): say so, resync
            behind = int(-delay / self._interval)
            self._ctx.dropped += behind
            self._next += behind * self._interval
            return 0.0
        return max(delay, 0.0)

    @task
    def infer(self) -> None:
        if self._open:
            self._ctx.spawn(self._one)
            return
        # Closed loop: back to back for up to BURST_S per task, which spares Locust's per-task yield
        # to the hub (~10 % of the CPU per request); a stop still waits at most BURST_S + one timeout.
        # A failure ends the burst: a refused connection fails without blocking, so only Locust's
        # yield lets the other greenlets (flusher, live line) run while the service is down.
        end = time.monotonic() + BURST_S
        while self._one() and time.monotonic() < end:
            pass

    def _one(self) -> bool:
        start_ns = time.time_ns()
        t0 = time.perf_counter()
        result: Result = self._infer()
        latency = time.perf_counter() - t0
        self._ctx.record(start_ns, latency, result)
        ok, error_class, status, _, size, model = result
        self._fire(request_type=self._protocol, name=self._names[model], response_time=latency * 1000.0,
                   response_length=size, exception=None if ok else self._ctx.failure(error_class, status),
                   context={})
        return ok
