"""Find and prepare the ``tritonserver`` binary shipped inside the ``nvidia-pytriton`` wheel.

Facts from DESIGN.md that this module encodes: the python backend stub must match the running Python
and be copied into ``backends/python/``; the wheel's ``nvidia_pytriton.libs`` must be on
``LD_LIBRARY_PATH``; the environment's ``bin/`` must come first on ``PATH`` so the stub finds this
environment's numpy (which must be < 2).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import EnvironmentProblem

__all__ = ["TritonInstall", "find_triton", "has_gpu"]


@dataclass(frozen=True)
class TritonInstall:
    server: Path
    libs: Path
    python_backend: Path
    stub: Path

    def prepare_backends(self, directory: Path) -> Path:
        """Lay out a backend directory with the python backend and the stub for this Python."""
        target = directory / "python"
        target.mkdir(parents=True, exist_ok=True)
        for src in (*self.python_backend.glob("*.so"), *self.python_backend.glob("*.py"), self.stub):
            dst = target / src.name
            if not dst.exists() or dst.stat().st_size != src.stat().st_size:
                shutil.copy2(src, dst)
        return directory

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        bindir = str(Path(sys.prefix) / "bin")
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
        libs = [str(self.libs)]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        env.update(extra or {})
        return env


def find_triton() -> TritonInstall:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem(
            "the tritonserver binary was not found: the nvidia-pytriton package is not installed in this "
            "environment; run 'make setup' (or pip install nvidia-pytriton)"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    site = root.parent.parent
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        server=root / "bin" / "tritonserver",
        libs=site / "nvidia_pytriton.libs",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
    )
    for what, path in (("tritonserver", install.server), ("its libraries", install.libs),
                       (f"the python backend stub for Python {version}", install.stub)):
        if not path.exists():
            raise EnvironmentProblem(
                f"{what} not found at {path}; nvidia-pytriton supports Python 3.8-3.13 on x86-64 Linux"
            )
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise EnvironmentProblem(
            f"numpy {numpy.__version__} is installed but Triton's python backend needs numpy<2 "
            "(outputs come back empty otherwise); run: pip install 'numpy<2'"
        )
    return install


def has_gpu() -> bool:
    """Whether an NVIDIA GPU is visible; the reference model then runs its instances on it."""
    return Path("/dev/nvidia0").exists() and shutil.which("nvidia-smi") is not None
