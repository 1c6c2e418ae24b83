"""Small standard-library Python programs the harness runs *inside* the Triton pod through exec.

The NGC Triton image has python3 but not the harness, so these travel as ``python3 -c <source>``. The
GPU hog is the harness's own ``harness/faults/hog.py`` (written to run that way); the container-memory
analogue and the model reload are here, because inside a container the hog's host mode cannot join a
cgroup (the cgroup filesystem is read-only there) and needs no joining: exec already runs in the pod's.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["CONNECT_PROBE", "CONTAINER_HOG", "RELOAD_MODEL", "gpu_hog_source"]


def gpu_hog_source() -> str:
    return (resources.files("harness") / "faults" / "hog.py").read_text(encoding="utf-8")


# argv: cgroup root, leave_free_mb, duration_s, status file. Holds the container's free memory (its
# memory limit minus its usage) at leave_free_mb, re-taking what others release, until the deadline or
# SIGTERM. In a real cgroup the usage includes what the hog holds; max(usage, held) keeps it bounded
# where the usage file does not move (a test double).
CONTAINER_HOG = r"""
import json, os, signal, sys, time
root, leave, duration, status = sys.argv[1], float(sys.argv[2]) * 2**20, float(sys.argv[3]), sys.argv[4]
PAIRS = (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
         ("memory.limit_in_bytes", "memory.usage_in_bytes"))
blocks = []
def held():
    return sum(len(b) for b in blocks)
def free():
    for limit_file, usage_file in PAIRS:
        try:
            limit = open(os.path.join(root, limit_file)).read().strip()
            usage = int(open(os.path.join(root, usage_file)).read())
        except OSError:
            continue
        if limit == "max" or int(limit) >= 1 << 60:
            sys.exit("hog: the container has no memory limit; set resources.limits.memory")
        return int(limit) - max(usage, held())
    sys.exit("hog: no cgroup memory files under " + root)
def report(state):
    with open(status + ".tmp", "w") as fh:
        json.dump({"held_mb": held() / 2**20, "free_mb": free() / 2**20, "pid": os.getpid(),
                   "target": "container", "state": state, "ts": time.time()}, fh)
    os.replace(status + ".tmp", status)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
end, last = time.monotonic() + duration, 0.0
while not stop and time.monotonic() < end:
    chunk = 64 << 20
    while chunk >= 1 << 20 and not stop:
        if free() - chunk < leave:
            chunk //= 2
            continue
        try:
            blocks.append(bytearray(b"\1") * chunk)
        except MemoryError:
            chunk //= 2
    if time.monotonic() - last > 0.5:
        last = time.monotonic()
        report("holding")
    time.sleep(0.1)
report("released-on-signal" if stop else "released-at-deadline")
"""

# argv: model, JSON parameters ("{}" for a plain reload), timeout_s. A config override replaces the
# whole config, so the full current config is sent back with the parameters changed (DESIGN.md).
# Over HTTP from inside the pod: the image has no tritonclient; a load over HTTP stalls other HTTP
# keep-alive clients of this pod for the duration of the load (gRPC would not).
RELOAD_MODEL = r"""
import json, sys, urllib.error, urllib.request as u
model, params, timeout = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
base = "http://localhost:8000"
body = {}
try:
    if params:
        config = json.load(u.urlopen(f"{base}/v2/models/{model}/config", timeout=10))
        section = config.setdefault("parameters", {})
        for key, value in params.items():
            section[key] = {"string_value": str(value)}
        body = {"parameters": {"config": json.dumps(config)}}
    request = u.Request(f"{base}/v2/repository/models/{model}/load", data=json.dumps(body).encode(),
                        headers={"Content-Type": "application/json"}, method="POST")
    u.urlopen(request, timeout=timeout)
except urllib.error.HTTPError as exc:
    print(exc.read().decode(errors="replace")[:500])
    sys.exit(1)
except OSError as exc:
    print(f"cannot reach Triton in the pod: {exc}")
    sys.exit(1)
print("ok")
"""

# argv: address, port, timeout_s. Exit 0: connected; 3: timed out (dropped); 5: refused (nothing listens);
# 6: unreachable (harness.faults.connect.EXIT_CODES); anything else: the probe itself failed ("cannot tell").
CONNECT_PROBE = r"""
import errno, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except ConnectionRefusedError:
    sys.exit(5)
except (TimeoutError, socket.timeout):
    sys.exit(3)
except OSError as exc:
    print(exc)
    sys.exit({errno.ECONNREFUSED: 5, errno.ETIMEDOUT: 3, errno.EHOSTUNREACH: 6, errno.ENETUNREACH: 6}.get(exc.errno, 4))
"""
