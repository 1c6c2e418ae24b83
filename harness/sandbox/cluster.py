"""``harness sandbox``: a real single-node Kubernetes 1.20 inside a network namespace of its own.

etcd, kube-apiserver (TLS, token auth, RBAC), controller-manager, scheduler, containerd + runc, the
kubelet, kube-proxy, a bridge CNI and a small cluster DNS all run inside the network namespace
``triton-harness-sandbox``, so every iptables rule they write and every pod address stays there. A veth
pair joins it to the root namespace (10.213.0.1 here, 10.213.0.2 the node), with routes to the pod and
Service ranges only, so the harness reaches the API, pods and ClusterIPs as in-cluster clients would.

What cannot be confined is recorded before it is touched and put back by ``down``: global kernel
settings the kubelet sets, cgroups (under one cgroup root of the sandbox's), mounts (under its
directories), files containerd and the kubelet write to fixed paths (``/var/log/pods``,
``/run/containerd/s``). Every process is started by the sandbox and stopped by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import EnvironmentProblem, PlatformError
from harness.jsonfile import write_json_atomic
from harness.sandbox import build, host, images, pki

__all__ = ["NODE", "NODE_IP", "Sandbox", "SandboxStatus"]

NETNS = "triton-harness-sandbox"
CGROUP = "triton-harness-sandbox"
NODE = "sandbox-node"
HOST_VETH, NODE_VETH = "th-sandbox0", "th-sandbox1"
HOST_IP, NODE_IP = "10.213.0.1", "10.213.0.2"
POD_CIDR, SERVICE_CIDR, API_SERVICE_IP = "10.214.0.0/24", "10.215.0.0/24", "10.215.0.1"
CONTEXT = "triton-sandbox"
# Fixed paths containerd 1.6 and the kubelet 1.20 write to whatever they are told: cleaned by diff.
_FIXED_DIRS = (Path("/var/log/pods"), Path("/var/log/containers"), Path("/run/containerd/s"))
_ORDER = ("etcd", "containerd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
          "kube-proxy", "dns")

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def state_dir() -> Path:
    return Path(os.environ.get("HARNESS_SANDBOX_DIR") or "/run/triton-harness-sandbox")


@dataclass(frozen=True)
class SandboxStatus:
    up: bool
    ready: bool
    kubeconfig: str
    context: str
    triton_image: str
    processes: dict[str, int | None] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    started_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "up": self.up,
            "ready": self.ready,
            "kubeconfig": self.kubeconfig,
            "context": self.context,
            "triton_image": self.triton_image,
            "processes": self.processes,
            "problems": list(self.problems),
            "up_seconds": round(self.started_s, 1),
        }


class Sandbox:
    """One sandbox per machine (its names and addresses are fixed); ``up`` is idempotent."""

    def __init__(self, directory: Path | None = None, progress: Progress = _quiet) -> None:
        self.dir = directory or state_dir()
        self.cache = build.cache_dir()
        self.progress = progress

    # -- paths and state -----------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def containerd_root(self) -> Path:
        return self.cache / "containerd"  # images survive ``down``: a warm start imports nothing

    def _state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.dir / "state.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.dir / "state.json", state)

    # -- up --------------------------------------------------------------------------------------------
    def up(self, triton_image: bool = True, timeout_s: float = 180.0) -> SandboxStatus:
        if os.geteuid() != 0:
            raise EnvironmentProblem(
                "harness sandbox needs root: it creates a network namespace, cgroups and mounts "
                "(run it with sudo)"
            )
        current = self.status()
        if current.up and current.ready and not current.problems:
            return current
        self.clear_half_up()
        started = time.monotonic()
        bin_dir = build.ensure_binaries(self.progress)
        state: dict[str, Any] = {
            "sysctls": host.read_sysctls(),
            "fixed_dirs": {str(d): sorted(p.name for p in d.iterdir()) if d.is_dir() else None for d in _FIXED_DIRS},
            "processes": {},
            "up": False,
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        self._save(state)  # before anything changes: down can always undo
        try:
            self._network()
            creds = pki.make_credentials(
                self.dir / "pki", NODE, [NODE_IP, "127.0.0.1", API_SERVICE_IP],
                ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"],
            )
            state["admin_token"] = creds.tokens["admin"]
            self._write_configs(creds, bin_dir)
            self._cgroup_root()
            self._start(state, "containerd", ["containerd", "--config", str(self.dir / "containerd.toml")])
            self._start(state, "etcd", self._etcd_cmd())
            importer = threading.Thread(target=self._import_images, args=(state, bin_dir, triton_image))
            importer.start()
            self._start(state, "kube-apiserver", self._apiserver_cmd(bin_dir, creds))
            self._wait(lambda: self._get("/readyz", raw=True) == "ok", 60, "kube-apiserver ready", state)
            self._start(state, "kube-controller-manager", self._controller_manager_cmd(bin_dir, creds))
            self._start(state, "kube-scheduler", self._scheduler_cmd(bin_dir))
            importer.join()
            if state.get("import_error"):
                raise EnvironmentProblem(f"importing images into containerd failed: {state['import_error']}")
            self._start(state, "kubelet", self._kubelet_cmd(bin_dir))
            self._start(state, "kube-proxy", self._proxy_cmd(bin_dir))
            self._start(state, "dns", [sys.executable, "-m", "harness.sandbox.dns", NODE_IP, "https://127.0.0.1:6443",
                          str(creds.ca), creds.tokens["admin"]])
            self._wait(self._node_ready, timeout_s, "the node to become Ready", state)
            self._wait(self._default_service_account, 30, "the default service account", state)
        except BaseException:
            self._save(state)
            raise
        state["up"] = True
        state["up_seconds"] = time.monotonic() - started
        self._save(state)
        return self.status()

    def clear_half_up(self) -> bool:
        """Take down what a sandbox that never finished (or whose processes were killed) left behind, so its
        kernel settings are back at what they were before it started; whether there was one. A sandbox that is
        up and ready is left alone."""
        current = self.status()
        if current.up and current.ready and not current.problems:
            return False
        if not (self._state() or self._netns_exists()):
            return False
        self.progress("a previous sandbox is half up: taking it down first")
        self.down()
        return True

    def _netns_exists(self) -> bool:
        return Path(f"/run/netns/{NETNS}").exists()

    def _network(self) -> None:
        self.progress(f"network namespace {NETNS}: node {NODE_IP}, pods {POD_CIDR}, services {SERVICE_CIDR}")
        ns = ["ip", "-n", NETNS]
        for cmd in (
            ["ip", "netns", "add", NETNS],
            ["ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", NODE_VETH, "netns", NETNS],
            ["ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_VETH],
            ["ip", "link", "set", HOST_VETH, "up"],
            [*ns, "link", "set", "lo", "up"],
            [*ns, "addr", "add", f"{NODE_IP}/30", "dev", NODE_VETH],
            [*ns, "link", "set", NODE_VETH, "up"],
            ["ip", "route", "add", POD_CIDR, "via", NODE_IP, "dev", HOST_VETH],
            ["ip", "route", "add", SERVICE_CIDR, "via", NODE_IP, "dev", HOST_VETH],
            ["ip", "netns", "exec", NETNS, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ):
            host.run(cmd, what="setting up the sandbox network")
        # Kubernetes expects bridged traffic to pass iptables; per namespace on this kernel.
        host.run(["ip", "netns", "exec", NETNS, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
                 check=False)
        # Pods must not open connections into the root namespace (its side of the veth is an address of
        # this machine); answers to connections the root namespace opened still pass. Inside the netns.
        host.run(["ip", "netns", "exec", NETNS, "iptables", "-I", "FORWARD", "-s", POD_CIDR, "-d", HOST_IP,
                  "-m", "conntrack", "--ctstate", "NEW", "-j", "REJECT"], what="sandbox firewall")

    def _cgroup_root(self) -> None:
        for hierarchy in host.cgroup_hierarchies():
            path = hierarchy / CGROUP
            path.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / name).exists() and not (path / name).read_text().strip():
                    (path / name).write_text((hierarchy / name).read_text())

    def _kubeconfig_text(self, creds: pki.Credentials, user: str, server: str) -> str:
        return json.dumps({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT, "cluster": {"server": server, "certificate-authority": str(creds.ca)}}],
            "users": [{"name": user, "user": {"token": creds.tokens[user]}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
            "current-context": CONTEXT,
        }, indent=2)

    def _write_configs(self, creds: pki.Credentials, bin_dir: Path) -> None:
        d = self.dir
        inside = "https://127.0.0.1:6443"
        self.kubeconfig.write_text(self._kubeconfig_text(creds, "admin", f"https://{NODE_IP}:6443"))
        self.kubeconfig.chmod(0o600)
        for name, user in (("controller-manager", "system:kube-controller-manager"),
                           ("scheduler", "system:kube-scheduler"), ("kube-proxy", "system:kube-proxy"),
                           ("kubelet", f"system:node:{NODE}")):
            path = d / f"{name}.kubeconfig"
            path.write_text(self._kubeconfig_text(creds, user, inside))
            path.chmod(0o600)
        (d / "cni").mkdir(exist_ok=True)
        (d / "cni" / "10-sandbox.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0",
            "name": "triton-harness-sandbox",
            "plugins": [{
                "type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                         "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(d / "cni-ipam")},
            }],
        }, indent=2))
        self.containerd_root.mkdir(parents=True, exist_ok=True)
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        runc = f"{cri}.containerd.runtimes.runc"
        (d / "containerd.toml").write_text(f"""version = 2
