"""A fault that did not land is never evidence: each family, planted to miss against the real local platform.

Each plant is an ordinary experiment run by ``harness run`` under the Locust load, with one extra step that
makes the fault miss the way it misses in the field: the replica's supervisor frozen so nothing replaces a
killed pod, the nftables rules removed behind the harness's back, a model that ignores the load-delay
parameter, a memory hog killed by someone else. Every such repetition must be void: exit code 5, the reason
in one line, and no "supported" verdict in results.json, the HTML report or the summary. The bad-input table
at the end checks that nothing is started or injected when an experiment or a --var is wrong.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.deployment import DEFAULT_MANIFEST
from harness.faults.nft import harness_tables
from harness.platforms.local.platform import LocalPlatform
from tests.conftest import local_settings
from tests.helpers import processes_mentioning, wait_for

ROOT = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="nftables and memory cgroups need root")

# A replica model that ignores the load-delay parameter, as a user's model might: the env override wins
# over the config parameter in the reference model, so "0" pins the load time.
_PINNED_DELAY = "0"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    base = tmp_path_factory.mktemp("landing")
    docs = list(yaml.safe_load_all(DEFAULT_MANIFEST.read_text()))
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    for env in container["env"]:
        if env["name"] == "HARNESS_MODEL_LOAD_DELAY_S":
            env["value"] = _PINNED_DELAY
    manifest = base / "pinned-delay.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    p = LocalPlatform(local_settings(base, replicas=2, manifest=manifest))
    p.up()
    yield p
    p.down()


def _python_step(name: str, code: str) -> dict[str, Any]:
    """A Chaos Toolkit process action running ``code`` with the repetition's directory as argv[1]."""
    return {"type": "action", "name": name,
            "provider": {"type": "process", "path": sys.executable,
                         "arguments": ["-c", code, "${harness_run_dir}"]}}


def _action(func: str, pause: float = 0, module: str = "harness.chaos.actions", **arguments: Any) -> dict[str, Any]:
    step: dict[str, Any] = {"type": "action", "name": func,
                            "provider": {"type": "python", "module": module, "func": func, "arguments": arguments}}
    if pause:
        step["pauses"] = {"after": pause}
    return step


def _experiment(tmp_path: Path, fault: str, method: list[dict[str, Any]],
                rollbacks: list[dict[str, Any]] | None = None) -> Path:
    doc = yaml.safe_load((ROOT / "experiments" / "pod-kill.yaml").read_text())
    doc["configuration"].update(harness_fault=fault, harness_warmup_s=2, harness_observation_s=3,
                                analysis={"stability_period_s": 3}, harness_users=2,
                                harness_profile=str(ROOT / "loadprofiles" / "steady.py"))
    doc["method"] = method
    doc["rollbacks"] = [_action("rollback_all", module="harness.chaos.rollbacks"), *(rollbacks or [])]
    path = tmp_path / f"{fault}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _run(platform: LocalPlatform, experiment: Path, tmp_path: Path, *extra: str) -> tuple[int, str, Path]:
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(experiment), "--state-dir",
                           str(platform.state), "--reports-dir", str(reports), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=240)
    runs = sorted(reports.glob("*/run.json"))
    return proc.returncode, proc.stdout + proc.stderr, runs[-1].parent if runs else reports


def _assert_void(code: int, out: str, run_dir: Path, reason: str) -> None:
    assert code == 5, out
    assert "Traceback" not in out, out
    info = json.loads(next(run_dir.glob("experiments/*/1/experiment.json")).read_text())
    assert info["void"] and reason in info["void"], info["void"]
    assert any(not landing["landed"] for landing in info["landings"]) or "failed" in info["void"]
    assert f"VOID: {info['void']}" in out
    results = json.loads((run_dir / "results.json").read_text())
    assert results["passed"] is False
    assert not _claims_support(results), "results.json"
    html = (run_dir / "index.html").read_text()
    assert "</b>: supported" not in html and "</b> (required): supported" not in html, "index.html"
    assert "every repetition is void" in html, "index.html"
    summary = out[out.index("experiment "):] if "experiment " in out else out
    assert " supported " not in summary and " yes " not in summary, summary


def _claims_support(doc: Any) -> bool:
    """Whether any verdict in a results document says a tier is supported."""
    if isinstance(doc, dict):
        return any((key == "supported" and value is True) or (key == "verdict" and value == "supported")
                   or _claims_support(value) for key, value in doc.items())
    if isinstance(doc, list):
        return any(_claims_support(item) for item in doc)
    return False


def _nothing_left(platform: LocalPlatform) -> None:
    assert platform.fault_store().records() == []
    prefix = str(platform.settings.replica_address_base).rsplit(".", 1)[0]
    assert not any(prefix in t for t in harness_tables())
    assert [p for p in processes_mentioning("harness.faults.hog") if str(platform.state) in p] == []
    wait_for(lambda: platform.status().ready_replicas == 2, 90, "both replicas ready again")


