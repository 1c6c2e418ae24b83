"""What a kubelet does for exec, played by a host process in the pod's directory and network namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run_in_pod"]


def run_in_pod(
    root: Path, pod: dict[str, Any], command: list[str], send: Callable[[int, bytes], None]
) -> dict[str, Any]:
    """Run ``command`` as a host process in the pod's directory, with the container's env."""
    if not command:
        return {"status": "Failure", "message": "no command given", "reason": "BadRequest"}
    container = pod["spec"]["containers"][0]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "TMPDIR": str(root / "tmp"),
        "HOSTNAME": pod["metadata"]["name"],
    }
    env.update({e["name"]: str(e.get("value", "")) for e in container.get("env") or []})
    args = [command[0]] + [str(root) + a if a.startswith("/") else a for a in command[1:]]
    # Its own network namespace, as a pod has: "localhost" in the pod must not reach this host's
    # services (another Triton on 127.0.0.1:8000 would otherwise answer an in-pod reload).
    unshare = shutil.which("unshare")
    if unshare is None:
        send(2, b"the fake needs unshare (util-linux) to give exec its own network namespace\n")
        return {"status": "Failure", "reason": "InternalError", "message": "unshare not found"}
    args = [unshare, "-n" if os.geteuid() == 0 else "-rn", *args]
    try:
        done = subprocess.run(args, cwd=root, env=env, capture_output=True, timeout=60, check=False)
    except FileNotFoundError:
        send(2, f"exec: {command[0]!r}: executable file not found in $PATH\n".encode())
        return {
            "status": "Failure",
            "reason": "InternalError",
            "message": f"{command[0]}: executable file not found",
        }
    if done.stdout:
        send(1, done.stdout)
    if done.stderr:
        send(2, done.stderr)
    if done.returncode == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "message": f"command terminated with non-zero exit code: {done.returncode}",
        "details": {"causes": [{"reason": "ExitCode", "message": str(done.returncode)}]},
    }
