"""Triton model-control and model-repository operations in plain standard-library Python.

The model-lifecycle faults (unload, bad version rollout, queue overflow) need the same few operations on
one replica: read the repository index and the model's config, load (with a full config override) or
unload the model, add or remove a version directory, and send a burst of requests. On Kubernetes they run
*inside* the Triton container (the image has python3 but neither the harness nor tritonclient), so this
module imports nothing outside the standard library and runs as ``python3 -c <source> OP JSON-ARGS``,
printing one JSON document; locally the harness calls the same functions in-process, so both platforms
run one implementation.

A load over HTTP stalls the server's other HTTP keep-alive clients for the duration of the load
(DESIGN.md); the local platform therefore loads and unloads over gRPC (``harness.platforms.local.model_ops``)
and uses only the reads, the repository edits and the burst from here.
"""

from __future__ import annotations

import http.client
import json
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["QUEUE_FULL_TEXT", "add_version", "burst", "config", "index", "load", "main", "ready", "remove_version",
           "versions"]

# Triton's words when a request finds the model's queue full (dynamic batcher, max_queue_size); the same as
# harness.timeline.QUEUE_FULL_TEXT, which this file cannot import (it runs in the pod with the standard library
# alone); a test keeps the two equal.
QUEUE_FULL_TEXT = "exceeds maximum queue size"

# A python-backend model.py whose initialize() raises: the "bad version" a rollout ships.
RAISING_MODEL = '''"""Injected by the resilience harness (bad-version-rollout): this version fails to load."""
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        raise pb_utils.TritonModelException(
            "bad version injected by the resilience harness: initialize() fails on purpose")

    def execute(self, requests):
        raise pb_utils.TritonModelException("never loaded")
'''

_DTYPES = {"TYPE_FP32": "FP32", "TYPE_FP64": "FP64", "TYPE_FP16": "FP16", "TYPE_INT32": "INT32",
           "TYPE_INT64": "INT64", "TYPE_INT8": "INT8", "TYPE_UINT8": "UINT8", "TYPE_BOOL": "BOOL"}


