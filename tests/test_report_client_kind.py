"""The report names the load's client kind when it is not the default pool.

Through a Kubernetes Service a client that opens a connection per request meets a blocked pod until it leaves
the endpoints, while a pooled client routes around it (docs/kubernetes.md): two runs of one experiment that
differ only in ``harness_connections`` give different figures, and a reader must be able to tell them apart.
"""

from __future__ import annotations

from pathlib import Path

from synthetic_run import steady, write_repetition, write_run

from harness.report import build_report

NOTE = "the load opened a new connection for every request (harness_connections: per-request)"


def _report(tmp_path: Path, configuration: dict[str, str]) -> tuple[str, str, str]:
    run = tmp_path / f"20261207T010000Z-{configuration.get('harness_connections', 'default')}"
    outage = steady(0, 10, 20) + steady(10, 11, 20, 0.002, "connection_refused") + steady(11, 40, 20)
    write_repetition(run, "block", "1", outage, fault="network-policy-block", load=(0, 40), fault_start=10.0,
                     fault_end=11.0, configuration=configuration)
    write_run(run, ["block"])
    result = build_report(run, query_server=False, record_history=False)
    return result.summary_md.read_text(), result.index_html.read_text(), result.results_json.read_text()


def test_a_per_request_load_is_named_in_every_report(tmp_path: Path) -> None:
    for text in _report(tmp_path, {"harness_connections": "per-request"}):
        assert NOTE in text


def test_a_pooled_load_gets_no_such_note(tmp_path: Path) -> None:
    for configuration in ({"harness_connections": "kept"}, {}):
        for text in _report(tmp_path, configuration):
            assert "harness_connections" not in text
