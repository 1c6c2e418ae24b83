"""Memory pressure is "held until release" only when the hog still held when it was released.

The shipped experiment once gave its hog a deadline (``duration_s: ${pressure_s}``) that ended before the
method's release step, and the landing still said "held until release"; the replicas it read at the release
were no longer under pressure. A hog that let go before the release now voids the repetition, naming the gap.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from harness.chaos import actions, rollbacks
from tests.helpers import wait_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="memory cgroups need root")


@needs_root
def test_a_hog_that_reached_its_deadline_before_the_release_did_not_hold_until_release(make_platform,  # type: ignore[no-untyped-def]
                                                                                        tmp_path: Path) -> None:
    platform = make_platform(replicas=1)
    platform.up()
    config = {"harness_state_dir": str(platform.state), "harness_run_id": "held-run",
              "harness_run_dir": str(tmp_path / "run")}
    result = actions.memory_pressure(names=["triton-0"], leave_free_mb=8, headroom_mb=96, duration_s=2,
                                     configuration=config)
    status_file = Path(result["status_files"][0])
    wait_for(lambda: json.loads(status_file.read_text()).get("state") == "released-at-deadline", 15,
             "the hog to reach its own deadline")
    time.sleep(1.5)  # the method's release step comes later than the hog's deadline
    rollbacks.release_memory_pressure(configuration=config)
    landings = [json.loads(line) for line in (tmp_path / "run" / "landings.jsonl").read_text().splitlines()]
    held = next(x for x in landings if x["check"].startswith("the pressure held"))
    assert not held["landed"], held
    assert "reached its own deadline (duration_s 2s)" in held["detail"] and "before the release" in held["detail"]
    assert platform.fault_store().records() == []
    wait_for(lambda: platform.status().ready_replicas == 1, 60, "the replica to be healthy after the release")
