"""What this machine has, one check at a time: each says what it found and, when it is a "no", the fix.

Checks that read sysfs/procfs take a ``HostPaths`` (prepared trees in tests); checks of programs run
them for real (``nft list tables``, ``unshare -rn``, ``nvidia-smi -L``), read-only, with short timeouts.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import EnvironmentProblem
from harness.faults.cgroups import HostPaths, MemoryController, Unavailable, find_memory_controller, read_layout
from harness.platforms.local.platform import port_free

__all__ = ["Check", "cgroup_memory", "find_program", "gpu", "kubernetes_access", "nftables", "ports", "program",
           "python", "tritonserver"]

# Debian keeps administrator programs in sbin, which is not on an ordinary user's PATH.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found, yes or no
    fix: str = ""  # what to do, for a "no"

    def message(self) -> str:
        return self.detail + (f". Fix: {self.fix}" if self.fix and not self.ok else "")


def find_program(name: str) -> tuple[str | None, bool]:
    """(path, on PATH): a program found only in sbin is installed but not on this user's PATH."""
    found = shutil.which(name)
    if found:
        return found, True
    for directory in _SBIN:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate), False
    return None, False


def _run(argv: list[str], timeout_s: float = 10.0) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def python() -> Check:
    version = ".".join(str(v) for v in sys.version_info[:3])
    if sys.version_info[:2] > (3, 13):  # nvidia-pytriton ships python-backend stubs for 3.8 to 3.13
        return Check("python", False, f"Python {version} ({sys.executable}) has no Triton python-backend stub",
                     "use Python 3.11 to 3.13: make setup PYTHON=python3.12")
    return Check("python", True, f"Python {version} ({sys.executable})")


def tritonserver() -> Check:
    from harness.triton.runtime import find_triton

    try:
        install = find_triton()
    except EnvironmentProblem as exc:
        return Check("tritonserver", False, str(exc).split("; ")[0], "run 'make setup' (installs nvidia-pytriton "
                     "into .venv); " + (str(exc).split("; ", 1)[1] if "; " in str(exc) else ""))
    try:
        version = importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return Check("tritonserver", True, f"{install.server} (nvidia-pytriton {version}), python backend stub for "
                 f"Python {sys.version_info.major}.{sys.version_info.minor}")


def program(name: str, package: str, why: str) -> Check:
    path, on_path = find_program(name)
    if path is None:
        return Check(name, False, f"{name} is not installed ({why})", f"sudo apt-get install -y {package}")
    if not on_path:
        return Check(name, False, f"{name} is installed at {path} but not on PATH ({why})",
                     f'add {Path(path).parent} to PATH: export PATH="$PATH:{Path(path).parent}"')
    return Check(name, True, f"{path}")


def gpu(host: HostPaths | None = None) -> Check:
    """The GPU memory-pressure fault talks to the CUDA driver (libcuda.so.1) directly, so that is what counts."""
    host = host or HostPaths()
    device = (host.root / "dev" / "nvidia0").exists()
    smi, _ = find_program("nvidia-smi")
    try:
        ctypes.CDLL("libcuda.so.1")
        libcuda = True
    except OSError:
        libcuda = False
    if device and smi and libcuda:
        code, out = _run([smi, "-L"])
        return Check("gpu", True, out.splitlines()[0] if code == 0 and out else f"/dev/nvidia0, {smi}, libcuda.so.1")
    missing = [what for what, ok in (("/dev/nvidia0", device), ("nvidia-smi", smi), ("libcuda.so.1", libcuda))
               if not ok]
    if not device and not smi:
        return Check("gpu", False, "no NVIDIA GPU (" + ", ".join(missing) + " missing); Triton serves on the CPU "
                     "and gpu-memory-pressure uses its host-memory analogue",
                     "nothing to do for CPU runs; for real GPU pressure use a machine with an NVIDIA GPU and driver")
    return Check("gpu", False, "an NVIDIA GPU is partly visible: " + ", ".join(missing) + " missing, so the GPU "
                 "memory hog cannot reach it", "install the NVIDIA driver (it ships nvidia-smi and libcuda.so.1); "
                 "in a container, run it with --gpus all (NVIDIA Container Toolkit)")


