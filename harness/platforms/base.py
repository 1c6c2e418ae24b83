"""The contract every platform (local, kubernetes) implements, and the records it returns.

Commands, faults and reports talk to a platform only through this Protocol, chosen from the explicit
mapping in ``harness.platforms.registry``; nothing else knows whether replicas are processes or pods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["CleanupReport", "Connect", "DeploymentSpecTarget", "Endpoints", "FaultTarget", "LoadClock",
           "LoadStart", "ModelControl", "Platform", "PlatformStatus", "ReplicaStatus", "SpecTarget"]

# How a TCP connect test ended (harness.faults.connect): a block drops (timed out), a dead server refuses.
Connect = Literal["connected", "refused", "timed out", "unreachable"]


@dataclass(frozen=True)
class Endpoints:
    """Where clients reach the service (the front / Service), and its Prometheus."""

    http: str  # http://HOST:PORT
    grpc: str  # HOST:PORT
    prometheus: str  # http://HOST:PORT, "" when none
    metrics: tuple[str, ...] = ()  # each replica's metrics URL, when reachable


@dataclass(frozen=True)
class ReplicaStatus:
    name: str
    address: str  # the replica's own address (127.0.0.x locally, pod IP on Kubernetes)
    pid: int | None
    ready: bool
    restarts: int
    reason: str  # why it is not ready / last lifecycle change, "" when healthy
    state: str = ""  # starting | running | backoff | stopped
    age_s: float = 0.0
    http: str = ""
    grpc: str = ""
    metrics: str = ""
    uid: str = ""  # the pod uid on Kubernetes (a replacement gets a new one); "" locally, where the pid tells
    terminating: bool = False  # a deleted pod the kubelet is still stopping: shown, but no longer a replica


@dataclass(frozen=True)
class LoadStart:
    """One start of a replica's server as its platform recorded it: what the slow-load check
    (``harness.faults.slow_load_landing``) compares with the replicas' plain starts."""

    replica: str
    identity: str  # the process id locally, the pod uid on Kubernetes
    started_ns: int  # the server (container) started
    ready_ns: int | None = None  # it first became ready after that start; None: not (yet)
    load_s: float | None = None  # Triton's own account of the model load; None: its log holds none (yet)
    last: str = ""  # what the replica did last after this start, when it is not ready (exited, back-off ...)

    @property
    def ready_s(self) -> float | None:
        return None if self.ready_ns is None else round((self.ready_ns - self.started_ns) / 1e9, 3)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"replica": self.replica, "identity": self.identity, "started_ns": self.started_ns,
                               "ready_s": self.ready_s, "load_s": self.load_s}
        if self.last and self.ready_ns is None:
            out["last"] = self.last
        return out


@runtime_checkable
class LoadClock(Protocol):
    """Where a platform reads its replicas' starts (``FaultTarget.load_clock()``): locally the supervisor's events
    and Triton's log file, on Kubernetes the pods' own timestamps and their container log."""

    signals: str  # what the readings come from, for the landing record
    precision_s: float  # how coarse a start-to-ready reading is (Kubernetes' timestamps are whole seconds)

    def baseline(self, targets: Sequence[str], model: str) -> dict[str, LoadStart]:
        """The last plain start of each current replica that became ready (the targets locally, every pod of the
        current template on Kubernetes), read before anything is injected."""

    def last_load(self, target: str, model: str) -> float | None:
        """How long the latest completed load of ``model`` on the target's running server took, by Triton's own
        log; None when its log holds none. The reload trigger compares the reload's with the load before it."""

    def restarted(self, targets: Sequence[str], record: Mapping[str, Any], since_ns: int,
                  model: str) -> dict[str, LoadStart | None]:
        """The replicas that restarted with the change, as far as seen now: the targets' first start after
        ``since_ns`` locally, the pods of the patched template on Kubernetes (those created before the first of
        them became ready); None for one whose server has not started yet."""


@dataclass(frozen=True)
class PlatformStatus:
    platform: str
    up: bool
    endpoints: Endpoints
    replicas: tuple[ReplicaStatus, ...]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ready_replicas(self) -> int:
        return sum(1 for r in self.replicas if r.ready)

    @property
    def all_ready(self) -> bool:
        """Every replica serves: pods still terminating after a rollout or a kill are on their way out (the
        Deployment does not count them, nor do its endpoints), so they neither count nor block."""
        current = [r for r in self.replicas if not r.terminating]
        return bool(current) and all(r.ready for r in current)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["endpoints"]["metrics"] = list(self.endpoints.metrics)
        out["ready_replicas"] = self.ready_replicas
        return out


