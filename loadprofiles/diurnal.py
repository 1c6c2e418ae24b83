"""Diurnal: a day's traffic compressed into HARNESS_DIURNAL_PERIOD_S seconds. Users follow a cosine
from the trough (HARNESS_DIURNAL_MIN x HARNESS_USERS, at the start) to the peak (HARNESS_USERS, half a
period in) and back, so faults can be injected at peak or at night.

Parameters (environment variables), besides those of steady.py:
  HARNESS_USERS            peak users (default 10)
  HARNESS_DIURNAL_MIN      trough as a fraction of the peak, 0..1 (default 0.2)
  HARNESS_DIURNAL_PERIOD_S seconds per "day" (default: the duration, else 600)
"""

import math

from harness.errors import ConfigError
from harness.load.shapes import HarnessShape, env_float
from harness.load.users import TritonUser

__all__ = ["Diurnal", "TritonUser"]


class Diurnal(HarnessShape):
    def __init__(self) -> None:
        super().__init__()
        self.trough = env_float("HARNESS_DIURNAL_MIN", 0.2)
        if self.trough > 1:
            raise ConfigError(f"HARNESS_DIURNAL_MIN={self.trough:g} must be a fraction between 0 and 1")
        self.period_s = env_float("HARNESS_DIURNAL_PERIOD_S", self.duration_s or 600, minimum=1)

    def users_at(self, t: float) -> float:
        phase = (1 - math.cos(2 * math.pi * t / self.period_s)) / 2  # 0 at the start, 1 half a period in
        return self.users * (self.trough + (1 - self.trough) * phase)
