"""Memory pressure without a GPU on Kubernetes: memory held in the target *pod's* memory cgroup by an agent.

A hog exec'd into the Triton container lives and dies with that container: when the container restarts under
pressure (the experiment's point: does Triton come back while memory is short?), the hog goes with it and the
new container starts with all its memory free, so the fault never holds past the first restart. The pressure
has to live where the kubelet keeps it across container restarts: the pod's own memory cgroup, whose limit is
the sum of its containers' limits and which exists as long as the pod does.

The agent is a short-lived privileged pod on the target's node (the network block's agent, with the same
image, labels and permission: ``--allow-privileged-agent``). It finds the pod's memory cgroup on the host (the
directory named after the pod's uid, cgroup v1 or v2, cgroupfs or systemd driver), makes a child cgroup of
its own there, and fills a memory-backed ``emptyDir`` (tmpfs) from short-lived writers placed in that child,
so the pages are charged to the pod: the pod's free memory is held at ``leave_free_mb``, topped up as the
pod's own usage falls. tmpfs pages cannot be reclaimed by the OOM killer (and the writers are gone), so when
the pod runs out, the kernel kills Triton's processes, as real pressure on a co-located process does: the
container is OOMKilled and crash-loops until the pressure is released.

Release, in order: the rollback (exec ``release``: the files removed, the child cgroup removed, then the pod
deleted), the watchdog and ``harness cleanup`` (from the undo record written before the pod existed, and from
the labelled pods), and the agent itself at its deadline or on SIGTERM. Deleting the agent pod frees the tmpfs
even if its process was killed.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.errors import FaultError
from harness.faults.undo import UndoRecord
from harness.platforms.kubernetes import netagent
from harness.platforms.kubernetes.api import KIND_BY_NAME
from harness.platforms.kubernetes.faults import exec_raw
from harness.platforms.kubernetes.render import expiry, slug

__all__ = ["AGENT", "ANALOGUE", "MEM_AGENT_SCRIPT", "ROUTE", "UNDO_KIND", "hold", "release", "statuses", "sweep",
           "undo_with"]

UNDO_KIND = "k8s-memagent"  # its kind in the local undo store (undone by harness.watchdog too)
AGENT = "memagent"  # the pods' component label
ROUTE = "pod-agent"
STATUS_FILE = "/tmp/harness-memagent.json"
ANALOGUE = "pod-memory analogue: the pod's memory cgroup held by a privileged agent's tmpfs (no GPU)"
RELEASE_TIMEOUT_S = 20.0
_KIND = KIND_BY_NAME

# The agent, in POSIX sh for busybox: ``sh -c SCRIPT memagent VERB``. Env: HARNESS_POD_UID, HARNESS_LEAVE_MB,
# HARNESS_DEADLINE_S, HARNESS_TAG. Verbs: hold (the container's command), status, release. Exit 3: the pod's
# memory cgroup is not on this node; 4: it has no memory limit; 5: the child cgroup could not be made; 6: the
# memory could not be written there.
MEM_AGENT_SCRIPT = r"""
set -u
S=/tmp/harness-memagent.json
# No double dollar anywhere: the kubelet turns it into one in a container's command. The shell's own pid:
read -r ME _ </proc/self/stat
# The pod's memory cgroup on the host: the agent's own /sys/fs/cgroup shows only its container, so mount the
# memory hierarchy (v1) or the unified one (v2) afresh (privileged); else the host's through pid 1's root.
memory_root() {
  mkdir -p /mnt/harness-cg
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mount -t cgroup2 none /mnt/harness-cg 2>/dev/null && { echo "/mnt/harness-cg 2"; return 0; }
  else
    mount -t cgroup -o memory none /mnt/harness-cg 2>/dev/null && { echo "/mnt/harness-cg 1"; return 0; }
  fi
  if [ -f /proc/1/root/sys/fs/cgroup/cgroup.controllers ]; then echo "/proc/1/root/sys/fs/cgroup 2"; return 0; fi
  [ -d /proc/1/root/sys/fs/cgroup/memory ] && { echo "/proc/1/root/sys/fs/cgroup/memory 1"; return 0; }
  return 1
}
pod_dir() {
  u2=$(echo "$HARNESS_POD_UID" | tr - _)
  { find "$M" -maxdepth 9 -type d -name "*pod$HARNESS_POD_UID" 2>/dev/null
    find "$M" -maxdepth 9 -type d -name "*pod$u2.slice" 2>/dev/null; } | head -n 1
}
report() {
  l=$(cat "$P/$LIM" 2>/dev/null || echo 0); u=$(cat "$P/$USE" 2>/dev/null || echo 0)
  f=$((l - u)); [ "$f" -lt 0 ] && f=0
  h=$(du -sk /hog 2>/dev/null | cut -f1); h=${h:-0}
  printf '{"held_mb": %d.%03d, "free_mb": %d.%03d, "pid": %d, "target": "pod", "state": "%s", "ts": %s, ' \
    $((h / 1024)) $(((h % 1024) * 1000 / 1024)) $((f / 1048576)) $(((f % 1048576) * 1000 / 1048576)) "$ME" "$1" \
    "$(date +%s)" >"$S.tmp"
  printf '"cgroup": "%s", "cgroup_removed": %s}\n' "${P#$H}" "$2" >>"$S.tmp" && mv "$S.tmp" "$S"
}
let_go() {
  rm -f /hog/c*
  i=0; while [ -d "$C" ] && [ $i -lt 50 ]; do rmdir "$C" 2>/dev/null || sleep 0.1; i=$((i + 1)); done
  if [ -d "$C" ]; then report "$1" false; else report "$1" true; fi
}
hold() {
  r=$(memory_root) || { echo "no cgroup hierarchy can be mounted or read here" >&2; exit 3; }
  set -- $r; M=$1; H=$1; LIM=memory.limit_in_bytes; USE=memory.usage_in_bytes
  [ "$2" = 2 ] && { LIM=memory.max; USE=memory.current; }
  P=$(pod_dir); [ -n "$P" ] || { echo "no memory cgroup of pod $HARNESS_POD_UID on this node" >&2; exit 3; }
  case "$(cat "$P/$LIM")" in
    max|9223372036854*) echo "pod $HARNESS_POD_UID has no memory limit" >&2; exit 4;;
  esac
  C=$P/harness-hog-$HARNESS_TAG
  mkdir -p "$C" || { echo "cannot make $C" >&2; exit 5; }
  leave=$((HARNESS_LEAVE_MB * 1048576)); end=$(($(date +%s) + HARNESS_DEADLINE_S)); n=0; fails=0; stop=
  trap 'stop=signal' TERM INT
  echo "holding pod memory in $C"
  while [ -z "$stop" ] && [ "$(date +%s)" -lt "$end" ]; do
    want=$((($(cat "$P/$LIM") - $(cat "$P/$USE") - leave) / 1048576))
    if [ "$want" -gt 0 ]; then
      [ "$want" -gt 64 ] && want=64
      n=$((n + 1))
      if ! sh -c 'read -r me _ </proc/self/stat && echo "$me" >"$1/cgroup.procs" || exit 1
                  { echo -1000 >/proc/self/oom_score_adj; } 2>/dev/null
                  exec dd if=/dev/zero of="$2" bs=1048576 count="$3" 2>/dev/null' w "$C" "/hog/c$n" "$want"; then
        fails=$((fails + 1))
        [ "$fails" -lt 10 ] || { echo "could not write into $C ten times" >&2; let_go failed; exit 6; }
        sleep 0.2
      else
        fails=0
      fi
      continue
    fi
    report holding false
    sleep 0.4 & wait $!
  done
  if [ -n "$stop" ]; then let_go released-on-signal; else let_go released-at-deadline; fi
  echo "released"
  # Stay until the pod is deleted: the exec that asked for the release reads the outcome, and it would die with
  # this container if the container ended now.
  trap 'exit 0' TERM INT
  sleep 120 & wait $!
}
case "$1" in
  hold) hold ;;
  status) cat "$S" ;;
  release)
    pid=$(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' "$S" 2>/dev/null)
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    i=0; while grep -q '"state": "holding"' "$S" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    cat "$S" ;;
esac
"""


def _pods_path(namespace: str) -> str:
    return _KIND["Pod"].collection(namespace)


def _run(host: netagent.AgentHost, namespace: str, agent: str, verb: str) -> tuple[int, str, str]:
    code, out, err = exec_raw(host.api, namespace, agent, ["sh", "-c", MEM_AGENT_SCRIPT, AGENT, verb], timeout_s=60)
    return code, str(out), str(err)


def hold(host: netagent.AgentHost, names: Sequence[str], run_id: str, leave_free_mb: float, duration_s: float,
         allowed: bool, image: str = "") -> dict[str, Any]:
    """Start one agent per target pod holding its memory; the undo record is on disk before the first pod."""
    settings = host.settings
    why = netagent.refusal(settings, allowed, image)
    if why:
        raise FaultError(f"memory pressure without a GPU needs the privileged agent on Kubernetes: {why}")
    api, namespace = host.api, host.namespace
    image = image or settings.agent_image
    pods = {p["metadata"]["name"]: p for p in api.list(_KIND["Pod"], namespace, host.selector)}
    expires_at = expiry(duration_s + 120)
    agents = []
    for name in names:
        pod = pods.get(name) or {}
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise FaultError(f"pod {namespace}/{name} is not on a node yet: nothing to hold")
        digest = netagent.digest(run_id, name, "memory")
        agents.append({"agent": f"harness-memagent-{slug(run_id, 30)}-{digest}", "target": name,
                       "uid": pod["metadata"]["uid"], "node": node, "tag": digest})
    record: dict[str, Any] = {"kind": "memory-pressure", "route": ROUTE, "namespace": namespace, "run_id": run_id,
                              "target": "pod", "analogue": ANALOGUE, "expires_at": expires_at, "agents": agents,
                              "pods": {a["target"]: a["agent"] for a in agents}, "image": image,
                              "state_dir": str(settings.state_dir)}
    netagent.record_agents(host, UNDO_KIND, record, run_id, duration_s,
                           f"memory pressure by agent pods on {', '.join(names)} in {namespace}")
    try:
        for a in agents:
            env = {"HARNESS_POD_UID": a["uid"], "HARNESS_LEAVE_MB": f"{leave_free_mb:.0f}",
                   "HARNESS_DEADLINE_S": f"{duration_s:.0f}", "HARNESS_TAG": a["tag"]}
            body = netagent.agent_pod(a["agent"], run_id, expires_at, image, a["node"], env, duration_s, a["target"],
                                      component=AGENT, command=["sh", "-c", MEM_AGENT_SCRIPT, AGENT, "hold"],
                                      annotations={"harness/memagent-tag": a["tag"]},
                                      volumes={"/hog": {"emptyDir": {"medium": "Memory"}}})
            netagent.create_agent(api, namespace, body, "memory agent")
        netagent.wait_running(api, namespace, [a["agent"] for a in agents], netagent.START_TIMEOUT_S)
    except BaseException:
        with contextlib.suppress(Exception):  # the first failure is the one to report; the record stays if this fails
            release(host, record)
        raise
    return record


def undo_with(host: netagent.AgentHost, record: UndoRecord) -> None:
    """Undo kind ``k8s-memagent`` through ``host`` (the runner's close): each pod's memory let go, the agents
    gone."""
    release(host, record.payload)


def statuses(host: netagent.AgentHost, record: Mapping[str, Any]) -> dict[str, dict[str, Any] | None]:
    """Each target's hold as its agent reports it (None where the agent cannot be read or has not reported)."""
    out: dict[str, dict[str, Any] | None] = {}
    for a in record.get("agents") or []:
        try:
            code, text, _ = _run(host, str(record["namespace"]), a["agent"], "status")
            data = json.loads(text) if code == 0 else None
        except (FaultError, ValueError):
            data = None
        out[str(a["target"])] = data if isinstance(data, dict) else None
    return out


def release(host: netagent.AgentHost, record: Mapping[str, Any]) -> list[str]:
    """Let go in each agent (files and child cgroup removed, checked), delete the agents, wait until gone; then
    the undo record. An agent that ended already let go itself; deleting its pod frees its tmpfs regardless."""
    api, namespace = host.api, str(record["namespace"])
    done, errors = [], []
    for a in record.get("agents") or []:
        pod = api.get(f"{_pods_path(namespace)}/{a['agent']}")
        if ((pod or {}).get("status") or {}).get("phase") == "Running":
            try:
                code, text, err = _run(host, namespace, a["agent"], "release")
                said = json.loads(text) if code == 0 and text.strip() else {}
            except (FaultError, ValueError) as exc:
                code, said, err = -1, {}, str(exc)
            if said.get("state", "holding") == "holding" or said.get("cgroup_removed") is not True:
                errors.append(f"agent {a['agent']} did not let go of pod {a['target']}'s memory "
                              f"(exit {code}: {str(said or err)[:300]}); deleting the agent frees its files, and "
                              "the pod's child cgroup goes with the pod")
            else:
                done.append(f"memory of pod {a['target']} ({said.get('cgroup')} released)")
        if pod is not None:
            api.delete(f"{_pods_path(namespace)}/{a['agent']}")
    deadline = time.monotonic() + netagent.GONE_TIMEOUT_S
    for a in record.get("agents") or []:
        while api.get(f"{_pods_path(namespace)}/{a['agent']}") is not None and time.monotonic() < deadline:
            time.sleep(0.2)
    if record.get("undo_id"):
        (host.fault_store().directory / f"{record['undo_id']}.json").unlink(missing_ok=True)
    if errors:
        raise FaultError("; ".join(errors))
    return done


def sweep(host: netagent.AgentHost, stale: Callable[[dict[str, Any]], bool]) -> list[str]:
    """Memory agents left by runs that are over (or expired), and this machine's orphaned records: released,
    their pods deleted (``harness cleanup`` and the control's sweep)."""
    left, records = netagent.leftovers(host, AGENT, UNDO_KIND, stale)
    done: list[str] = []
    if left:
        with contextlib.suppress(FaultError):  # a release that could not be checked still deleted the pods
            done = release(host, {"namespace": host.namespace, "agents": list(left.values())})
        done += [f"memory agent pod {name}" for name in sorted(left)]
    for path in records:
        path.unlink(missing_ok=True)
    return done
