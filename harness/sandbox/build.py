"""Build the Kubernetes 1.20 binaries the sandbox runs, from Debian bookworm's source package.

No package registry ships a kube-apiserver, but Debian's ``kubernetes`` source package carries the whole
tree with ``vendor/``, so a machine with only Debian mirrors can build one. The build takes about eleven
minutes of two cores, so it lands in a cache outside any checkout and runs once per machine; everything it
needs from Debian is installed first. The apt source is fetched through a private apt configuration so the
system's ``sources.list`` is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.errors import EnvironmentProblem

__all__ = [
    "BINARIES",
    "DEBIAN_PACKAGES",
    "K8S_VERSION",
    "build_binaries",
    "cache_dir",
    "ensure_binaries",
    "ensure_debian_packages",
    "missing_binaries",
]

K8S_VERSION = "1.20.2"
# Bumped whenever the build changes what it produces, so a cache from an older recipe is not reused.
BUILD_REVISION = 2
#: Kubernetes 1.20 vendors reflect2 1.0.1, whose map iteration faults under Go >= 1.18 (the API server
#: died with "unexpected fault address" in mapiterinit minutes after start); Debian ships 1.0.2, the fix.
_REFLECT2 = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
SOURCE_PACKAGE = "kubernetes"
SOURCE_VERSION = "1.20.5+really1.20.2-1.1+deb12u1"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "pause")
#: Debian packages the build and the running sandbox need, keyed by a program each one installs.
DEBIAN_PACKAGES = {
    "go": "golang-go",
    "dpkg-source": "dpkg-dev",
    "make": "make",
    "rsync": "rsync",
    "etcd": "etcd-server",
    "containerd": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "openssl": "openssl",
    "/bin/busybox": "busybox-static",
    "/usr/share/gocode/src/github.com/modern-go/reflect2/reflect2.go": "golang-github-modern-go-reflect2-dev",
}

_GO_ROOT = "/usr/lib/go"

# The pause container: PID 1 of every pod sandbox. It must reap orphans and exit on SIGINT/SIGTERM, the
# job of Kubernetes' build/pause/linux/pause.c; written in Go so the build needs no static C library.
_PAUSE_GO = """package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
"""

Progress = Callable[[str], None]


def _stderr_progress(line: str) -> None:
    print(f"[sandbox build] {line}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Where the binaries live: ``$HARNESS_K8S_CACHE``, else a machine-wide cache for root, else XDG."""
    explicit = os.environ.get("HARNESS_K8S_CACHE")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/var/cache/triton-harness") / f"k8s-{K8S_VERSION}-r{BUILD_REVISION}"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "triton-harness" / f"k8s-{K8S_VERSION}-r{BUILD_REVISION}"


def missing_binaries(bin_dir: Path | None = None) -> list[str]:
    where = bin_dir or cache_dir() / "bin"
    return [name for name in BINARIES if not os.access(where / name, os.X_OK)]


def _missing_packages() -> list[str]:
    missing = []
    for program, package in DEBIAN_PACKAGES.items():
        found = Path(program).exists() if program.startswith("/") else shutil.which(program)
        if not found and not (program == "go" and Path(_GO_ROOT, "bin", "go").exists()):
            missing.append(package)
    return missing


def ensure_debian_packages(progress: Progress = _stderr_progress) -> None:
    """Install the Debian packages the sandbox needs (root only); otherwise say which ones are missing."""
    missing = _missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            f"the Kubernetes sandbox needs Debian packages {' '.join(missing)}; "
            f"install them with: sudo apt-get install -y --no-install-recommends {' '.join(missing)}"
        )
    progress(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], env=env, what="apt-get update")
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env,
         what=f"apt-get install {' '.join(missing)}")


def _run(cmd: Sequence[str], *, what: str, cwd: Path | None = None, env: dict[str, str] | None = None,
         log: Path | None = None) -> None:
    """Run a build step; on failure raise with the tail of its output and where the full log is."""
    if log is None:
        proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, check=False)
        output = proc.stdout + proc.stderr
    else:
        with log.open("a") as out:
            out.write(f"\n$ {' '.join(cmd)}\n")
            out.flush()
            code = subprocess.run(list(cmd), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  check=False).returncode
        output = log.read_text(errors="replace")
        proc = subprocess.CompletedProcess(list(cmd), code, output, "")
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-25:])
        where = f" (full log: {log})" if log else ""
        raise EnvironmentProblem(f"{what} failed with exit code {proc.returncode}{where}:\n{tail}")


