"""Step ramp: start with HARNESS_STEP_USERS users and add as many every HARNESS_STEP_S seconds until
HARNESS_USERS, then hold. Finds the load at which latency or errors start to climb.

Parameters (environment variables), besides those of steady.py:
  HARNESS_USERS       final user count (default 10)
  HARNESS_STEP_USERS  users added per step, and the first step (default: HARNESS_USERS / 5, at least 1)
  HARNESS_STEP_S      seconds per step (default 10)
"""

import math

from harness.load.shapes import HarnessShape, env_float
from harness.load.users import TritonUser

__all__ = ["StepRamp", "TritonUser"]


class StepRamp(HarnessShape):
    def __init__(self) -> None:
        super().__init__()
        self.step_users = env_float("HARNESS_STEP_USERS", max(1.0, self.users / 5), minimum=1)
        self.step_s = env_float("HARNESS_STEP_S", 10, minimum=0.1)

    def users_at(self, t: float) -> float:
        return min(float(self.users), self.step_users * (math.floor(t / self.step_s) + 1))
