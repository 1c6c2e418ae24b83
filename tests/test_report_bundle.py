"""The evidence bundle: results.json schema, JUnit against the schema CI reads, manifest + verify,
history and trend, Prometheus reachable or not. Commands run as the real ``harness`` CLI."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from lxml import etree
from synthetic_run import steady, write_repetition, write_run

from harness.events import EventKind
from harness.report import build_report

DATA = Path(__file__).parent / "data"
HARNESS = [sys.executable, "-m", "harness.cli"]
RUN_FIELDS = {
    "fault_start",
    "time_to_impact_s",
    "time_to_recover_s",
    "recovered",
    "bad_time_s",
    "capacity_recovery_s",
    "requests_total",
    "requests_failed",
    "availability_time",
    "availability_requests",
}


def external_references(html: str) -> list[str]:
    """Every src/href/url() that a browser would fetch from outside the file (namespaces are not fetched)."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", html)
    refs += re.findall(r"@import\s+['\"]?([^'\";]+)", html)
    return [r for r in refs if not r.startswith(("#", "data:"))]


def make_run(
    reports: Path,
    run_id: str,
    *,
    outage_s: float = 2.5,
    status: str = "completed",
    started: float = 0,
    settings: dict[str, object] | None = None,
    required: str | None = None,
) -> Path:
    run = reports / run_id
    reqs = (
        steady(0, 10, 50)
        + steady(10, 10 + outage_s, 50, 0.002, "connection_refused")
        + steady(10 + outage_s, 40, 50)
    )
    events = [
        (10.05, EventKind.EXITED, "triton-0"),
        (11.0, EventKind.RESTARTED, "triton-0"),
        (12.0, EventKind.READY, "triton-0"),
    ]
    for rep in ("1", "2"):
        write_repetition(
            run,
            "pod-kill",
            rep,
            reqs,
            load=(0, 40),
            fault_start=9.7,
            events=events,
            required_tier=required,
            time_scale=0.2,
        )
    stuck = steady(0, 10, 20) + steady(10, 40, 20, 0.001, "timeout")
    write_repetition(
        run,
        "net-block",
        "1",
        stuck,
        fault="network-policy-block",
        load=(0, 40),
        fault_start=9.7,
        analogue="nftables on loopback",
    )
    write_run(run, ["pod-kill", "net-block"], status=status, started=started, settings=settings)
    return run


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARNESS, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def test_results_json_follows_the_documented_schema(tmp_path: Path) -> None:
    run = make_run(tmp_path, "20261128T010000Z-a")
    result = build_report(run, query_server=False)
    doc = json.loads(result.results_json.read_text())
    assert doc["schema_version"] == "2.1"
    kill, block = doc["experiments"]
    assert {"name", "fault", "runs", "tiers"} <= set(kill)
    assert kill["name"] == "pod-kill" and kill["fault"] == "pod-kill"
    for entry in kill["runs"]:
        assert set(entry) >= RUN_FIELDS
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["fault_start"])
        assert entry["time_to_recover_s"] == pytest.approx(12.5 - 9.7)  # first good request at 12.5
        assert entry["recovered"] is True
        assert entry["capacity_recovery_s"] == pytest.approx(2.3)
    censored = block["runs"][0]
    assert censored["recovered"] is False and censored["time_to_recover_s"] is None
    assert censored["time_to_recover_lower_bound_s"] > 29
    for tier in ("single-point", "active-standby", "99.9", "multi-active"):
        assert isinstance(kill["tiers"][tier]["supported"], bool) and kill["tiers"][tier]["why"]
        assert block["tiers"][tier]["supported"] is False
        assert kill["tiers"][tier]["outcome"] == "indicative"  # two repetitions: never "supported"
        assert kill["tiers"][tier]["repetitions"] == 2
        assert kill["tiers"][tier]["confidence"] == pytest.approx(1 - 0.9**2)
    # "> 30.3 s" exceeds 30 s but is neither for nor against the longer tiers.
    assert block["tiers"]["multi-active"]["outcome"] == "not supported"
    assert block["tiers"]["99.9"]["outcome"] == "inconclusive"
    assert block["tiers"]["99.9"]["deciding_observation_s"] == pytest.approx(310.0)
    assert any("analogue" in n for n in block["notes"])
    assert any("scaled by 0.2" in n for n in kill["notes"])
    manifest = json.loads(result.manifest_json.read_text())
    assert any("scaled by 0.2" in n for n in manifest["notes"])
    assert any("analogue" in n for n in manifest["notes"])
    assert "experiments/pod-kill/1/timeline/timeline.parquet" in manifest["files"]  # the chunks, compacted
    assert manifest["harness"]["version"] and manifest["triton"]["version"]


