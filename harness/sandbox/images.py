"""Container images made on this machine from what is installed: no registry is ever contacted.

Two images, each written as a docker-archive tarball and imported with ``ctr images import``:

- the pause image (the sandbox's own static ``pause`` binary): PID 1 of every pod sandbox;
- a Triton image: the ``tritonserver`` of the nvidia-pytriton wheel with the libraries it links, its
  python backend and the stub for this Python, Debian's Python with numpy<2 (DESIGN.md: outputs come
  back empty with numpy 2), and busybox for the shell tools the manifests and the harness's exec
  scripts use (``sh``, ``cp``, ``kill``, ``tar``). Files keep their host paths, so every RPATH and the
  interpreter's compiled-in prefix stay right. It plays ``nvcr.io/nvidia/tritonserver`` on a CPU
  machine (pass it with ``--image``); real clusters keep the NGC image.

Image tags carry a hash of their inputs, so a changed wheel makes a new tag and a stale image is never
used by mistake.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import EnvironmentProblem

__all__ = ["PAUSE_IMAGE", "ImageArchive", "agent_image", "harness_image", "pause_image", "triton_image"]

PAUSE_IMAGE = "k8s.gcr.io/pause:3.2"  # the kubelet 1.20 default, so nothing ever tries to pull it
_BUSYBOX = Path("/bin/busybox")
_BASH = Path("/usr/bin/bash")
# Debian's busybox has no nohup applet; the harness's exec scripts start hogs with it.
_NOHUP = b"#!/bin/sh\ntrap '' HUP\nexec \"$@\"\n"
_EXECUTABLES = ("/pause", "/bin/locust", "/bin/nohup")  # files written from bytes that must be executable
_RECIPE = 3  # bumped when the image layout changes: part of every tag
_BUSYBOX_TOOLS = ("sh", "cp", "ls", "cat", "kill", "sleep", "tar", "mkdir", "rm", "mv", "ln", "env", "echo",
                  "ps", "true", "false", "head", "tail", "grep", "sed", "wc", "date", "id", "test")
_STDLIB_SKIP = ("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
                "dist-packages", "site-packages", "__phello__")


@dataclass(frozen=True)
class ImageArchive:
    tag: str
    path: Path


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type, info.linkname = tarfile.SYMTYPE, target
    tar.addfile(info)


def _dirs_of(paths: Iterable[str]) -> list[str]:
    dirs: set[str] = set()
    for p in paths:
        parent = Path(p).parent
        while str(parent) not in ("/", "."):
            dirs.add(str(parent))
            parent = parent.parent
    return sorted(dirs)


def _write_archive(out: Path, tag: str, files: dict[str, Path | bytes], links: dict[str, str],
                   config: dict[str, object]) -> ImageArchive:
    """A docker-archive tarball with one layer: ``files`` (image path -> host file or content)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    layer_path = out.with_suffix(".layer.tar")
    with tarfile.open(layer_path, "w", format=tarfile.GNU_FORMAT) as layer:
        for d in _dirs_of([*files, *links]):
            info = tarfile.TarInfo(d.lstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            layer.addfile(info)
        for d in ("tmp",):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            layer.addfile(info)
        for name, source in sorted(files.items()):
            if isinstance(source, bytes):
                _add_bytes(layer, name, source, 0o755 if name.endswith(_EXECUTABLES) else 0o644)
            else:
                info = layer.gettarinfo(str(source), arcname=name.lstrip("/"))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                if info.isfile():
                    with source.open("rb") as fh:
                        layer.addfile(info, fh)
                else:
                    layer.addfile(info)
        for name, target in sorted(links.items()):
            _add_link(layer, name, target)
    digest = hashlib.sha256()
    with layer_path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    image_config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest.hexdigest()}"]},
        "history": [{"created_by": "harness.sandbox.images (built locally, no registry)"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(image_config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
    _prune_archives(out)
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as archive:
        _add_bytes(archive, config_name, image_config)
        _add_bytes(archive, "manifest.json", manifest)
        archive.add(str(layer_path), arcname="layer.tar")
    layer_path.unlink()
    tmp.replace(out)
    return ImageArchive(tag, out)


def _prune_archives(current: Path) -> None:
    """Delete archives of an older recipe or older inputs, and what an interrupted build left."""
    prefix = current.name.split("-")[0]
    for stale in [*current.parent.glob(f"{prefix}-*.tar"), *current.parent.glob(f"{prefix}-*.tmp")]:
        if stale != current and stale.name.count(".") == 1:  # not a layer being written
            stale.unlink(missing_ok=True)


def _reuse(directory: Path, repo: str, prefix: str, key: str) -> tuple[str, Path, ImageArchive | None]:
    """An image's tag and archive path, named by the hash of its inputs, and the archive when it is built
    already (older ones of the same image are pruned then): every image is built once per set of inputs."""
    tag, out = f"triton-harness/{repo}:local-{key}", directory / f"{prefix}-{key}.tar"
    if not out.exists():
        return tag, out, None
    _prune_archives(out)
    return tag, out, ImageArchive(tag, out)


def pause_image(pause_binary: Path, directory: Path) -> ImageArchive:
    out = directory / "pause.tar"
    if not out.exists() or out.stat().st_mtime < pause_binary.stat().st_mtime:
        _write_archive(out, PAUSE_IMAGE, {"/pause": pause_binary.read_bytes()}, {},
                       {"Entrypoint": ["/pause"], "WorkingDir": "/"})
    return ImageArchive(PAUSE_IMAGE, out)


def _ldd(paths: Iterable[Path], library_path: str) -> set[Path]:
    """Every shared library these ELF files load (resolved on the host), found with ``ldd``."""
    found: set[Path] = set()
    env = {**os.environ, "LD_LIBRARY_PATH": library_path}
    for path in paths:
        proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env, check=False)
        for line in proc.stdout.splitlines():
            match = re.search(r"(/\S+) \(0x", line)
            if match:
                found.add(Path(match.group(1)))
            if "not found" in line and "libcuda" not in line and "libnvidia" not in line:
                raise EnvironmentProblem(f"building the Triton image: {path} needs {line.strip()}")
    return found


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def _with_links(path: Path, files: dict[str, Path | bytes], links: dict[str, str]) -> None:
    """Add a library under the name it was found by, plus the real file a symlink points at."""
    real = path.resolve()
    files[str(real)] = real
    if path != real:
        links[str(path)] = str(real)


def _site_packages() -> Path:
    import numpy

    return Path(numpy.__file__).resolve().parent.parent


def _python_version(python: Path) -> str:
    version = re.sub(r"^python", "", python.name)
    if version != f"{sys.version_info.major}.{sys.version_info.minor}":
        raise EnvironmentProblem(
            f"the Triton image uses Debian's Python ({python}) with this environment's numpy and python "
            f"backend stub, which are for Python {sys.version_info.major}.{sys.version_info.minor}; "
            f"create the harness's environment with {python} (make setup PYTHON={python})"
        )
    if not _BUSYBOX.exists():
        raise EnvironmentProblem("the local images need busybox: apt-get install busybox-static")
    return version


class _Tree:
    """The files and symlinks of one image layer, by their path inside the image."""

    def __init__(self) -> None:
        self.files: dict[str, Path | bytes] = {}
        self.links: dict[str, str] = {}

    def add(self, source: Path, target: str, skip: tuple[str, ...] = ()) -> None:
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            if (rel.parts and rel.parts[0] in skip) or ("__pycache__" in rel.parts and "python3" not in target):
                continue
            if path.is_symlink():
                self.links[f"{target}/{rel}"] = os.readlink(path)
            elif path.is_file():
                self.files[f"{target}/{rel}"] = path

    def base(self, python: Path, version: str) -> None:
        """Debian's Python (interpreter and standard library) and busybox's shell tools."""
        self.add(Path(f"/usr/lib/python{version}"), f"/usr/lib/python{version}", skip=_STDLIB_SKIP)
        self.files[str(python)] = python
        self.links["/usr/bin/python3"] = python.name
        self.links["/usr/bin/python"] = python.name
        self.files["/bin/busybox"] = _BUSYBOX
        for tool in _BUSYBOX_TOOLS:
            self.links[f"/bin/{tool}"] = "busybox"
        self.files["/bin/nohup"] = _NOHUP
        self.files["/etc/passwd"] = b"root:x:0:0:root:/root:/bin/sh\n"
        self.files["/etc/group"] = b"root:x:0:\n"
        self.files["/etc/nsswitch.conf"] = b"hosts: files dns\n"

    def libraries(self, library_path: str, bundled: tuple[str, ...]) -> None:
        """Add every shared library the ELF files load, except those already bundled (by prefix)."""
        elves = [src for src in self.files.values() if isinstance(src, Path) and _is_elf(src)]
        for lib in _ldd(elves, library_path):
            if not str(lib).startswith(bundled):
                _with_links(lib, self.files, self.links)


def _dist_packages(version: str) -> str:
    """Where Debian's Python looks for locally installed packages. The python backend stub embeds the
    interpreter and ignores ``PYTHONPATH``; this directory is on every Debian Python's path."""
    return f"/usr/local/lib/python{version}/dist-packages"


def _inputs_key(paths: Iterable[Path]) -> str:
    text = f"recipe {_RECIPE}\n" + "\n".join(f"{p}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in paths)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


#: Packages of the harness's environment that the load pods never import (tests, linters, reports).
_LOAD_SKIP = ("pytriton", "nvidia_pytriton.libs", "mypy", "mypyc", "hypothesis", "_pytest", "pytest", "ruff",
              "pip", "setuptools", "kubernetes_validate", "matplotlib", "PIL", "fontTools", "playwright")


def harness_image(directory: Path, python: Path = Path("/usr/bin/python3")) -> ImageArchive:
    """The image of ``harness load --platform kubernetes``'s pods: the harness with Locust and its clients.

    Debian's Python plus this environment's site-packages (less test and report tooling) and the
    harness's own source, so the pods run exactly the load code the harness runs here.
    """
    import harness

    python = python.resolve()
    version = _python_version(python)
    site = _site_packages()
    source = Path(harness.__file__).resolve().parent
    sources = [p for p in source.rglob("*.py") if "__pycache__" not in p.parts]
    key = _inputs_key([python, _BUSYBOX, *sorted(site.iterdir()), *sources])
    tag, out, built = _reuse(directory, "harness", "harness", key)
    if built is not None:
        return built
    tree = _Tree()
    tree.base(python, version)
    for entry in sorted(site.iterdir()):
        if entry.name.startswith(("__editable__", "_hypothesis", "distutils-precedence")) or "mypyc" in entry.name:
            continue
        if entry.name.split("-")[0] in _LOAD_SKIP or entry.name in _LOAD_SKIP:
            continue
        if entry.is_dir():
            tree.add(entry, f"{_dist_packages(version)}/{entry.name}")
        elif entry.is_file():
            tree.files[f"{_dist_packages(version)}/{entry.name}"] = entry
    for path in sources:
        tree.files[f"{_dist_packages(version)}/harness/{path.relative_to(source)}"] = path
    for data in source.rglob("*"):
        if data.is_file() and data.suffix not in (".py", ".pyc") and "__pycache__" not in data.parts:
            tree.files[f"{_dist_packages(version)}/harness/{data.relative_to(source)}"] = data
    tree.files["/usr/local/bin/locust"] = b'#!/bin/sh\nexec python3 -m locust "$@"\n'
    libs = ":".join(str(p) for p in site.glob("*.libs"))
    tree.libraries(libs, (str(site),))
    env = ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"]
    return _write_archive(out, tag, tree.files, tree.links, {"Env": env, "Cmd": ["sh"], "WorkingDir": "/"})


_NFT = Path("/usr/sbin/nft")
_AGENT_TOOLS = ("sh", "nsenter", "ip", "grep", "readlink", "tr", "sleep", "cat", "echo", "printf", "ls")


def agent_image(directory: Path) -> ImageArchive:
    """The network block's agent (harness.platforms.kubernetes.netagent): busybox's shell, nsenter and ip, and
    Debian's ``nft`` with the libraries it loads. Nothing else: it is the one privileged pod the harness runs."""
    if not _NFT.exists():
        raise EnvironmentProblem("the agent image needs nftables here: apt-get install nftables")
    if not _BUSYBOX.exists():
        raise EnvironmentProblem("the local images need busybox: apt-get install busybox-static")
    key = _inputs_key([_BUSYBOX, _NFT])
    tag, out, built = _reuse(directory, "netagent", "netagent", key)
    if built is not None:
        return built
    tree = _Tree()
    tree.files["/bin/busybox"] = _BUSYBOX
    for tool in _AGENT_TOOLS:
        tree.links[f"/bin/{tool}"] = "busybox"
    tree.files[str(_NFT)] = _NFT
    tree.files["/etc/passwd"] = b"root:x:0:0:root:/root:/bin/sh\n"
    tree.files["/etc/group"] = b"root:x:0:\n"
    tree.libraries("", ())
    env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    return _write_archive(out, tag, tree.files, tree.links, {"Env": env, "Cmd": ["sh"], "WorkingDir": "/"})


def triton_image(directory: Path, python: Path = Path("/usr/bin/python3")) -> ImageArchive:
    """Build (or reuse) the local Triton image; its tag names a hash of what went in."""
    from harness.triton.runtime import find_triton

    install = find_triton()
    python = python.resolve()
    version = _python_version(python)
    site = _site_packages()
    triton_root = install.server.parent.parent
    stdlib = Path(f"/usr/lib/python{version}")
    inputs = [install.server, install.stub, python, _BUSYBOX, _BASH, site / "numpy" / "version.py"]
    key = hashlib.sha256(_inputs_key(inputs).encode())
    tag, out, built = _reuse(directory, "tritonserver", "triton", key.hexdigest()[:12])
    if built is not None:
        return built

    files: dict[str, Path | bytes] = {}
    links: dict[str, str] = {}

    def tree(source: Path, target: str, skip: tuple[str, ...] = ()) -> None:
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            if rel.parts and rel.parts[0] in skip:
                continue
            if path.is_symlink():
                links[f"{target}/{rel}"] = os.readlink(path)
            elif path.is_file():
                files[f"{target}/{rel}"] = path

    tree(triton_root, "/opt/tritonserver", skip=("python_backend_stubs",))
    files["/opt/tritonserver/backends/python/triton_python_backend_stub"] = install.stub
    tree(install.libs, "/opt/nvidia_pytriton.libs")
    for package in ("numpy", "numpy.libs"):
        tree(site / package, f"{_dist_packages(version)}/{package}")
    tree(stdlib, str(stdlib), skip=_STDLIB_SKIP)
    files[str(python)] = python
    links["/usr/bin/python3"] = python.name
    links["/usr/bin/python"] = python.name
    files["/bin/busybox"] = _BUSYBOX
    for tool in _BUSYBOX_TOOLS:
        links[f"/bin/{tool}"] = "busybox"
    files["/bin/nohup"] = _NOHUP
    files["/bin/bash"] = _BASH  # the python backend starts its stub with ``bash -c "exec stub ..."``
    elves = [Path(str(src)) for src in files.values() if isinstance(src, Path) and _is_elf(src)]
    library_path = f"{install.libs}:{triton_root}/backends/python:{site}/numpy.libs"
    for lib in _ldd(elves, library_path):
        if str(lib).startswith((str(install.libs), str(triton_root), str(site))):
            continue
        _with_links(lib, files, links)
    files["/etc/passwd"] = b"root:x:0:0:root:/root:/bin/sh\n"
    files["/etc/group"] = b"root:x:0:\n"
    files["/etc/nsswitch.conf"] = b"hosts: files dns\n"
    env = [
        "PATH=/opt/tritonserver/bin:/usr/local/bin:/usr/bin:/bin",
        "LD_LIBRARY_PATH=/opt/nvidia_pytriton.libs",
        "PYTHONDONTWRITEBYTECODE=1",
    ]
    return _write_archive(out, tag, files, links, {"Env": env, "Cmd": ["tritonserver"], "WorkingDir": "/"})
