"""Readiness vs serving and the error budget per fault, on timelines whose figures are known exactly, and
``harness slo export`` validated against the OpenSLO v1 schema (tests/data/openslo-v1.schema.json).

Run directories are written as the runner writes them (``synthetic_run``) and read back through the real
report builder and the real ``harness`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from synthetic_run import Req, ns, steady, write_repetition, write_run

from harness.events import Event, EventKind
from harness.report import build_report
from harness.timeline import TimelineWriter, read_timeline

DATA = Path(__file__).parent / "data"
HARNESS = [sys.executable, "-m", "harness.cli"]
SCHEMA = json.loads((DATA / "openslo-v1.schema.json").read_text())


def write_events(rep: Path, events: list[tuple[float, EventKind, str, dict[str, Any]]]) -> None:
    (rep / "events.jsonl").write_text("".join(Event(ns(t), kind, name, details=details).to_json() + "\n"
                                              for t, kind, name, details in events))


def pod_kill_with_cold_replica(run: Path, *, names_replicas: bool = True, cold_until: float = 14.0) -> Path:
    """triton-1 killed at 10.0, ready at 12.0 (probe period 0.4 s), failing what it answers until
    ``cold_until``; a request every 10 ms, alternating replicas. Known counts:
    - triton-1 answers the odd slots 12.01 ... 13.99 (100 requests) with HTTP errors, except 13.51 and 13.53
      which are ok but take 0.8 s (too slow against the 0.5 s objective); its first good response is 14.01;
    - three timeouts no replica answered at 12.51, 12.71, 12.91 (not attributed);
    - between the kill and the ready signal triton-1 gets nothing (HAProxy routes around it), connection
      errors there are no replica's."""
    reqs: list[Req] = []
    for r in steady(0, 40, 100):
        i = round(r.t * 100)
        odd = i % 2 == 1
        if 10.0 <= r.t < 12.0 and odd:
            reqs.append(Req(r.t, 0.002, "connection_refused", ""))
        elif 12.0 <= r.t < cold_until and odd:
            if round(r.t, 2) in (12.51, 12.71, 12.91):
                reqs.append(Req(r.t, 2.0, "timeout", ""))
            elif round(r.t, 2) in (13.51, 13.53) and cold_until < 40:
                reqs.append(Req(r.t, 0.8, "", "triton-1" if names_replicas else ""))
            else:
                reqs.append(Req(r.t, 0.003, "http_status", "triton-1" if names_replicas else ""))
        else:
            reqs.append(Req(r.t, 0.01, "", ("triton-1" if odd else "triton-0") if names_replicas else ""))
    rep = write_repetition(run, "pod-kill", "1", reqs, load=(0, 40), fault_start=10.0, fault_end=10.01,
                           configuration={"max_error_ratio": 0.01, "max_p99_ms": 500},
                           replicas=("triton-0", "triton-1"))
    write_events(rep, [(10.0, EventKind.EXITED, "triton-1", {}), (10.3, EventKind.RESTARTED, "triton-1", {}),
                       (12.0, EventKind.READY, "triton-1", {"readiness_period_s": 0.4})])
    write_run(run, ["pod-kill"])
    return run


def test_ready_to_serving_gap_and_requests_while_ready(tmp_path: Path) -> None:
    run = pod_kill_with_cold_replica(tmp_path / "20261206T010000Z-cold")
    result = build_report(run, query_server=False, record_history=False)
    doc = json.loads(result.results_json.read_text())
    exp = doc["experiments"][0]
    readiness = exp["runs"][0]["readiness"]
    assert readiness["replica_known"] is True
    (entry,) = readiness["replicas"]
    assert entry["replica"] == "triton-1" and entry["state"] == "serving"
    assert entry["gap_s"] == pytest.approx(2.01)  # first good response starts at 14.01
    assert entry["probe_period_s"] == 0.4 and entry["exceeds_probe_period"] is True
    assert entry["requests_in_gap"] == 97  # 100 odd slots in [12, 14), three of them no replica answered
    assert entry["slow_in_gap"] == 2 and entry["failed_in_gap"] == 95 and entry["not_serving"] == 97
    assert entry["unattributed_failed_in_gap"] == 3
    note = next(n for n in exp["notes"] if n.startswith("readiness is not serving"))
    assert "triton-1" in note and "2.010 s" in note and "0.4 s" in note
    assert "readiness pod-kill rep 1: triton-1 ready -> first good response 2.010 s" in result.table
    md = (run / "summary.md").read_text()
    assert "Readiness vs serving" in md and "97 it answered" in md
    html = (run / "index.html").read_text()
    assert "Readiness vs serving" in html and "ready, not serving" in html  # table and lane mark


