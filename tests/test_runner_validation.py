"""Bad experiments are refused before any fault, with every problem listed at once; --dry-run injects nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.runner import RunOptions, describe_plan, load_plans, parse_vars

ROOT = Path(__file__).resolve().parent.parent
REPLICAS = ["triton-0", "triton-1"]


def _options(**kw: object) -> RunOptions:
    return RunOptions(**kw)  # type: ignore[arg-type]


def _experiment(tmp_path: Path, method: list[dict[str, object]], **config: object) -> Path:
    doc = yaml.safe_load((ROOT / "experiments" / "pod-kill.yaml").read_text())
    doc["method"] = method
    doc["configuration"].update(config, harness_profile=str(ROOT / "loadprofiles" / "steady.py"))
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _action(func: str, **arguments: object) -> dict[str, object]:
    return {"type": "action", "name": func, "provider": {"type": "python", "module": "harness.chaos.actions",
                                                         "func": func, "arguments": arguments}}


def test_every_shipped_experiment_is_valid_and_dry_run_resolves_targets() -> None:
    paths = sorted((ROOT / "experiments").glob("*.yaml"))
    assert len(paths) == 12
    plans = load_plans(paths, _options(variables={"harness_profile": str(ROOT / "loadprofiles/steady.py")}),
                       REPLICAS)
    text = describe_plan(plans, REPLICAS, 1)
    assert "kill_replicas" in text and "block_network" in text and "nothing was injected" in text
    assert {p.fault for p in plans} == {"pod-kill", "network-policy-block", "slow-model-load",
                                        "gpu-memory-pressure", "compound", "rolling-update", "probe-kills-slow-load",
                                        "oom-at-load", "corrupt-weights-rollout", "model-unload",
                                        "bad-version-rollout", "queue-overflow"}
    for func in ("rolling_update", "probe_kills_slow_load", "oom_at_load", "corrupt_weights_rollout", "unload_model",
                 "bad_version_rollout", "queue_overflow"):
        assert func in text


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    path = _experiment(tmp_path, [
        _action("kill_replicas", mode="several"),
        _action("kill_replicas", mode="count", count=5),
        _action("kill_replicas", names=["triton-9"]),
        _action("block_network", max_duration_s=-1),
        _action("memory_pressure", duration_s="long"),
        _action("kill_replicas", bogus=1),
        {"type": "action", "name": "nope", "provider": {"type": "python", "module": "harness.chaos.actions",
                                                        "func": "does_not_exist"}},
    ])
    with pytest.raises(ConfigError) as err:
        load_plans([path], _options(), REPLICAS)
    text = str(err.value)
    for fragment in ("mode: Input should be 'one', 'count', 'percent' or 'all' (got 'several')",
                     "count 5 is more than the 2 replicas", "match no replica",
                     "max_duration_s: Input should be greater than 0 (got -1)",
                     "duration_s: Input should be a valid number (got 'long')", "bogus: unknown argument",
                     "does_not_exist", "nothing was injected"):
        assert fragment in text, fragment


def test_malformed_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: [unclosed\n")
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    nocontrol = tmp_path / "nocontrol.yaml"
    doc = yaml.safe_load((ROOT / "experiments" / "pod-kill.yaml").read_text())
    doc.pop("controls")
    nocontrol.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_plans([bad, notmap, tmp_path / "missing.yaml", nocontrol], _options(), REPLICAS)
    text = str(err.value)
    assert "not valid YAML" in text and "expected a mapping" in text and "cannot read it" in text
    assert "declares no 'harness.chaos.control' control" in text


def test_vars_and_var_files_override_configuration(tmp_path: Path) -> None:
    var_file = tmp_path / "vars.yaml"
    var_file.write_text(yaml.safe_dump({"configuration": {"kill_signal": "SIGTERM", "kill_grace_s": 2}}))
    variables = parse_vars(["recovery_wait_s=3", "kill_mode=all"])
    assert variables == {"recovery_wait_s": 3, "kill_mode": "all"}
    plan = load_plans([ROOT / "experiments" / "pod-kill.yaml"],
                      _options(variables={**variables, "harness_profile": str(ROOT / "loadprofiles/steady.py")},
                               var_files=[var_file]), REPLICAS)[0]
    assert plan.configuration["kill_signal"] == "SIGTERM" and plan.configuration["kill_grace_s"] == 2
    assert "targets ['triton-0', 'triton-1']" in describe_plan([plan], REPLICAS, 1)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_vars(["novalue"])


def test_cli_refuses_when_the_platform_is_not_up(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(ROOT / "experiments" / "pod-kill.yaml"),
                           "--state-dir", str(tmp_path / "none")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 4 and "not up" in proc.stderr


def test_nightly_and_pre_release_entries_validate_with_their_vars() -> None:
    """Every suite entry and game-day step is a valid experiment with the vars it sets (before any run)."""
    from harness.gameday.runbook import load_runbook
    from harness.suite import load_suite

    suite = load_suite(ROOT / "experiments" / "suites" / "nightly.yaml",
                       {"single-point", "active-standby", "99.9", "multi-active"})
    runbook = load_runbook(ROOT / "experiments" / "gamedays" / "pre-release.yaml")
    entries = [(e.file, dict(e.variables)) for e in suite.entries]
    entries += [(s.experiment, dict(s.variables)) for s in runbook.steps if s.experiment]
    faults = set()
    for file, variables in entries:
        variables["harness_profile"] = str(ROOT / "loadprofiles" / "steady.py")
        plans = load_plans([ROOT / file], _options(variables=variables), REPLICAS)
        faults.add(plans[0].fault)
    assert {"rolling-update", "probe-kills-slow-load", "corrupt-weights-rollout", "oom-at-load"} <= faults


def _problems(tmp_path: Path, method: list[dict[str, object]], **config: object) -> str:
    with pytest.raises(ConfigError) as err:
        load_plans([_experiment(tmp_path, method, **config)], _options(), REPLICAS)
    return str(err.value)


def _pause(step: dict[str, object], after: float) -> dict[str, object]:
    return {**step, "pauses": {"after": after}}


def test_analysis_fault_label_observation_and_hog_lifetime_are_checked_before_the_run(tmp_path: Path) -> None:
    kill = _pause(_action("kill_replicas", mode="one"), 10)
    # configuration.analysis and the objective: refused now, not by the report after the run
    assert "unknown keys ['stabilty_s']" in _problems(tmp_path, [kill], analysis={"stabilty_s": 5})
    assert "window_s must be positive" in _problems(tmp_path, [kill], analysis={"window_s": 0})
    assert "unknown keys ['objective.p99_s']" in _problems(tmp_path, [kill], analysis={"objective": {"p99_s": 1}})
    assert "max_error_ratio 1 makes the objective impossible" in _problems(tmp_path, [kill], max_error_ratio=1)
    # the fault label must name what the method injects
    text = _problems(tmp_path, [kill], harness_fault="network-policy-block")
    assert "harness_fault is 'network-policy-block' but the method injects pod-kill" in text
    # an observation shorter than the stability period (10 s) can only be inconclusive
    short = _problems(tmp_path, [_pause(_action("kill_replicas", mode="one"), 2)], harness_observation_s=3)
    assert "only 5s are observed after the fault ends" in short and "stability_period_s" in short
    # a hog that lets go before the release step
    hog = [_pause(_action("memory_pressure", names=["triton-1"], leave_free_mb=8, headroom_mb=96, duration_s=5), 8),
           {"type": "action", "name": "release", "provider": {"type": "python", "module": "harness.chaos.rollbacks",
                                                              "func": "release_memory_pressure"},
            "pauses": {"after": 10}}]
    text = _problems(tmp_path, hog, harness_fault="gpu-memory-pressure")
    assert "memory_pressure duration_s 5s ends before the release step, which comes at least 8s later" in text
    # and all of it is fine when it adds up
    load_plans([_experiment(tmp_path, [kill], harness_observation_s=3, analysis={"stability_period_s": 5})],
               _options(), REPLICAS)


def test_a_suite_name_picks_its_platforms_variant_where_one_is_shipped() -> None:
    """``harness suite nightly --platform kubernetes`` must run the nightly sized for a cluster (the local one is
    refused there), while a path is taken as it is and a name without a variant stays the same suite."""
    from harness.suite import SUITES_DIR, find_suite

    assert find_suite("nightly").name == "nightly.yaml"
    assert find_suite("nightly", "kubernetes").name == "nightly-kubernetes.yaml"
    assert find_suite(str(SUITES_DIR / "nightly.yaml"), "kubernetes").name == "nightly.yaml"
    assert find_suite("demo", "kubernetes").name == "demo.yaml"
    assert not (SUITES_DIR / "demo-kubernetes.yaml").exists()