def test_junit_validates_and_fails_only_a_required_unsupported_tier(tmp_path: Path) -> None:
    run = make_run(tmp_path, "20261128T010000Z-j", required="multi-active")
    proc = cli("report", str(run), "--no-prometheus")
    assert proc.returncode == 0, proc.stdout  # only pod-kill requires a tier (multi-active), and holds it
    schema = etree.XMLSchema(etree.parse(str(DATA / "junit.xsd")))
    doc = etree.parse(str(run / "junit.xml"))
    schema.assertValid(doc)
    cases = doc.findall(".//testcase")
    assert len(cases) == 2 * (4 + 1)  # one per experiment and tier, plus one per experiment for its repetitions
    failures = doc.findall(".//failure")
    assert [f.getparent().get("classname") for f in failures] == []  # multi-active holds for pod-kill
    # Requiring a tier the censored experiment cannot support fails exactly its testcase.
    proc = cli("report", str(run), "--no-prometheus", "--required-tier", "99.9")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = etree.parse(str(run / "junit.xml"))
    schema.assertValid(doc)
    failed = [(f.getparent().get("classname"), f.getparent().get("name")) for f in doc.findall(".//failure")]
    assert failed == [("resilience.net-block", "tier 99.9")]
    assert "index.html" in proc.stdout and "REQUIRED" in proc.stdout


def test_cli_report_exit_zero_when_required_tiers_hold(tmp_path: Path) -> None:
    run = make_run(tmp_path, "20261128T010000Z-z")
    proc = cli("report", str(run), "--no-prometheus", "--required-tier", "multi-active")
    assert proc.returncode == 1  # net-block never recovered: multi-active required there too
    run2 = tmp_path / "only-kill"
    write_repetition(
        run2, "pod-kill", "1", steady(0, 40, 20), load=(0, 40), fault_start=9.7, required_tier="multi-active"
    )
    write_run(run2, ["pod-kill"])
    proc = cli("report", str(run2), "--no-prometheus")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout


def test_an_interrupted_run_is_never_a_pass(tmp_path: Path) -> None:
    run = make_run(tmp_path, "20261128T010000Z-i", status="interrupted")
    proc = cli("report", str(run), "--no-prometheus")
    assert proc.returncode == 1
    doc = etree.parse(str(run / "junit.xml"))
    etree.XMLSchema(etree.parse(str(DATA / "junit.xsd"))).assertValid(doc)
    assert doc.find(".//error").get("type") == "RunNotCompleted"
    import sqlite3

    with sqlite3.connect(tmp_path / "history.sqlite") as conn:
        assert conn.execute("SELECT status, passed FROM runs").fetchall() == [("interrupted", 0)]


