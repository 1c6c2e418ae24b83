"""The network block's agent route: a short-lived privileged pod that drops traffic inside the target pod.

A NetworkPolicy is only as real as the cluster's network plugin (bridge, flannel and old kindnet ignore
it). Where it is not enforced, Chaos Mesh (chaos-daemon) and Litmus (a helper pod with nsenter) do what
this module does: a pod on the target's node (``nodeName`` pinned, ``hostPID``, privileged, tolerating every
taint) finds the target pod's network namespace (a process whose cgroup names the pod's uid, checked to
hold the pod's IP; else any namespace holding that IP) and adds an nftables table of the harness's own
there, dropping TCP to Triton's ports, new and established connections alike. The node's own traffic passes
(every address of the kubelet's network namespace, and the pod's loopback), as a NetworkPolicy lets it pass
("traffic to and from the node where a Pod is running is always allowed", Kubernetes' documentation): the
kubelet's probes still succeed, so a blocked pod stays ready and in the Service's endpoints while its clients
fail, as on the policy route and on the local platform (``harness.faults.nft``). When the agent dropped them,
every blocked pod went unready, and a client then recovered at the lift or only when a probe had made the pod
ready again, depending on whether it needed a new connection in between: two honest clients came out up to
a second apart, and the fault measured a readiness round trip the policy route never shows. A client whose
traffic reaches the pod translated to a node address (from outside the cluster, through a NodePort with
``externalTrafficPolicy: Cluster``) passes too, as it may through a policy.

The agent is the one privileged thing the harness runs; it needs no API access (no service account
token). Four things remove its table, whichever comes first: the rollback (exec ``remove``, then the pod is
deleted), the watchdog and ``harness cleanup`` (from the undo record written before the pod existed, and
from the labelled pods in the cluster), and the agent itself: it deletes the table at its own deadline, or
on SIGTERM (pod deletion, ``activeDeadlineSeconds``), and exits.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from harness.errors import FaultError
from harness.faults.undo import UndoRecord, UndoStore
from harness.platforms.kubernetes.api import KIND_BY_NAME, ApiFailure, KubeApi
from harness.platforms.kubernetes.faults import exec_raw
from harness.platforms.kubernetes.render import EXPIRES, RUN_ID, expiry, harness_selector, label, slug
from harness.platforms.kubernetes.settings import KubernetesSettings
from harness.platforms.kubernetes.spec_ops import SpecHost


class AgentHost(SpecHost, Protocol):
    """What the agent route uses of the Kubernetes platform (``KubernetesPlatform``): declared here, so this
    module does not import the platform that uses it."""

    def fault_store(self) -> UndoStore: ...

__all__ = ["AGENT_SCRIPT", "COMPONENT", "KIND", "UNDO_KIND", "AgentHost", "agent_pod", "block", "create_agent",
           "digest", "leftovers", "lift", "record_agents", "refusal", "sweep", "unblock", "undo_with", "wait_running"]

KIND = "network-agent"  # the record's kind (beside the policy route's "network-block")
UNDO_KIND = "k8s-netagent"  # its kind in the local undo store (undone by harness.watchdog too)
COMPONENT = "harness.component"  # pod label: what a harness-made pod is
AGENT = "netagent"
START_TIMEOUT_S = 120.0  # a real cluster may pull the image first
GONE_TIMEOUT_S = 30.0
_KIND = KIND_BY_NAME

# The agent, in POSIX sh for busybox: ``sh -c SCRIPT netagent VERB``. Env: HARNESS_TABLE, HARNESS_POD_UID,
# HARNESS_POD_IP, HARNESS_PORTS ("8000, 8001"), HARNESS_DEADLINE_S. Verbs: hold (the container's command:
# wait for the deadline or SIGTERM, then remove), add, remove, list. Exit 3: the pod's namespace is not on
# this node; 4: nft failed. The node's addresses are those of the kubelet's network namespace (PID 1's where
# no kubelet process is seen: a node whose kubelet runs in the host namespace under another name).
AGENT_SCRIPT = r"""
set -u
T=$HARNESS_TABLE
netns_pid() {
  u2=$(echo "$HARNESS_POD_UID" | tr - _)
  for c in /proc/[0-9]*/cgroup; do
    if grep -q -e "pod$HARNESS_POD_UID" -e "pod$u2" "$c" 2>/dev/null; then
      p=${c#/proc/}; p=${p%/cgroup}
      if nsenter -t "$p" -n ip -o addr show 2>/dev/null | grep -q " $HARNESS_POD_IP/"; then echo "$p"; return 0; fi
    fi
  done
  seen=" "
  for n in /proc/[0-9]*/ns/net; do
    i=$(readlink "$n" 2>/dev/null) || continue
    case "$seen" in *" $i "*) continue ;; esac
    seen="$seen$i "
    p=${n#/proc/}; p=${p%/ns/net}
    if nsenter -t "$p" -n ip -o addr show 2>/dev/null | grep -q " $HARNESS_POD_IP/"; then echo "$p"; return 0; fi
  done
  return 1
}
node_pid() {
  for c in /proc/[0-9]*/comm; do
    if grep -qx kubelet "$c" 2>/dev/null; then p=${c#/proc/}; echo "${p%/comm}"; return 0; fi
  done
  echo 1
}
node_addrs() {
  nsenter -t "$(node_pid)" -n ip -o addr show 2>/dev/null | while read -r _i _d fam a _rest; do
    if [ "$fam" = "$1" ]; then printf '%s, ' "${a%/*}"; fi
  done
}
add() {
  p=$(netns_pid) || {
    echo "no network namespace on this node holds pod $HARNESS_POD_UID ($HARNESS_POD_IP)" >&2; exit 3; }
  v4=$(node_addrs inet); v4=${v4%, }
  v6=$(node_addrs inet6); v6=${v6%, }
  printf 'table inet %s {\n chain input {\n  type filter hook input priority 0; policy accept;\n' "$T" >/tmp/rules
  printf '  iif "lo" accept\n' >>/tmp/rules
  if [ -n "$v4" ]; then printf '  ip saddr { %s } accept\n' "$v4" >>/tmp/rules; fi
  if [ -n "$v6" ]; then printf '  ip6 saddr { %s } accept\n' "$v6" >>/tmp/rules; fi
  printf '  tcp dport { %s } drop\n }\n}\n' "$HARNESS_PORTS" >>/tmp/rules
  nsenter -t "$p" -n nft -f /tmp/rules || exit 4
  echo "added table inet $T in the network namespace of pid $p; the node's own traffic passes (${v4:-no IPv4} ${v6})"
}
remove() {
  p=$(netns_pid) || { echo "the pod's network namespace is gone: nothing to remove"; return 0; }
  if nsenter -t "$p" -n nft list table inet "$T" >/dev/null 2>&1; then
    nsenter -t "$p" -n nft delete table inet "$T" || return 4
    echo "removed table inet $T"
  else
    echo "table inet $T absent"
  fi
}
case "$1" in
  add) add ;;
  remove) remove; exit $? ;;
  list) p=$(netns_pid) || exit 3; nsenter -t "$p" -n nft list tables ;;
  hold)
    trap 'remove; exit $?' TERM INT
    echo "holding until $HARNESS_DEADLINE_S s"
    sleep "$HARNESS_DEADLINE_S" & wait $!
    echo "deadline reached"
    remove; exit $? ;;
