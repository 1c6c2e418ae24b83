"""The analysis on a real outage: a replica of the local platform (real Triton, HAProxy, Prometheus)
is SIGKILLed under a plain sequential HTTP client that records a harness timeline, the platform's own
events are used as they were written, and the report must find the impact, the recovery, the restart
lane, capacity recovery and Triton's counters from the real Prometheus.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from synthetic_run import write_run

from harness.bench.accuracy import sequential_load
from harness.events import read_events
from harness.report import build_report
from harness.timeline import TimelineWriter


@pytest.mark.timeout(240)
def test_real_replica_kill_is_measured(make_platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    platform = make_platform()
    status = platform.up(replicas=2)
    run = tmp_path / "reports" / "20261128T010000Z-live"
    rep = run / "experiments" / "pod-kill" / "1"
    writer = TimelineWriter(rep / "timeline", worker="0")
    stop = threading.Event()
    load_start = time.time_ns()
    loader = threading.Thread(target=sequential_load, args=(status.endpoints.http, writer, stop), daemon=True)
    loader.start()
    time.sleep(3)
    victim = status.replicas[0]
    assert victim.pid
    t0 = time.time_ns()
    os.kill(victim.pid, signal.SIGKILL)
    fault_end = time.time_ns()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the restart, then observe the stability period
        st = platform.status()
        if st.ready_replicas == 2 and any(r.restarts for r in st.replicas):
            break
        time.sleep(0.2)
    time.sleep(5)
    stop.set()
    loader.join(10)
    writer.close()
    load_end = time.time_ns()
    events = [e for e in read_events(platform.events_path()) if load_start <= e.ts_ns <= load_end]
    (rep / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in events))
    info = {
        "name": "pod-kill",
        "title": "kill one replica",
        "fault": "pod-kill",
        "file": "",
        "configuration": {"analysis": {"stability_period_s": 3.0}},
        "load_start_ns": load_start,
        "fault_start_ns": t0,
        "fault_end_ns": fault_end,
        "observation_end_ns": load_end,
        "load_end_ns": load_end,
        "status": "completed",
        "deviated": False,
        "replicas": [r.name for r in status.replicas],
        "analogue": "",
        "time_scale": 0.2,
        "retries": False,
    }
    (rep / "experiment.json").write_text(json.dumps(info))
    write_run(
        run,
        ["pod-kill"],
        settings={"time_scale": 0.2, "endpoints": status.to_json()["endpoints"]},  # as the runner records it
    )
    time.sleep(2)  # one more Prometheus scrape of the restarted replica
    result = build_report(run)
    r = result.analysis.experiments[0].reps[0]
    assert r.requests_total > 50
    assert r.requests_failed >= 1, "killing a replica without retries must fail some requests"
    assert r.time_to_impact_s is not None and r.time_to_impact_s < 5
    assert r.recovered and r.time_to_recover_s is not None
    assert r.time_to_impact_s <= r.time_to_recover_s < 30
    assert r.capacity is not None and r.capacity.recovered and r.capacity.seconds is not None
    assert 0 < r.capacity.seconds < 60
    assert {i.state for i in r.lanes if i.replica == victim.name} >= {"ready", "restarting"}
    assert r.server is not None and (r.server["requests_success"] or 0) > 0, r.notes


@pytest.mark.timeout(300)
def test_real_dropped_packets_recover_when_served_again(make_platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """nftables drops every packet to the replicas for 3 s under open-loop load (2 s client timeout), injected
    by ``harness run`` of the shipped experiment (the Chaos Toolkit action; t0 from the journal): requests sent
    during the block hang until their timeout, yet the harness's TTR must match the independent prober's (first
    ok probe after the last failed one), not the end of the last hang; and the nftables table is gone after."""
    from harness.bench.accuracy import run_fault
    from harness.faults.nft import harness_tables

    platform = make_platform()
    platform.up(replicas=2)
    fault_run = run_fault(platform, "block-all", tmp_path / "reports", reps=1, rate=100.0, hold_s=3.0,
                          stability_s=3.0)
    assert fault_run.code in (0, 1) and fault_run.run_dir is not None, fault_run.output
    run = fault_run.run_dir
    rep = run / "experiments" / "network-policy-block" / "1"
    info = json.loads((rep / "experiment.json").read_text())
    tables = [e["record"]["table"] for e in info["injected"]]
    assert tables and not set(tables) & set(harness_tables()), "the block's nftables table was left behind"
    assert platform.fault_store().records() == []
    result = build_report(run, query_server=False, record_history=False)
    r = result.analysis.experiments[0].reps[0]
    assert r.state == "recovered", r.notes
    blocked_s = (info["fault_end_ns"] - info["fault_start_ns"]) / 1e9  # from the journal: block to lift
    assert r.time_to_recover_s is not None and 3.0 <= blocked_s - 0.5 <= r.time_to_recover_s < blocked_s + 1.0
    # The end of the last failed request is a hang (HAProxy's 1 s, or the client's 2 s) after the recovery
    # instant (measured: 0.96 s); the prober, which no hanging probe delays, agrees with the harness, not with
    # that end.
    from harness.timeline import read_timeline

    frame = read_timeline(rep / "timeline")
    failed = frame[frame["outcome"] != "ok"]
    assert int((failed["latency_s"] >= 0.9).sum()) > 10, r.errors_by_class  # requests hung on the drop
    last_failure_end_s = float((failed["start_ns"] + failed["latency_s"] * 1e9).max() - info["fault_start_ns"]) / 1e9
    assert last_failure_end_s > r.time_to_recover_s + 0.5
    prober_ttr = fault_run.prober_ttr["1"]
    assert abs(r.time_to_recover_s - prober_ttr) < 0.5, (r.time_to_recover_s, prober_ttr)
