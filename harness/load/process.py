"""Run load in a process of its own, for the CLI and for the fault runner.

The load process is the only one that contains gevent and Locust: the caller (``harness load``, the
Chaos Toolkit control) stays a plain Python process. The child runs in its own process group (so it and
its Locust workers are signalled together), asks the kernel to SIGTERM it when its parent dies (so a
crashed harness never leaves load running; note the kernel ties this to the *thread* that started it),
and answers a handshake before any load is sent, so bad input surfaces as an exception from ``start``.

    from harness.load.process import LoadProcess
    load = LoadProcess.start(
        endpoint_http="http://127.0.0.1:8000", endpoint_grpc="127.0.0.1:8001",
        profile=Path("loadprofiles/steady.py"), timeline_dir=rep_dir / "timeline",
        protocol="http", users=10, rate=200.0, duration_s=None, workers=0)
    ...                      # inject the fault, observe
    load.stop()              # graceful: requests in flight finish, the timeline is flushed; exit code
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from harness.errors import ConfigError, HarnessError, PlatformError
from harness.load.profile import check_profile_file
from harness.load.requests import RequestOptions, read_plan
from harness.load.settings import Connections, LoadSettings, Protocol
from harness.procs import kill_group, parent_death_signal, wait_gone

__all__ = ["PLAN_FILE", "LoadProcess", "check_endpoint"]

PLAN_FILE = "request-plan.json"  # beside the timeline: exactly what the users sent, and to which models


def check_endpoint(settings: LoadSettings, timeout_s: float = 3.0) -> None:
    """Raise ``PlatformError`` unless the endpoint the users will call accepts TCP connections."""
    if settings.protocol == "grpc":
        where, target = "gRPC", settings.grpc
    else:
        where, target = "HTTP", settings.http_url.removeprefix("http://").split("/", 1)[0]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{where} endpoint {target!r} must be HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise PlatformError(
            f"cannot reach the {where} endpoint {target}: {exc.strerror or exc}. Is the service up? "
            "Check with 'harness status', start it with 'harness up', or pass --endpoint"
        ) from None


class LoadProcess:
    """Handle on a running load process; see the module docstring."""

    def __init__(self, proc: subprocess.Popen[bytes], settings: LoadSettings,
                 stats_path: Path | None) -> None:
        self._proc = proc
        self.settings = settings
        self.stats_path = stats_path
        self.plan: dict[str, object] = {}

    @property
    def pid(self) -> int:
        return self._proc.pid

    @classmethod
    def start(
        cls,
        endpoint_http: str,
        endpoint_grpc: str,
        profile: Path,
        timeline_dir: Path | None,
        protocol: Protocol = "http",
        users: int = 10,
        rate: float = 0.0,
        duration_s: float | None = None,
        workers: int = 0,
        timeout_s: float = 2.0,
        connections: Connections = "kept",
        stats_path: Path | None = None,
        log_path: Path | None = None,
        quiet: bool | None = None,
        extra_env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 90.0,
        requests: RequestOptions | None = None,
    ) -> LoadProcess:
        """Check the input, start the load process, return once it sends load (or raise why it cannot).

        ``timeline_dir`` None records no timeline (benchmarks of the timeline's own cost).
        ``log_path`` receives the process's stdout and stderr (default: inherited, the live line shows).
        ``extra_env`` sets profile parameters such as ``HARNESS_STEP_S``.
        ``requests``: models, shapes and sample data (default: ``HARNESS_MODEL`` & co. from this process's
        environment). The load process reads the server's metadata once, before it says ready, and writes
        the plan beside the timeline (``request-plan.json``; ``.plan`` here), so a model or input the
        harness cannot build fails here, before any request.
        Raises ``ConfigError`` (bad profile, settings or request) or ``PlatformError`` (endpoint unreachable).
        """
        if workers < 0:
            raise ConfigError(f"workers is {workers}; it must be 0 (one process) or more")
        settings = LoadSettings(http_url=endpoint_http.rstrip("/"), grpc_target=endpoint_grpc,
                                protocol=protocol, users=users, rate=rate, duration_s=duration_s,
                                timeline_dir=timeline_dir, timeout_s=timeout_s, connections=connections)
        profile = check_profile_file(profile)
        check_endpoint(settings)
        if timeline_dir is not None:
            timeline_dir.mkdir(parents=True, exist_ok=True)
            plan_path = timeline_dir.parent / PLAN_FILE
        else:
            with tempfile.NamedTemporaryFile(prefix="harness-plan-", suffix=".json", delete=False) as f:
                plan_path = Path(f.name)
        plan_path.unlink(missing_ok=True)  # the load process writes it once it has read the metadata
        settings = replace(settings, requests_file=plan_path)
        env = {**os.environ, **(extra_env or {}), **(requests.to_env() if requests is not None else {}),
               **settings.to_env()}
        with tempfile.NamedTemporaryFile(prefix="harness-load-", suffix=".ready", delete=False) as f:
            ready = Path(f.name)
        ready.unlink()
        cmd = [sys.executable, "-m", "harness.load._main", "--profile", str(profile),
               "--workers", str(workers), "--ready-file", str(ready)]
        if stats_path is not None:
            cmd += ["--stats", str(stats_path)]
        if quiet or (quiet is None and log_path is not None):
            cmd.append("--quiet")
        out = log_path.open("ab") if log_path is not None else None
        try:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT if out else None, start_new_session=True,
                                    preexec_fn=parent_death_signal(signal.SIGTERM))
        finally:
            if out is not None:
                out.close()
        load = cls(proc, settings, stats_path)
        try:
            load._handshake(ready, ready_timeout_s)
            load.plan = read_plan(plan_path)
        finally:
            ready.unlink(missing_ok=True)
            if timeline_dir is None:  # every process of the load read it before the handshake
                plan_path.unlink(missing_ok=True)
        return load

    def _handshake(self, ready: Path, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready.exists():
                state = json.loads(ready.read_text())
                if state.get("ok"):
                    return
                self.wait(10)
                self.kill()
                code = int(state.get("exit_code", 1))
                exc_type = {ConfigError.exit_code: ConfigError, PlatformError.exit_code: PlatformError}
                raise exc_type.get(code, HarnessError)(str(state.get("error")))
            if self._proc.poll() is not None:
                raise HarnessError(f"the load process exited with code {self._proc.returncode} before it "
                                   "started (its output is above, or in its log)")
            time.sleep(0.05)
        self.kill()
        raise HarnessError(f"the load process did not start within {timeout_s:g}s")

    def alive(self) -> bool:
        return self._proc.poll() is None

    def wait(self, timeout_s: float | None = None) -> int | None:
        """The exit code, or None when it still runs after ``timeout_s``."""
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float | None = None) -> int:
        """Graceful stop: in-flight requests finish (within the request timeout), the timeline is flushed.

        Kills the whole group when it has not exited after ``timeout_s`` (default: request timeout + 20 s).
        Returns the exit code (negative: killed by that signal).
        """
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGTERM)
        wait_s = self.settings.timeout_s + 20.0 if timeout_s is None else timeout_s
        code = self.wait(wait_s)
        if code is None:
            self.kill()
            code = self._proc.returncode
        kill_group(self._proc.pid, signal.SIGKILL)  # a worker its master failed to reap
        return int(code)

    def kill(self) -> None:
        """SIGKILL the process group (load process and its workers) and reap it."""
        kill_group(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        wait_gone(self._proc.pid, 5.0)

    def __enter__(self) -> LoadProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.alive():
            self.stop()
