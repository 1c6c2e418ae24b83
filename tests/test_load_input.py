"""Bad input to ``harness load`` and ``LoadProcess``: a clear error and exit code before any load starts."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.load.clients import binary_request, payload_array
from harness.load.process import LoadProcess
from harness.load.settings import LoadSettings

ROOT = Path(__file__).resolve().parents[1]
STEADY = ROOT / "loadprofiles" / "steady.py"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out + captured.err


@pytest.fixture
def listener() -> Iterator[str]:
    """A real TCP listener that accepts connections: reachable, so the profile is what gets checked."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def unused_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_unknown_profile_names_the_file_and_the_profiles_there(capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    code, out = run_cli(["load", "--profile", str(ROOT / "loadprofiles" / "nope.py"), "--endpoint",
                         unused_endpoint(), "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2
    assert "nope.py does not exist" in out and "steady.py" in out
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flag", "value", "words"), [("--users", "-1", "users is -1"),
                                                      ("--rate", "-5", "rate is -5")])
def test_negative_users_or_rate(capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str, value: str,
                                words: str) -> None:
    code, out = run_cli(["load", "--profile", str(STEADY), flag, value, "--endpoint", unused_endpoint(),
                         "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2
    assert words in out
    assert not (tmp_path / "run").exists()


def test_unreachable_endpoint_is_a_platform_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    endpoint = unused_endpoint()
    code, out = run_cli(["load", "--profile", str(STEADY), "--endpoint", endpoint, "--run-dir",
                         str(tmp_path / "run")], capsys)
    assert code == 4
    assert f"cannot reach the HTTP endpoint {endpoint.removeprefix('http://')}" in out
    assert "harness up" in out
    assert not (tmp_path / "run").exists()


def test_platform_not_up_is_a_platform_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out = run_cli(["load", "--profile", str(STEADY), "--state-dir", str(tmp_path / "state")], capsys)
    assert code == 4
    assert "not up" in out


def test_profile_without_a_shape_fails_in_the_handshake(listener: str, tmp_path: Path) -> None:
    profile = tmp_path / "noshape.py"
    profile.write_text("from harness.load.users import TritonUser\n\nclass NotAShape:\n    pass\n")
    with pytest.raises(ConfigError, match="defines no LoadTestShape subclass"):
        LoadProcess.start(listener, "", profile, tmp_path / "timeline", duration_s=5)
    assert not list((tmp_path / "timeline").glob("part-*"))


def test_bad_profile_parameter_fails_in_the_handshake(capsys: pytest.CaptureFixture[str], listener: str,
                                                      tmp_path: Path) -> None:
    code, out = run_cli(["load", "--profile", str(ROOT / "loadprofiles" / "step.py"), "--endpoint", listener,
                         "--param", "STEP_S=-1", "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2
    assert "HARNESS_STEP_S=-1 must be at least 0.1" in out
    assert not (tmp_path / "run").exists()


def test_profile_with_a_syntax_error_names_the_line(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    profile = tmp_path / "broken.py"
    profile.write_text("class X(:\n")
    code, out = run_cli(["load", "--profile", str(profile), "--endpoint", unused_endpoint()], capsys)
    assert code == 2
    assert "broken.py line 1" in out


def test_settings_from_env_reject_bad_values() -> None:
    with pytest.raises(ConfigError, match="HARNESS_RATE='fast'"):
        LoadSettings.from_env({"HARNESS_RATE": "fast"})
    with pytest.raises(ConfigError, match="protocol 'udp'"):
        LoadSettings.from_env({"HARNESS_PROTOCOL": "udp"})
    s = LoadSettings.from_env({"HARNESS_RATE": "200", "HARNESS_USERS": "4", "HARNESS_DURATION": "0"})
    assert s.open_loop and s.per_user_rate() == 50 and s.duration_s is None
    assert LoadSettings.from_env(s.to_env()) == s


def test_wrk_body_is_what_tritonclient_sends() -> None:
    import tritonclient.http as httpclient

    data = payload_array(1)
    inp = httpclient.InferInput("INPUT", [1, 16], "FP32")
    inp.set_data_from_numpy(data, binary_data=True)
    out = httpclient.InferRequestedOutput("PROBS", binary_data=True)
    assert httpclient.InferenceServerClient.generate_request_body([inp], outputs=[out]) == binary_request(1)