esac
"""


def refusal(settings: KubernetesSettings, allowed: bool, image: str = "") -> str | None:
    """Why the agent route cannot be used here, with how to allow it; None when it can."""
    problems = []
    if not (allowed or settings.allow_privileged_agent):
        problems.append("the privileged agent is not allowed: pass --allow-privileged-agent to harness run, suite or "
                        "gameday (or set allow_privileged_agent: true in --k8s-settings), and see docs/kubernetes.md "
                        "for what it may do")
    if not (image or settings.agent_image):
        problems.append("no agent image: pass --agent-image IMAGE (or set agent_image in --k8s-settings), an image "
                        "with sh, nsenter, ip and nft (on the sandbox: harness sandbox agent-image)")
    return "; ".join(problems) or None


def digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:10]


def agent_pod(name: str, run_id: str, expires_at: str, image: str, node: str, env: Mapping[str, str],
              deadline_s: float, target: str, *, component: str = AGENT, command: Sequence[str] = (),
              annotations: Mapping[str, str] | None = None,
              volumes: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """An agent pod: pinned to the target's node, host PIDs (to find the pod's processes), privileged (to
    enter their namespaces and cgroups), no API token, gone by ``activeDeadlineSeconds`` at the latest. The
    network agent by default; the memory agent (``memagent``) passes its own command, annotations and its
    tmpfs (``volumes``: mount path -> volume source)."""
    volumes = dict(volumes or {})
    container: dict[str, Any] = {
        "name": "agent", "image": image, "command": list(command or ["sh", "-c", AGENT_SCRIPT, AGENT, "hold"]),
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "securityContext": {"privileged": True},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",  # an agent that failed says why in its status
    }
    spec: dict[str, Any] = {
        "nodeName": node, "hostPID": True, "restartPolicy": "Never", "automountServiceAccountToken": False,
        "enableServiceLinks": False, "terminationGracePeriodSeconds": 10,
        "activeDeadlineSeconds": int(deadline_s) + 60, "tolerations": [{"operator": "Exists"}],
        "containers": [container],
    }
    if volumes:
        names = {path: f"v{i}" for i, path in enumerate(sorted(volumes))}
        container["volumeMounts"] = [{"name": names[path], "mountPath": path} for path in sorted(volumes)]
        spec["volumes"] = [{"name": names[path], **dict(volumes[path])} for path in sorted(volumes)]
    marks = dict(annotations) if annotations is not None else {"harness/netagent-table": env["HARNESS_TABLE"]}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": {COMPONENT: component},
                        "annotations": {"harness/target-pod": target, **marks}},
           "spec": spec}
    return label(pod, run_id, expires_at)


def _pods_path(namespace: str) -> str:
    return _KIND["Pod"].collection(namespace)


def record_agents(platform: AgentHost, kind: str, record: dict[str, Any], run_id: str, max_s: float,
                  description: str) -> None:
    """Write the undo record of an agent route to the local store, before any agent pod exists (its id goes
    into ``record`` as ``undo_id``)."""
    undo = UndoRecord(kind=kind, run_id=run_id, owner_pid=os.getpid(), deadline_ns=time.time_ns() + int(max_s * 1e9),
                      payload=record, description=description)
    record["undo_id"] = undo.id
    platform.fault_store().record(undo)


def create_agent(api: KubeApi, namespace: str, body: dict[str, Any], what: str) -> None:
    """Create one agent pod; a refusal says what a privileged pod needs from the namespace."""
    try:
        api.request("POST", _pods_path(namespace), body=body)
    except ApiFailure as exc:
        raise FaultError(f"the {what} pod was refused in {namespace}: {exc}. Privileged pods need the namespace's "
                         "Pod Security admission to allow them (pod-security.kubernetes.io/enforce=privileged) and "
                         "RBAC to create pods and pods/exec") from exc


def _run(api: KubeApi, namespace: str, agent: str, verb: str) -> tuple[int, str]:
    code, out, err = exec_raw(api, namespace, agent, ["sh", "-c", AGENT_SCRIPT, AGENT, verb], timeout_s=60)
    return code, (str(out).strip() + " " + str(err).strip()).strip()


def _run_all(api: KubeApi, namespace: str, agents: Sequence[str], verb: str) -> dict[str, tuple[int, str, int]]:
    """``verb`` in every agent at once: agent -> (exit code, what it said, when it returned, ns).

    At once, not one after another: an exec takes a few hundred ms, so adding or removing the tables in turn
    made "block every pod" a block of some pods at its start and its end (measured on the sandbox: the second
    pod answered 0.4 s after the first), and with ten replicas for seconds. An exec that raises is exit -1."""
    def one(agent: str) -> tuple[int, str, int]:
        try:
            code, said = _run(api, namespace, agent, verb)
        except FaultError as exc:
            code, said = -1, str(exc)
        return code, said, time.time_ns()

    if not agents:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(agents), 16), thread_name_prefix=f"netagent-{verb}") as pool:
        return dict(zip(agents, pool.map(one, agents), strict=True))


def _spread_ms(results: Mapping[str, tuple[int, str, int]]) -> float:
    """Milliseconds between the first and the last agent's table change: how far from "at once" it was."""
    times = [t for _, _, t in results.values()]
    return round((max(times) - min(times)) / 1e6, 1) if times else 0.0


