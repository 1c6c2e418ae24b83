"""Turn pod and Event watches into the platform events file (``harness.events``), like the local supervisor.

Runs as its own process (``python -m harness.platforms.kubernetes.watcher STATE_DIR``), started by ``up``
and stopped by ``down`` (``start_watcher``, ``stop_watcher`` below; its pid in the state directory), because
experiments run in later, separate ``harness`` invocations and the events must cover them all. Pods are the
replicas; the pod name is the replica name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import PlatformError
from harness.events import EventKind, EventLog
from harness.platforms.kubernetes.pods import parse_time

__all__ = ["PodTracker", "backoff_seconds", "main", "start_watcher", "stop_watcher", "watcher_pid"]


@dataclass
class _PodState:
    ready: bool
    restarts: int
    waiting: str
    phase: str


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def _state_of(pod: dict[str, Any]) -> _PodState:
    cs = _container(pod)
    return _PodState(
        ready=bool(cs.get("ready")),
        restarts=int(cs.get("restartCount") or 0),
        waiting=str(((cs.get("state") or {}).get("waiting") or {}).get("reason", "")),
        phase=str((pod.get("status") or {}).get("phase", "")),
    )


def _readiness_period(pod: dict[str, Any]) -> float | None:
    """The readiness probe's period (Kubernetes' default 10 s when the probe leaves it out; None without a
    probe): the analysis compares each replica's ready-to-serving gap with it."""
    containers = (pod.get("spec") or {}).get("containers") or []
    probe = (containers[0].get("readinessProbe") if containers else None) or None
    return float(probe.get("periodSeconds") or 10) if isinstance(probe, dict) else None


def backoff_seconds(message: str) -> float | None:
    """The kubelet's delay from its waiting message (``back-off 1m20s restarting failed container=...``)."""
    match = re.search(r"back-off ((?:\d+h)?(?:\d+m)?(?:\d+(?:\.\d+)?s)?)", message)
    if not match or not match.group(1):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", match.group(1))
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in parts)


