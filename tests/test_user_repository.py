"""``harness up --model-repository``: the user's own models on the local platform, and a real pod kill
against the second model with the harness never told its inputs by hand."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness.events import EventKind, read_events
from harness.platforms.local.platform import LocalPlatform
from harness.timeline import read_timeline
from tests.helpers import wait_for
from tests.outside_triton import TEST_REPOSITORY, TEXTSTATS_INPUT

ROOT = Path(__file__).resolve().parent.parent


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=240, env={**os.environ, **(env or {})})


def test_a_model_whose_backend_is_missing_is_refused_before_anything_starts(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    shutil.copytree(TEST_REPOSITORY, repo)
    (repo / "resnet" / "1").mkdir(parents=True)
    (repo / "resnet" / "config.pbtxt").write_text('name: "resnet"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n')
    (repo / "scorer" / "1").mkdir(parents=True)
    (repo / "scorer" / "1" / "model.pt").write_bytes(b"")
    proc = harness("up", "--model-repository", str(repo), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "model 'resnet' needs the 'onnxruntime' backend" in proc.stderr
    assert "model 'scorer' needs the 'pytorch' backend" in proc.stderr
    assert "textstats" not in proc.stderr and "available here: ensemble, python" in proc.stderr
    assert not (tmp_path / "state" / "supervisor.pid").exists()


def test_up_serves_the_users_repository_and_a_pod_kill_runs_against_it(
        make_platform: Callable[..., LocalPlatform], tmp_path: Path) -> None:
    platform = make_platform(model_repository=TEST_REPOSITORY, replicas=2)
    status = platform.up()
    assert status.ready_replicas == 2
    assert status.details["model_repository"] == str(TEST_REPOSITORY)
    state = ["--state-dir", str(platform.state)]

    proc = harness("run", "experiments/slow-model-load.yaml", *state, "--dry-run")
    assert proc.returncode == 2 and "(slow_model_load) cannot run on the local platform" in proc.stderr

    reports = tmp_path / "reports"
    proc = harness("run", "experiments/pod-kill.yaml", *state, "--reports-dir", str(reports), "--warmup", "2",
                   "--observation", "3", "--users", "4", "--var", "recovery_wait_s=8",
                   "--var", f"harness_input_data={TEXTSTATS_INPUT}")  # an experiment setting, like the rest
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (rep,) = reports.glob("*/experiments/pod-kill/1")
    info = json.loads((rep / "experiment.json").read_text())
    frame = read_timeline(rep / "timeline")
    assert len(frame) > 100 and info["status"] == "completed"
    assert (frame[frame["start_ns"] < info["fault_start_ns"]]["outcome"] == "ok").all()
    events = list(read_events(rep / "events.jsonl"))
    killed = [e for e in events if e.kind == EventKind.EXITED and e.ts_ns >= info["fault_start_ns"]]
    assert killed and any(e.kind == EventKind.READY and e.ts_ns > killed[0].ts_ns for e in events)
    plan = json.loads((rep / "request-plan.json").read_text())
    assert [m["name"] for m in plan["models"]] == ["textstats"]  # found on the server, not told
    service = json.loads(next(reports.glob("*/run.json")).read_text())["service"]
    assert service["model_repository"] == str(TEST_REPOSITORY) and service["deployment"] == "triton"
    assert [(m["name"], m["state"]) for m in service["models"]] == [("textstats", "READY")]
    run_dir = reports / rep.relative_to(reports).parts[0]
    for page in ("index.html", "summary.md"):  # the report says which release it is evidence about
        text = (run_dir / page).read_text()
        assert "Service under test" in text and "textstats v1 (READY)" in text and str(TEST_REPOSITORY) in text
    assert "Service under test" in proc.stdout
    wait_for(lambda: platform.status().ready_replicas == 2, 60, "the killed replica back")