def test_verify_detects_changed_added_and_removed_files(tmp_path: Path) -> None:
    run = make_run(tmp_path, "20261128T010000Z-v")
    build_report(run, query_server=False)
    ok = cli("verify", str(run))
    assert ok.returncode == 0 and "OK" in ok.stdout
    events = run / "experiments" / "pod-kill" / "1" / "events.jsonl"
    events.write_text(events.read_text().replace("triton-0", "triton-9"))
    changed = cli("verify", str(run))
    assert changed.returncode == 1 and "changed: experiments/pod-kill/1/events.jsonl" in changed.stdout
    build_report(run, query_server=False)
    (run / "extra.txt").write_text("x")
    (run / "summary.md").unlink()
    both = cli("verify", str(run))
    assert both.returncode == 1
    assert "added: extra.txt" in both.stdout and "removed: summary.md" in both.stdout
    missing = cli("verify", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_history_and_trend_flag_a_regression(tmp_path: Path) -> None:
    for i, outage in enumerate((2.5, 2.5, 2.4)):
        build_report(
            make_run(tmp_path, f"20261128T0{i}0000Z-r", outage_s=outage, started=i * 100), query_server=False
        )
    calm = cli("trend", "--reports", str(tmp_path), "--fail-on-regression", "20%")
    # pod-kill varies by less than 20 %; net-block is censored in every run: no change, no regression
    # (its missed tiers are in each run's report, not in the trend).
    assert calm.returncode == 0, calm.stdout
    build_report(make_run(tmp_path, "20261128T040000Z-r", outage_s=8.0, started=400), query_server=False)
    for baseline in ("last", "median"):
        worse = cli(
            "trend", "--reports", str(tmp_path), "--fail-on-regression", "20%", "--baseline", baseline
        )
        assert worse.returncode == 1
        assert re.search(
            r"REGRESSION pod-kill \(pod-kill\): time_to_recover_s p95 8\.3 s vs \w+ "
            r"baseline 2\.\d s",
            worse.stdout,
        )
    page = (tmp_path / "trend.html").read_text()
    assert page.count("<svg") >= 4 and external_references(page) == []
    informational = cli("trend", "--reports", str(tmp_path))
    assert informational.returncode == 0
    build_report(make_run(tmp_path, "20261128T050000Z-r", status="crashed", started=500), query_server=False)
    crashed = cli("trend", "--reports", str(tmp_path), "--fail-on-regression", "20%")
    assert (
        crashed.returncode == 1
        and "NOT A PASS pod-kill: latest run 20261128T050000Z-r is crashed" in crashed.stdout
    )


def test_prometheus_unreachable_report_completes_and_says_what_is_missing(tmp_path: Path) -> None:
    run = make_run(
        tmp_path,
        "20261128T010000Z-p",
        settings={"time_scale": 0.2, "endpoints": {"prometheus": "http://127.0.0.1:9",
                                                   "metrics": ["http://127.0.0.1:8002/metrics"]}},
    )
    result = build_report(run)
    doc = json.loads(result.results_json.read_text())
    notes = doc["experiments"][0]["runs"][0]["notes"]
    assert any(
        "server-side figures missing: Prometheus at http://127.0.0.1:9 could not be queried" in n
        for n in notes
    )
    assert doc["experiments"][0]["runs"][0]["server"] is None
    html = result.index_html.read_text()
    assert "server-side figures missing" in html
    assert external_references(html) == []
    assert html.count("<svg") == 3  # one timeline plot per repetition


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_external_reference_finder_finds_references() -> None:
    found = external_references(
        '<img src="https://x/y.png"><a href="#a">a</a><style>b{background:url(z.png)}</style>'
    )
    assert found == ["https://x/y.png", "z.png"]


def test_server_side_figures_from_a_real_prometheus(tmp_path: Path) -> None:
    """A real Prometheus that scrapes no Triton: the query path works and the report lists what is missing,
    and the figures are kept beside the repetition for rebuilds after Prometheus is gone."""
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs: []\n")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)
        run = make_run(tmp_path, "20261128T010000Z-q", settings={"endpoints": {
            "prometheus": url, "metrics": ["http://127.0.0.1:8002/metrics"]}})  # the scope of every query
        result = build_report(run)
        entry = json.loads(result.results_json.read_text())["experiments"][0]["runs"][0]
        assert entry["server"]["url"] == url
        assert any("Triton request counters" in m for m in entry["server"]["missing"])
        assert (run / "experiments" / "pod-kill" / "1" / "server_metrics.json").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    again = build_report(run)  # Prometheus is gone: the kept figures are used
    entry = json.loads(again.results_json.read_text())["experiments"][0]["runs"][0]
    assert entry["server"]["url"] == url


def test_report_of_a_missing_or_malformed_run_is_bad_input(tmp_path: Path) -> None:
    proc = cli("report", str(tmp_path))
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    run = make_run(tmp_path, "20261128T010000Z-m")
    (run / "experiments" / "pod-kill" / "1" / "experiment.json").write_text("{")
    proc = cli("report", str(run), "--no-prometheus")
    assert proc.returncode == 2 and "experiment.json is not valid JSON" in proc.stderr
    proc = cli("report", str(make_run(tmp_path / "x", "r")), "--required-tier", "platinum")
    assert proc.returncode == 2 and "unknown SLA tier 'platinum'" in proc.stderr


def test_a_failed_repetition_fails_its_experiment_case(tmp_path: Path) -> None:
    run = tmp_path / "20261128T010000Z-f"
    write_repetition(run, "pod-kill", "1", steady(0, 40, 20), load=(0, 40), fault_start=9.7)
    write_repetition(run, "pod-kill", "2", steady(0, 40, 20), load=(0, 40), fault_start=None, fault_end=None,
                     status="failed")
    write_run(run, ["pod-kill"])
    proc = cli("report", str(run), "--no-prometheus")
    assert proc.returncode == 1 and "NOT PASSED" in proc.stdout
    doc = etree.parse(str(run / "junit.xml"))
    etree.XMLSchema(etree.parse(str(DATA / "junit.xsd"))).assertValid(doc)
    failures = doc.findall(".//failure")
    assert [(f.getparent().get("name"), f.text) for f in failures] == [("repetitions", "2: failed")]
    why = json.loads((run / "results.json").read_text())["experiments"][0]["tiers"]["single-point"]["why"]
    assert "repetition(s) 2 did not complete (failed)" in why and "injected no fault" in why