def test_a_replica_that_never_serves_while_observed_is_censored(tmp_path: Path) -> None:
    run = pod_kill_with_cold_replica(tmp_path / "20261206T010000Z-never", cold_until=40.0)
    doc = json.loads(build_report(run, query_server=False, record_history=False).results_json.read_text())
    (entry,) = doc["experiments"][0]["runs"][0]["readiness"]["replicas"]
    assert entry["state"] == "never-served" and entry["gap_s"] is None
    assert entry["gap_lower_bound_s"] == pytest.approx(28.0)  # ready at 12, observation ends at 40


def test_unknown_answering_replica_is_said_not_guessed(tmp_path: Path) -> None:
    run = pod_kill_with_cold_replica(tmp_path / "20261206T010000Z-svc", names_replicas=False)
    result = build_report(run, query_server=False, record_history=False)
    exp = json.loads(result.results_json.read_text())["experiments"][0]
    readiness = exp["runs"][0]["readiness"]
    assert readiness["replica_known"] is False and readiness["replicas"] == []
    assert "cannot be measured per replica" in readiness["why_unknown"]
    assert readiness["ready_after_fault"][0]["replica"] == "triton-1"
    assert "replica that answered UNKNOWN" in result.table
    assert any("readiness vs serving not measured" in n for n in exp["notes"])


def test_error_budget_per_incident_in_slo_terms(tmp_path: Path) -> None:
    """100 requests/s; the fault at 10.0; refused connections 10.00 ... 12.49 (250 requests), served again
    from 12.50: TTR 2.5 s, three bad windows (3 s), an error ratio of 1.0 during the incident."""
    run = tmp_path / "20261206T010000Z-budget"
    reqs = steady(0, 10, 100) + steady(10, 12.5, 100, 0.002, "connection_refused") + steady(12.5, 40, 100)
    write_repetition(run, "pod-kill", "1", reqs, load=(0, 40), fault_start=10.0, fault_end=10.01)
    write_run(run, ["pod-kill"])
    result = build_report(run, query_server=False, record_history=False)
    exp = json.loads(result.results_json.read_text())["experiments"][0]
    incident = exp["runs"][0]["incident"]
    assert incident["duration_s"] == pytest.approx(2.5) and incident["ongoing"] is False
    assert incident["requests"] == 250 and incident["failed"] == 250 and incident["bad_requests"] == 250
    assert incident["request_rate_per_s"] == pytest.approx(100.0)
    budget = exp["error_budget"]["tiers"]
    month = 30 * 86400
    one = budget["99.9"]
    assert one["bad_time_per_incident_s"] == pytest.approx(3.0)
    assert one["spent_time"] == pytest.approx(3.0 / 2592, rel=1e-6)
    assert one["incidents_fit_time"] == 864  # 2592 s / 3 s
    assert one["budget_requests"] == pytest.approx(100 * month * 0.001, rel=1e-6)
    assert one["spent_requests"] == pytest.approx(250 / (100 * month * 0.001), rel=1e-4)
    assert one["incidents_fit_requests"] == 1036  # floor(259200 / 250)
    assert one["burn_rate_max"] == pytest.approx(1.0 / 0.001)
    multi = budget["multi-active"]
    assert multi["burn_rate_mean"] == pytest.approx(1.0 / 0.0001, rel=1e-6)
    assert multi["incidents_fit_time"] == 86 and multi["fits_assumed"] is True  # pod-kill assumes 2 a month
    assert "error budget pod-kill" in result.table and "864" in result.table
    assert "Error budget per incident" in (run / "index.html").read_text()


