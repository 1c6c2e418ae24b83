"""``loadprofiles/steady.py`` for a starved node: the Locust master waits 30 s, not 3, for a worker's heartbeat.

On the shared 2-core sandbox (load average 8-14 beside the other tests), ten worker pods building their
clients at their first user went silent for more than Locust's 3 s, and the master dropped them all and
stopped before any request (tests/k8s/test_k8s_timeline_copy.py). The copy is under test there, not
Locust's liveness check. Setting the module constant is how Locust's own driver tunes its intervals too.
"""

import locust.runners

from harness.load.shapes import HarnessShape
from harness.load.users import TritonUser

__all__ = ["Steady", "TritonUser"]

locust.runners.HEARTBEAT_LIVENESS = 30


class Steady(HarnessShape):
    def users_at(self, t: float) -> float:
        return self.users
