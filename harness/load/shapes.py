"""Base class of the harness's load profiles: Locust shapes whose parameters come from the environment.

A profile (``loadprofiles/*.py``) subclasses ``HarnessShape`` and implements ``users_at(t)``; the base
class reads the common parameters once, when the shape is built, and ends the run after the duration.
Parameters are environment variables so that ``harness load``, its workers, the fault runner and plain
``locust -f`` all configure a profile the same way:

  HARNESS_USERS     base user count (default 10): steady level, step target, spike base, diurnal peak
  HARNESS_RATE      open-loop requests/s reached at HARNESS_USERS users (default 0: closed loop)
  HARNESS_DURATION  seconds until the run ends (default 60; 0 or empty: until stopped)
"""

from __future__ import annotations

import math
import os

from locust import LoadTestShape

from harness.errors import ConfigError

__all__ = ["HarnessShape", "env_float"]


def env_float(name: str, default: float, minimum: float | None = 0.0) -> float:
    """A numeric profile parameter from the environment, checked once when the shape is built."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"profile parameter {name}={raw!r} is not a number") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"profile parameter {name}={raw} must be at least {minimum:g}")
    return value


class HarnessShape(LoadTestShape):
    """Users as a function of run time; ``tick`` adds the duration and spawn rate Locust needs."""

    abstract = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # locust's LoadTestShape is untyped
        self.users = int(env_float("HARNESS_USERS", 10))
        self.rate = env_float("HARNESS_RATE", 0)
        # Set but empty is how the harness says "until stopped" (LoadSettings.duration_s None, e.g. the load of
        # an experiment, which must outlast any method); unset (plain `locust -f`) keeps the 60 s default.
        raw = os.environ.get("HARNESS_DURATION")
        duration = 0.0 if raw is not None and not raw.strip() else env_float("HARNESS_DURATION", 60)
        self.duration_s: float | None = duration if duration > 0 else None

    def users_at(self, t: float) -> float:
        raise NotImplementedError

    def spawn_rate(self) -> float:
        """Users started per second: a step of the profile completes within a fraction of a tick.

        Capped at 100 while that is enough, the rate above which Locust warns.
        """
        return float(max(1, self.users * 4)) if self.users > 25 else 100.0

    def tick(self) -> tuple[int, float] | None:
        t: float = self.get_run_time()  # type: ignore[no-untyped-call]  # locust's LoadTestShape is untyped
        if self.duration_s is not None and t >= self.duration_s:
            return None
        return max(0, math.floor(self.users_at(t) + 0.5)), self.spawn_rate()
