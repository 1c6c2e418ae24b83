"""The independent prober as a pod in the cluster: where clients are, through the Service, sharing no harness code.

``harness bench accuracy --platform kubernetes`` compares the harness's time to recover with what an
independent observer saw. Locally that observer is a thread beside the service; on a cluster it must stand
where clients stand, so it runs as its own pod: a program of the standard library only (``PROBER``: plain
sockets, no harness import, its own clock) that resolves the Service's cluster DNS name once (a ClusterIP
does not change while the Service lives; resolving it 100 times a second would measure the cluster's DNS
too) and then, open loop, each probe on its own thread with its own deadline (the bench gives the load's
request timeout, and counts a probe good when answered within the objective), sends one inference every 20 ms
on a new connection and one every 20 ms on a kept-alive connection from a pool. Through a Service the two
are different clients: kube-proxy picks the pod per connection, so a kept connection stays with its pod
whatever happens to that pod, and the harness's own load keeps its connections (measured on the sandbox: after
a pod kill, new connections recovered in 0.2-0.7 s, kept ones only when the kubelet's SIGKILL ended the old
pod about 2 s later, as the harness's load saw).

Its records (``start_ns end_ns ok mode stage`` lines) stay in the pod until the harness asks for them: ``finish``
tells it to stop (a file, so nothing needs to reach the harness), waits for the last probes to end by their
own deadline and for the count it wrote last, measures its clock against the harness's exactly as the load
workers' are measured (``timeline_copy.measure_clock``), streams the records out over exec
(``timeline_copy.stream_to_file``: never whole in memory), checks the line count against the count, and
moves every start onto the harness's clock when the offset is larger than its uncertainty (the workers' rule).

The pod carries the harness's labels, an expiry and ``activeDeadlineSeconds``, and no API token; it is
deleted whatever happens (``ClusterProber`` is a context manager), and ``harness cleanup`` removes one a
crash left (a bare harness-labelled pod whose run is over).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import FaultError, PlatformError
from harness.platforms.kubernetes.api import KIND_BY_NAME, ApiFailure, KubeApi
from harness.platforms.kubernetes.faults import exec_raw
from harness.platforms.kubernetes.load import _IMAGE_MISSING as IMAGE_MISSING
from harness.platforms.kubernetes.netagent import COMPONENT
from harness.platforms.kubernetes.render import expiry, label
from harness.platforms.kubernetes.timeline_copy import ClockOffset, measure_clock, stream_to_file

__all__ = ["PROBER", "ClusterProber", "ProbeResult", "prober_pod"]

INTERVAL_S = 0.02
TIMEOUT_S = 1.0  # what a probe waits for, unless the caller says (the bench: its load's request timeout)
START_TIMEOUT_S = 180.0
GONE_TIMEOUT_S = 60.0
DIR = "/probe"
_KIND = KIND_BY_NAME

# Standard library only. Env: HARNESS_PROBE_HOST, _PORT, _MODEL, _INTERVAL_S, _TIMEOUT_S (how long a probe
# waits), _OBJECTIVE_S (a probe is ok when answered 200 within it; default the timeout), _MAX_S. Two probers in
# one: every 20 ms a probe on a new connection ("n", ``Connection: close``: the local bench's prober) and every
# 20 ms a probe on a kept-alive connection from a pool ("k": taken when one is idle, else opened; given back
# after any whole answer, even a late one, dropped after a failure, as a pooled HTTP client does, which is what
# the harness's Locust users are). Through a Service the two differ: kube-proxy picks the pod per connection, so a kept
# connection stays with its pod whatever happens to that pod. Writes /probe/records.txt (``start end ok mode
# stage`` per probe, in the order they ended; stage says where a failed probe stopped, for reading a run's
# records: c connecting, r refused, a no answer on the new connection, s no answer on a kept one, x not 200,
# l answered too late, - ok), /probe/STARTED (the address the name resolved to) once it sends, and
# /probe/DONE (how many lines it wrote) after the last probe ended; stops when /probe/STOP appears or after
# _MAX_S, then stays alive so the records can be copied out.
PROBER = r"""
import json, os, socket, threading, time
env = os.environ
host, port = env["HARNESS_PROBE_HOST"], int(env["HARNESS_PROBE_PORT"])
interval, timeout = float(env["HARNESS_PROBE_INTERVAL_S"]), float(env["HARNESS_PROBE_TIMEOUT_S"])
objective = float(env.get("HARNESS_PROBE_OBJECTIVE_S") or timeout)
max_s, model = float(env["HARNESS_PROBE_MAX_S"]), env["HARNESS_PROBE_MODEL"]
D = "/probe"
body = json.dumps({"inputs": [{"name": "INPUT", "shape": [1, 16], "datatype": "FP32",
                               "data": [0.1] * 16}]}).encode()
