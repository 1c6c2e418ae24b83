"""A tritonserver started the way a user would start their own, outside the harness (attach-mode tests).

The harness never sees this process: the tests only give it the endpoint. It runs the bundled
``tritonserver`` on a model repository copied to the test's tmp directory (the python backend writes
beside the model), in its own session, and is killed with its group and its shared memory afterwards.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.platforms.local.procs import kill_group, remove_orphaned_shm, wait_gone
from harness.triton.runtime import find_triton
from tests.conftest import free_port

DATA = Path(__file__).resolve().parent / "data"
TEST_REPOSITORY = DATA / "model_repository"  # the second model, textstats
TEXTSTATS_INPUT = DATA / "textstats-input.json"


@dataclass(frozen=True)
class OutsideTriton:
    address: str
    http_port: int
    grpc_port: int
    metrics_port: int
    pid: int

    @property
    def http(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"{self.address}:{self.grpc_port}"

    def get(self, path: str) -> object:
        with urllib.request.urlopen(f"{self.http}{path}", timeout=5) as resp:
            return json.load(resp)

    def state(self) -> object:
        """What a user would compare before and after: server metadata and the repository's models."""
        request = urllib.request.Request(f"{self.http}/v2/repository/index", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=5) as resp:
            index = json.load(resp)
        return {"server": self.get("/v2"), "models": index, "pid": self.pid}


@contextlib.contextmanager
def outside_triton(tmp: Path, address: str, repository: Path = TEST_REPOSITORY) -> Iterator[OutsideTriton]:
    install = find_triton()
    repo = tmp / "user-models"
    shutil.copytree(repository, repo, ignore=shutil.ignore_patterns("__pycache__"))
    backends = install.prepare_backends(tmp / "user-backends")
    ports = [free_port(address) for _ in range(3)]
    log = (tmp / "user-triton.log").open("wb")
    proc = subprocess.Popen(
        [str(install.server), f"--model-repository={repo}", f"--backend-directory={backends}",
         f"--http-address={address}", f"--http-port={ports[0]}", f"--grpc-address={address}",
         f"--grpc-port={ports[1]}", f"--metrics-address={address}", f"--metrics-port={ports[2]}"],
        env=install.environment(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    log.close()
    server = OutsideTriton(address, ports[0], ports[1], ports[2], proc.pid)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{server.http}/v2/health/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the outside tritonserver did not start: {(tmp / 'user-triton.log').read_text()}")
            time.sleep(0.2)
        yield server
    finally:
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_gone(proc.pid, 5)
        remove_orphaned_shm()