def wait_running(api: KubeApi, namespace: str, names: Sequence[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = set(names)
    last = ""
    while waiting:
        for name in sorted(waiting):
            pod = api.get(f"{_pods_path(namespace)}/{name}") or {}
            status = pod.get("status") or {}
            if status.get("phase") == "Running":
                waiting.discard(name)
                continue
            if status.get("phase") in ("Failed", "Succeeded") or not pod:
                ended = [(cs.get("state") or {}).get("terminated") or {}
                         for cs in status.get("containerStatuses") or []]
                why = status.get("message") or status.get("reason") or "; ".join(
                    f"exit {t.get('exitCode')}: {str(t.get('message') or '').strip()[-400:]}" for t in ended if t)
                raise FaultError(f"agent pod {namespace}/{name} ended before it did anything "
                                 f"({status.get('phase') or 'deleted'}: {why})")
            states = [cs.get("state") or {} for cs in status.get("containerStatuses") or []]
            last = "; ".join(f"{s['waiting'].get('reason')}: {s['waiting'].get('message', '')}"
                             for s in states if s.get("waiting")) or str(status.get("phase") or "Pending")
        if waiting and time.monotonic() > deadline:
            raise FaultError(f"agent pod(s) {', '.join(sorted(waiting))} in {namespace} not running after "
                             f"{timeout_s:g}s ({last}); can the node pull the agent image?")
        if waiting:
            time.sleep(0.2)


def block(platform: AgentHost, names: Sequence[str], run_id: str, max_s: float, allowed: bool,
          image: str = "") -> dict[str, Any]:
    """Start one agent per target pod and add its table; the undo record is on disk before the first pod."""
    settings = platform.settings
    why = refusal(settings, allowed, image)
    if why:
        raise FaultError(f"the network block's agent route cannot run: {why}")
    api, namespace = platform.api, platform.namespace
    image = image or settings.agent_image
    pods = {p["metadata"]["name"]: p for p in api.list(_KIND["Pod"], namespace, platform.selector)}
    ports = ", ".join(str(p) for p in sorted(set(platform.shape.ports.values())))
    expires_at = expiry(max_s + 120)
    agents = []
    for name in names:
        pod = pods.get(name) or {}
        ip, node = (pod.get("status") or {}).get("podIP"), (pod.get("spec") or {}).get("nodeName")
        if not ip or not node:
            raise FaultError(f"pod {namespace}/{name} has no IP or node yet: nothing to block")
        tag = digest(run_id, name)
        agents.append({"agent": f"harness-netagent-{slug(run_id, 30)}-{tag}", "target": name,
                       "uid": pod["metadata"]["uid"], "ip": ip, "node": node, "table": f"harness_agent_{tag}"})
    record: dict[str, Any] = {"kind": KIND, "route": "agent", "namespace": namespace, "run_id": run_id,
                              "expires_at": expires_at, "agents": agents, "image": image, "ports": ports,
                              "state_dir": str(settings.state_dir)}
    record_agents(platform, UNDO_KIND, record, run_id, max_s,
                  f"network block by agent pods on {', '.join(names)} in {namespace}")
    try:
        for a in agents:
            env = {"HARNESS_TABLE": a["table"], "HARNESS_POD_UID": a["uid"], "HARNESS_POD_IP": a["ip"],
                   "HARNESS_PORTS": ports, "HARNESS_DEADLINE_S": f"{max_s:.0f}"}
            create_agent(api, namespace, agent_pod(a["agent"], run_id, expires_at, image, a["node"], env, max_s,
                                                   a["target"]), "agent")
        wait_running(api, namespace, [a["agent"] for a in agents], START_TIMEOUT_S)
        # The block takes effect from here, not when the activity began: starting the agents (an image pull on a
        # real cluster) is not part of the outage, so the run's t0 moves here (harness.chaos.control).
        record["effective_start_ns"] = time.time_ns()
        added = _run_all(api, namespace, [a["agent"] for a in agents], "add")
        for a in agents:
            code, said, _ = added[a["agent"]]
            if code != 0:
                raise FaultError(f"agent {a['agent']} could not block pod {a['target']} (exit {code}): {said[:400]}")
        record["tables_spread_ms"] = _spread_ms(added)
    except BaseException:
        with contextlib.suppress(Exception):  # the first failure is the one to report; the record stays if this fails
            unblock(platform, record)
        raise
    return record


def unblock(platform: AgentHost, record: Mapping[str, Any]) -> list[str]:
    """Remove each table (exec in its agent), delete the agents and wait for them to be gone; then the undo record.

    An agent that already ended removed its table itself (its deadline, or SIGTERM); one whose target pod
    is gone had nothing left to remove. Every agent gets its chance; failures are reported together."""
    return lift(platform, record)[0]


def lift(platform: AgentHost, record: Mapping[str, Any]) -> tuple[list[str], int | None]:
    """``unblock``, and when the last table went (ns; None when no agent removed one): the block ended there, not
    when the agents were gone (the sandbox's kubelet took up to 30 s to delete them, which the report counted as
    fault time)."""
    api, namespace = platform.api, str(record["namespace"])
    done, errors = [], []
    agents = list(record.get("agents") or [])
    pods = {a["agent"]: api.get(f"{_pods_path(namespace)}/{a['agent']}") for a in agents}
    running = [a["agent"] for a in agents if ((pods[a["agent"]] or {}).get("status") or {}).get("phase") == "Running"]
    removed = _run_all(api, namespace, running, "remove")
    lifted = max((when for code, _, when in removed.values() if code == 0), default=None)
    for a in agents:
        pod = pods[a["agent"]]
        phase = ((pod or {}).get("status") or {}).get("phase")
        if phase == "Running":
            code, said, _ = removed[a["agent"]]
            if code != 0:
                errors.append(f"agent {a['agent']} could not remove table {a['table']} from pod {a['target']}: "
                              f"{said[:300]}")
                continue
            done.append(f"table {a['table']} of pod {a['target']} ({said})")
        elif phase == "Failed":
            errors.append(f"agent {a['agent']} failed; table {a['table']} may remain in pod {a['target']} until "
                          "the pod is replaced (delete it, or run harness cleanup)")
            continue
        if pod is not None:
            api.delete(f"{_pods_path(namespace)}/{a['agent']}")
    deadline = time.monotonic() + GONE_TIMEOUT_S
    for a in record.get("agents") or []:
        while api.get(f"{_pods_path(namespace)}/{a['agent']}") is not None and time.monotonic() < deadline:
            time.sleep(0.2)
    if errors:
        raise FaultError("; ".join(errors))
    if record.get("undo_id"):
        (platform.fault_store().directory / f"{record['undo_id']}.json").unlink(missing_ok=True)
    return done, lifted


def undo_with(platform: AgentHost, record: UndoRecord) -> None:
    """Undo kind ``k8s-netagent`` through ``platform`` (the runner's close): its agents' tables out, the agents gone."""
    unblock(platform, record.payload)


def leftovers(platform: AgentHost, component: str, undo_kind: str,
              stale: Callable[[dict[str, Any]], bool]) -> tuple[dict[str, dict[str, Any]], list[Path]]:
    """The agents of ``component`` left in the cluster by runs that are over (or expired), and this machine's
    undo records of ``undo_kind`` whose owner died or whose deadline passed (their agents added)."""
    api, namespace = platform.api, platform.namespace
    left: dict[str, dict[str, Any]] = {}
    for pod in api.list(_KIND["Pod"], namespace, f"{harness_selector()},{COMPONENT}={component}"):
        meta = pod["metadata"]
        notes = meta.get("annotations") or {}
        if stale({"run_id": (meta.get("labels") or {}).get(RUN_ID, ""), "expires_at": notes.get(EXPIRES, "")}):
            left[meta["name"]] = {"agent": meta["name"], "target": notes.get("harness/target-pod", "?"),
                                  "table": notes.get("harness/netagent-table", "?")}
    store = platform.fault_store()
    orphaned = {rec.id for rec in store.orphaned()}  # the owner died or the deadline passed
    records: list[Path] = []
    for rec in store.records():
        if rec.kind != undo_kind or rec.payload.get("namespace") != namespace:
            continue
        if rec.id in orphaned or stale({"run_id": rec.run_id, "expires_at": rec.payload.get("expires_at", "")}):
            for a in rec.payload.get("agents") or []:
                left.setdefault(a["agent"], a)
            records.append(store.path(rec))
    return left, records


def sweep(platform: AgentHost, stale: Callable[[dict[str, Any]], bool]) -> list[str]:
    """Agents left in the cluster by runs that are over (or expired), and this machine's orphaned records:
    remove their tables, delete the pods (``harness cleanup`` and the control's sweep)."""
    left, records = leftovers(platform, AGENT, UNDO_KIND, stale)
    done: list[str] = []
    if left:
        done = unblock(platform, {"namespace": platform.namespace, "agents": list(left.values())})
        done += [f"agent pod {name}" for name in sorted(left)]
    for path in records:  # only once their agents are gone: a failed unblock leaves them for the next sweep
        path.unlink(missing_ok=True)
    return done
