"""Does this cluster enforce NetworkPolicy? Probed for real, never assumed (``harness doctor --platform kubernetes``).

Bridge, flannel and old kindnet ignore NetworkPolicy, and nothing in the API says so: a policy is accepted
and stored either way. So the probe does what a block does and watches the effect: two throwaway pods in
the namespace (a listener and a client, from the service's own image: it has ``python3``), a connection
from one to the other, then a deny-all-ingress policy on the listener and the same connection again. Enforced:
the connection fails within a few seconds; not enforced: it keeps connecting. Everything it made carries the
harness's labels and an expiry, and is deleted before it returns (``harness cleanup`` sweeps what a crash
left).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import FaultError
from harness.faults.connect import Connect, from_exit_code
from harness.platforms.kubernetes.api import KIND_BY_NAME, ApiFailure
from harness.platforms.kubernetes.faults import exec_raw
from harness.platforms.kubernetes.netagent import COMPONENT
from harness.platforms.kubernetes.podscripts import CONNECT_PROBE
from harness.platforms.kubernetes.render import expiry, label

if TYPE_CHECKING:
    from harness.platforms.kubernetes.platform import KubernetesPlatform

__all__ = ["PolicyProbe", "probe_enforcement"]

_KIND = KIND_BY_NAME
PORT = 8080
START_TIMEOUT_S = 180.0
ENFORCE_WAIT_S = 10.0  # plugins that enforce program a new policy within a second or two
_LISTENER = ("import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
             f"s.bind(('', {PORT}))\ns.listen(64)\nwhile True:\n    s.accept()[0].close()\n")


@dataclass(frozen=True)
class PolicyProbe:
    """What the probe found: enforced True/False, or None when it could not tell (and why)."""

    enforced: bool | None
    detail: str
    before: str = ""  # the connection's outcome before the policy
    under_policy: str = ""  # and under it

    def to_json(self) -> dict[str, Any]:
        return {"enforced": self.enforced, "detail": self.detail, "before": self.before,
                "under_policy": self.under_policy}


def _pod(name: str, role: str, tag: str, image: str, command: list[str], expires_at: str) -> dict[str, Any]:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": {COMPONENT: "policy-probe", "harness.policy-probe": f"{tag}-{role}"}},
           "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 0, "activeDeadlineSeconds": 900,
                    "containers": [{"name": "probe", "image": image, "command": command,
                                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                                                  "limits": {"memory": "128Mi"}}}]}}
    return label(pod, f"doctor-{tag}", expires_at)


def _running(platform: KubernetesPlatform, names: list[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + START_TIMEOUT_S
    collection = _KIND["Pod"].collection(platform.namespace)
    while True:
        pods = {n: platform.api.get(f"{collection}/{n}") or {} for n in names}
        if all((p.get("status") or {}).get("phase") == "Running" and (p.get("status") or {}).get("podIP")
               for p in pods.values()):
            return pods
        ended = [n for n, p in pods.items() if (p.get("status") or {}).get("phase") in ("Failed", "Succeeded")]
        if ended or time.monotonic() > deadline:
            states = {n: (p.get("status") or {}).get("phase") or "missing" for n, p in pods.items()}
            raise FaultError(f"the probe pods did not run within {START_TIMEOUT_S:g}s: {states}")
        time.sleep(0.3)


def _connect(platform: KubernetesPlatform, client: str, ip: str) -> Connect | None:
    code, _out, _err = exec_raw(platform.api, platform.namespace, client,
                                ["python3", "-c", CONNECT_PROBE, ip, str(PORT), "1"], timeout_s=30)
    return from_exit_code(code)


def probe_enforcement(platform: KubernetesPlatform, image: str = "") -> PolicyProbe:
    """Probe NetworkPolicy enforcement in the platform's namespace; everything made is deleted again."""
    image = image or platform.settings.image or (platform.shape.images[0] if platform.shape.images else "")
    if not image:
        return PolicyProbe(None, "no image to run the probe pods with: pass --image")
    tag = uuid.uuid4().hex[:8]
    expires_at = expiry(900)
    server, client = f"harness-policy-probe-{tag}-server", f"harness-policy-probe-{tag}-client"
    policy = f"harness-policy-probe-{tag}"
    api, namespace = platform.api, platform.namespace
    pods = _KIND["Pod"].collection(namespace)
    made: list[str] = []
    try:
        for name, role, command in ((server, "server", ["python3", "-c", _LISTENER]),
                                    (client, "client", ["sleep", "900"])):
            api.request("POST", pods, body=_pod(name, role, tag, image, command, expires_at))
            made.append(f"{pods}/{name}")
        ip = str(_running(platform, [server, client])[server]["status"]["podIP"])
        before: Connect | None = None
        deadline = time.monotonic() + 20
        while before != "connected" and time.monotonic() < deadline:  # the listener takes a moment to bind
            before = _connect(platform, client, ip)
            if before != "connected":
                time.sleep(0.5)
        if before != "connected":
            return PolicyProbe(None, f"could not tell: without any policy the connection was {before or 'unknown'}",
                               before or "unknown")
        body = label({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                      "metadata": {"name": policy, "labels": {COMPONENT: "policy-probe"}},
                      "spec": {"podSelector": {"matchLabels": {"harness.policy-probe": f"{tag}-server"}},
                               "policyTypes": ["Ingress"], "ingress": []}}, f"doctor-{tag}", expires_at)
        api.apply(body, namespace)
        made.append(f"{_KIND['NetworkPolicy'].collection(namespace)}/{policy}")
        deadline = time.monotonic() + ENFORCE_WAIT_S
        under: Connect | None = "connected"
        while time.monotonic() < deadline:
            under = _connect(platform, client, ip)
            if under != "connected":
                break
            time.sleep(0.5)
        if under is None:
            return PolicyProbe(None, "could not tell: the connection test under the policy failed to run",
                               "connected", "unknown")
        if under == "connected":
            return PolicyProbe(False, f"not enforced: a pod still connected to a pod under a deny-all-ingress "
                                      f"NetworkPolicy for {ENFORCE_WAIT_S:g}s (the network plugin ignores "
                                      "NetworkPolicy)", "connected", "connected")
        return PolicyProbe(True, f"enforced: under a deny-all-ingress NetworkPolicy the connection {under}",
                           "connected", under)
    except (FaultError, ApiFailure) as exc:
        return PolicyProbe(None, f"could not tell: {str(exc)[:300]}")
    finally:
        for path in reversed(made):
            try:
                api.delete(path, grace_s=0)
            except ApiFailure:
                pass  # expiry and harness cleanup sweep it
