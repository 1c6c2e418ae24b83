"""Spike: HARNESS_USERS users, multiplied by HARNESS_SPIKE_FACTOR for HARNESS_SPIKE_S seconds starting
at HARNESS_SPIKE_AT_S, then back. Shows whether a burst (a retry storm, a batch job) tips the service
over and how fast it comes back.

Parameters (environment variables), besides those of steady.py:
  HARNESS_USERS         base users (default 10)
  HARNESS_SPIKE_FACTOR  users during the spike = base x factor (default 3)
  HARNESS_SPIKE_AT_S    spike start, seconds into the run (default: a third of the duration, else 20)
  HARNESS_SPIKE_S       spike length in seconds (default 10)
In open-loop mode (HARNESS_RATE) each user keeps its rate, so the request rate spikes by the same factor.
"""

from harness.load.shapes import HarnessShape, env_float
from harness.load.users import TritonUser

__all__ = ["Spike", "TritonUser"]


class Spike(HarnessShape):
    def __init__(self) -> None:
        super().__init__()
        self.factor = env_float("HARNESS_SPIKE_FACTOR", 3, minimum=0)
        self.at_s = env_float("HARNESS_SPIKE_AT_S", self.duration_s / 3 if self.duration_s else 20)
        self.length_s = env_float("HARNESS_SPIKE_S", 10)

    def users_at(self, t: float) -> float:
        in_spike = self.at_s <= t < self.at_s + self.length_s
        return self.users * self.factor if in_spike else float(self.users)