def request(connection):
    return ("POST /v2/models/%s/infer HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nConnection: %s\r\n\r\n" % (model, host, port, len(body), connection)
            ).encode() + body
CLOSE, KEEP = request("close"), request("keep-alive")
address = None
while address is None:
    try:
        address = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
    except OSError:
        time.sleep(0.2)
out = open(D + "/records.txt", "w", buffering=1)
lock = threading.Lock()
idle = []  # (connection, given back at): kept alive between probes, as a client's pool keeps them
count = 0

def receive(sock, data, enough, deadline):
    # data with what arrived until enough(data), or None: the deadline passed or the peer closed
    while not enough(data):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data

def exchange(sock, payload, deadline):
    # the status code once the whole response is read (its Content-Length), or None
    sock.sendall(payload)
    data = receive(sock, b"", lambda d: b"\r\n\r\n" in d, deadline)
    if data is None:
        return None
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if receive(sock, rest, lambda d: len(d) >= length, deadline) is None:
        return None
    return int(head.split(b"\r\n", 1)[0].split()[1])

def probe(mode):
    global count
    start = time.time_ns()
    deadline = time.monotonic() + timeout
    ok, sock, stage, answered = False, None, "c", False
    try:
        if mode == "k":
            with lock:
                while idle and sock is None:
                    sock, since = idle.pop()  # the last one given back
                    if time.monotonic() - since >= 5.0:  # idle too long: a server may have expired it
                        sock.close()
                        sock = None
                    else:
                        stage = "s"
        if sock is None:
            sock = socket.create_connection(address, timeout=timeout)
            stage = "a"
        status = exchange(sock, KEEP if mode == "k" else CLOSE, deadline)
        answered = status is not None
        ok, stage = status == 200, ("-" if status == 200 else "x" if answered else stage)
    except ConnectionRefusedError:
        stage = "r"
    except (OSError, IndexError, ValueError):
        ok = False
    end = time.time_ns()
    if ok and end - start > objective * 1e9:
        ok, stage = False, "l"
    with lock:
        if sock is not None and answered and mode == "k":
            idle.append((sock, time.monotonic()))  # reused by a later probe, as a pooled client reuses it
        elif sock is not None:
            sock.close()  # a failed connection is dropped, as a client drops it
        out.write("%d %d %d %s %s\n" % (start, end, ok, mode, stage))
        count += 1

def write(name, text):
    with open(D + "/" + name + ".tmp", "w") as f:
        f.write(text)
    os.replace(D + "/" + name + ".tmp", D + "/" + name)

def schedule(mode):
    next_at = time.monotonic()
    end_at = next_at + max_s
    while not os.path.exists(D + "/STOP") and time.monotonic() < end_at:
        threading.Thread(target=probe, args=(mode,), daemon=True).start()
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))

write("STARTED", "%s:%d\n" % address)
schedulers = [threading.Thread(target=schedule, args=(m,)) for m in ("n", "k")]
for t in schedulers:
    t.start()
for t in schedulers:
    t.join()