def test_pod_kill_with_nothing_to_replace_the_pod_is_void(platform: LocalPlatform, tmp_path: Path) -> None:
    """The supervisor (the Deployment's controller) is frozen: the kill is sent, but no replica replaces it."""
    freeze = f"import os, signal; os.kill(int(open('{platform.state}/supervisor.pid').read()), signal.SIGSTOP)"
    thaw = f"import os, signal; os.kill(int(open('{platform.state}/supervisor.pid').read()), signal.SIGCONT)"
    path = _experiment(tmp_path, "pod-kill", [
        _python_step("freeze-the-controller", freeze),
        _action("kill_replicas", pause=1, names=["triton-1"], verify_timeout_s=2),
        _python_step("thaw-the-controller", thaw),
    ], rollbacks=[_python_step("thaw-if-left", thaw)])
    try:
        code, out, run_dir = _run(platform, path, tmp_path)
    finally:
        os.kill(int((platform.state / "supervisor.pid").read_text()), signal.SIGCONT)
    _assert_void(code, out, run_dir, "pod-kill fault did not land")
    _nothing_left(platform)


@needs_root
def test_network_block_removed_behind_the_harness_is_void(platform: LocalPlatform, tmp_path: Path) -> None:
    remove = ("import json, subprocess, sys; "
              "t = json.loads(open(sys.argv[1] + '/injected.jsonl').readline())['record']['table']; "
              "subprocess.run(['nft', 'delete', 'table', 'inet', t], check=True)")
    path = _experiment(tmp_path, "network-policy-block", [
        _action("block_network", pause=0.5, mode="all"),
        _python_step("someone-removes-the-rules", remove),
        _action("unblock_network", module="harness.chaos.rollbacks"),
    ])
    code, out, run_dir = _run(platform, path, tmp_path)
    _assert_void(code, out, run_dir, "not enforced")
    _nothing_left(platform)


def test_slow_load_that_the_model_ignores_is_void(platform: LocalPlatform, tmp_path: Path) -> None:
    """The replicas pin their load delay (env over parameter), so a reload with a delay is fast: no slow load."""
    path = _experiment(tmp_path, "slow-model-load", [
        _action("slow_model_load", pause=1, names=["triton-1"], delay_s=3, trigger="reload"),
        _action("restore_model_load", module="harness.chaos.rollbacks"),
    ])
    code, out, run_dir = _run(platform, path, tmp_path)
    _assert_void(code, out, run_dir, "the delay parameter did not take effect")
    _nothing_left(platform)


@needs_root
def test_memory_hog_killed_by_someone_else_is_void(platform: LocalPlatform, tmp_path: Path) -> None:
    kill_hog = ("import subprocess, sys, time; "
                "run = sys.argv[1].split('/experiments/')[0].rsplit('/', 1)[1]; "
                # the bracketed pattern does not match this process's own command line
                "subprocess.run(['pkill', '-KILL', '-f', 'harness[.]faults[.]hog.*' + run], check=True); "
                "time.sleep(3)")
    path = _experiment(tmp_path, "gpu-memory-pressure", [
        _action("memory_pressure", pause=1, names=["triton-1"], leave_free_mb=8, headroom_mb=96, duration_s=30),
        _python_step("someone-kills-the-hog", kill_hog),
        _action("release_memory_pressure", module="harness.chaos.rollbacks"),
    ])
    code, out, run_dir = _run(platform, path, tmp_path)
    _assert_void(code, out, run_dir, "pressure lost before the release")
    _nothing_left(platform)


BAD_INPUTS: list[tuple[str, list[str], list[str]]] = [
    ("pod-kill.yaml", ["--var", "kill_signal=SIGHUP"], ["signal: Input should be 'SIGKILL' or 'SIGTERM'"]),
    ("pod-kill.yaml", ["--var", "kill_count=7"], ["count 7 is ignored with mode 'one'"]),
    ("pod-kill.yaml", ["--var", "kill_grace_s=5"], ["grace_s 5 is ignored with signal SIGKILL"]),
    ("pod-kill.yaml", ["--var", "kill_mode=count"], ["mode 'count' needs count"]),
    ("slow-model-load.yaml", ["--var", "slow_trigger=relod"], ["trigger: Input should be 'restart' or 'reload'"]),
    ("gpu-memory-pressure.yaml", ["--var", "pressure_max_s=5000"], ["duration_s: Input should be less than or equal"]),
    ("network-policy-block.yaml", ["--var", "block_s=-1"], ["pause after must be a number"]),
    ("pod-kill.yaml", ["--users", "0", "--var", "harness_profile=loadprofiles/nope.py"],
     ["harness_users: Input should be greater than or equal to 1", "profile loadprofiles/nope.py does not exist"]),
    ("pod-kill.yaml", ["--var", "harness_protocol=smtp", "--var", "harness_userz=3"],
     ["harness_protocol: Input should be 'http' or 'grpc'", "'harness_userz' is not a harness setting"]),
]