def _call(base: str, method: str, path: str, body: Any = None, timeout_s: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        payload = response.read()
    return json.loads(payload) if payload.strip() else None


def index(base: str, model: str) -> list[dict[str, Any]]:
    """The repository index entries of ``model``: one per version Triton knows (state, reason)."""
    return [e for e in _call(base, "POST", "/v2/repository/index", {}) or [] if e.get("name") == model]


def ready(base: str) -> bool:
    """``/v2/health/ready``: what the front's and Kubernetes' readiness probes see."""
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/v2/health/ready", timeout=5) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False


def config(base: str, model: str) -> dict[str, Any]:
    """The model's full config as Triton serves it (the base of every config override)."""
    result: dict[str, Any] = _call(base, "GET", f"/v2/models/{model}/config")
    return result


def load(base: str, model: str, full_config: dict[str, Any] | None = None, timeout_s: float = 120.0) -> list[Any]:
    """[ok, why]: load the model (with the full config as an override when given; it replaces the whole config)."""
    body = {"parameters": {"config": json.dumps(full_config)}} if full_config else {}
    try:
        _call(base, "POST", f"/v2/repository/models/{model}/load", body, timeout_s)
    except urllib.error.HTTPError as exc:
        return [False, exc.read().decode(errors="replace")[:500]]
    except OSError as exc:
        return [False, f"cannot reach Triton: {exc}"]
    return [True, ""]


def unload(base: str, model: str, timeout_s: float = 60.0) -> list[Any]:
    try:
        _call(base, "POST", f"/v2/repository/models/{model}/unload", {}, timeout_s)
    except urllib.error.HTTPError as exc:
        return [False, exc.read().decode(errors="replace")[:500]]
    except OSError as exc:
        return [False, f"cannot reach Triton: {exc}"]
    return [True, ""]


def versions(repository: str, model: str) -> list[str]:
    """The numeric version directories of the model in the repository, in numeric order."""
    folder = Path(repository) / model
    found = [p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    return sorted(found, key=int)


def add_version(repository: str, model: str, version: str, failure: str, source: str) -> str:
    """Create version ``version`` that fails to load; returns what was written.

    ``initialize-raises``: a python-backend model.py whose initialize() raises. ``corrupt-file``: a copy of
    version ``source`` with the bytes of its largest non-Python file flipped at the end (the reference
    model's SHA-256 check, or any framework's parser, refuses it). ``copy``: a plain copy of ``source``
    (how the undo clears Triton's memory of the failed version; not a fault).
    """
    target = Path(repository) / model / version
    if target.exists():
        raise ValueError(f"version directory {target} already exists; the fault adds a new one")
    if failure == "initialize-raises":
        target.mkdir(parents=True)
        (target / "model.py").write_text(RAISING_MODEL)
        return f"{target}/model.py (initialize raises)"
    shutil.copytree(Path(repository) / model / source, target, ignore=shutil.ignore_patterns("__pycache__"))
    if failure == "copy":
        return f"{target} (copy of version {source})"
    files = [p for p in target.rglob("*") if p.is_file() and p.suffix != ".py" and not p.name.endswith(".sha256")]
    if not files:
        shutil.rmtree(target)
        raise ValueError(f"version {source} of {model} has no data file to corrupt")
    victim = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    for i in range(max(0, len(data) - 64), len(data)):
        data[i] ^= 0xFF
    victim.write_bytes(bytes(data))
    return f"{victim} (copy of version {source}, last bytes flipped)"


def remove_version(repository: str, model: str, version: str) -> bool:
    """Remove the version directory; False when it was already gone."""
    target = Path(repository) / model / version
    if not target.exists():
        return False
    shutil.rmtree(target)
    return True


def _infer_body(full_config: dict[str, Any]) -> bytes:
    """A JSON inference request of batch 1 with zeros, from the model's config (numeric inputs only)."""
    batched = int(full_config.get("max_batch_size") or 0) > 0
    inputs = []
    for spec in full_config.get("input") or []:
        dims = [max(int(d), 1) for d in spec.get("dims") or []]
        shape = ([1] if batched else []) + dims
        count = 1
        for d in shape:
            count *= d
        dtype = _DTYPES.get(str(spec.get("data_type")), "FP32")
        inputs.append({"name": spec["name"], "shape": shape, "datatype": dtype,
                       "data": [False if dtype == "BOOL" else 0] * count})
    return json.dumps({"inputs": inputs}).encode()


def burst(host: str, port: int, model: str, count: int, concurrency: int, timeout_s: float = 10.0) -> dict[str, Any]:
    """Send ``count`` requests from ``concurrency`` threads at once; outcomes by class and a sample error.

    Classes: ``ok``, ``queue_full`` (Triton's queue-full rejection), ``error`` (any other answer or none).
    """
    body = _infer_body(config(f"http://{host}:{port}", model))
    counts = {"ok": 0, "queue_full": 0, "error": 0}
    samples: dict[str, str] = {}
    lock = threading.Lock()
    remaining = [count]
    gate = threading.Barrier(concurrency)

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        gate.wait()
        while True:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            try:
                conn.request("POST", f"/v2/models/{model}/infer", body=body,
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                text = response.read().decode(errors="replace")
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
                status, text = -1, f"{type(exc).__name__}: {exc}"
            kind = "ok" if status == 200 else ("queue_full" if QUEUE_FULL_TEXT in text.lower() else "error")
            with lock:
                counts[kind] += 1
                if kind != "ok":
                    samples.setdefault(kind, f"{status} {text[:200]}")
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s * count)
    return {**counts, "samples": samples, "duration_s": round(time.monotonic() - started, 3)}


_OPS: dict[str, Callable[..., Any]] = {
    "ready": ready, "index": index, "config": config, "load": load, "unload": unload, "versions": versions,
    "add_version": add_version, "remove_version": remove_version, "burst": burst,
}


def main(argv: list[str]) -> int:
    """``OP JSON-KWARGS``: print ``{"result": ...}`` or ``{"error": ...}`` (exit 1)."""
    op, kwargs = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    try:
        print(json.dumps({"result": _OPS[op](**kwargs)}))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(json.dumps({"error": f"{op}: {type(exc).__name__}: {exc}"}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