@dataclass
class CleanupReport:
    """What ``down`` or ``cleanup`` removed, for the user to read."""

    killed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.killed or self.removed)

    def describe(self) -> str:
        parts = []
        if self.killed:
            parts.append("killed " + ", ".join(self.killed))
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        return "; ".join(parts) or "nothing left behind"


class FaultStore(Protocol):
    """A platform's undo records (``harness.faults.undo.UndoStore``): what the runner undoes when a run ends."""

    def records(self, run_id: str | None = None) -> Sequence[Any]: ...

    def undo_many(self, records: list[Any]) -> list[Any]: ...


@runtime_checkable
class Platform(Protocol):
    """What every command and Chaos Toolkit activity may use of a platform. Every member is declared here, so a
    capability is a checked call, never a ``getattr`` probe: a platform that cannot do something says so
    (``refused_actions``, ``deployment_spec_ops() -> None``) instead of lacking the method."""

    name: str

    def up(self, replicas: int | None = None) -> PlatformStatus:
        """Deploy (or start) the reference service; return once every replica is ready."""

    def down(self) -> CleanupReport:
        """Remove everything ``up`` created; nothing is left behind."""

    def cleanup(self) -> CleanupReport:
        """Remove what a crashed harness or platform left behind (processes, faults, objects)."""

    def status(self) -> PlatformStatus: ...

    def events_path(self) -> Path:
        """The lifecycle events file (``harness.events`` schema)."""

    def service_identity(self) -> dict[str, Any]:
        """What only the platform knows about the service under test (``harness.service``): Deployment,
        namespace, image, model repository."""

    def fault_ops(self) -> FaultTarget:
        """The operations faults use, bound to the replicas as they are now."""

    def fault_store(self) -> FaultStore:
        """This platform's undo records, undone by the runner when a run ends."""

    def sweep_faults(self, only_orphaned: bool = True) -> list[str]:
        """Undo faults whose run is gone (or every recorded fault); what was undone."""

    def refused_actions(self) -> dict[str, str]:
        """Chaos Toolkit actions this service cannot undergo, with the reason (checked before any injection)."""

    def refused_arguments(self, func: str, arguments: Mapping[str, Any]) -> str | None:
        """Why these arguments of an action it can run cannot be honoured here (None: they can)."""

    def reset_backoff(self, why: str) -> dict[str, Any] | None:
        """Drop the CrashLoopBackOff history earlier faults left, before a repetition; the replicas as they were
        (name -> state, restarts, ready). None where the platform cannot (Kubernetes keeps a pod's back-off)."""


