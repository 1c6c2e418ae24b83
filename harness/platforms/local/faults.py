"""Fault operations on the local platform: what ``harness.chaos`` calls to inject and undo faults.

The Kubernetes platform offers the same operations (same names and meanings), so one experiment file
drives both. Every operation writes its undo record before it touches anything.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.deployment import DEFAULT_MANIFEST
from harness.errors import FaultError
from harness.events import Event, read_events
from harness.faults.cgroups import memory_controller
from harness.faults.connect import Connect, connected, tcp_connect
from harness.faults.hog import MB
from harness.faults.nft import NftablesRoute, recorded_block
from harness.faults.overrides import (
    CGROUP_FILE,
    corrupt_weights,
    move_to_cgroup,
    restore_weights,
    write_delete_request,
    write_env_override,
    write_probe_override,
)
from harness.faults.undo import Undoer, UndoRecord, UndoStore
from harness.faults.undoers import UNDOERS
from harness.manifest import DeploymentView, read_manifest
from harness.platforms.base import ReplicaStatus
from harness.platforms.local.load_clock import LocalLoadClock
from harness.platforms.local.model_ops import UNDO_KIND as MODEL_UNDO_KIND
from harness.platforms.local.model_ops import LocalModelControl, undo_record
from harness.platforms.local.newpod import request_new_pod
from harness.platforms.local.procs import alive, group_members
from harness.platforms.local.supervisor import surge_name
from harness.triton.gpus import GpuInfo, read_assignment

__all__ = ["LocalFaultOps", "LocalSpecOps"]


# Every kind of undo record the local platform writes: the host mechanics' and its replicas' model changes.
LOCAL_UNDOERS: Mapping[str, Undoer] = {**UNDOERS, MODEL_UNDO_KIND: undo_record}


class LocalFaultOps(NftablesRoute):
    def __init__(self, state_dir: Path, replicas: Sequence[ReplicaStatus], ports: Mapping[str, int],
                 manifest: Path | None = None) -> None:
        self.state = state_dir
        self.replicas = {r.name: r for r in replicas}
        self.ports = ports
        self.store = UndoStore(state_dir / "faults", LOCAL_UNDOERS)
        self.manifest = manifest

    def _replica(self, name: str) -> ReplicaStatus:
        try:
            return self.replicas[name]
        except KeyError:
            raise FaultError(f"no replica named {name!r}; replicas are {sorted(self.replicas)}") from None

    def _workdir(self, name: str) -> Path:
        return self.state / "replicas" / name

    def _record(self, kind: str, run_id: str, max_s: float, payload: dict[str, Any], what: str) -> UndoRecord:
        record = UndoRecord(kind=kind, run_id=run_id, owner_pid=os.getpid(),
                            deadline_ns=time.time_ns() + int(max_s * 1e9), payload=payload, description=what)
        self.store.record(record)
        return record

    # -- pod kill ------------------------------------------------------------------------------------
    def kill_replica(self, name: str, grace_s: float | None = 0, container: bool = False, allow_agent: bool = False,
                     agent_image: str = "") -> None:
        """Delete the pod: SIGKILL (grace 0) or SIGTERM then SIGKILL after the grace period, and a new pod in its
        place at once, with no back-off history (``harness.platforms.local.newpod``). A replica waiting out a
        CrashLoopBackOff has no process to kill; deleting its pod still makes a new one at once, as on
        Kubernetes. ``container``: the same signals, but the pod stays: the supervisor restarts the server as the
        kubelet restarts an exited container (restartPolicy, CrashLoopBackOff history kept). The supervisor is the
        harness's own: ``allow_agent`` and ``agent_image`` (how Kubernetes kills a container) mean nothing here."""
        replica = self._replica(name)
        pid = replica.pid
        if container and not alive(pid, "tritonserver"):
            raise FaultError(f"replica {name} has no running server to kill ({replica.state or 'unknown'}: "
                             f"{replica.reason or 'starting'})")
        if not alive(pid, "tritonserver"):
            if replica.state not in ("backoff", "exited"):
                raise FaultError(f"replica {name} has no running server to kill ({replica.state or 'unknown'}: "
                                 f"{replica.reason or 'starting'})")
            request_new_pod(self._workdir(name), "pod kill during back-off")
            return
        assert pid is not None
        if not container:
            request_new_pod(self._workdir(name), "pod kill")
        if not grace_s:
            os.kill(pid, signal.SIGKILL)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and alive(pid, "tritonserver"):
            time.sleep(0.05)
        if alive(pid, "tritonserver"):
            os.kill(pid, signal.SIGKILL)

    # -- network-policy block ------------------------------------------------------------------------
    def block_network(self, names: Sequence[str], run_id: str, max_s: float = 600.0) -> dict[str, Any]:
        targets = [(self._replica(n).address, sorted(set(self.ports.values()))) for n in names]
        return recorded_block(self.store, run_id, names, targets, max_s, f"nftables drop to {', '.join(names)}")

    def unblock_network(self, record: Mapping[str, Any]) -> int | None:
        self._undo_id(str(record["id"]))
        return time.time_ns()  # the table is deleted in one nft transaction

    def connect_probe(self, name: str, timeout_s: float = 1.0) -> bool | None:
        return connected(self.connect_check(name, timeout_s))

    def connect_check(self, name: str, timeout_s: float = 1.0) -> Connect:
        """A plain TCP connect to the replica's HTTP port, without the probes' socket mark, so an nftables
        block applies to it exactly as to the service's clients: connected, refused, timed out, unreachable."""
        return tcp_connect(self._replica(name).address, int(self.ports["http"]), timeout_s)

    def _undo_id(self, record_id: str) -> None:
        for rec in self.store.records():
            if rec.id == record_id:
                self.store.undo(rec)

    # -- slow model load -----------------------------------------------------------------------------
    def restart_with_env(self, env: Mapping[str, str], run_id: str, names: Sequence[str],
                         max_s: float = 600.0, grace_s: float = 1.0) -> dict[str, Any]:
        """Restart the replicas with extra environment (the local form of patching the Deployment)."""
        ids = []
        for name in names:
            workdir = self._workdir(name)
            rec = self._record("env", run_id, max_s, {"workdir": str(workdir), "env": dict(env)},
                               f"env {dict(env)} on {name}")
            write_env_override(workdir, dict(env))
            ids.append(rec.id)
        for name in names:
            self.kill_replica(name, grace_s)
        return {"ids": ids, "replicas": list(names), "env": dict(env)}

    def restore_env(self, record: Mapping[str, Any]) -> None:
        for rid in record.get("ids", []):
            self._undo_id(str(rid))

    def load_clock(self) -> LocalLoadClock:
        """When each replica started and became ready, and its model load (the slow-load fault's check)."""
        return LocalLoadClock(self.state)

    def reload_model(self, name: str, model: str = "mlp", parameters: Mapping[str, str] | None = None,
                     timeout_s: float = 120.0) -> tuple[bool, str]:
        """Reload the model over gRPC (a load over HTTP stalls other HTTP clients; DESIGN.md).

        With ``parameters``, the full current config is sent back with those parameters changed: an
        override replaces the whole config.
        """
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        replica = self._replica(name)
        client = grpcclient.InferenceServerClient(replica.grpc)
        try:
            config_json = None
            if parameters:
                config = client.get_model_config(model, as_json=True)["config"]
                params = config.setdefault("parameters", {})
                for key, value in parameters.items():
                    params[key] = {"string_value": str(value)}
                config_json = json.dumps(config)
            client.load_model(model, config=config_json, client_timeout=timeout_s)
            return True, ""
        except InferenceServerException as exc:
            return False, str(exc.message())
        finally:
            client.close()

    def model_control(self, name: str) -> LocalModelControl:
        """Triton's model-control API and model repository of one replica (the model-lifecycle faults)."""
        replica = self._replica(name)
        return LocalModelControl(name, replica.http, replica.grpc, self._workdir(name) / "models", self.store.directory)

    # -- memory pressure -----------------------------------------------------------------------------
    def memory_pressure(self, names: Sequence[str], run_id: str, leave_free_mb: float, duration_s: float,
                        headroom_mb: float = 256.0, allow_agent: bool = False, agent_image: str = "") -> dict[str, Any]:
        """Hold free memory at ``leave_free_mb``: on the targets' GPUs when the replicas are pinned to GPUs,
        else in each replica's cgroup.

        Without a GPU this is the host-memory analogue: each target replica joins a memory cgroup limited to
        ``headroom_mb`` and a hog inside holds all but ``leave_free_mb`` of it. Memory the replica already
        uses stays charged where it was (cgroup v1 moves no charges, v2 never does), so serving goes on, but
        whatever it allocates next (a model load, a restart) must fit in ``leave_free_mb``: as on a GPU held
        by a hog. cgroup v1 or v2, root or a delegated subtree: ``harness.faults.cgroups`` decides. The cgroup
        is the harness's own and outlives the replica's restarts, so ``allow_agent`` and ``agent_image`` (how
        Kubernetes holds a pod's memory from outside it) mean nothing here.
        """
        hogs_dir = self.state / "faults" / "hogs"
        hogs_dir.mkdir(parents=True, exist_ok=True)
        max_s = duration_s + 30
        pinned = read_assignment(self.state)  # the GPUs the supervisor pinned each replica to
        if pinned:
            return self._gpu_pressure(names, pinned, run_id, leave_free_mb, duration_s, hogs_dir, max_s)
        controller = memory_controller()  # FaultError with the reason and the fix (as `harness doctor` says)
        ids, files = [], []
        for name in names:
            pid = self._replica(name).pid
            if not alive(pid, "tritonserver"):
                raise FaultError(f"replica {name} is not running; cannot confine it")
            assert pid is not None
            members = group_members(pid)
            cgroup_name = f"harness_{run_id[-8:]}_{name}_{os.getpid() % 10000}"
            workdir = self._workdir(name)
            cg = controller.group_path(cgroup_name)
            home = controller.group_of(pid)  # where its processes go back when the fault is undone
            rec = self._record("cgroup", run_id, max_s, {"cgroup": str(cg), "home": str(home),
                                                         "workdirs": [str(workdir)]},
                               f"memory cgroup confining {name} ({controller.describe()})")
            ids.append(rec.id)
            cgroup = controller.create(cgroup_name, int(headroom_mb * MB))
            (workdir / CGROUP_FILE).write_text(str(cgroup.path))
            move_to_cgroup(cgroup.path, [*members, *_shim_of(workdir)])
            status = hogs_dir / f"{run_id}-{name}.json"
            hog = self._start_hog(["--target", "host", "--cgroup", str(cgroup.path)], leave_free_mb, duration_s,
                                  status, run_id, max_s, name)
            ids.append(hog.id)
            files.append(str(status))
        return {"target": "host", "analogue": "host-memory analogue in a per-replica memory cgroup (no GPU)",
                "ids": ids, "status_files": files, "targets": list(names)}

    def _gpu_pressure(self, names: Sequence[str], pinned: Mapping[str, Sequence[GpuInfo]], run_id: str,
                      leave_free_mb: float, duration_s: float, hogs_dir: Path, max_s: float) -> dict[str, Any]:
        """One hog per GPU the targets are pinned to, itself pinned to that GPU (``CUDA_VISIBLE_DEVICES``).

        ``targets`` and ``status_files`` stay aligned, one entry per target and GPU: targets that share a GPU
        share its hog and its status file. Replicas that are not targets but share a GPU with one are
        squeezed too; the record names them (``shared_with``).
        """
        hogs: dict[str, tuple[str, Path]] = {}  # GPU uuid -> (undo record id, status file)
        targets, files, devices = [], [], {}
        for name in names:
            self._replica(name)
            gpus = pinned.get(name)
            if not gpus:
                raise FaultError(f"replica {name} is not pinned to a GPU (pinned: {sorted(pinned)}); the GPU "
                                 "memory-pressure fault needs the replica's GPU")
            for gpu in gpus:
                if gpu.uuid not in hogs:
                    status = hogs_dir / f"{run_id}-{gpu.uuid}.json"
                    rec = self._start_hog(["--target", "gpu", "--device", "0", "--chunk-mb", "1024"], leave_free_mb,
                                          duration_s, status, run_id, max_s, f"{gpu.describe()} of {name}",
                                          env={"CUDA_VISIBLE_DEVICES": gpu.uuid})
                    hogs[gpu.uuid] = (rec.id, status)
                key = name if len(gpus) == 1 else f"{name} {gpu.uuid}"
                targets.append(key)
                files.append(str(hogs[gpu.uuid][1]))
                devices[key] = gpu.to_json()
        squeezed = set(hogs)
        shared = sorted(n for n, gs in pinned.items() if n not in names and squeezed & {g.uuid for g in gs})
        return {"target": "gpu", "analogue": "", "ids": [rid for rid, _ in hogs.values()], "status_files": files,
                "targets": targets, "gpus": devices, "shared_with": shared}

    def _start_hog(self, target: list[str], leave_free_mb: float, duration_s: float, status: Path, run_id: str,
                   max_s: float, what: str, env: Mapping[str, str] | None = None) -> UndoRecord:
        record = self._record("hog", run_id, max_s, {"status_file": str(status)}, f"memory hog for {what}")
        subprocess.Popen(
            [sys.executable, "-m", "harness.faults.hog", *target, "--leave-free-mb", f"{leave_free_mb:g}",
             "--duration", f"{duration_s:g}", "--status-file", str(status), "--tag", record.id],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(self.state / "faults" / "hog.log").open("ab"),
            start_new_session=True,  # exits by its own deadline even if the harness dies
            env={**os.environ, **env} if env else None,
        )
        return record

    def deployment_spec_ops(self) -> None:
        return None  # the supervisor plays the pod spec itself (LocalSpecOps is the SpecTarget)

    def memory_status(self, record: Mapping[str, Any]) -> dict[str, dict[str, Any] | None]:
        """Each hog's last status file (written every 0.5 s while it holds, and once when it lets go)."""
        out: dict[str, dict[str, Any] | None] = {}
        for target, path in zip(record.get("targets") or ["gpu"], record.get("status_files") or [], strict=False):
            try:
                data = json.loads(Path(path).read_text())
            except (OSError, ValueError):
                data = None
            out[str(target)] = data if isinstance(data, dict) else None
        return out

    def release_memory(self, record: Mapping[str, Any]) -> None:
        for rid in reversed(list(record.get("ids", []))):
            self._undo_id(str(rid))


