"""One replica with Kubernetes container semantics, driven by its own thread.

What it models (Kubernetes defaults, times multiplied by the platform's time scale):
- startup probe first; liveness and readiness only once it has passed (or when there is none);
- readiness decides whether HAProxy routes to the replica (the endpoints controller);
- liveness or startup failing ``failureThreshold`` times in a row kills the container with its grace
  period, and it is restarted;
- restartPolicy Always with CrashLoopBackOff: the first restart is immediate, then 10 s doubling to
  300 s, reset once a container has run for 10 minutes (the kubelet's behaviour).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from harness.deployment import DeploymentSpec, Probe
from harness.events import EventKind, EventLog
from harness.faults.overrides import read_cgroup, read_env_override, read_probe_override, take_delete_request
from harness.platforms.base import ReplicaStatus
from harness.platforms.local.newpod import PodRequest, take_request
from harness.platforms.local.probes import http_probe
from harness.platforms.local.procs import alive, parent_death_signal
from harness.triton.runtime import TritonInstall

__all__ = ["CrashLoopBackOff", "ReplicaController", "ReplicaPorts"]

# Flags the local platform sets itself; the rest of the manifest's args pass through.
_PLATFORM_FLAGS = ("--model-repository", "--http-address", "--http-port", "--grpc-address", "--grpc-port",
                   "--metrics-address", "--metrics-port", "--backend-directory")


@dataclass(frozen=True)
class ReplicaPorts:
    http: int
    grpc: int
    metrics: int


class CrashLoopBackOff:
    """The kubelet's restart back-off for one container."""

    def __init__(self, scale: float = 1.0) -> None:
        self.initial_s = 10.0 * scale
        self.max_s = 300.0 * scale
        self.reset_after_s = 600.0 * scale
        self._current = 0.0

    def next_delay(self, ran_for_s: float) -> float:
        if ran_for_s >= self.reset_after_s:
            self._current = 0.0
        delay = self._current
        self._current = self.initial_s if self._current == 0 else min(self._current * 2, self.max_s)
        return delay


def describe_exit(code: int) -> str:
    if code > 128:
        try:
            return f"exit code {code} ({signal.Signals(code - 128).name})"
        except ValueError:
            return f"exit code {code}"
    return f"exit code {code}" + (" (Completed)" if code == 0 else " (Error)")


class _ProbeTracker:
    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.successes = 0
        self.failures = 0
        self.next_at = 0.0
        self.last_reason = ""

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, reason: str, now: float) -> None:
        self.next_at = max(self.next_at + self.probe.period_s, now + 0.001)
        if ok:
            self.successes += 1
            self.failures = 0
        else:
            self.failures += 1
            self.successes = 0
            self.last_reason = reason


@dataclass
class _Deletion:
    """A pod deletion in progress: the endpoint is removed after ``lag_s`` (the endpoints controller and
    kube-proxy catching up) while the kubelet runs the preStop hook for ``prestop_s`` and then sends SIGTERM.
    With a preStop shorter than the lag, Triton stops while the front still routes to it."""

    since: float
    lag_s: float
    prestop_s: float
    unrouted: bool = False

    def step(self, replica: ReplicaController, now: float) -> bool:
        """Advance; True while the replica only waits (probes are not run for a pod being deleted)."""
        if not self.unrouted and now - self.since >= self.lag_s:
            self.unrouted = True
            replica._set(ready=False, reason="terminating: endpoint removed")
            replica.events.emit(EventKind.NOT_READY, replica.replica, "pod deleted: endpoint removed")
        if now - self.since >= self.prestop_s:
            replica._terminate("pod deleted (rolling update)", unroute=self.unrouted)
            return False
        return True