class PodTracker:
    """Compares each pod update with the last one seen and emits what changed."""

    def __init__(self, log: EventLog, stopping_marker: Path | None = None) -> None:
        self.log = log
        self.pods: dict[str, _PodState] = {}
        # Pods whose deletion was requested (deletionTimestamp seen), and those whose container has exited
        # since: a rollout's phases start at the deletion request, as they do locally, not at the removal.
        self.terminating: set[str] = set()
        self.exited: set[str] = set()
        self.stopping = False
        # ``down`` creates this file before deleting, so deletions read as stopped, not killed.
        self.stopping_marker = stopping_marker
        # The kubelet folds a repeated event (the same probe failing again, the same kill) into one Event whose
        # count grows: Event uid -> the count already turned into platform events.
        self.counts: dict[str, int] = {}
        self.last_failure: dict[tuple[str, str], str] = {}  # (pod, probe) -> its last Unhealthy message
        self.started_s = time.time()  # Events last seen before this (the first list) are history, not news

    def seen(self, kind: str, pod: dict[str, Any]) -> None:
        name = str(pod["metadata"]["name"])
        new = _state_of(pod)
        old = self.pods.get(name)
        ip = str((pod.get("status") or {}).get("podIP", ""))
        stopping = self.stopping or bool(self.stopping_marker and self.stopping_marker.exists())
        if kind == "DELETED":
            self.pods.pop(name, None)
            if name in self.terminating:  # its deletion (and maybe its exit) was already recorded
                self.terminating.discard(name)
                if name not in self.exited:
                    self.log.emit(EventKind.EXITED, name, "pod removed", address=ip)
                self.exited.discard(name)
                return
            self.log.emit(EventKind.STOPPED if stopping else EventKind.KILLED, name, "pod deleted", address=ip)
            return
        if pod["metadata"].get("deletionTimestamp") and name not in self.terminating:
            self.terminating.add(name)
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            self.log.emit(EventKind.STOPPED if stopping else EventKind.KILLED, name,
                          f"pod deletion requested (grace {grace}s)", address=ip)
        if name in self.terminating and name not in self.exited:
            ended = (_container(pod).get("state") or {}).get("terminated")
            if ended:
                self.exited.add(name)
                self.log.emit(EventKind.EXITED, name, str(ended.get("reason", "container exited")),
                              exit_code=ended.get("exitCode"))
        self.pods[name] = new
        if old is None:
            self.log.emit(EventKind.STARTED, name, "pod created", address=ip)
            old = _PodState(False, new.restarts, "", "")
        if new.restarts > old.restarts:
            last = (_container(pod).get("lastState") or {}).get("terminated") or {}
            self.log.emit(
                EventKind.EXITED,
                name,
                str(last.get("reason", "container exited")),
                exit_code=last.get("exitCode"),
                restarts=new.restarts,
            )
        if new.waiting == "CrashLoopBackOff" and old.waiting != "CrashLoopBackOff":
            waiting = (_container(pod).get("state") or {}).get("waiting") or {}
            last = (_container(pod).get("lastState") or {}).get("terminated") or {}
            reason = f"CrashLoopBackOff after {last['reason']}" if last.get("reason") else "CrashLoopBackOff"
            self.log.emit(EventKind.BACKOFF, name, reason, restarts=new.restarts,
                          backoff_s=backoff_seconds(str(waiting.get("message", ""))))
        if new.restarts > old.restarts and not new.waiting:
            self.log.emit(EventKind.RESTARTED, name, "container restarted", restarts=new.restarts)
        elif old.waiting == "CrashLoopBackOff" and not new.waiting:
            self.log.emit(EventKind.RESTARTED, name, "back-off over, container started", restarts=new.restarts)
        if new.ready and not old.ready:
            self.log.emit(EventKind.READY, name, "", address=ip, readiness_period_s=_readiness_period(pod))
        elif old.ready and not new.ready:
            self.log.emit(EventKind.NOT_READY, name, new.waiting or "readiness failed", address=ip)
        if new.phase in ("Succeeded", "Failed") and old.phase != new.phase:
            self.log.emit(EventKind.EXITED, name, f"pod {new.phase.lower()}")

    def event(self, obj: dict[str, Any]) -> None:
        """core/v1 Events about our pods (added or modified): the kubelet's probe kills, which pod watches cannot
        see. ``startup_failed``/``liveness_failed`` mean what they mean locally, the probe killed the container
        (the kubelet's ``Killing`` Event "failed startup probe, will be restarted"), with the probe's last failure
        as the reason. One per kill: the kubelet counts repeats on one Event, so only the first kill was seen
        (a probe killing every slow load read as one kill, and its landing as void). A failed probe alone
        (``Unhealthy``) is remembered for the reason, not emitted: below its threshold it changes nothing."""
        involved = obj.get("involvedObject") or {}
        name = str(involved.get("name", ""))
        if involved.get("kind") != "Pod" or name not in self.pods:
            return
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or meta.get("name") or "")
        count = int(obj.get("count") or (obj.get("series") or {}).get("count") or 1)
        new = count - self.counts.get(uid, 0)
        self.counts[uid] = max(count, self.counts.get(uid, 0))
        last = parse_time(str(obj.get("lastTimestamp") or ""))
        if last is not None and last < self.started_s - 2.0:
            new = 0  # the kubelet's Events are kept for an hour: one from before the watcher is not a kill now
        message = str(obj.get("message", ""))
        reason = obj.get("reason")
        if reason == "Unhealthy":
            for probe in ("Startup", "Liveness"):
                if message.startswith(probe):
                    self.last_failure[(name, probe)] = message
        elif reason == "Killing" and new > 0:
            for probe, kind in (("startup", EventKind.STARTUP_FAILED), ("liveness", EventKind.LIVENESS_FAILED)):
                if f"failed {probe} probe" in message:
                    why = self.last_failure.get((name, probe.capitalize())) or f"{probe.capitalize()} probe failed"
                    for _ in range(new):
                        self.log.emit(kind, name, why, kubelet=message)