def _shim_of(workdir: Path) -> list[int]:
    """The shim of the replica (so a restart of the server lands in the same cgroup)."""
    try:
        server = int((workdir / "server.pid").read_text())
        ppid = int(Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return [ppid]
    except (OSError, ValueError):
        return []


# -- a changed pod spec: rolling updates, probe budgets, memory limits, corrupt weights -------------------
# (the same operations the Kubernetes platform would express as Deployment patches; see
# harness/faults/rollout.py for what each is for)
class LocalSpecOps(LocalFaultOps):
    def deployment(self) -> DeploymentView:
        """The Deployment as check-deployment reads it (maxSurge/maxUnavailable, preStop, grace)."""
        return read_manifest(self.manifest or DEFAULT_MANIFEST)

    def events_since(self, since_ns: int) -> list[Event]:
        return [e for e in read_events(self.state / "events.jsonl") if e.ts_ns >= since_ns]

    def set_revision(self, names: Sequence[str], run_id: str, env: Mapping[str, str] | None = None,
                     probes: Mapping[str, Mapping[str, float] | None] | None = None, corrupt: bool = False,
                     max_s: float = 600.0) -> dict[str, Any]:
        """Write a new pod spec for these replicas (env, probes, corrupt weights); it applies at their next
        container start. Nothing is restarted here: a rollout or a restart decides when."""
        ids: list[str] = []
        for name in names:
            self._replica(name)
            ids.extend(self._spec_changes(self._workdir(name), name, run_id, env, probes, corrupt, max_s))
        return {"ids": ids, "replicas": list(names)}

    def _spec_changes(self, workdir: Path, name: str, run_id: str, env: Mapping[str, str] | None,
                      probes: Mapping[str, Mapping[str, float] | None] | None, corrupt: bool,
                      max_s: float) -> list[str]:
        ids = []
        if env:
            rec = self._record("env", run_id, max_s, {"workdir": str(workdir), "env": dict(env)},
                               f"env {dict(env)} on {name}")
            write_env_override(workdir, dict(env))
            ids.append(rec.id)
        if probes:
            rec = self._record("probes", run_id, max_s, {"workdir": str(workdir)}, f"probes {dict(probes)} on {name}")
            write_probe_override(workdir, {k: (None if v is None else dict(v)) for k, v in probes.items()})
            ids.append(rec.id)
        if corrupt:
            rec = self._record("weights", run_id, max_s, {"models": str(workdir / "models")},
                               f"corrupt weights of {name}")
            corrupt_weights(workdir / "models")
            ids.append(rec.id)
        return ids

    def delete_replica(self, name: str, prestop_s: float, endpoint_lag_s: float) -> None:
        """Delete the pod the way Kubernetes does: endpoint removal after ``endpoint_lag_s``, SIGTERM after the
        preStop delay, SIGKILL after the grace period; the replica then starts with its current pod spec."""
        if not alive(self._replica(name).pid, "tritonserver"):
            raise FaultError(f"replica {name} has no running container to delete (it is restarting?)")
        write_delete_request(self._workdir(name), prestop_s, endpoint_lag_s)

    def add_surge(self, slot: int, run_id: str, env: Mapping[str, str] | None = None, corrupt: bool = False,
                  max_s: float = 600.0) -> dict[str, Any]:
        """Start an extra pod (maxSurge) with the new revision: its model repository copied from a replica."""
        name = surge_name(self.deployment().name, slot)
        workdir = self._workdir(name)
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        first = sorted(self.replicas)[0]
        shutil.copytree(self._workdir(first) / "models", workdir / "models",
                        ignore=shutil.ignore_patterns("__pycache__"))
        restore_weights(workdir / "models")  # the replica copied from may already carry this rollout's change
        ids = self._spec_changes(workdir, name, run_id, env, None, corrupt, max_s)
        request = self.state / "surge" / f"{slot}.json"
        rec = self._record("surge", run_id, max_s, {"request": str(request)}, f"surge pod {name}")
        request.parent.mkdir(parents=True, exist_ok=True)
        request.write_text(json.dumps({"slot": slot, "name": name}))
        return {"ids": [*ids, rec.id], "name": name}

    def limit_memory(self, names: Sequence[str], run_id: str, limit_mb: float, max_s: float = 600.0) -> dict[str, Any]:
        """Give each replica a memory limit (its own memory cgroup), effective from its next container start."""
        controller = memory_controller()  # FaultError with the reason and the fix (as `harness doctor` says)
        ids = []
        for name in names:
            pid = self._replica(name).pid
            home = controller.group_of(pid if pid is not None and alive(pid, "tritonserver") else os.getpid())
            cgroup_name = f"harness_{run_id[-8:]}_{name}_limit_{os.getpid() % 10000}"
            workdir = self._workdir(name)
            rec = self._record("cgroup", run_id, max_s, {"cgroup": str(controller.group_path(cgroup_name)),
                                                         "home": str(home), "workdirs": [str(workdir)]},
                               f"memory limit {limit_mb:g} MB on {name} ({controller.describe()})")
            group = controller.create(cgroup_name, int(limit_mb * MB))
            (workdir / CGROUP_FILE).write_text(str(group.path))
            ids.append(rec.id)
        return {"ids": ids, "replicas": list(names), "limit_mb": limit_mb}

    def undo_records(self, record: Mapping[str, Any]) -> None:
        """Undo every record of a ``set_revision``/``add_surge``/``limit_memory`` result, newest first."""
        for rid in reversed(list(record.get("ids", []))):
            self._undo_id(str(rid))