class ReplicaController(threading.Thread):
    def __init__(
        self,
        name: str,
        address: str,
        ports: ReplicaPorts,
        spec: DeploymentSpec,
        workdir: Path,
        repository: Path,
        backends: Path,
        triton: TritonInstall,
        events: EventLog,
        on_ready_change: Callable[[str, bool], None],
        time_scale: float = 1.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name=f"replica-{name}", daemon=True)
        self.replica = name
        self.address = address
        self.ports = ports
        self.spec = spec
        self.workdir = workdir
        self.repository = repository
        self.backends = backends
        self.triton = triton
        self.events = events
        self.on_ready_change = on_ready_change
        self.time_scale = time_scale
        self.env = dict(env or {})
        self.backoff = CrashLoopBackOff(time_scale)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._shim: subprocess.Popen[bytes] | None = None
        self._server_pid: int | None = None
        self._ready = False
        self._state = "waiting"
        self._reason = "starting"
        self._restarts = 0
        self._started_at = time.time()
        self._backoff_until = 0.0
        self._terminating_since = 0.0
        self._override: dict[str, str] = {}
        self._probe_override: dict[str, dict[str, float] | None] = {}

    # -- views ---------------------------------------------------------------------------------------
    def snapshot(self) -> ReplicaStatus:
        with self._lock:
            return ReplicaStatus(
                name=self.replica,
                address=self.address,
                pid=self._server_pid,
                ready=self._ready,
                restarts=self._restarts,
                reason="" if self._ready else self._reason,
                state=self._state,
                age_s=round(time.time() - self._started_at, 3),
                http=f"http://{self.address}:{self.ports.http}",
                grpc=f"{self.address}:{self.ports.grpc}",
                metrics=f"http://{self.address}:{self.ports.metrics}/metrics",
            )

    def pids(self) -> dict[str, int]:
        out = {}
        if self._shim is not None:
            out["shim"] = self._shim.pid
        if self._server_pid:
            out["server"] = self._server_pid
        return out

    # -- control -------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    def _set(self, *, ready: bool | None = None, state: str | None = None, reason: str | None = None) -> None:
        changed = False
        with self._lock:
            if ready is not None and ready != self._ready:
                self._ready = ready
                changed = True
            if state is not None:
                self._state = state
            if reason is not None:
                self._reason = reason
        if changed:
            self.on_ready_change(self.replica, ready is True)

    # -- container lifecycle -------------------------------------------------------------------------
    def command(self) -> list[str]:
        passthrough = [a for a in self.spec.args if not a.startswith(_PLATFORM_FLAGS)]
        return [
            str(self.triton.server),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.backends}",
            f"--http-address={self.address}",
            f"--http-port={self.ports.http}",
            f"--grpc-address={self.address}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-address={self.address}",
            f"--metrics-port={self.ports.metrics}",
            *passthrough,
        ]

    def _start_container(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pid_file = self.workdir / "server.pid"
        pid_file.unlink(missing_ok=True)
        # Fault overrides (harness.faults.overrides) apply at each container start, like a changed pod spec.
        self._override = read_env_override(self.workdir)
        self._probe_override = read_probe_override(self.workdir)
        env = self.triton.environment({**self.spec.env, **self.env, **self._override})
        cgroup = read_cgroup(self.workdir)
        grace = self.spec.termination_grace_s * self.time_scale
        self._shim = subprocess.Popen(
            [sys.executable, "-m", "harness.platforms.local.shim", "--pid-file", str(pid_file),
             "--log-file", str(self.workdir / "tritonserver.log"), "--grace", f"{grace:g}",
             *(["--cgroup", cgroup] if cgroup else []), "--", *self.command()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "shim.log").open("ab"),
            env=env,
            start_new_session=True,
            preexec_fn=parent_death_signal(signal.SIGTERM),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._shim.poll() is None:
            try:
                self._server_pid = int(pid_file.read_text())
                break
            except (OSError, ValueError):
                time.sleep(0.01)
        with self._lock:
            self._started_at = time.time()

    def _terminate(self, why: str, unroute: bool = True) -> None:
        """Kill the container the way the kubelet does: SIGTERM, then SIGKILL after the grace period.
        ``unroute`` False: a deleted pod whose endpoint is still being removed keeps its traffic for now."""
        if self._shim is not None and self._shim.poll() is None and not self._terminating_since:
            self._terminating_since = time.monotonic()
            self._set(ready=False if unroute else None, state="terminating", reason=why)
            self._shim.send_signal(signal.SIGTERM)

    def _probe(self, probe: Probe) -> tuple[bool, str]:
        ok, reason = http_probe(self.address, self.spec.port(probe.port), probe.path, probe.timeout_s)
        if not ok and probe.kind != "liveness" and "answered" in reason:
            model = self._model_reason()
            if model:
                reason = f"{reason}; {model}"
        return ok, reason

    def _model_reason(self) -> str:
        """Triton's own account of why the model is not ready (e.g. a corrupt weight file)."""
        try:
            req = urllib.request.Request(
                f"http://{self.address}:{self.ports.http}/v2/repository/index", data=b"{}", method="POST"
            )
            with urllib.request.urlopen(req, timeout=1) as resp:
                index = json.loads(resp.read())
        except (OSError, ValueError):
            return ""
        parts = [
            f"model {m.get('name')} {m.get('state', '?')}: {m.get('reason', '')}".rstrip(": ")
            for m in index
            if m.get("state") != "READY"
        ]
        return "; ".join(parts)

    def _supervise(self) -> int:
        """Run probes until the container exits; return its exit status."""
        assert self._shim is not None
        started = time.monotonic()
        spec = self._pod_spec()
        deletion: _Deletion | None = None
        startup = _ProbeTracker(spec.startup) if spec.startup else None
        readiness = _ProbeTracker(spec.readiness) if spec.readiness else None
        liveness = _ProbeTracker(spec.liveness) if spec.liveness else None
        if startup:
            startup.next_at = started + startup.probe.initial_delay_s
        started_up = startup is None

        def begin_steady(now: float) -> None:
            if readiness:
                readiness.next_at = max(now, started + readiness.probe.initial_delay_s)
            if liveness:
                liveness.next_at = max(now + liveness.probe.period_s, started + liveness.probe.initial_delay_s)

        if started_up:
            begin_steady(started)
            if readiness is None:
                self._set(ready=True, state="running", reason="")
        self._set(state="starting" if not started_up else "running")
        while True:
            code = self._shim.poll()
            if code is not None:
                return code
            if self._stopping.is_set():
                self._terminate("stopping")
            now = time.monotonic()
            deletion = deletion or self._deletion_requested(now)
            if deletion is not None and deletion.step(self, now):
                time.sleep(0.02)
                continue
            if self._terminating_since:
                time.sleep(0.02)
                continue
            if not started_up and startup and startup.due(now):
                ok, reason = self._probe(startup.probe)
                startup.record(ok, reason, time.monotonic())
                if ok:
                    started_up = True
                    self._set(state="running")
                    begin_steady(time.monotonic())
                    if readiness is None:
                        self._set(ready=True, reason="")
                elif startup.failures >= startup.probe.failure_threshold:
                    why = f"startup probe failed {startup.failures} times: {reason}"
                    self.events.emit(EventKind.STARTUP_FAILED, self.replica, why)
                    self._terminate(why)
                    continue
                else:
                    self._set(reason=f"starting: {reason}")
            if started_up and readiness and readiness.due(now) and not (deletion and deletion.unrouted):
                ok, reason = self._probe(readiness.probe)
                readiness.record(ok, reason, time.monotonic())
                if ok and readiness.successes >= readiness.probe.success_threshold and not self._ready:
                    self._set(ready=True, reason="")
                    self.events.emit(EventKind.READY, self.replica, pid=self._server_pid,
                                     readiness_period_s=readiness.probe.period_s)
                elif not ok:
                    if self._ready and readiness.failures >= readiness.probe.failure_threshold:
                        self._set(ready=False, reason=f"readiness probe failed: {reason}")
                        self.events.emit(EventKind.NOT_READY, self.replica, f"readiness probe failed: {reason}")
                    elif not self._ready:
                        self._set(reason=f"not ready: {reason}")
            if started_up and liveness and liveness.due(now):
                ok, reason = self._probe(liveness.probe)
                liveness.record(ok, reason, time.monotonic())
                if not ok and liveness.failures >= liveness.probe.failure_threshold:
                    why = f"liveness probe failed {liveness.failures} times: {reason}"
                    self.events.emit(EventKind.LIVENESS_FAILED, self.replica, why)
                    self._terminate(why)
                    continue
            pending = [t.next_at for t in (startup, readiness, liveness) if t is not None]
            wait = min([*pending, now + 0.05]) - time.monotonic()
            time.sleep(min(max(wait, 0.005), 0.05))

    def run(self) -> None:
        first = True
        while not self._stopping.is_set():
            self._terminating_since = 0.0
            self._start_container()
            self.events.emit(
                EventKind.STARTED if first else EventKind.RESTARTED,
                self.replica,
                pid=self._server_pid,
                restarts=self._restarts,
                address=self.address,
                overrides=sorted([*self._override, *self._probe_override]),  # a fault's pod spec, not a plain one
            )
            first = False
            code = self._supervise()
            ran_for = time.time() - self._started_at
            exit_reason = describe_exit(code)
            with contextlib.suppress(OSError):
                exit_reason = f"{(self.workdir / 'exit-reason').read_text().strip()}: {exit_reason}"
            was_stopping = self._stopping.is_set()
            with self._lock:
                last = self._reason
            why = f"{exit_reason}; {last}" if self._terminating_since and last else exit_reason
            self._set(ready=False, state="stopped" if was_stopping else "exited", reason=why)
            self.events.emit(
                EventKind.STOPPED if was_stopping else EventKind.EXITED,
                self.replica,
                why,
                code=code,
                ran_for_s=round(ran_for, 3),
            )
            if was_stopping:
                break
            request = take_request(self.workdir)
            if (request is not None and request.new_pod) or self._spec_changed():
                # A pod delete (the pod kill), or a changed pod spec (a rolling restart on Kubernetes): a new
                # pod, started at once with no back-off history.
                self.backoff = CrashLoopBackOff(self.time_scale)
                delay = 0.0
                if request is not None:
                    self._new_pod_event(request, "container exited")
            else:
                if request is not None:  # history dropped before this crash: it restarts as a first crash does
                    self.backoff = CrashLoopBackOff(self.time_scale)
                    self._new_pod_event(request, "container exited")
                delay = self.backoff.next_delay(ran_for)
            if delay > 0:
                until = time.time() + delay
                msg = f"CrashLoopBackOff: back-off {delay:g}s restarting failed container (last: {why})"
                self._set(state="backoff", reason=msg)
                self.events.emit(EventKind.BACKOFF, self.replica, msg, until_ns=int(until * 1e9), backoff_s=delay)
                if self._wait_backoff(delay):
                    break
            with self._lock:
                self._restarts += 1
        self._set(ready=False, state="stopped", reason="stopped")

    # -- what a changed pod spec and a pod deletion do (rolling updates, probe and memory faults) -------
    def _pod_spec(self) -> DeploymentSpec:
        """The Deployment's spec with this container's probe override (manifest units, then time-scaled)."""
        if not self._probe_override:
            return self.spec
        probes: dict[str, Probe | None] = {}
        for kind, fields in self._probe_override.items():
            base = {"startup": self.spec.startup, "readiness": self.spec.readiness, "liveness": self.spec.liveness}
            current = base.get(kind)
            if fields is None or current is None:
                probes[kind] = None if fields is None else current
                continue
            scale = self.time_scale
            probes[kind] = replace(
                current,
                initial_delay_s=fields["initial_delay_s"] * scale if "initial_delay_s" in fields
                else current.initial_delay_s,
                period_s=fields["period_s"] * scale if "period_s" in fields else current.period_s,
                failure_threshold=int(fields.get("failure_threshold", current.failure_threshold)),
            )
        return self.spec.with_overrides(probes=probes)

    def _spec_changed(self) -> bool:
        """The pod spec changed since the container started (an env or probe override written or removed)."""
        return (read_env_override(self.workdir) != self._override
                or read_probe_override(self.workdir) != self._probe_override)

    def _wait_backoff(self, delay: float) -> bool:
        """Sleep out the back-off; True when stopping. A changed pod spec or a pod delete ends it at once: on
        Kubernetes a fixed Deployment or a deleted pod makes a new pod instead of waiting for the crash-looping
        one. A dropped history ends it too (the container restarts as after a first crash)."""
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if self._stopping.wait(min(0.1, max(deadline - time.monotonic(), 0.0))):
                return True
            if self._spec_changed():
                self.events.emit(EventKind.RESTARTED, self.replica, "pod spec changed: back-off cut short")
                return False
            request = take_request(self.workdir)
            if request is not None:
                self.backoff = CrashLoopBackOff(self.time_scale)
                if not request.new_pod:
                    self.backoff.next_delay(0.0)  # this restart is the first of a fresh history
                self._new_pod_event(request, "back-off cut short")
                return False
        return False

    def _new_pod_event(self, request: PodRequest, what: str) -> None:
        if request.new_pod:
            self.events.emit(EventKind.KILLED, self.replica,
                             f"pod deleted ({request.why}): {what}; a new pod starts at once, no back-off history")
        else:
            self.events.emit(EventKind.FAULT, self.replica,
                             f"back-off history dropped ({request.why}): {what}", backoff_reset=True)

    def _deletion_requested(self, now: float) -> _Deletion | None:
        request = take_delete_request(self.workdir)
        if request is None:
            return None
        self.events.emit(EventKind.KILLED, self.replica, "pod deleted (rolling update): "
                         f"endpoint removed after {request['endpoint_lag_s']:g}s, SIGTERM after preStop "
                         f"{request['prestop_s']:g}s", **request)
        return _Deletion(now, float(request["endpoint_lag_s"]), float(request["prestop_s"]))

    def server_alive(self) -> bool:
        return alive(self._server_pid, "tritonserver")