def _watch_forever(api: Any, kind: Any, namespace: str, selector: str, handle: Any, stop: threading.Event) -> None:
    from harness.platforms.kubernetes.api import ApiFailure

    version = ""
    while not stop.is_set():
        try:
            for item in api.watch(kind, namespace, selector, version, timeout_s=30):
                obj = item.get("object") or {}
                if item.get("type") == "ERROR":
                    version = ""  # 410 Gone: the resourceVersion is too old, start again from a list
                    break
                version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                handle(item["type"], obj)
                if stop.is_set():
                    return
        except ApiFailure as exc:
            if exc.status == 410:
                version = ""
            stop.wait(1.0)
        except Exception:  # noqa: BLE001 - the cluster blinked; a watcher must outlive that
            stop.wait(1.0)


def start_watcher(state: Path) -> None:
    """Start the watcher for the platform state in ``state`` (stopping one already there); return once it watches."""
    stop_watcher(state)
    (state / "watcher.ready").unlink(missing_ok=True)
    log = (state / "watcher.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.platforms.kubernetes.watcher", str(state)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    (state / "watcher.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while not (state / "watcher.ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (state / "watcher.log").read_text(errors="replace")[-2000:]
            raise PlatformError(f"the event watcher did not start:\n{tail}")
        time.sleep(0.05)


def watcher_pid(state: Path) -> int | None:
    """The watcher's pid when it runs (checked by its command line, so a reused pid is not taken for it)."""
    try:
        pid = int((state / "watcher.pid").read_text())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"harness.platforms.kubernetes.watcher" in cmd else None


def stop_watcher(state: Path) -> bool:
    """Stop the watcher (SIGTERM: it records what it has, then exits); whether one was running."""
    pid = watcher_pid(state)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while watcher_pid(state) is not None and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    (state / "watcher.pid").unlink(missing_ok=True)
    return True


def _still_up(state: Path) -> bool:
    try:
        return bool(json.loads((state / "state.json").read_text()).get("up"))
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    from harness.platforms.kubernetes.api import KINDS
    from harness.platforms.kubernetes.connect import connect
    from harness.platforms.kubernetes.settings import KubernetesSettings

    state = Path((argv or sys.argv[1:])[0])
    settings = KubernetesSettings.load(state)
    api, _ = connect(settings)
    log = EventLog(state / "events.jsonl", platform="kubernetes")
    tracker = PodTracker(log, state / "stopping")
    stop = threading.Event()
    lock = threading.Lock()
    closed = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        tracker.stopping = True
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    selector = str((state / "selector").read_text()).strip()
    kinds = {k.kind: k for k in KINDS}

    def on_pod(kind: str, obj: dict[str, Any]) -> None:
        with lock:
            if closed.is_set():
                return
            if kind == "ADDED" and obj["metadata"]["name"] in tracker.pods:
                kind = "MODIFIED"  # a relist after a dropped watch
            tracker.seen(kind, obj)

    def on_event(kind: str, obj: dict[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):  # MODIFIED: the kubelet counted a repeat
            with lock:
                if closed.is_set():
                    return
                tracker.event(obj)

    threads = [
        threading.Thread(
            target=_watch_forever,
            daemon=True,
            args=(api, kinds["Pod"], settings.namespace, selector, on_pod, stop),
        ),
        threading.Thread(
            target=_watch_forever,
            daemon=True,
            args=(api, kinds["Event"], settings.namespace, "", on_event, stop),
        ),
    ]
    for thread in threads:
        thread.start()
    (state / "watcher.ready").write_text(str(time.time_ns()))
    while not stop.is_set():
        stop.wait(0.5)
        if not _still_up(state):
            break  # down ran without reaching us, or the state was removed: nothing left to watch for
    with lock:
        closed.set()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