def _export(run: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, "slo", "export", str(run), *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("method", ["Occurrences", "Timeslices"])
def test_slo_export_validates_against_the_openslo_v1_schema(tmp_path: Path, method: str) -> None:
    run = pod_kill_with_cold_replica(tmp_path / "20261206T010000Z-export")
    build_report(run, query_server=False, record_history=False)
    out = tmp_path / "slo.yaml"
    proc = _export(run, "--format", "openslo", "--budgeting-method", method, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(out.read_text()))
    validator = jsonschema.Draft7Validator(SCHEMA)
    for doc in docs:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, (doc["kind"], errors)
    kinds = [d["kind"] for d in docs]
    assert kinds == ["Service", "SLI", "SLO", "SLO", "SLO", "SLO"]  # one SLO per default tier
    results = json.loads((run / "results.json").read_text())
    slo = next(d for d in docs if d["kind"] == "SLO" and d["spec"]["objectives"][0]["target"] == 0.999)
    assert slo["spec"]["budgetingMethod"] == method and slo["spec"]["indicatorRef"] == docs[1]["metadata"]["name"]
    budget = results["experiments"][0]["error_budget"]["tiers"]["99.9"]
    notes = slo["metadata"]["annotations"]
    prefix = "triton-resilience-harness.dev/pod-kill."
    assert float(notes[prefix + "budget-spent-time"]) == pytest.approx(budget["spent_time"], rel=1e-5)
    assert int(notes[prefix + "incidents-fit-requests"]) == budget["incidents_fit_requests"]
    assert float(notes[prefix + "ready-to-serving-max-s"]) == pytest.approx(2.01)
    if method == "Timeslices":
        objective = slo["spec"]["objectives"][0]
        assert objective["timeSliceTarget"] == 0.99 and objective["timeSliceWindow"] == pytest.approx(1 / 60)
    same = _export(run)  # standard output, the default method
    assert same.returncode == 0 and [d["kind"] for d in yaml.safe_load_all(same.stdout)] == kinds


def test_the_schema_refuses_what_the_spec_refuses() -> None:
    """The validation can fail: documents the OpenSLO v1 text forbids are refused."""
    good = {"apiVersion": "openslo/v1", "kind": "SLO", "metadata": {"name": "api-availability"},
            "spec": {"service": "api", "indicatorRef": "api-good", "budgetingMethod": "Occurrences",
                     "timeWindow": [{"duration": "30d", "isRolling": True}], "objectives": [{"target": 0.999}]}}
    validator = jsonschema.Draft7Validator(SCHEMA)
    assert not list(validator.iter_errors(good))
    bad: list[dict[str, Any]] = [
        {**good, "apiVersion": "openslo/v1alpha"},
        {**good, "metadata": {"name": "Api_Availability"}},
        {**good, "metadata": {"name": "a", "annotations": {"example.com/figure": "two words"}}},
        {**good, "spec": {**good["spec"], "objectives": [{"target": 1.5}]}},
        {**good, "spec": {**good["spec"], "objectives": [{"target": 0.9, "targetPercent": 90}]}},
        {**good, "spec": {**good["spec"], "budgetingMethod": "Timeslices"}},  # no timeSliceTarget/Window
        {**good, "spec": {**good["spec"], "timeWindow": [{"duration": "30 days"}]}},
        {**good, "spec": {k: v for k, v in good["spec"].items() if k != "indicatorRef"}},
    ]
    for doc in bad:
        assert list(validator.iter_errors(doc)), doc


def test_slo_export_bad_input(tmp_path: Path) -> None:
    missing = _export(tmp_path / "nope")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (tmp_path / "run" / "experiments").mkdir(parents=True)
    unreported = _export(tmp_path / "run")
    assert unreported.returncode == 2 and "harness report" in unreported.stderr
    (tmp_path / "run" / "results.json").write_text(json.dumps({"schema_version": "2.0"}))
    old = _export(tmp_path / "run")
    assert old.returncode == 2 and "2.1" in old.stderr
    bad_format = _export(tmp_path / "run", "--format", "sloth")
    assert bad_format.returncode == 2


def test_the_kubernetes_watchers_ready_events_carry_the_pods_readiness_period(tmp_path: Path) -> None:
    """The gap is compared with the period of the pod's own readiness probe (Kubernetes' default 10 s when
    the probe leaves it out); a pod without one says so (None), and the analysis then assumes the default."""
    from harness.events import EventLog, read_events
    from harness.platforms.kubernetes.watcher import PodTracker

    def pod(name: str, ready: bool, probe: dict[str, Any] | None) -> dict[str, Any]:
        container: dict[str, Any] = {"name": "triton", **({"readinessProbe": probe} if probe is not None else {})}
        return {"metadata": {"name": name}, "spec": {"containers": [container]},
                "status": {"phase": "Running", "podIP": "10.0.0.9",
                           "containerStatuses": [{"ready": ready, "restartCount": 0, "state": {}}]}}

    log = EventLog(tmp_path / "events.jsonl", platform="kubernetes")
    tracker = PodTracker(log)
    for name, probe in (("a", {"httpGet": {"path": "/v2/health/ready"}, "periodSeconds": 2}),
                        ("b", {"httpGet": {"path": "/v2/health/ready"}}), ("c", None)):
        tracker.seen("ADDED", pod(name, False, probe))
        tracker.seen("MODIFIED", pod(name, True, probe))
    log.close()
    ready = {e.replica: e.details.get("readiness_period_s") for e in read_events(tmp_path / "events.jsonl")
             if e.kind == EventKind.READY}
    assert ready == {"a": 2.0, "b": 10.0, "c": None}


def test_a_fault_window_too_long_to_hold_says_so_instead_of_holding_it(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Readiness and the budget hold the fault window's requests in memory; past the limit they are not computed
    and the repetition says why (the streamed figures stay, so memory stays flat on a day of load)."""
    from harness.analysis import _repetition

    monkeypatch.setattr(_repetition, "FAULT_WINDOW_LIMIT", 1000)  # the window here holds 3,000 requests
    run = pod_kill_with_cold_replica(tmp_path / "20261206T010000Z-long")
    doc = json.loads(build_report(run, query_server=False, record_history=False).results_json.read_text())
    rep = doc["experiments"][0]["runs"][0]
    assert rep["readiness"] is None
    assert any("readiness and error budget not computed" in n and "over 1,000" in n for n in rep["notes"]), rep
    assert rep["time_to_recover_s"] is not None  # the streamed figures are all there


def test_the_fault_window_is_read_in_start_order_whatever_order_requests_finished(tmp_path: Path) -> None:
    """Locust writes a request when it ends, so a slow one lands in the timeline after faster ones that started
    later. The streamed analysis reads the fault's window from the compacted row groups as written; unsorted,
    the ready-to-serving gap came out a fraction of a millisecond off (CI, ``test_readiness_live``) whenever
    no failed request had been in flight at t0 to make the window be re-sorted. Same requests, same figures."""
    in_order = pod_kill_with_cold_replica(tmp_path / "20261206T010000Z-ordered")
    expected = json.loads(build_report(in_order, query_server=False, record_history=False).results_json
                          .read_text())["experiments"][0]["runs"][0]["readiness"]
    run = tmp_path / "20261206T010000Z-as-finished"
    pod_kill_with_cold_replica(run)
    rep = run / "experiments" / "pod-kill" / "1"
    frame = read_timeline(rep / "timeline")
    for part in (rep / "timeline").iterdir():
        part.unlink()
    writer = TimelineWriter(rep / "timeline", worker="0", flush_interval_s=1e9, max_buffered=50)
    for row in frame.assign(end=frame["start_ns"] + frame["latency_s"] * 1e9).sort_values("end").itertuples():
        writer.record(int(row.start_ns), float(row.latency_s), str(row.outcome), str(row.error_class),
                      int(row.status), replica=str(row.replica))
    writer.close()
    got = json.loads(build_report(run, query_server=False, record_history=False).results_json
                     .read_text())["experiments"][0]["runs"][0]["readiness"]
    assert got["replicas"] == expected["replicas"]