for t in threading.enumerate():
    if t is not threading.main_thread():
        t.join(timeout + 1)
with lock:
    out.close()
    write("DONE", "%d\n" % count)
time.sleep(86400)
"""


def prober_pod(name: str, run_id: str, expires_at: str, image: str, env: dict[str, str],
               deadline_s: int) -> dict[str, Any]:
    """The prober pod: the harness's labels and expiry, ``activeDeadlineSeconds``, no API token, an emptyDir
    for its records. Its CPU request (200m) keeps a busy node from starving its 50 threads a second."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {COMPONENT: "prober"}},
        "spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 0, "activeDeadlineSeconds": deadline_s,
            "containers": [{
                "name": "prober", "image": image, "command": ["python3", "-c", PROBER],
                "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
                "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "volumeMounts": [{"name": "probe", "mountPath": DIR}],
            }],
            "volumes": [{"name": "probe", "emptyDir": {}}],
        },
    }
    return label(pod, run_id, expires_at)


@dataclass(frozen=True)
class ProbeResult:
    """What the prober saw, on the harness's clock: ``(start_ns, end_ns, ok)`` per probe, sorted by start;
    ``records`` on new connections (one per probe), ``pooled`` on kept-alive ones."""

    records: list[tuple[int, int, bool]]
    pooled: list[tuple[int, int, bool]]
    clock: ClockOffset
    corrected: bool
    address: str
    pod: str
    files: list[Path] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(1 for _, _, ok in self.records if not ok)

    @property
    def pooled_failures(self) -> int:
        return sum(1 for _, _, ok in self.pooled if not ok)

    def to_json(self) -> dict[str, Any]:
        return {"pod": self.pod, "address": self.address, "probes": len(self.records), "failed": self.failures,
                "pooled_probes": len(self.pooled), "pooled_failed": self.pooled_failures,
                "clock_offset_ms": round(self.clock.offset_ns / 1e6, 3),
                "clock_uncertainty_ms": round(self.clock.uncertainty_ns / 1e6, 3), "corrected": self.corrected}


