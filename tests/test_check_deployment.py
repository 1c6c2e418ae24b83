"""``harness check-deployment`` flags each planted mistake with its numbers and passes the reference manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from harness.deployment import DEFAULT_MANIFEST
from harness.triton.modelrepo import REFERENCE_REPOSITORY

ROOT = Path(__file__).resolve().parent.parent

Docs = list[dict[str, Any]]


def _container(docs: Docs) -> dict[str, Any]:
    return docs[0]["spec"]["template"]["spec"]["containers"][0]


def _pod(docs: Docs) -> dict[str, Any]:
    return docs[0]["spec"]["template"]["spec"]


def _set_args(docs: Docs, flag: str, value: str) -> None:
    c = _container(docs)
    c["args"] = [a for a in c["args"] if not a.startswith(flag)] + [f"{flag}={value}"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(SystemExit) as exc:
        main(["check-deployment", "--json", *argv])
    return int(exc.value.code or 0), json.loads(capsys.readouterr().out)


def _write(tmp_path: Path, docs: Docs) -> str:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


# (what was planted, how, extra CLI arguments, the check that must flag it, its severity)
PLANTED: list[tuple[str, Callable[[Docs], None], list[str], str, str]] = [
    ("startup budget below the load time",
     lambda d: _container(d)["startupProbe"].update(periodSeconds=1, failureThreshold=3), ["--load-time", "8"],
     "load-budget", "error"),
    ("no startup probe, short liveness",
     lambda d: (_container(d).pop("startupProbe"), _container(d)["livenessProbe"].update(periodSeconds=2)),
     ["--load-time", "8"], "load-budget", "error"),
    ("liveness on readiness", lambda d: _container(d)["livenessProbe"]["httpGet"].update(path="/v2/health/ready"),
     [], "liveness-path", "error"),
    ("memory limit below the load-time peak", lambda d: _container(d)["resources"]["limits"].update(memory="512Mi"),
     ["--load-peak-mb", "900"], "memory-limit", "error"),
    ("no memory limit", lambda d: _container(d)["resources"]["limits"].pop("memory"), [], "memory-limit", "warning"),
    ("one replica claimed active-standby", lambda d: d[0]["spec"].update(replicas=1), ["--tier", "active-standby"],
     "tier", "error"),
    ("no PodDisruptionBudget for 99.9", lambda d: d.pop(), ["--tier", "99.9"], "tier", "error"),
    ("multi-active without anti-affinity", lambda d: d[0]["spec"].update(replicas=3), ["--tier", "multi-active"],
     "tier", "error"),
    ("no readiness probe", lambda d: _container(d).pop("readinessProbe"), [], "readiness", "error"),
    ("readiness on liveness", lambda d: _container(d)["readinessProbe"]["httpGet"].update(path="/v2/health/live"),
     [], "readiness", "error"),
    ("strict readiness off", lambda d: _set_args(d, "--strict-readiness", "false"), [], "readiness", "error"),
    ("grace below the exit timeout", lambda d: _pod(d).update(terminationGracePeriodSeconds=10), [], "shutdown",
     "error"),
    ("preStop longer than the grace allows",
     lambda d: _container(d).update(lifecycle={"preStop": {"exec": {"command": ["sleep", "15"]}}}), [], "shutdown",
     "error"),
    ("maxUnavailable of every replica",
     lambda d: d[0]["spec"].update(strategy={"rollingUpdate": {"maxUnavailable": 2, "maxSurge": 0}}), [], "rollout",
     "error"),
    ("Recreate strategy", lambda d: d[0]["spec"].update(strategy={"type": "Recreate"}), [], "rollout", "error"),
]


@pytest.mark.parametrize(("planted", "change", "extra", "check", "severity"), PLANTED, ids=[p[0] for p in PLANTED])
def test_each_planted_mistake_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str], planted: str,
                                         change: Callable[[Docs], None], extra: list[str], check: str,
                                         severity: str) -> None:
    docs = list(yaml.safe_load_all(DEFAULT_MANIFEST.read_text()))
    change(docs)
    code, report = _run(capsys, "--manifest", _write(tmp_path, docs), *extra)
    finding = next(f for f in report["findings"] if f["check"] == check)
    assert finding["severity"] == severity, finding
    assert finding["experiment"].startswith("experiments/") and Path(finding["experiment"]).exists()
    assert code == (1 if severity == "error" else 0)
    # the planted mistake is the only error: every other check still passes on the rest of the manifest
    assert [f["check"] for f in report["findings"] if f["severity"] == "error"] == ([check] if severity == "error"
                                                                                    else [])


def test_missing_dynamic_batching_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (REFERENCE_REPOSITORY / "mlp" / "config.pbtxt").read_text()
    start = text.index("dynamic_batching")
    config = tmp_path / "config.pbtxt"
    config.write_text(text[:start] + text[text.index("}", start) + 1:])
    code, report = _run(capsys, "--model-config", str(config))
    assert next(f for f in report["findings"] if f["check"] == "dynamic-batching")["severity"] == "warning"
    assert code == 0


def test_reference_manifest_passes_with_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _run(capsys, "--tier", "99.9", "--load-time", "10")
    assert code == 0 and report["passed"] and report["errors"] == 0
    budget = next(f for f in report["findings"] if f["check"] == "load-budget")
    assert budget["severity"] == "ok" and budget["numbers"]["budget_s"] == 120.0


def test_a_sidecar_listed_first_is_not_judged_as_triton(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The checks judge Triton's container (found by its HTTP port, as the platform finds it), not whichever
    container comes first: a sidecar without probes or limits must not turn into findings about Triton."""
    docs = list(yaml.safe_load_all(DEFAULT_MANIFEST.read_text()))
    _container(docs)["resources"]["limits"].update(memory="512Mi")  # the mistake, on Triton's container
    _pod(docs)["containers"].insert(0, {"name": "log-shipper", "image": "busybox", "resources": {
        "limits": {"memory": "8Gi"}}})
    code, report = _run(capsys, "--manifest", _write(tmp_path, docs), "--load-time", "10", "--load-peak-mb", "900")
    assert code == 1 and [f["check"] for f in report["findings"] if f["severity"] == "error"] == ["memory-limit"]
    assert next(f for f in report["findings"] if f["check"] == "load-budget")["severity"] == "ok"


