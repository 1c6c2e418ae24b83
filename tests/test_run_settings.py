"""The configuration crosses the Chaos Toolkit boundary once: the commands write it (``PlatformRef``, the run
settings), Chaos Toolkit carries the mapping, and the control and activities parse it with one model."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

import pytest
from chaoslib.configuration import load_configuration
from chaoslib.exceptions import InterruptExecution

from harness.chaos.context import RunContext
from harness.chaos.control import before_experiment_control
from harness.errors import ConfigError
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.local.platform import LocalPlatform
from harness.platforms.registry import PlatformRef, add_platform_arguments, platform_args_for_chaos
from harness.run_settings import RunSettings, check_run_settings


def _flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_platform_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("ref", [
    PlatformRef(),
    PlatformRef(name="local", state_dir=Path("/var/tmp/harness state")),
    PlatformRef(name="kubernetes", state_dir=Path("/tmp/k8s"), namespace="team-a", kube_context="sandbox",
                allow_privileged_agent=True, agent_image="harness/agent:1"),
])
def test_platform_ref_round_trips_through_chaos_toolkits_configuration(ref: PlatformRef) -> None:
    """What a command writes is what every activity reads back, after Chaos Toolkit loaded the mapping."""
    carried = load_configuration(ref.to_configuration())
    assert PlatformRef.from_configuration(carried) == ref
    assert RunSettings.from_configuration(carried).platform == ref


def test_the_commands_flags_become_the_same_configuration_keys_as_before(tmp_path: Path) -> None:
    """Experiment files and ``--var`` keep their keys; unset flags write nothing (no nulls over a file's own)."""
    args = _flags("--platform", "kubernetes", "--state-dir", str(tmp_path / "local"), "--k8s-state-dir",
                  str(tmp_path / "k8s"), "--namespace", "team-a", "--context", "sandbox", "--allow-privileged-agent",
                  "--agent-image", "harness/agent:1")
    assert platform_args_for_chaos(args) == {
        "harness_platform": "kubernetes", "harness_state_dir": str(tmp_path / "k8s"), "harness_namespace": "team-a",
        "harness_kube_context": "sandbox", "harness_allow_privileged_agent": True,
        "harness_agent_image": "harness/agent:1"}
    assert platform_args_for_chaos(_flags("--state-dir", str(tmp_path))) == {
        "harness_platform": "local", "harness_state_dir": str(tmp_path)}
    assert platform_args_for_chaos(_flags()) == {"harness_platform": "local"}


def test_an_activity_opens_the_platform_the_command_selected(tmp_path: Path) -> None:
    """No argparse detour: the activity's RunContext opens the reference the command wrote."""
    configuration = {**PlatformRef.from_args(_flags("--state-dir", str(tmp_path / "state"))).to_configuration(),
                     "harness_run_dir": str(tmp_path / "rep")}
    platform = RunContext.from_configuration(configuration).platform()
    assert isinstance(platform, LocalPlatform)
    assert platform.state == tmp_path / "state"
    # a string "false" (a --var typo) must not allow a privileged pod
    assert not PlatformRef.from_configuration({"harness_allow_privileged_agent": "false"}).allow_privileged_agent


def test_defaults_live_in_the_model_only() -> None:
    settings = RunSettings.from_configuration({"harness_users": None, "harness_platform": ""})
    assert (settings.harness_users, settings.harness_warmup_s, settings.harness_observation_s) == (8, 5.0, 20.0)
    assert settings.platform == PlatformRef() and settings.load_enabled and not settings.load_in_cluster
    assert settings.request_options() is None  # as the load process's environment says
    explicit = RunSettings.from_configuration({"harness_batch": 1, "harness_platform": "kubernetes"})
    options = explicit.request_options()
    assert options is not None and options.batch == 1
    assert explicit.load_in_cluster  # the in-cluster load is Kubernetes' default


def test_a_bad_configuration_is_one_error_listing_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        RunSettings.from_configuration({"harness_users": 0, "harness_protocol": "udp", "harness_load": "maybe"})
    text = str(caught.value)
    assert caught.value.exit_code == 2 and "nothing was injected" in text
    for key in ("harness_users", "harness_protocol", "harness_load"):
        assert f"configuration {key}" in text


def test_connections_per_request_reach_the_load_and_are_refused_over_grpc() -> None:
    settings = RunSettings.from_configuration({"harness_connections": "per-request"})
    assert settings.load_settings().connections == "per-request"
    assert RunSettings.from_configuration({}).load_settings().connections == "kept"
    with pytest.raises(ConfigError, match="harness_connections: per-request connections are an HTTP client's"):
        RunSettings.from_configuration({"harness_connections": "per-request", "harness_protocol": "grpc"})
    with pytest.raises(ConfigError, match="configuration harness_connections"):
        RunSettings.from_configuration({"harness_connections": "sometimes"})


def test_the_control_refuses_a_bad_configuration_before_it_starts_anything(tmp_path: Path) -> None:
    """A plain ``chaos run`` is not validated by ``harness run``: the control stops it before load or fault."""
    handler = signal.getsignal(signal.SIGTERM)
    rep = tmp_path / "rep"
    with pytest.raises(InterruptExecution, match="harness_users"):
        before_experiment_control({"title": "bad"}, configuration={"harness_users": "many",
                                                                   "harness_run_dir": str(rep)})
    assert not rep.exists()  # no run directory, no load.pid, no experiment.json
    assert signal.getsignal(signal.SIGTERM) == handler  # and no signal handler left behind


def test_an_experiment_file_cannot_grant_the_privileged_agent() -> None:
    """Only ``--allow-privileged-agent`` writes that key; in a file (or ``--var``) it is not a setting, exit 2."""
    _, problems = check_run_settings({"harness_allow_privileged_agent": True, "harness_load": False}, "x.yaml", {})
    assert [p for p in problems if "'harness_allow_privileged_agent' is not a harness setting" in p]


def test_kubernetes_flags_reach_the_activities_without_a_state_dir(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``harness run --platform kubernetes --kubeconfig K --namespace NS``, as ``harness sandbox up`` prints it, with
    no ``--k8s-state-dir``: the activities fell back to the experiment's own default (the local platform's
    directory), found none of what ``up`` saved, and the control failed with "no kubeconfig at ~/.kube/config"."""
    monkeypatch.setenv("HARNESS_K8S_STATE_DIR", str(tmp_path / "k8s"))
    kubeconfig = tmp_path / "kubeconfig"
    args = _flags("--platform", "kubernetes", "--kubeconfig", str(kubeconfig), "--namespace", "team-a")
    experiment_defaults = {"harness_platform": "local", "harness_state_dir": ".harness/local"}
    carried = load_configuration({**experiment_defaults, **platform_args_for_chaos(args)})
    assert carried["harness_state_dir"] == str(tmp_path / "k8s")
    assert carried["harness_kubeconfig"] == str(kubeconfig)
    platform = RunContext.from_configuration({**carried, "harness_run_dir": str(tmp_path / "rep")}).platform()
    assert isinstance(platform, KubernetesPlatform)
    assert Path(platform.settings.kubeconfig) == kubeconfig and platform.namespace == "team-a"