class ClusterProber:
    """One prober pod aimed at ``host:port`` (the Service's cluster DNS name and port) in ``namespace``.

    ``with ClusterProber(...) as prober: ...; result = prober.finish(dest)``: the pod is created on entry
    (once it sends), and deleted on exit whatever happened, waiting until it is gone."""

    def __init__(self, api: KubeApi, namespace: str, image: str, host: str, port: int, *, max_s: float,
                 model: str = "mlp", run_id: str = "", interval_s: float = INTERVAL_S,
                 timeout_s: float = TIMEOUT_S, objective_s: float | None = None) -> None:
        if not image:
            raise PlatformError("no image for the prober pod (it needs python3): pass --load-image")
        self.api, self.namespace = api, namespace
        tag = uuid.uuid4().hex[:8]
        self.run_id = run_id or f"bench-prober-{tag}"
        self.name = f"harness-prober-{tag}"
        self.timeout_s = timeout_s
        env = {"HARNESS_PROBE_HOST": host, "HARNESS_PROBE_PORT": str(port), "HARNESS_PROBE_MODEL": model,
               "HARNESS_PROBE_INTERVAL_S": f"{interval_s:g}", "HARNESS_PROBE_TIMEOUT_S": f"{timeout_s:g}",
               "HARNESS_PROBE_OBJECTIVE_S": f"{objective_s or timeout_s:g}",
               "HARNESS_PROBE_MAX_S": f"{max_s:.0f}"}
        deadline_s = int(max_s) + 600  # stops probing at max_s; the rest is for copying its records out
        self.body = prober_pod(self.name, self.run_id, expiry(deadline_s + 60), image, env, deadline_s)
        self.address = ""

    @property
    def path(self) -> str:
        return f"{_KIND['Pod'].collection(self.namespace)}/{self.name}"

    def __enter__(self) -> ClusterProber:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def start(self) -> None:
        """Create the pod and return once it sends probes (its ``STARTED`` file names the resolved address)."""
        try:
            self.api.request("POST", _KIND["Pod"].collection(self.namespace), body=self.body)
        except ApiFailure as exc:
            raise PlatformError(f"the prober pod was refused in {self.namespace}: {exc}") from exc
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            pod = self.api.get(self.path) or {}
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Failed", "Succeeded") or not pod:
                raise PlatformError(f"the prober pod {self.namespace}/{self.name} ended before it probed ({phase})")
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in IMAGE_MISSING:  # the load pods' rule
                    raise PlatformError(f"the prober pod's image {cs.get('image')} cannot be pulled "
                                        f"({waiting.get('reason')}: {str(waiting.get('message', ''))[:200]}); "
                                        "give an image the cluster can pull with --load-image")
            if phase == "Running":
                code, out = self._cat("STARTED")
                if code == 0 and out:
                    self.address = out
                    return
            if time.monotonic() > deadline:
                raise PlatformError(f"the prober pod {self.namespace}/{self.name} did not start probing within "
                                    f"{START_TIMEOUT_S:g}s (phase {phase})")
            time.sleep(0.3)

    def finish(self, dest: Path) -> ProbeResult:
        """Stop probing, copy the records into ``dest`` (checked against the prober's own count) and put
        them on the harness's clock."""
        code, said = self._exec(["python3", "-c", f"open('{DIR}/STOP', 'w').close()"])
        if code != 0:
            raise PlatformError(f"could not stop the prober {self.name} (exit {code}): {said[:300]}")
        deadline = time.monotonic() + self.timeout_s + 30
        while True:
            code, done = self._cat("DONE")
            if code == 0 and done:
                break
            if time.monotonic() > deadline:
                raise PlatformError(f"the prober {self.name} did not finish its last probes within "
                                    f"{self.timeout_s + 30:g}s")
            time.sleep(0.3)
        clock = measure_clock(self.api, self.namespace, self.name)
        dest.mkdir(parents=True, exist_ok=True)
        raw = dest / f"{self.name}.txt"
        stream_to_file(self.api, self.namespace, self.name, ["cat", f"{DIR}/records.txt"], raw)
        by_mode: dict[str, list[tuple[int, int, bool]]] = {"n": [], "k": []}
        shift = clock.offset_ns if clock.significant else 0
        with raw.open() as lines:
            for line in lines:
                start, end, ok, mode = line.split()[:4]
                by_mode[mode].append((int(start) - shift, int(end) - shift, ok == "1"))
        if (got := len(by_mode["n"]) + len(by_mode["k"])) != int(done):
            raise PlatformError(f"the prober's records came back short: {got} lines, it wrote {done}")
        return ProbeResult(sorted(by_mode["n"]), sorted(by_mode["k"]), clock, clock.significant, self.address,
                           self.name, [raw])

    def delete(self) -> None:
        """Delete the pod and wait until it is gone (PlatformError if it is still there after a minute)."""
        try:
            self.api.delete(self.path, grace_s=0)
        except ApiFailure:
            pass  # checked below: still there is an error; its expiry and harness cleanup sweep it
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while self.api.get(self.path) is not None:
            if time.monotonic() > deadline:
                raise PlatformError(f"the prober pod {self.namespace}/{self.name} is still there "
                                    f"{GONE_TIMEOUT_S:g}s after its deletion; harness cleanup removes it")
            time.sleep(0.3)

    # -- Internals ----------------------------------------------------------------------------------------
    def _exec(self, command: list[str]) -> tuple[int, str]:
        try:
            code, out, err = exec_raw(self.api, self.namespace, self.name, command, timeout_s=30)
        except FaultError as exc:
            return -1, str(exc)
        return code, str(out or "").strip() if code == 0 else str(err or out or "").strip()

    def _cat(self, name: str) -> tuple[int, str]:
        return self._exec(["cat", f"{DIR}/{name}"])