@runtime_checkable
class FaultTarget(Protocol):
    """What ``harness.chaos`` calls to inject and undo faults: ``platform.fault_ops()`` on every platform
    (``LocalSpecOps``, ``KubernetesFaultOps``, the attached service's). The same names and meanings everywhere.

    Every injecting call returns a JSON-serialisable record that the matching undo call accepts.
    """

    def kill_replica(self, name: str, grace_s: float | None = 0, container: bool = False, allow_agent: bool = ...,
                     agent_image: str = ...) -> None:
        """Kill one replica (grace 0: at once), as deleting a pod does; ``container``: only its server, which is
        restarted in the same pod (its memory cgroup stays), as the kubelet restarts an exited container."""

    def block_network(self, names: Sequence[str], run_id: str, max_s: float = ...) -> dict[str, Any]:
        """Deny traffic to these replicas until ``unblock_network`` (or ``max_s``, then the sweeper)."""

    def unblock_network(self, record: Mapping[str, Any]) -> int | None:
        """Lift the block; when it stopped dropping (wall-clock ns), which may be well before this returns (the
        agent route then waits for its pods to go), or None when the platform cannot say."""

    def restart_with_env(self, env: Mapping[str, str], run_id: str, names: Sequence[str]) -> dict[str, Any]:
        """Restart replicas with extra env (the slow-load fault); Kubernetes rolls the whole Deployment."""

    def restore_env(self, record: Mapping[str, Any]) -> None: ...

    def load_clock(self) -> LoadClock | None:
        """When each replica started and became ready, and its model load (how a slow restart proves itself);
        None where the platform cannot tell."""

    def memory_pressure(
        self, names: Sequence[str], run_id: str, leave_free_mb: float, duration_s: float, headroom_mb: float = ...,
        allow_agent: bool = ..., agent_image: str = ...,
    ) -> dict[str, Any]:
        """Hold free (GPU) memory at ``leave_free_mb``; the record's ``analogue`` says when it is not a GPU."""

    def release_memory(self, record: Mapping[str, Any]) -> None: ...

    def reload_model(
        self, name: str, model: str = ..., parameters: Mapping[str, str] | None = None, timeout_s: float = ...
    ) -> tuple[bool, str]:
        """Unload-and-load the model on one replica; (ok, why not)."""

    def connect_probe(self, name: str, timeout_s: float = 1.0) -> bool | None:
        """Open a TCP connection to the replica's serving port as its clients would (bypassing the front and
        any probe exemption): True connected, False refused or timed out, None cannot be checked from here.
        How a network block proves that it landed, and that it was lifted."""

    def connect_check(self, name: str, timeout_s: float = 1.0) -> Connect | None:
        """``connect_probe`` with the outcome in words: connected, refused (nothing listens), timed out
        (dropped), unreachable; None: cannot be checked from here. A block's baseline and its proof."""

    def block_routes(self) -> tuple[str, ...]:
        """The network block's routes here, in the order ``via: auto`` tries them: ``("nftables",)`` where the
        harness's own table is the block, ``("policy", "agent")`` on Kubernetes."""

    def block_network_agent(self, names: Sequence[str], run_id: str, max_s: float | None = None,
                            allowed: bool = False, image: str = "") -> dict[str, Any]:
        """The agent route of the network block (Kubernetes: a privileged pod per target); elsewhere a FaultError."""

    def agent_refusal(self, allowed: bool = False, image: str = "") -> str | None:
        """Why the agent route cannot run here, with how to allow it; None when it can."""

    def memory_status(self, record: Mapping[str, Any]) -> dict[str, dict[str, Any] | None]:
        """What each hog of a memory-pressure record last reported (``free_mb``, ``held_mb``, ``ts``,
        ``state``), by target; None for a hog that reported nothing. How memory pressure proves it held."""

    def deployment_spec_ops(self) -> DeploymentSpecTarget | None:
        """The platform's own Deployment rollout for pod-spec faults (Kubernetes: the real controller and
        kubelet); None where the harness plays the pod spec itself (``SpecTarget``) or cannot change it."""

    def model_control(self, name: str) -> ModelControl | None:
        """Triton's model-control API and model repository on replica ``name`` (the model-lifecycle faults);
        None where the platform must not change the served model (an attached service)."""


@runtime_checkable
class SpecTarget(FaultTarget, Protocol):
    """Faults that change the pod spec (rolling update, probe budget, memory limit, corrupt weights), kept
    apart from ``FaultTarget`` so a platform that lacks them still satisfies that. Locally: ``LocalSpecOps``;
    on Kubernetes they map to Deployment patches (strategy, probes, resources.limits, a new ConfigMap)."""

    def deployment(self) -> Any:
        """The Deployment as ``harness.deploycheck.read_manifest`` reads it (a ``DeploymentView``)."""

    def events_since(self, since_ns: int) -> list[Any]:
        """Lifecycle events (``harness.events.Event``) from ``since_ns`` on."""

    def set_revision(self, names: Sequence[str], run_id: str, env: Mapping[str, str] | None = None,
                     probes: Mapping[str, Mapping[str, float] | None] | None = None, corrupt: bool = False,
                     max_s: float = ...) -> dict[str, Any]:
        """A new pod spec for these replicas, applied at their next start; the record undoes it."""

    def delete_replica(self, name: str, prestop_s: float, endpoint_lag_s: float) -> None:
        """Delete a pod: endpoint removed after the lag, SIGTERM after preStop, SIGKILL after the grace."""

    def add_surge(self, slot: int, run_id: str, env: Mapping[str, str] | None = None, corrupt: bool = False,
                  max_s: float = ...) -> dict[str, Any]:
        """An extra pod of the new revision (maxSurge); the record (``name``, ``ids``) removes it."""

    def limit_memory(self, names: Sequence[str], run_id: str, limit_mb: float, max_s: float = ...) -> dict[str, Any]:
        """A memory limit for these replicas from their next start."""

    def undo_records(self, record: Mapping[str, Any]) -> None: ...


