"""manifest.json (the evidence bundle's hashes and provenance) and ``verify``.

Every file under the run directory except manifest.json itself is hashed, so a reviewer can check
later that nothing was changed, added or removed since the report was built.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import __version__

__all__ = ["MANIFEST", "VerifyResult", "build_manifest", "git_revision", "sha256_file", "verify_run"]

MANIFEST = "manifest.json"
_PACKAGES = ("numpy", "pandas", "pyarrow", "matplotlib", "locust", "tritonclient", "nvidia-pytriton",
             "chaostoolkit", "chaostoolkit-lib", "prometheus-api-client", "kubernetes", "pyyaml")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(run_dir: Path) -> dict[str, Path]:
    return {p.relative_to(run_dir).as_posix(): p for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.relative_to(run_dir).as_posix() != MANIFEST}


def git_revision() -> str:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return rev + ("-dirty" if dirty else "")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _triton_version(run: dict[str, Any]) -> dict[str, str | None]:
    """The platform's Triton when the run recorded it or it still answers, else the bundled wheel's."""
    recorded = run.get("triton_version") or (run.get("settings") or {}).get("triton_version")
    if recorded:
        return {"version": str(recorded), "source": "run.json"}
    endpoints = run.get("endpoints") or (run.get("settings") or {}).get("endpoints") or {}
    http = endpoints.get("http") if isinstance(endpoints, dict) else None
    if http:
        try:
            import requests

            meta = requests.get(f"{http}/v2", timeout=0.5).json()
            return {"version": str(meta.get("version")), "source": f"server metadata at {http}/v2"}
        except (requests.RequestException, ValueError, AttributeError):
            pass  # the platform is usually down when a report is rebuilt
    wheel = _version("nvidia-pytriton")
    if not wheel:
        return {"version": None, "source": "unknown: not recorded, server gone, no nvidia-pytriton"}
    return {"version": f"bundled with nvidia-pytriton {wheel}",
            "source": "the nvidia-pytriton package (the run did not record its server's version)"}


def _gpu() -> list[str] | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        # each GPU by UUID, model and total memory (and the driver), as run.json's per-replica "gpus" name them
        query = ["nvidia-smi", "--query-gpu=uuid,name,memory.total,driver_version", "--format=csv,noheader"]
        out = subprocess.run(query,
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in out.splitlines() if line.strip()]


def build_manifest(
    run_dir: Path, run: dict[str, Any], notes: list[str], settings: dict[str, Any]
) -> dict[str, Any]:
    files = {rel: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for rel, p in _files(run_dir).items()}
    return {
        "schema_version": "1.0",
        "run_id": run.get("run_id") or run_dir.name,
        "created_at": datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "harness": {"version": __version__, "git_revision": git_revision()},
        "triton": _triton_version(run),
        "python": {"version": sys.version.split()[0], "implementation": platform.python_implementation()},
        "platform": {"system": platform.platform(), "machine": platform.machine()},
        "packages": {name: _version(name) for name in _PACKAGES},
        "gpu": _gpu(),
        "run_settings": run.get("settings"),
        "analysis_settings": settings,
        "notes": notes,
        "files": files,
    }


@dataclass
class VerifyResult:
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not (self.changed or self.added or self.removed)

    def describe(self) -> str:
        if self.ok:
            return f"OK: {self.checked} files match manifest.json"
        parts = [f"{label}: {', '.join(items)}" for label, items in
                 (("changed", self.changed), ("added", self.added), ("removed", self.removed)) if items]
        return "MISMATCH: " + "; ".join(parts)


def verify_run(run_dir: Path) -> VerifyResult:
    from harness.errors import ConfigError

    path = run_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        recorded: dict[str, Any] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; build it with `harness report {run_dir}`") from exc
    present = _files(run_dir)
    result = VerifyResult(checked=len(recorded))
    for rel, entry in recorded.items():
        if rel not in present:
            result.removed.append(rel)
        elif sha256_file(present[rel]) != entry.get("sha256"):
            result.changed.append(rel)
    result.added = sorted(set(present) - set(recorded))
    return result
