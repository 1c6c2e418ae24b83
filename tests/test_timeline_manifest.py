"""The timeline writer's manifest, and the checks a copied timeline must pass against it.

Real files written by the real ``TimelineWriter``; the check is the one the Kubernetes copy runs on what
came back from a worker pod (tests/k8s/test_k8s_timeline_copy.py does it through a real cluster).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness.errors import FaultError, PlatformError
from harness.platforms.kubernetes.podexec import exit_code
from harness.platforms.kubernetes.timeline_copy import _verify, _write_corrected
from harness.timeline import SCHEMA, WORKERS_FILE, TimelineWriter, manifest_path, read_timeline


def _write(directory: Path, chunks: int = 3, per_chunk: int = 5, dropped: int | None = 2) -> TimelineWriter:
    writer = TimelineWriter(directory, worker="w7", flush_interval_s=1e9)
    for c in range(chunks):
        for i in range(per_chunk):
            writer.record(1_000_000_000 * c + i, 0.01, "ok")
        writer.flush()
    writer.close(dropped=dropped)
    return writer


def _received(directory: Path) -> tuple[dict[str, tuple[int, str]], dict[str, bytes]]:
    chunks = {p.name: (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
              for p in directory.glob("part-*.arrow")}
    return chunks, {p.name: p.read_bytes() for p in directory.glob("manifest-*.jsonl")}


def test_the_manifest_lists_every_chunk_as_written_and_the_totals(tmp_path: Path) -> None:
    _write(tmp_path)
    lines = [json.loads(line) for line in manifest_path(tmp_path, "w7").read_text().splitlines()]
    assert lines[-1] == {"final": True, "chunks": 3, "records": 15, "dropped": 2}
    for entry in lines[:-1]:
        data = (tmp_path / entry["chunk"]).read_bytes()
        assert entry["records"] == 5 and entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    worker, chunks, final = _verify(*_received(tmp_path))
    assert worker == "w7" and len(chunks) == 3 and final["records"] == len(read_timeline(tmp_path))


@pytest.mark.parametrize("damage", ["cut", "removed", "extra", "unclosed"])
def test_a_damaged_copy_is_an_error_naming_the_chunk(tmp_path: Path, damage: str) -> None:
    _write(tmp_path)
    chunk = tmp_path / "part-w7-000001.arrow"
    if damage == "cut":
        chunk.write_bytes(chunk.read_bytes()[:100])
    elif damage == "removed":
        chunk.unlink()
    elif damage == "extra":
        (tmp_path / "part-w7-000009.arrow").write_bytes(chunk.read_bytes())
    else:  # the worker died before it closed its timeline: the manifest has no last line
        path = manifest_path(tmp_path, "w7")
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(PlatformError) as err:
        _verify(*_received(tmp_path))
    expected = {"cut": "chunk part-w7-000001.arrow has 100 bytes", "removed": "chunk part-w7-000001.arrow is missing",
                "extra": "chunk part-w7-000009.arrow is not in manifest-w7.jsonl", "unclosed": "has no last line"}
    assert expected[damage] in str(err.value)


def test_a_corrected_chunk_is_on_the_harness_clock(tmp_path: Path) -> None:
    _write(tmp_path / "w")
    (tmp_path / "out").mkdir()
    _write_corrected(tmp_path / "w" / "part-w7-000002.arrow", tmp_path / "out" / "part-x.arrow", offset_ns=250_000_000)
    frame = read_timeline(tmp_path / "out")
    assert list(frame["start_ns"]) == [2_000_000_000 + i - 250_000_000 for i in range(5)]
    assert list(frame.columns) == SCHEMA.names and frame.dtypes["start_ns"] == "int64"


def test_an_exec_status_without_an_exit_code_is_a_failure() -> None:
    assert exit_code('{"metadata":{},"status":"Success"}', "pod x") == 0
    assert exit_code(json.dumps({"status": "Failure", "reason": "NonZeroExitCode", "details": {
        "causes": [{"reason": "ExitCode", "message": "3"}]}}), "pod x") == 3
    for cut in ("", "{\"status\": \"Fail", json.dumps({"status": "Failure", "message": "container not found"})):
        with pytest.raises(FaultError):
            exit_code(cut, "pod x")


def test_the_analysis_states_the_workers_clock_offsets_and_dropped_requests(tmp_path: Path) -> None:
    from synthetic_run import steady, write_repetition

    from harness.analysis import analyse_repetition
    from harness.analysis._settings import AnalysisSettings
    from harness.jsonfile import write_json_atomic
    from harness.platforms.kubernetes.timeline_copy import ClockOffset, CopyReport, WorkerCopy

    rep = write_repetition(tmp_path, "kill", "1", steady(0, 60, 20))
    report = CopyReport([WorkerCopy(pod=f"harness-load-r-worker-{i}", worker=f"w{i}", chunks=60, records=600,
                                    bytes=1, dropped=d, clock=ClockOffset(o, 400_000, 16), corrected=o > 400_000,
                                    copy_s=1.0) for i, (o, d) in enumerate([(-120_000, 0), (3_250_000, 7)])])
    write_json_atomic(rep / "timeline" / WORKERS_FILE, report.to_json())
    notes = analyse_repetition(rep, AnalysisSettings()).notes
    assert ("load from 2 worker pod(s), 1200 requests; clock offsets to the harness up to 3.25 ms (uncertainty "
            "up to ±0.4 ms), 1 corrected; 7 scheduled requests dropped") in notes, notes


def test_a_worker_that_never_opened_a_timeline_is_an_error_that_says_so() -> None:
    with pytest.raises(PlatformError, match="never opened a timeline"):
        _verify({}, {})
