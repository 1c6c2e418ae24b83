"""The local platform's supervisor: a background process that owns replicas, HAProxy and Prometheus.

``harness up`` starts it in its own session and waits on ``status.json``; later commands find it
through the state directory. Everything it starts carries a parent-death signal, so if the supervisor
dies, its children die with it; ``harness cleanup`` sweeps whatever a SIGKILL still left (stubs).

Run: python -m harness.platforms.local.supervisor STATE_DIR
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.deployment import load_deployment
from harness.events import EventKind, EventLog
from harness.jsonfile import write_json_atomic
from harness.platforms.base import Endpoints, PlatformStatus
from harness.platforms.local.gpu_pinning import gpu_plan
from harness.platforms.local.haproxy import HAProxy, ServerTarget, render_haproxy_config
from harness.platforms.local.procs import remove_orphaned_shm
from harness.platforms.local.prometheus import PrometheusServer, render_prometheus_config
from harness.platforms.local.replica import ReplicaController, ReplicaPorts
from harness.platforms.local.settings import LocalSettings
from harness.triton.gpus import pinning_env, write_assignment
from harness.triton.modelrepo import ModelSettings, materialise
from harness.triton.runtime import find_triton
from harness.triton.userrepo import check_repository, copy_repository, load_model_args

__all__ = ["SURGE_SLOTS", "Supervisor", "endpoints_for", "surge_name"]

# Extra pods a rolling update may run beside the Deployment's replicas (maxSurge); HAProxy knows their
# slots from the start (in maintenance), as a Service selects any pod with the right labels.
SURGE_SLOTS = 2


def surge_name(deployment: str, slot: int) -> str:
    return f"{deployment}-surge-{slot}"


def endpoints_for(settings: LocalSettings) -> Endpoints:
    front = settings.front_address
    return Endpoints(
        http=f"http://{front}:{settings.http_port}",
        grpc=f"{front}:{settings.grpc_port}",
        prometheus=f"http://{front}:{settings.prometheus_port}" if settings.prometheus else "",
    )


class Supervisor:
    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.state = settings.state_dir
        scale = settings.time_scale
        spec = load_deployment(settings.manifest).with_overrides(replicas=settings.replicas)
        self.spec = spec.with_overrides(
            probes={p.kind: p.scaled(scale) for p in (spec.startup, spec.readiness, spec.liveness) if p}
        )
        self.events = EventLog(self.state / "events.jsonl")
        self.stopping = threading.Event()
        self.triton = find_triton()
        self.user_models = (check_repository(settings.model_repository, self.triton)
                            if settings.model_repository is not None else [])
        if self.user_models:  # load every model of the user's repository instead of the reference one
            args = [a for a in self.spec.args if not a.startswith("--load-model")]
            self.spec = replace(self.spec, args=(*args, *load_model_args(self.user_models)))
        self.gpus = gpu_plan(settings, self.spec)  # replica -> pinned GPUs; all [] for CPU instances
        self.gpu = any(self.gpus.values())
        self.replicas: list[ReplicaController] = []
        self.surge: dict[str, ReplicaController] = {}  # rolling-update surge pods, by name
        self._leaving: list[ReplicaController] = []  # surge pods shutting down (status shows them until gone)
        self._new_replica: dict[str, object] = {}
        self.haproxy = HAProxy(self.state / "haproxy.cfg", self.state / "haproxy.sock", self.state / "haproxy.log")
        self.prometheus: PrometheusServer | None = None

    def _on_ready_change(self, name: str, ready: bool) -> None:
        try:
            self.haproxy.set_ready(name, ready)
        except OSError as exc:
            self.events.emit(EventKind.FAULT, name, f"could not update HAProxy: {exc}")

    def start(self) -> None:
        s = self.settings
        backends = self.triton.prepare_backends(self.state / "backends")
        model = ModelSettings(
            name=self.spec.model_name,
            queue_delay_ms=s.queue_delay_ms,
            instances=s.model_instances,
            gpu=self.gpu,
        )
        ports = ReplicaPorts(self.spec.port("http"), self.spec.port("grpc"), self.spec.port("metrics"))
        write_assignment(self.state, self.gpus)  # the memory-pressure fault reads it to squeeze the right GPU
        targets = []
        for i in range(self.spec.replicas):
            name = f"{self.spec.name}-{i}"
            address = s.replica_address(i)
            workdir = self.state / "replicas" / name
            repository = workdir / "models"
            if s.model_repository is not None:
                copy_repository(s.model_repository, repository)
            elif not repository.exists():
                materialise(repository, model)
            targets.append(ServerTarget(name, address, ports.http, ports.grpc))
            self.replicas.append(
                ReplicaController(
                    name, address, ports, self.spec, workdir, repository, backends, self.triton,
                    self.events, self._on_ready_change, s.time_scale, {**s.env, **pinning_env(self.gpus[name])},
                )
            )
        for slot in range(SURGE_SLOTS):
            targets.append(ServerTarget(surge_name(self.spec.name, slot), s.replica_address(self.spec.replicas + slot),
                                        ports.http, ports.grpc))
        self._new_replica = {"ports": ports, "backends": backends, "model": model}
        self.haproxy.config_path.write_text(
            render_haproxy_config(targets, s.front_address, s.http_port, s.grpc_port, s.stats_port,
                                  self.haproxy.socket_path, s.retries)
        )
        self.haproxy.socket_path.unlink(missing_ok=True)
        self.haproxy.start()
        deadline = time.monotonic() + 10
        while not self.haproxy.socket_path.exists():
            if time.monotonic() > deadline or (self.haproxy.process and self.haproxy.process.poll() is not None):
                raise RuntimeError(f"HAProxy did not start; see {self.haproxy.log_path}")
            time.sleep(0.02)
        if s.prometheus:
            cfg = self.state / "prometheus.yml"
            cfg.write_text(
                render_prometheus_config(
                    [(r.replica, f"{r.address}:{ports.metrics}") for r in self.replicas],
                    f"{s.front_address}:{s.stats_port}",
                    s.scrape_interval_s,
                )
            )
            self.prometheus = PrometheusServer(
                cfg, self.state / "prometheus-data", f"{s.front_address}:{s.prometheus_port}",
                self.state / "prometheus.log",
            )
            self.prometheus.start()
        for replica in self.replicas:
            replica.start()
        self.events.emit(EventKind.PLATFORM_UP, reason=f"{len(self.replicas)} replicas",
                         time_scale=s.time_scale, retries=s.retries, gpu=self.gpu)

    # -- surge pods of a rolling update ----------------------------------------------------------------
    def _all_replicas(self) -> list[ReplicaController]:
        return [*self.replicas, *self.surge.values(), *self._leaving]

    def _reconcile_surge(self) -> None:
        """Start a surge pod for each request file in ``surge/`` (written by the rolling-update fault, with the
        new revision's env and model repository already in its work directory); stop those withdrawn."""
        wanted: dict[str, int] = {}
        for request in sorted((self.state / "surge").glob("*.json")):
            with contextlib.suppress(ValueError):
                slot = int(request.stem)
                if 0 <= slot < SURGE_SLOTS:
                    wanted[surge_name(self.spec.name, slot)] = slot
        for name, slot in wanted.items():
            if name not in self.surge:
                self.surge[name] = self._start_surge(name, slot)
        for name in sorted(set(self.surge) - set(wanted)):
            leaving = self.surge.pop(name)
            leaving.stop()
            self._leaving.append(leaving)
        self._leaving = [r for r in self._leaving if r.is_alive()]

    def _start_surge(self, name: str, slot: int) -> ReplicaController:
        s = self.settings
        ports = self._new_replica["ports"]
        backends = self._new_replica["backends"]
        model = self._new_replica["model"]
        assert isinstance(ports, ReplicaPorts) and isinstance(backends, Path) and isinstance(model, ModelSettings)
        workdir = self.state / "replicas" / name
        repository = workdir / "models"
        if not repository.exists():
            materialise(repository, model)
        controller = ReplicaController(name, s.replica_address(self.spec.replicas + slot), ports, self.spec, workdir,
                                       repository, backends, self.triton, self.events, self._on_ready_change,
                                       s.time_scale, s.env)
        controller.start()
        return controller

    def status(self) -> dict[str, Any]:
        status = PlatformStatus(
            platform="local",
            up=not self.stopping.is_set(),
            endpoints=endpoints_for(self.settings),
            replicas=tuple(r.snapshot() for r in self._all_replicas()),
            details={},
        ).to_json()
        status["endpoints"]["metrics"] = [r.snapshot().metrics for r in self.replicas]
        status.update(
            supervisor_pid=os.getpid(),
            updated_ns=time.time_ns(),
            time_scale=self.settings.time_scale,
            retries=self.settings.retries,
            gpu=self.gpu,
            model_repository=str(self.settings.model_repository or ""),
            gpus={name: [g.describe() for g in gpus] for name, gpus in self.gpus.items() if gpus},
            pids={
                "haproxy": self.haproxy.process.pid if self.haproxy.process else None,
                "prometheus": self.prometheus.process.pid if self.prometheus and self.prometheus.process else None,
                "replicas": {r.replica: r.pids() for r in self._all_replicas()},
            },
        )
        return status

    def run(self) -> int:
        def on_signal(signum: int, _frame: object) -> None:
            self.stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        status_path = self.state / "status.json"
        try:
            self.start()
            while not self.stopping.wait(0.2):
                self._reconcile_surge()
                write_json_atomic(status_path, self.status())
                if self.haproxy.process and self.haproxy.process.poll() is not None:
                    self.events.emit(EventKind.FAULT, reason="HAProxy exited; restarting it")
                    self.haproxy.start()
                    time.sleep(0.3)
                    for r in self.replicas:
                        self._on_ready_change(r.replica, r.snapshot().ready)
        finally:
            self.shutdown()
            final = self.status()
            final["up"] = False
            write_json_atomic(status_path, final)
        return 0

    def shutdown(self) -> None:
        self.stopping.set()
        everyone = self._all_replicas()
        for r in everyone:
            r.stop()
        for r in everyone:
            if r.ident is not None:
                r.join(timeout=self.spec.termination_grace_s * self.settings.time_scale + 10)
        self.haproxy.stop()
        if self.prometheus:
            self.prometheus.stop()
        remove_orphaned_shm()
        self.events.emit(EventKind.PLATFORM_DOWN, reason="supervisor stopped")
        self.events.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    state = Path(args[0])
    settings = LocalSettings.load(state)
    (state / "supervisor.pid").write_text(str(os.getpid()))
    record: dict[str, Any] = {"clean": False, "error": ""}
    try:
        code = Supervisor(settings).run()
        record["clean"] = True
        return code
    except BaseException as exc:
        record["error"] = f"{exc.__class__.__name__}: {exc}"
        raise
    finally:
        (state / "supervisor.pid").unlink(missing_ok=True)
        write_json_atomic(state / "supervisor.exit", {**record, "ts_ns": time.time_ns()})


if __name__ == "__main__":
    sys.exit(main())
