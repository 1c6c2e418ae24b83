"""Client side of the local platform: ``up``, ``status``, ``down`` and ``cleanup``.

Every check that can fail (ports, programs, manifest, model repository, Triton, a previous instance)
runs before anything starts, so bad input never leaves a half-started service behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.deployment import DeploymentSpec, load_deployment
from harness.errors import EnvironmentProblem, PlatformError
from harness.faults.undo import UndoStore
from harness.platforms.base import CleanupReport, Endpoints, PlatformStatus, ReplicaStatus
from harness.platforms.local.faults import LOCAL_UNDOERS, LocalSpecOps
from harness.platforms.local.gpu_pinning import gpu_plan
from harness.platforms.local.newpod import request_history_reset
from harness.platforms.local.procs import (
    alive,
    cmdline,
    group_members,
    kill_group,
    remove_orphaned_shm,
    wait_gone,
)
from harness.platforms.local.settings import LocalSettings
from harness.triton.gpus import check_torch_cuda, pinning_env
from harness.triton.modelrepo import REFERENCE_REPOSITORY, verify_repository
from harness.triton.runtime import TritonInstall, find_triton
from harness.triton.userrepo import check_repository

__all__ = ["REQUIRED_PROGRAMS", "LocalPlatform", "port_free"]

REQUIRED_PROGRAMS = {"haproxy": "haproxy", "prometheus": "prometheus"}


def port_free(address: str, port: int) -> bool:
    """Whether ``address:port`` can be bound now (what `up` needs for each front and replica port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


class LocalPlatform:
    name = "local"

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.state = settings.state_dir

    # -- files ---------------------------------------------------------------------------------------
    def events_path(self) -> Path:
        return self.state / "events.jsonl"

    def _supervisor_pid(self) -> int | None:
        try:
            return int((self.state / "supervisor.pid").read_text())
        except (OSError, ValueError):
            return None

    def _raw_status(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.state / "status.json").read_text())
            return data
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        return alive(self._supervisor_pid(), "harness.platforms.local.supervisor")

    # -- checks --------------------------------------------------------------------------------------
    def preflight(self) -> None:
        """Everything that would make ``up`` fail, checked before anything starts."""
        s = self.settings
        missing = [pkg for prog, pkg in REQUIRED_PROGRAMS.items() if shutil.which(prog) is None and
                   (prog != "prometheus" or s.prometheus)]
        if missing:
            raise EnvironmentProblem(
                f"missing system packages: {', '.join(missing)}; install them with: "
                f"sudo apt-get install -y {' '.join(missing)} (or run 'make setup' as root)"
            )
        spec = load_deployment(s.manifest).with_overrides(replicas=s.replicas)
        install = find_triton()
        if s.model_repository is not None:
            check_repository(s.model_repository, install)
        else:
            verify_repository(REFERENCE_REPOSITORY, spec.model_name)
        self._check_gpus(spec, install)
        busy = []
        front = [("HTTP", s.http_port), ("gRPC", s.grpc_port), ("stats", s.stats_port)]
        if s.prometheus:
            front.append(("Prometheus", s.prometheus_port))
        for what, port in front:
            if not port_free(s.front_address, port):
                busy.append(f"{what} port {s.front_address}:{port}")
        for i in range(spec.replicas):
            for pname in ("http", "grpc", "metrics"):
                addr = s.replica_address(i)
                if not port_free(addr, spec.port(pname)):
                    busy.append(f"replica {i} {pname} port {addr}:{spec.port(pname)}")
        if busy:
            raise EnvironmentProblem(
                "ports already in use: " + "; ".join(busy) + ". Stop what holds them (ss -ltnp), or choose "
                "others (--http-port/--grpc-port/--prometheus-port/--stats-port/--replica-address-base)"
            )

    def _check_gpus(self, spec: DeploymentSpec, install: TritonInstall) -> None:
        """GPU instances only where a GPU and torch are there: refused here, before anything starts."""
        plan = gpu_plan(self.settings, spec)  # EnvironmentProblem when GPUs are asked for and none is visible
        pinned = [gpus for gpus in plan.values() if gpus]
        if pinned:
            check_torch_cuda(install.environment({**spec.env, **self.settings.env, **pinning_env(pinned[0])}))

    def leftovers(self) -> list[str]:
        """Processes a previous instance left running although its supervisor is gone."""
        raw = self._raw_status() or {}
        found = []
        pids = raw.get("pids") or {}
        for what in ("haproxy", "prometheus"):
            if alive(pids.get(what), what):
                found.append(f"{what} (pid {pids[what]})")
        for name, rp in (pids.get("replicas") or {}).items():
            if alive(rp.get("server"), "tritonserver"):
                found.append(f"replica {name} tritonserver (pid {rp['server']})")
            if alive(rp.get("shim"), "harness.platforms.local.shim"):
                found.append(f"replica {name} shim (pid {rp['shim']})")
        return found

    # -- lifecycle -----------------------------------------------------------------------------------
    def up(self, replicas: int | None = None, wait: bool = True) -> PlatformStatus:
        if replicas is not None:
            self.settings = LocalSettings.from_json({**self.settings.to_json(), "replicas": replicas})
        if self.running():
            raise PlatformError(
                f"the local platform is already running (supervisor pid {self._supervisor_pid()}, state "
                f"{self.state}); run 'harness down' first"
            )
        left = self.leftovers()
        if left:
            raise PlatformError(
                "a previous instance died and left processes behind: " + ", ".join(left)
                + "; run 'harness cleanup' to remove them"
            )
        self.preflight()
        self.state.mkdir(parents=True, exist_ok=True)
        self.sweep_faults(only_orphaned=False)  # a platform that is not running has no live faults
        for stale in ("status.json", "supervisor.exit", "supervisor.pid"):
            (self.state / stale).unlink(missing_ok=True)
        replicas_dir = self.state / "replicas"
        if replicas_dir.exists():
            shutil.rmtree(replicas_dir)  # fresh volumes, as for new pods
        self.settings.save()
        log = (self.state / "supervisor.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.platforms.local.supervisor", str(self.state)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(self.state),
        )
        log.close()
        return self._wait_status(proc, ready=wait)

    def _wait_status(self, proc: subprocess.Popen[bytes], ready: bool) -> PlatformStatus:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        last: PlatformStatus | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PlatformError(
                    f"the supervisor exited with code {proc.returncode} while starting:\n{self._log_tail()}"
                )
            raw = self._raw_status()
            if raw is not None:
                last = _status_from_json(raw)
                if not ready or (last.replicas and all(r.ready for r in last.replicas)):
                    return last
            time.sleep(0.1)
        reasons = "; ".join(f"{r.name}: {r.reason or r.state}" for r in (last.replicas if last else ()))
        self.down()
        raise PlatformError(
            f"replicas were not ready within {self.settings.ready_timeout_s:g}s ({reasons or 'no status'}); "
            f"everything was stopped. Logs are in {self.state}"
        )

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.state / "supervisor.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no supervisor log)"
        return "\n".join("    " + line for line in text[-lines:])

    def status(self) -> PlatformStatus:
        raw = self._raw_status()
        if self.running():
            if raw is None:
                raise PlatformError("the local platform is starting; no status yet")
            return _status_from_json(raw)
        if raw is None:
            raise PlatformError(f"the local platform is not up (state {self.state}); run 'harness up'")
        exit_record = self._exit_record()
        if raw.get("up") and not exit_record.get("clean"):
            left = self.leftovers()
            why = exit_record.get("error") or "it was killed or crashed without shutting down"
            raise PlatformError(
                f"the supervisor (pid {raw.get('supervisor_pid')}) is gone: {why}. "
                + (f"Left behind: {', '.join(left)}. " if left else "")
                + "Run 'harness cleanup', then 'harness up'."
            )
        raise PlatformError(f"the local platform is not up (stopped; state {self.state}); run 'harness up'")

    def _exit_record(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.state / "supervisor.exit").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def down(self, timeout_s: float = 60.0) -> CleanupReport:
        pid = self._supervisor_pid()
        if self.running() and pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and alive(pid, "harness.platforms.local.supervisor"):
                time.sleep(0.05)
            if alive(pid, "harness.platforms.local.supervisor"):
                kill_group(pid, signal.SIGKILL)
        return self.cleanup()

    def service_identity(self) -> dict[str, Any]:
        """What only this platform knows about the service (``harness.service``)."""
        repo = self.settings.model_repository
        return {"deployment": load_deployment(self.settings.manifest).name,
                "model_repository": str(repo) if repo else ""}

    def refused_actions(self) -> dict[str, str]:
        """Faults that cannot apply to a user's own models (checked before anything runs)."""
        if self.settings.model_repository is None:
            return {}
        why = (f"it works through the reference model's load-delay parameter, which the models of "
               f"{self.settings.model_repository} do not have")
        return {"slow_model_load": f"a slow model load cannot be injected: {why}",
                "reload_model": f"the model reload action reloads the reference model 'mlp'; {why}"}

    def refused_arguments(self, func: str, arguments: Mapping[str, Any]) -> str | None:
        return None  # the supervisor plays each replica's pod spec on its own: any targeting works

    # -- faults --------------------------------------------------------------------------------------
    def fault_ops(self) -> LocalSpecOps:
        """Fault operations bound to the replicas as they are now."""
        spec = load_deployment(self.settings.manifest)
        ports = {name: spec.port(name) for name in ("http", "grpc", "metrics")}
        return LocalSpecOps(self.state, self.status().replicas, ports, self.settings.manifest)

    def reset_backoff(self, why: str) -> dict[str, Any]:
        """Drop every replica's CrashLoopBackOff history (a back-off in progress ends at once), so the next
        repetition of a suite starts from a steady state rather than from the back-off an earlier fault left;
        returns what each replica had been through (restarts, state), for the repetition's record."""
        replicas = self.status().replicas
        for replica in replicas:
            workdir = self.state / "replicas" / replica.name
            if workdir.is_dir():
                request_history_reset(workdir, why)
        return {r.name: {"restarts": r.restarts, "state": r.state, "ready": r.ready, "reason": r.reason}
                for r in replicas}

    def fault_store(self) -> UndoStore:
        return UndoStore(self.state / "faults", LOCAL_UNDOERS)

    def sweep_faults(self, only_orphaned: bool = True) -> list[str]:
        """Undo faults whose run is gone (or every recorded fault); return what was undone."""
        store = self.fault_store()
        records = store.orphaned() if only_orphaned else store.records()
        return [f"{rec.kind} fault ({rec.description or rec.id})" for rec in store.undo_many(records)]

    def cleanup(self) -> CleanupReport:
        """Remove whatever a crashed instance or run left: faults, processes (checked by command line), shm."""
        report = CleanupReport()
        running = self.running()
        report.removed.extend(self.sweep_faults(only_orphaned=running))
        if running:
            return report  # its processes belong to the live supervisor
        raw = self._raw_status() or {}
        pids = raw.get("pids") or {}
        groups: list[tuple[str, int | None, str]] = [
            ("haproxy", pids.get("haproxy"), "haproxy"),
            ("prometheus", pids.get("prometheus"), "prometheus"),
        ]
        for name, rp in (pids.get("replicas") or {}).items():
            groups.append((f"{name} shim", rp.get("shim"), "harness.platforms.local.shim"))
            groups.append((f"{name} tritonserver", rp.get("server"), "tritonserver"))
        for label, pid, needle in groups:
            if pid and alive(pid, needle):
                kill_group(pid, signal.SIGKILL)
                wait_gone(pid, 5)
                report.killed.append(f"{label} (pid {pid})")
            # python-backend stubs orphaned by a killed server stay in its process group
            for member in group_members(pid) if pid else ():
                if "triton" in cmdline(member):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(member, signal.SIGKILL)
                    report.killed.append(f"{label} orphan (pid {member})")
            if pid:
                wait_gone(pid, 5)
        report.removed.extend(f"/dev/shm/{r}" for r in remove_orphaned_shm())
        if raw.get("up"):
            raw["up"] = False
            (self.state / "status.json").write_text(json.dumps(raw, indent=2, sort_keys=True))
        (self.state / "supervisor.pid").unlink(missing_ok=True)
        return report


def _status_from_json(raw: dict[str, Any]) -> PlatformStatus:
    ep = raw.get("endpoints") or {}
    return PlatformStatus(
        platform=str(raw.get("platform", "local")),
        up=bool(raw.get("up")),
        endpoints=Endpoints(
            http=str(ep.get("http", "")),
            grpc=str(ep.get("grpc", "")),
            prometheus=str(ep.get("prometheus", "")),
            metrics=tuple(ep.get("metrics") or ()),
        ),
        replicas=tuple(ReplicaStatus(**r) for r in raw.get("replicas") or ()),
        details={k: raw.get(k) for k in ("supervisor_pid", "time_scale", "retries", "gpu", "gpus", "updated_ns",
                                         "model_repository")},
    )