def test_bad_manifest_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nmetadata: {name: x}\n")
    with pytest.raises(SystemExit) as exc:
        main(["check-deployment", "--manifest", str(bad)])
    assert exc.value.code == 2


def test_measure_starts_one_replica_and_judges_with_what_it_measured(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    docs = list(yaml.safe_load_all(DEFAULT_MANIFEST.read_text()))
    _container(docs)["resources"]["limits"].update(memory="16Mi")  # below any real load-time peak
    _container(docs)["startupProbe"].update(periodSeconds=1, failureThreshold=1)  # 1 s: below a real load
    code, report = _run(capsys, "--manifest", _write(tmp_path, docs), "--measure")
    by_check = {f["check"]: f for f in report["findings"]}
    memory, budget = by_check["memory-limit"], by_check["load-budget"]
    assert memory["severity"] == "error" and memory["numbers"]["peak_source"] == "measured"
    assert memory["numbers"]["load_peak_mb"] > 16
    assert budget["numbers"]["load_time_s"] > 0 and code == 1


def test_an_empty_duration_from_the_harness_means_until_stopped() -> None:
    """The load of an experiment (LoadSettings.duration_s None -> HARNESS_DURATION="") must outlast a method
    longer than the profile's 60 s default, or a rollout's after-check finds no load (it did).

    In a child process: importing a profile imports Locust, whose gevent patching would break this one."""
    code = "from loadprofiles.steady import Steady; print(Steady().duration_s)"
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_DURATION"}
    for value, expected in (("", "None"), (None, "60")):
        run_env = env if value is None else {**env, "HARNESS_DURATION": value}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=run_env,
                             timeout=60)
        assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == expected, out.stdout + out.stderr