def _fetch_source(work: Path, log: Path) -> Path:
    """Download and unpack the Debian source package with a throwaway apt configuration (a deb-src line)."""
    apt = work / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "parts"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(
        "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://deb.debian.org/debian bookworm main\n"
    )
    (apt / "apt.conf").write_text(
        f'Dir::Etc::SourceList "{apt}/sources.list";\n'
        f'Dir::Etc::SourceParts "{apt}/parts";\n'
        f'Dir::State::Lists "{apt}/lists";\n'
        f'Dir::Cache "{apt}/cache";\n'
        'APT::Sandbox::User "root";\n'
    )
    env = {**os.environ, "APT_CONFIG": str(apt / "apt.conf"), "DEBIAN_FRONTEND": "noninteractive"}
    download = work / "download"
    download.mkdir(exist_ok=True)
    _run(["apt-get", "update", "-qq"], env=env, what="apt-get update (deb-src)", log=log)
    _run(["apt-get", "source", "--download-only", "-qq", f"{SOURCE_PACKAGE}={SOURCE_VERSION}"], cwd=download,
         env=env, what=f"apt-get source {SOURCE_PACKAGE}", log=log)
    dsc = next(download.glob("*.dsc"), None)
    if dsc is None:
        raise EnvironmentProblem(f"apt-get source left no .dsc file in {download} (log: {log})")
    tree = work / "src"
    shutil.rmtree(tree, ignore_errors=True)
    _run(["dpkg-source", "--no-check", "-x", str(dsc), str(tree)], cwd=download, what="dpkg-source -x", log=log)
    return tree


def _patch_vendor(tree: Path) -> None:
    """Replace the vendored reflect2 with Debian's 1.0.2 (same API, Go 1.18+ map iteration fixed)."""
    vendored = tree / "vendor" / "github.com" / "modern-go" / "reflect2"
    for old in vendored.glob("*"):
        if old.suffix in (".go", ".s"):
            old.unlink()
    for new in _REFLECT2.iterdir():
        if new.suffix in (".go", ".s") and not new.name.endswith("_test.go"):
            shutil.copy2(new, vendored / new.name)


def _go_env(work: Path) -> dict[str, str]:
    path = f"{_GO_ROOT}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return {
        **os.environ,
        "PATH": path,
        "CGO_ENABLED": "0",
        "GOPATH": str(work / "gopath"),
        "GOCACHE": str(work / "gocache"),
        "HOME": str(work),
        "KUBE_GIT_VERSION": f"v{K8S_VERSION}",
        "KUBE_GIT_TREE_STATE": "clean",
        "KUBE_GIT_MAJOR": K8S_VERSION.split(".")[0],
        "KUBE_GIT_MINOR": K8S_VERSION.split(".")[1],
    }


def build_binaries(cache: Path | None = None, *, niceness: int = 10, progress: Progress = _stderr_progress,
                   keep_source: bool = False) -> Path:
    """Fetch, build and install the binaries into ``<cache>/bin``; returns that directory.

    Runs at ``niceness`` because the build saturates every core for minutes on machines that are shared.
    """
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / "build"
    work.mkdir(exist_ok=True)
    log = work / "build.log"
    log.write_text("")
    started = time.monotonic()
    nice = ["nice", "-n", str(niceness)]

    ensure_debian_packages(progress)
    progress(f"fetching Debian source {SOURCE_PACKAGE} {SOURCE_VERSION} (log: {log})")
    tree = _fetch_source(work, log)
    _patch_vendor(tree)
    env = _go_env(work)
    progress("compiling kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy "
             "(about 11 minutes on 2 cores)")
    targets = " ".join(f"cmd/{name}" for name in BINARIES if name != "pause")
    _run([*nice, "make", f"WHAT={targets}"], cwd=tree, env=env, what="make (Kubernetes binaries)", log=log)
    out = tree / "_output" / "bin"
    if not out.is_dir():
        out = tree / "_output" / "local" / "bin" / "linux" / "amd64"
    staging = cache / "bin.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in BINARIES:
        if name != "pause":
            shutil.copy2(out / name, staging / name)
    progress("compiling the pause container")
    pause_dir = work / "pause"
    pause_dir.mkdir(exist_ok=True)
    (pause_dir / "main.go").write_text(_PAUSE_GO)
    (pause_dir / "go.mod").write_text("module pause\n\ngo 1.19\n")
    _run([*nice, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(staging / "pause"), "."], cwd=pause_dir,
         env={**env, "GOFLAGS": "-mod=mod"}, what="go build pause", log=log)
    final = cache / "bin"
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    if not keep_source:
        shutil.rmtree(tree, ignore_errors=True)
        shutil.rmtree(work / "gocache", ignore_errors=True)
        shutil.rmtree(work / "gopath", ignore_errors=True)
    progress(f"built {len(BINARIES)} binaries into {final} in {time.monotonic() - started:.0f} s")
    return final


def ensure_binaries(progress: Progress = _stderr_progress) -> Path:
    """The cache's ``bin`` directory, built first when anything is missing (root installs packages)."""
    ensure_debian_packages(progress)
    bin_dir = cache_dir() / "bin"
    missing = missing_binaries(bin_dir)
    if missing:
        progress(f"Kubernetes {K8S_VERSION} binaries missing from {bin_dir} ({', '.join(missing)}): building them once")
        build_binaries(progress=progress)
    return bin_dir


def main() -> int:
    """``python -m harness.sandbox.build``: build the cache now (CI warms it before the tests)."""
    try:
        print(ensure_binaries())
    except EnvironmentProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
