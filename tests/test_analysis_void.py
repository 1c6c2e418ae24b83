"""Void repetitions (the fault did not land, experiment.json ``void``): no figures, excluded from every
statistic and verdict, said in one line everywhere, a JUnit error, and never a passing run."""

from __future__ import annotations

import json
from pathlib import Path

from lxml import etree
from synthetic_run import steady, write_repetition, write_run

from harness.report import build_report

DATA = Path(__file__).parent / "data"
REASON = "fault did not land: replica triton-0 kept pid 4242 (no restart) after kill_replicas"


def _landing(landed: bool) -> dict[str, object]:
    return {"fault": "pod-kill", "targets": ["triton-0"], "check": "process replaced", "landed": landed,
            "measured": {"pid_before": 4242, "pid_after": 4242 if not landed else 4343}, "at_ns": 1,
            "detail": "" if landed else "same pid, restarts unchanged"}


def test_a_void_repetition_is_never_evidence(tmp_path: Path) -> None:
    run = tmp_path / "20261128T010000Z-void"
    outage = steady(0, 10, 20) + steady(10, 11, 20, 0.002, "connection_refused") + steady(11, 40, 20)
    # Experiment "kill": one repetition measured, one void (its timeline would even look perfect).
    write_repetition(run, "kill", "1", outage, load=(0, 40), fault_start=10.0, fault_end=10.0,
                     landings=[_landing(True)], required_tier="multi-active")
    write_repetition(run, "kill", "2", steady(0, 40, 20), load=(0, 40), fault_start=10.0, fault_end=10.0,
                     void=REASON, landings=[_landing(False)], required_tier="multi-active")
    # Experiment "block": every repetition void; one even lacks a fault start and a timeline.
    write_repetition(run, "block", "1", steady(0, 40, 20), fault="network-policy-block", load=(0, 40),
                     void="method action block_network failed: nft not found")
    write_repetition(run, "block", "2", [], fault="network-policy-block", load=(0, 40), fault_start=None,
                     fault_end=None, void="fault did not land: connections to triton-1 still succeed")
    write_run(run, ["kill", "block"])
    result = build_report(run, query_server=False, record_history=False)

    assert not result.passed
    assert result.void_repetitions == [f"kill #2: {REASON}",
                                       "block #1: method action block_network failed: nft not found",
                                       "block #2: fault did not land: connections to triton-1 still succeed"]
    kill, block = result.analysis.experiments
    assert kill.stats["time_to_recover_s"].n == 1  # the void repetition is in no statistic
    assert {v.outcome for v in kill.tiers.values()} == {"indicative"}
    assert all(v.n == 1 for v in kill.tiers.values())
    assert {v.outcome for v in block.tiers.values()} == {"void"}
    assert all("no evidence" in v.why for v in block.tiers.values())

    doc = json.loads(result.results_json.read_text())
    assert doc["passed"] is False and doc["void_repetitions"] == result.void_repetitions
    outcomes = [t["outcome"] for e in doc["experiments"] for t in e["tiers"].values()]
    assert "supported" not in outcomes and not any(t["supported"] for e in doc["experiments"]
                                                   for t in e["tiers"].values())
    void_run = doc["experiments"][0]["runs"][1]
    assert void_run["void"] == REASON and void_run["landings"][0]["landed"] is False
    assert void_run["time_to_recover_s"] is None and void_run["bad_time_s"] is None
    assert doc["experiments"][0]["runs"][0]["landings"][0]["landed"] is True

    html = result.index_html.read_text()
    summary = result.summary_md.read_text()
    for text in (html, summary, result.table):
        assert "VOID kill #2: " + REASON in text
        assert "✔" not in text and "| supported" not in text and ": supported" not in text
    assert 'class="yes' not in html  # no tier cell or list item styled as supported
    assert "DID NOT LAND" in html

    junit = etree.parse(str(result.junit_xml))
    etree.XMLSchema(etree.parse(str(DATA / "junit.xsd"))).assertValid(junit)
    errors = [(e.getparent().get("classname"), e.getparent().get("name"), e.get("type"))
              for e in junit.findall(".//error")]
    assert errors == [("resilience.kill", "repetition 2", "VoidRepetition"),
                      ("resilience.block", "repetition 1", "VoidRepetition"),
                      ("resilience.block", "repetition 2", "VoidRepetition")]
    assert junit.getroot().get("errors") == "3"


def test_old_experiment_files_without_void_or_landings_are_not_void(tmp_path: Path) -> None:
    run = tmp_path / "r"
    write_repetition(run, "kill", "1", steady(0, 40, 20), load=(0, 40), fault_start=10.0)
    write_run(run, ["kill"])
    result = build_report(run, query_server=False, record_history=False)
    assert result.void_repetitions == [] and result.passed
    entry = json.loads(result.results_json.read_text())["experiments"][0]["runs"][0]
    assert entry["void"] is None and entry["landings"] == []
