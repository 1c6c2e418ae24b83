"""An interrupted repetition keeps its void reason when its fault did not land or its undo failed, and its
figures enter no statistic.

The control used to write ``void: null`` for every interrupted repetition, so one whose landing had failed
lost that fact, and the analysis (which leaves out only void repetitions) took its figures into p50/p95.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from synthetic_run import ns, steady, write_repetition, write_run

from harness.analysis import analyse_run, load_settings
from harness.chaos.control import after_experiment_control

NOT_LANDED = {"fault": "pod-kill", "targets": ["triton-0"], "check": "each target replaced", "landed": False,
              "detail": "no replacement seen within 30s", "measured": {}, "at_ns": 1}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(ns(t) / 1e9, UTC).isoformat()


def test_an_interrupted_repetition_whose_fault_did_not_land_stays_void(tmp_path: Path) -> None:
    run = tmp_path / "20261206T200000Z-interrupted"
    outage = steady(0, 10, 20) + steady(10, 11, 20, 0.002, "connection_refused") + steady(11, 40, 20)
    write_repetition(run, "kill", "1", outage, load=(0, 40), fault_start=10.0, fault_end=10.0)
    # Repetition 2 as the control finds it after an interrupt: the kill was sent (t0 in the journal), its
    # check failed, and the run was interrupted before the observation ended.
    rep = write_repetition(run, "kill", "2", outage, load=(0, 40), status="running")
    (rep / "landings.jsonl").write_text(json.dumps(NOT_LANDED) + "\n")
    (rep / "load.pid").write_text("0")
    journal = {"status": "interrupted", "deviated": False, "rollbacks": [],
               "run": [{"activity": {"type": "action", "name": "kill",
                                     "provider": {"type": "python", "module": "harness.chaos.actions",
                                                  "func": "kill_replicas"}},
                        "start": _iso(10.0), "end": _iso(10.4), "status": "failed",
                        "exception": ["KeyboardInterrupt"]}]}
    config = {"harness_run_dir": str(rep), "harness_run_id": run.name, "harness_state_dir": str(tmp_path / "none"),
              "harness_observation_s": 0}
    after_experiment_control({}, state=journal, configuration=config)
    info = json.loads((rep / "experiment.json").read_text())
    assert info["status"] == "interrupted"
    assert info["void"] == "the pod-kill fault did not land: no replacement seen within 30s"
    write_run(run, ["kill"], status="interrupted")
    analysis = analyse_run(run, load_settings(None), query_server=False)
    kill = analysis.experiments[0]
    assert [r.void is not None for r in kill.reps] == [False, True]
    assert all(st.n <= 1 for st in kill.stats.values()), {k: st.n for k, st in kill.stats.items()}
    assert kill.stats["time_to_impact_s"].n == 1