@pytest.mark.parametrize(("experiment", "args", "expected"), BAD_INPUTS,
                         ids=[" ".join(a) for _, a, _ in BAD_INPUTS])
def test_bad_input_is_refused_before_anything_runs(platform: LocalPlatform, tmp_path: Path, experiment: str,
                                                   args: list[str], expected: list[str]) -> None:
    before = {r.name: (r.pid, r.restarts) for r in platform.status().replicas}
    code, out, _ = _run(platform, ROOT / "experiments" / experiment, tmp_path, *args)
    assert code == 2, out
    assert "Traceback" not in out and "nothing was injected" in out
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    assert len(problems) == len(expected), out
    for fragment in expected:
        assert sum(fragment in line for line in problems) == 1, (fragment, out)
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").iterdir())
    assert {r.name: (r.pid, r.restarts) for r in platform.status().replicas} == before


@pytest.mark.parametrize("content", ["[" * 200_000 + "]" * 200_000, "a: " + "{b: " * 5000 + "1" + "}" * 5000,
                                     "title: [unclosed\n", "\x00\x01binary"], ids=["deep-json", "deep-yaml",
                                                                                   "broken-yaml", "binary"])
def test_malformed_files_give_one_clear_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / ("exp.json" if content.startswith("[") else "exp.yaml")
    path.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(path), "--dry-run", "--state-dir",
                           str(tmp_path / "none")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "RecursionError" not in out, out
    assert proc.returncode == 2, out  # before the platform (not up here) is even looked at
    assert str(path) in out


def _frozen_and_killed(platform: LocalPlatform, replica: str) -> tuple[str, str]:
    """Python steps: freeze the supervisor and SIGKILL the replica's server (its port closes, nothing restarts
    it), and thaw the supervisor again."""
    pid = next(r.pid for r in platform.status().replicas if r.name == replica)
    sup = f"int(open('{platform.state}/supervisor.pid').read())"
    kill = (f"import os, signal, socket, time; os.kill({sup}, signal.SIGSTOP); os.kill({pid}, signal.SIGKILL); "
            "time.sleep(0.5)")
    thaw = f"import os, signal; os.kill({sup}, signal.SIGCONT)"
    return kill, thaw


@needs_root
def test_network_block_of_a_target_that_already_crashed_is_void(platform: LocalPlatform, tmp_path: Path) -> None:
    """The connect baseline: a replica whose port is already closed cannot show a block; nothing is injected."""
    kill, thaw = _frozen_and_killed(platform, "triton-1")
    path = _experiment(tmp_path, "network-policy-block", [
        _python_step("the-replica-crashed-before", kill),
        _action("block_network", pause=0.5, names=["triton-1"]),
        _python_step("thaw", thaw),
    ], rollbacks=[_python_step("thaw-if-left", thaw)])
    try:
        code, out, run_dir = _run(platform, path, tmp_path)
    finally:
        os.kill(int((platform.state / "supervisor.pid").read_text()), signal.SIGCONT)
    _assert_void(code, out, run_dir, "before the block, connections to triton-1 were refused")
    injected = next(run_dir.glob("experiments/*/1")) / "injected.jsonl"
    assert not injected.exists() or "network-policy-block" not in injected.read_text()
    _nothing_left(platform)


@needs_root
def test_network_block_outcomes_timed_out_and_refused_are_told_apart(platform: LocalPlatform) -> None:
    """Under the harness's drop a blocked replica times out; once its rules are gone and its server is dead it
    refuses, and the held check says the block did not hold instead of counting the refusal as a block."""
    from harness.faults import network_block
    from harness.faults.family import FaultScope

    scope = FaultScope(ops=platform.fault_ops(), status=platform.status, run_id="landing-outcomes")
    args = network_block.Args(names=["triton-1"])
    assert network_block.baseline(scope, ["triton-1"]).landed
    record = network_block.inject(scope, ["triton-1"], args, "nftables")
    kill, _thaw = _frozen_and_killed(platform, "triton-1")
    try:
        landing = network_block.verify(scope, ["triton-1"], "nftables")
        assert landing.landed and landing.measured["connect"] == {"triton-1": "timed out"}, landing
        subprocess.run(["nft", "delete", "table", "inet", record["table"]], check=True)
        subprocess.run([sys.executable, "-c", kill], check=True)
        held = network_block.verify_held(scope, ["triton-1"], "nftables")
        assert not held.landed and held.measured["connect"] == {"triton-1": "refused"}, held
        assert "refused just before the block was lifted, not dropped" in held.detail
    finally:
        os.kill(int((platform.state / "supervisor.pid").read_text()), signal.SIGCONT)
        platform.fault_ops().unblock_network(record)
    _nothing_left(platform)
