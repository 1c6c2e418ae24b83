"""Steady load: HARNESS_USERS users from the start to the end.

The baseline profile of every experiment: constant offered load, so any change in what clients see comes
from the fault, not from the load.

Parameters (environment variables):
  HARNESS_USERS     users (default 10)
  HARNESS_RATE      open loop: total requests/s at HARNESS_USERS users (default 0: closed loop)
  HARNESS_DURATION  seconds (default 60; 0: until stopped)
  HARNESS_PROTOCOL  http (default) or grpc; HARNESS_GRPC_TARGET host:port (default: --host's host, 8001)
  HARNESS_TIMEOUT_S request timeout (default 2); HARNESS_TIMELINE_DIR writes the request timeline there

  harness load --profile loadprofiles/steady.py --duration 30
  locust -f loadprofiles/steady.py --host http://127.0.0.1:8000 --headless
"""

from harness.load.shapes import HarnessShape
from harness.load.users import TritonUser

__all__ = ["Steady", "TritonUser"]


class Steady(HarnessShape):
    def users_at(self, t: float) -> float:
        return self.users