@runtime_checkable
class DeploymentSpecTarget(Protocol):
    """The pod-spec faults where a real Deployment controller and kubelet do the work (Kubernetes): the
    Deployment's template is patched and the controller rolls it out, instead of the harness playing the
    rollout pod by pod (``SpecTarget``). ``FaultTarget.deployment_spec_ops()`` returns one where offered.

    Every patch writes its undo record first (on the Deployment itself and in the local undo store), and
    ``restore_spec`` puts back exactly the original template and strategy (``kubectl rollout undo``)."""

    def deployment(self) -> Any:
        """The live Deployment as ``harness.deploycheck`` reads it (a ``DeploymentView``)."""

    def events_since(self, since_ns: int) -> list[Any]: ...

    def require_every_pod(self, targets: Sequence[str], fault: str) -> None:
        """ConfigError unless ``targets`` are every pod: a template change replaces them all."""

    def patch_spec(self, run_id: str, change: Mapping[str, Any], max_s: float = ...) -> dict[str, Any]:
        """Change the pod template (``env``, ``probes``, ``memory_limit_mb``, ``corrupt_weights``) and the
        strategy (``max_surge``, ``max_unavailable``, ``prestop_s``, ``progress_deadline_s``); the record
        (with ``since_ns`` and the pods before) undoes it."""

    def new_pods(self, record: Mapping[str, Any]) -> list[str]:
        """The pods of the patched template (created after the patch) that exist now."""

    def roll_env(self, record: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        """Merge ``env`` into the patched template under the same undo record, so every pod is rolled once
        more; the record returned carries this rollout's ``since_ns``, pods before and generation."""

    def rollout_phases(self, since_ns: int, old_pods: Sequence[str], new_pods: Sequence[str]) -> list[dict[str, Any]]:
        """Each pod's phases from the lifecycle events (``phase``, ``pod``, ``start_ns``, ``end_ns``)."""

    def model_reason(self, pod: str, model: str = ...) -> str:
        """Why the model is not ready on ``pod``, as Triton says it."""

    def memory_limit_seen(self, pod: str) -> str:
        """The memory limit as the pod's container sees it (its cgroup), or why it cannot be read."""

    def follow_rollout(self, record: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        """Watch the controller roll the patched template out until it completed or stalled
        (``Progressing=False``, ``ProgressDeadlineExceeded``), sampling the ready pods."""

    def restore_spec(self, record: Mapping[str, Any], follow: bool = ...) -> None:
        """Put the original template back; ``follow``: and wait until the controller rolled it out."""


@runtime_checkable
class ModelControl(Protocol):
    """Triton's model-control API and model repository on one replica, for the model-lifecycle faults
    (``harness.faults.model_lifecycle``). ``FaultTarget.model_control(name)`` returns one where offered:
    locally over gRPC and the replica's own repository directory, on Kubernetes through exec in the pod."""

    replica: str
    undo_kind: str  # the kind of its undo records: the platform's undoer reaches the replica again

    def index(self, model: str) -> list[dict[str, Any]]:
        """The repository index entries of ``model`` (``version``, ``state``, ``reason``)."""

    def server_ready(self) -> bool:
        """``/v2/health/ready`` of this replica: what readiness probes (the front, the kubelet) see."""

    def config(self, model: str) -> dict[str, Any]: ...

    def load(self, model: str, config: Mapping[str, Any] | None = None, timeout_s: float = ...) -> tuple[bool, str]:
        """Load (with the full config as an override when given); (ok, Triton's reason)."""

    def unload(self, model: str, timeout_s: float = ...) -> tuple[bool, str]: ...

    def versions(self, model: str) -> list[str]:
        """The version directories in the replica's model repository."""

    def add_version(self, model: str, version: str, failure: str, source: str) -> str: ...

    def remove_version(self, model: str, version: str) -> bool: ...

    def burst(self, model: str, count: int, concurrency: int, timeout_s: float = ...) -> dict[str, Any]:
        """``count`` requests from ``concurrency`` clients at once, to this replica (counts by outcome)."""

    def locator(self) -> dict[str, Any]:
        """What an undoer in a fresh process needs to reach this replica again (JSON)."""

    def store_dir(self) -> Path:
        """The undo store where this platform's fault records go."""