root = "{self.containerd_root}"
state = "{d / 'containerd-state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"
[{cri}]
  sandbox_image = "{images.PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{runc}]
  runtime_type = "io.containerd.runc.v2"
[{runc}.options]
  SystemdCgroup = false
  Root = "{d / 'runc'}"
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{d / 'cni'}"
""")
        (d / "resolv.conf").write_text("")  # pods get the cluster DNS and nothing from the host
        (d / "kubelet.yaml").write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(creds.ca)}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{CGROUP}",
            "clusterDNS": [NODE_IP],
            "clusterDomain": "cluster.local",
            "resolvConf": str(d / "resolv.conf"),
            "failSwapOn": False,
            "protectKernelDefaults": False,
            "serializeImagePulls": False,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "rotateCertificates": False,
            "syncFrequency": "5s",
            "fileCheckFrequency": "5s",
            "nodeStatusUpdateFrequency": "4s",
        }, indent=2))

    def _start(self, state: dict[str, Any], name: str, cmd: list[str]) -> None:
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        with (logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{NETNS}", "--", *cmd],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=self.dir,
            )
        state["processes"][name] = proc.pid
        self._save(state)
        self.progress(f"started {name} (pid {proc.pid})")

    def _etcd_cmd(self) -> list[str]:
        data = self.dir / "etcd"
        return ["etcd", "--name", NODE, "--data-dir", str(data),
                "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
                "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                "--initial-cluster", f"{NODE}=http://127.0.0.1:2380", "--listen-metrics-urls", "",
                "--log-level", "warn", "--logger", "zap"]

    def _apiserver_cmd(self, bin_dir: Path, creds: pki.Credentials) -> list[str]:
        p = creds.path
        return [str(bin_dir / "kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
                "--bind-address=0.0.0.0", f"--advertise-address={NODE_IP}", "--secure-port=6443",
                "--insecure-port=0", f"--tls-cert-file={p('apiserver.crt')}",
                f"--tls-private-key-file={p('apiserver.key')}", f"--client-ca-file={creds.ca}",
                f"--token-auth-file={p('tokens.csv')}", "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p('sa.pub')}", f"--service-account-signing-key-file={p('sa.key')}",
                f"--kubelet-client-certificate={p('apiserver-kubelet-client.crt')}",
                f"--kubelet-client-key={p('apiserver-kubelet-client.key')}",
                "--kubelet-preferred-address-types=InternalIP", "--allow-privileged=true",
                "--enable-admission-plugins=NodeRestriction", "--anonymous-auth=false", "--profiling=false",
                "--v=1"]

    def _controller_manager_cmd(self, bin_dir: Path, creds: pki.Credentials) -> list[str]:
        kc = self.dir / "controller-manager.kubeconfig"
        return [str(bin_dir / "kube-controller-manager"), f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                "--leader-elect=false", "--use-service-account-credentials=true",
                f"--service-account-private-key-file={creds.path('sa.key')}", f"--root-ca-file={creds.ca}",
                "--bind-address=127.0.0.1", "--port=0", "--profiling=false", "--v=1"]

    def _scheduler_cmd(self, bin_dir: Path) -> list[str]:
        kc = self.dir / "scheduler.kubeconfig"
        return [str(bin_dir / "kube-scheduler"), f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}", "--leader-elect=false", "--bind-address=127.0.0.1",
                "--port=0", "--profiling=false", "--v=1"]

    def _kubelet_cmd(self, bin_dir: Path) -> list[str]:
        d = self.dir
        return [str(bin_dir / "kubelet"), f"--config={d / 'kubelet.yaml'}", f"--kubeconfig={d / 'kubelet.kubeconfig'}",
                "--container-runtime=remote", f"--container-runtime-endpoint=unix://{self.socket}",
                f"--node-ip={NODE_IP}", f"--hostname-override={NODE}", f"--root-dir={d / 'kubelet'}",
                f"--cert-dir={d / 'kubelet-pki'}", f"--pod-infra-container-image={images.PAUSE_IMAGE}", "--v=1"]

    def _proxy_cmd(self, bin_dir: Path) -> list[str]:
        return [str(bin_dir / "kube-proxy"), f"--kubeconfig={self.dir / 'kube-proxy.kubeconfig'}",
                f"--hostname-override={NODE}", f"--cluster-cidr={POD_CIDR}", "--proxy-mode=iptables",
                "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0", "--metrics-bind-address=127.0.0.1:10249",
                "--healthz-bind-address=127.0.0.1:10256", "--v=1"]

    def _ctr(self, *args: str, timeout: float = 300) -> str:
        return host.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", *args], what="ctr", timeout=timeout)

    def _import_images(self, state: dict[str, Any], bin_dir: Path, triton: bool) -> None:
        """Import the pause (and Triton) images unless containerd already has them (its root persists)."""
        try:
            deadline = time.monotonic() + 30
            while not self.socket.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            wanted = [images.pause_image(bin_dir / "pause", self.cache / "images")]
            if triton:
                wanted.append(images.triton_image(self.cache / "images"))
            for image in wanted:
                self.import_image(image)
            state["triton_image"] = wanted[-1].tag if triton else ""
        except Exception as exc:  # noqa: BLE001 - reported by up() on the main thread
            state["import_error"] = str(exc)

    def import_image(self, archive: images.ImageArchive) -> str:
        """Import an image archive into the running sandbox's containerd (once); its tag.

        Older tags of the same local image are removed: containerd's root lives in the cache.
        """
        present = set(self._ctr("images", "ls", "-q").split())
        if archive.tag not in present and f"docker.io/{archive.tag}" not in present:
            self.progress(f"importing image {archive.tag} into containerd")
            self._ctr("images", "import", str(archive.path), timeout=600)
        self._prune_images(archive.tag)
        return archive.tag

    def _prune_images(self, current: str) -> None:
        """Remove older tags of ``current``'s repository, and the CRI's ``sha256:`` references that no
        named image needs any more, so containerd can collect their content and snapshots."""
        refs = {}
        for line in self._ctr("images", "ls").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3:
                refs[fields[0]] = fields[2]
        repository = "docker.io/" + current.split(":")[0] + ":"
        wanted = current if current.startswith("k8s.gcr.io/") else f"docker.io/{current}"
        stale = [ref for ref in refs if ref.startswith(repository) and ref != wanted]
        keep = {digest for ref, digest in refs.items() if not ref.startswith("sha256:") and ref not in stale}
        stale += [ref for ref, digest in refs.items() if ref.startswith("sha256:") and digest not in keep]
        if stale:
            self._ctr("images", "rm", *stale)

    def harness_image(self) -> str:
        """The image for ``harness load --platform kubernetes --load-image``: built here, then imported."""
        return self.import_image(images.harness_image(self.cache / "images"))

    def agent_image(self) -> str:
        """The network block's agent image (``--agent-image``): busybox and nft, built here, then imported."""
        return self.import_image(images.agent_image(self.cache / "images"))

    # -- API helpers -------------------------------------------------------------------------------------
    def _get(self, path: str, raw: bool = False, timeout: float = 3) -> Any:
        state = self._state()
        token = state.get("admin_token")
        if not token:
            return None
        context = ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))
        request = urllib.request.Request(f"https://{NODE_IP}:6443{path}", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                body = response.read()
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return body.decode() if raw else json.loads(body)

    def _node_ready(self) -> bool:
        node = self._get(f"/api/v1/nodes/{NODE}")
        conditions = ((node or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _default_service_account(self) -> bool:
        sa = self._get("/api/v1/namespaces/default/serviceaccounts/default")
        return bool(sa and sa.get("secrets"))

    def _wait(self, predicate: Callable[[], Any], timeout_s: float, what: str, state: dict[str, Any]) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            dead = [n for n, pid in state["processes"].items() if not _alive(pid)]
            if dead:
                raise PlatformError(f"sandbox: {', '.join(dead)} exited while waiting for {what}; "
                                    f"{self._log_tail(dead[0])}")
            time.sleep(0.2)
        raise PlatformError(f"sandbox: timed out after {timeout_s:g}s waiting for {what} "
                            f"(logs in {self.dir / 'logs'}); remove it with: harness sandbox down")

    def _log_tail(self, name: str) -> str:
        try:
            lines = (self.dir / "logs" / f"{name}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return f"last lines of its log ({self.dir / 'logs' / name}.log):\n" + "\n".join(lines[-15:])

    # -- status ----------------------------------------------------------------------------------------------
    def status(self) -> SandboxStatus:
        state = self._state()
        processes = {name: pid for name, pid in (state.get("processes") or {}).items()}
        problems = [f"{name} (pid {pid}) is not running" for name, pid in processes.items() if not _alive(pid)]
        up = bool(state.get("up"))
        ready = up and not problems and self._node_ready()
        if up and not ready and not problems:
            problems.append(f"node {NODE} is not Ready")
        return SandboxStatus(
            up=up,
            ready=ready,
            kubeconfig=str(self.kubeconfig) if up else "",
            context=CONTEXT if up else "",
            triton_image=str(state.get("triton_image", "")),
            processes={n: (pid if _alive(pid) else None) for n, pid in processes.items()},
            problems=tuple(problems),
            started_s=float(state.get("up_seconds", 0.0)),
        )

    # -- down ------------------------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove everything ``up`` made; what was removed, for the user. Safe to run twice."""
        if os.geteuid() != 0:
            raise EnvironmentProblem("harness sandbox down needs root (run it with sudo)")
        state = self._state()
        done: list[str] = []
        procs: dict[str, int] = state.get("processes") or {}
        # The kubelet first, so nothing restarts containers; then the containers; then the rest.
        for name in ("kubelet", "kube-proxy", "dns", "kube-controller-manager", "kube-scheduler"):
            if _alive(procs.get(name)):
                host.kill_pids([int(procs[name])], timeout_s=5)
                done.append(f"{name} (pid {procs[name]})")
        if _alive(procs.get("containerd")):
            done += self._remove_containers()
        containers = host.pids_in_cgroup(CGROUP)
        if containers:
            host.kill_pids(containers, timeout_s=5)
            done.append(f"{len(containers)} container processes")
        for name in ("kube-apiserver", "containerd", "etcd"):
            if _alive(procs.get(name)):
                host.kill_pids([int(procs[name])], timeout_s=10)
                done.append(f"{name} (pid {procs[name]})")
        inode = self._netns_inode()
        for _ in range(3):  # whatever else runs in the namespace (shims) or in our cgroups
            strays = set(host.pids_in_cgroup(CGROUP))
            if inode is not None:
                strays |= set(host.pids_in_netns(inode))
            strays |= set(self._shims())
            if not strays:
                break
            host.kill_pids(strays, timeout_s=5)
            done.append(f"{len(strays)} leftover processes")
        unmounted = host.mounts_under([self.dir, self.containerd_root])
        for point in unmounted:
            host.run(["umount", "-l", point], check=False)
        if unmounted:
            done.append(f"{len(unmounted)} mounts")
        mounts = host.mounts_under([self.dir, self.containerd_root])
        if mounts:
            done.append(f"{len(mounts)} mounts still present: {mounts[:3]}")
        done += self._remove_cgroups()
        if host.run(["ip", "link", "show", HOST_VETH], check=False):
            host.run(["ip", "link", "del", HOST_VETH], check=False)
            done.append(f"veth {HOST_VETH} and its routes")
        if self._netns_exists():
            host.run(["ip", "netns", "del", NETNS], check=False)
            done.append(f"network namespace {NETNS}")
        restored = host.write_sysctls(state.get("sysctls") or {})
        if restored:
            done.append("kernel settings " + ", ".join(restored))
        for directory, before in (state.get("fixed_dirs") or {}).items():
            path = Path(directory)
            if not path.is_dir():
                continue
            for entry in path.iterdir():
                if before is None or entry.name not in before:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
            if before is None:
                with contextlib.suppress(OSError):
                    path.rmdir()
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
            done.append(f"directory {self.dir}")
        return done

    def _netns_inode(self) -> int | None:
        try:
            return os.stat(f"/run/netns/{NETNS}").st_ino
        except OSError:
            return None

    def _shims(self) -> list[int]:
        needle = str(self.socket)
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if "containerd-shim" in cmd and needle in cmd:
                    found.append(int(entry.name))
        return found

    def _remove_containers(self) -> list[str]:
        """Delete the pods' containers from containerd, so its persistent root keeps only images."""
        try:
            tasks = self._ctr("tasks", "ls", "-q", timeout=20).split()
            for task in tasks:
                host.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL",
                          task], check=False, timeout=10)
            time.sleep(0.3 if tasks else 0)
            for task in tasks:
                host.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", "tasks", "rm", "-f", task],
                         check=False, timeout=10)
            containers = self._ctr("containers", "ls", "-q", timeout=20).split()
            if containers:
                host.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", "containers", "rm", *containers],
                         check=False, timeout=60)
        except (EnvironmentProblem, subprocess.TimeoutExpired):
            return []
        return [f"{len(containers)} containers"] if containers else []

    def _remove_cgroups(self) -> list[str]:
        removed = 0
        for hierarchy in host.cgroup_hierarchies():
            root = hierarchy / CGROUP
            if not root.is_dir():
                continue
            for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda t: -t[0].count("/")):
                for _ in range(20):
                    try:
                        os.rmdir(dirpath)
                        removed += 1
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)
        return [f"{removed} cgroups"] if removed else []


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True
