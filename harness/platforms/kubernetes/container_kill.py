"""Kill Triton's container, not its pod: the kubelet restarts it in the same pod, as after a crash.

A pod delete gives the Deployment a fresh pod; a container restart keeps the pod, its memory cgroup and
whatever holds memory there (the memory-pressure experiment restarts Triton *under* the pressure). Kubernetes
has no API to kill a container, and from inside it the kernel ignores SIGKILL to the container's main process
(the init of its PID namespace), while SIGTERM starts Triton's graceful shutdown, which under load can outlast
the liveness probe's patience. So, as Chaos Mesh's container-kill does through the runtime, a short-lived
privileged agent on the pod's node (the network block's agent: image, labels, permission) signals every process
of the container from the node's PID namespace: SIGTERM, then SIGKILL after the grace period (grace 0: SIGKILL
at once), exactly as the kubelet stops a container. The agent is deleted right after; it holds nothing, so
there is nothing to undo (its ``activeDeadlineSeconds`` and labels cover a harness that died meanwhile).
"""

from __future__ import annotations

import contextlib
import time

from harness.errors import FaultError
from harness.platforms.kubernetes import netagent
from harness.platforms.kubernetes.api import KIND_BY_NAME
from harness.platforms.kubernetes.faults import exec_raw
from harness.platforms.kubernetes.render import expiry, slug

__all__ = ["AGENT", "KILL_SCRIPT", "kill_container"]

AGENT = "containerkill"  # the pods' component label
AGENT_LIFETIME_S = 120.0

# ``sh -c SCRIPT containerkill GRACE_S`` with HARNESS_CONTAINER_ID set: the container's processes are those
# whose cgroup path names its id (any cgroup version or namespace view). Exit 3: none found on this node;
# 4: some survived SIGKILL.
KILL_SCRIPT = r"""
set -u
pids() {
  for c in /proc/[0-9]*/cgroup; do
    if grep -q "$HARNESS_CONTAINER_ID" "$c" 2>/dev/null; then p=${c#/proc/}; echo "${p%/cgroup}"; fi
  done
}
first=$(pids)
[ -n "$first" ] || { echo "no process of container $HARNESS_CONTAINER_ID on this node" >&2; exit 3; }
if [ "$1" != 0 ]; then
  kill -TERM $first 2>/dev/null
  end=$(($(date +%s) + $1))
  while [ -n "$(pids)" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.1; done
fi
left=$(pids)
[ -z "$left" ] || kill -KILL $left 2>/dev/null
i=0; while [ -n "$(pids)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -z "$(pids)" ] || { echo "processes of the container survived SIGKILL: $(pids)" >&2; exit 4; }
echo "killed $(echo $first | wc -w) process(es) of the container"
"""


def kill_container(host: netagent.AgentHost, pod: str, container: str, run_id: str, grace_s: float | None,
                   allowed: bool, image: str = "") -> str:
    """Stop container ``container`` of pod ``pod`` as the kubelet would (SIGTERM, grace, SIGKILL) from an agent on
    its node; the kubelet restarts it in place. What the agent said, or FaultError."""
    why = netagent.refusal(host.settings, allowed, image)
    if why:
        raise FaultError(f"killing a container (kill: container) needs the privileged agent on Kubernetes: {why}")
    api, namespace = host.api, host.namespace
    body = api.get(f"{KIND_BY_NAME['Pod'].collection(namespace)}/{pod}") or {}
    node = (body.get("spec") or {}).get("nodeName")
    ids = {cs.get("name"): str(cs.get("containerID") or "") for cs in (body.get("status") or {}).get(
        "containerStatuses") or []}
    container_id = ids.get(container, "").rpartition("://")[2]
    if not node or not container_id:
        raise FaultError(f"container {container!r} of pod {namespace}/{pod} is not running (no container id): "
                         "nothing to kill")
    agent = f"harness-ckill-{slug(run_id, 30)}-{netagent.digest(run_id, pod, str(time.time_ns()))}"
    image = image or host.settings.agent_image
    grace = 0 if not grace_s else max(1, round(grace_s))
    spec = netagent.agent_pod(agent, run_id, expiry(AGENT_LIFETIME_S), image, node,
                              {"HARNESS_CONTAINER_ID": container_id}, AGENT_LIFETIME_S, pod, component=AGENT,
                              command=["sleep", f"{AGENT_LIFETIME_S:.0f}"], annotations={})
    path = KIND_BY_NAME["Pod"].collection(namespace)
    netagent.create_agent(api, namespace, spec, "container-kill agent")
    try:
        netagent.wait_running(api, namespace, [agent], netagent.START_TIMEOUT_S)
        code, out, err = exec_raw(api, namespace, agent, ["sh", "-c", KILL_SCRIPT, AGENT, str(grace)],
                                  timeout_s=grace + 60)
        if code != 0:
            raise FaultError(f"the agent could not kill container {container} of pod {pod} (exit {code}): "
                             f"{(str(err) or str(out)).strip()[:400]}")
        return str(out).strip()
    finally:
        with contextlib.suppress(Exception):
            api.delete(f"{path}/{agent}")