def nftables(host: HostPaths | None = None) -> Check:
    """The network-policy block adds nftables rules in the network namespace the replicas run in (this one)."""
    host = host or HostPaths()
    nft, _ = find_program("nft")
    if nft is None:
        return Check("nftables", False, "nft is not installed (the network-policy block drops traffic with it)",
                     "sudo apt-get install -y nftables")
    if host.euid == 0:
        code, out = _run([nft, "list", "tables"])
        if code == 0:
            return Check("nftables", True, f"{nft} works here (nft list tables succeeded as root)")
        if "not permitted" in out.lower():
            return Check("nftables", False, f"nft is not permitted here although running as root: {out}",
                         "give the container CAP_NET_ADMIN (docker run --cap-add NET_ADMIN)")
        return Check("nftables", False, f"nft list tables failed: {out}",
                     "load the kernel's nftables support: sudo modprobe nf_tables")
    code, out = _run(["unshare", "--user", "--map-root-user", "--net", nft, "list", "tables"])
    rootless = code == 0
    detail = (f"uid {host.euid} may not change nftables in the network namespace the replicas run in (that needs "
              "root or CAP_NET_ADMIN)")
    if rootless:
        return Check("nftables", False, detail + "; unprivileged user+network namespaces work here "
                     "(unshare -rn nft list tables succeeded)",
                     "run as root (sudo env PATH=$PATH harness ...), or run the whole job in a private user+network "
                     "namespace, where you are root and nft works: harness rootless demo (the service then lives "
                     "only inside that namespace)")
    return Check("nftables", False, detail + f"; unprivileged user namespaces are not available either ({out})",
                 "run as root (sudo), or let users create namespaces: sudo sysctl kernel.unprivileged_userns_clone=1 "
                 "(Debian), or kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04)")


def cgroup_memory(host: HostPaths | None = None) -> tuple[Check, MemoryController | Unavailable]:
    """The writable memory cgroup the host-memory analogue of GPU memory pressure needs."""
    host = host or HostPaths()
    layout = read_layout(host).describe()
    found = find_memory_controller(host)
    if isinstance(found, MemoryController):
        return Check("cgroup", True, f"{layout}; the harness creates {found.describe()}"), found
    return Check("cgroup", False, f"{layout}; {found.reason}", found.fix), found


def ports(state_dir: Path | None = None) -> Check:
    """The local platform's front ports (those of the state directory's settings, else the defaults)."""
    from harness.platforms.local.platform import LocalPlatform
    from harness.platforms.local.settings import LocalSettings, default_state_dir

    state = state_dir or default_state_dir()
    try:
        settings = LocalSettings.load(state) if (state / "settings.json").exists() else LocalSettings(state_dir=state)
    except OSError:  # a state directory this user may not read: the defaults are what it would get
        settings = LocalSettings(state_dir=state)
    wanted = [("HTTP", settings.http_port), ("gRPC", settings.grpc_port), ("stats", settings.stats_port)]
    if settings.prometheus:
        wanted.append(("Prometheus", settings.prometheus_port))
    listed = ", ".join(f"{what} {settings.front_address}:{port}" for what, port in wanted)
    if LocalPlatform(settings).running():
        return Check("ports", True, f"{listed}: held by the local platform that is up (state {state})")
    busy = [f"{what} {settings.front_address}:{port}" for what, port in wanted
            if not port_free(settings.front_address, port)]
    if busy:
        return Check("ports", False, f"in use: {', '.join(busy)}",
                     "stop what listens there (ss -ltnp), or choose other ports: harness up --http-port/--grpc-port/"
                     "--prometheus-port/--stats-port")
    return Check("ports", True, f"free: {listed}")


def kubernetes_access() -> Check:
    """Whether there is a cluster to talk to (a kubeconfig, or running in a pod); reaching it is `harness up`'s."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return Check("kubeconfig", True, "running inside a pod (in-cluster service account)")
    configs = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    configs = configs or [Path.home() / ".kube" / "config"]
    found = [str(p) for p in configs if p.is_file()]
    if found:
        return Check("kubeconfig", True, ", ".join(found))
    return Check("kubeconfig", False, f"no kubeconfig ({', '.join(str(p) for p in configs)} not found)",
                 "point KUBECONFIG at your cluster's kubeconfig, or pass --kubeconfig to harness commands")
