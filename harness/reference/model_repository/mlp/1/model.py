"""Reference model for the resilience harness: a small deterministic MLP served by Triton's python backend.

16 float inputs -> 32 hidden (ReLU) -> 8 logits -> softmax. The weights ship as .npy files with a
SHA-256 manifest that is checked at load, so a corrupted weight file fails the load with a reason that
Triton reports (and the harness shows in ``harness status``).

Parameters (config.pbtxt, overridable through the model-control API):
  load_delay_s   seconds to sleep in initialize(): the "slow model load" fault.
  arena_mb       memory reserved at load, like a framework's memory arena: on the GPU when this instance
                 runs there (so a load under GPU memory pressure fails with CUDA OOM), else host memory.
The environment variables HARNESS_MODEL_LOAD_DELAY_S and HARNESS_MODEL_ARENA_MB, when set, override
load_delay_s and arena_mb: that is how a restart "with a changed parameter" works on both platforms (a
Deployment env patch on Kubernetes); the OOM-at-load fault sets the arena this way.

HARNESS_MODEL_COLD_START_S (seconds, default 0) makes the model loaded but not serving: for that long after
initialize() returns, while Triton already reports the model and the server ready, every request fails
(HARNESS_MODEL_COLD_START_MODE=fail, the default) or first waits HARNESS_MODEL_COLD_START_LATENCY_S
(default 1.5; mode slow). It plays the "ready but the first requests time out" reports (a cold cache, a
lazy framework initialisation) so that the report's ready-to-serving gap can be checked against a known one.

A KIND_GPU instance computes on its GPU with torch, or does not load: when torch is missing, has no
CUDA, or cannot see the instance's device, initialize() raises with the reason (Triton then reports the
model not ready with it, and ``harness status`` shows it). There is no silent CPU fallback: a GPU fault
against a model that computes on the CPU would measure nothing. Why torch in the python backend rather
than an ONNX model: docs/gpu.md. Tensors cross between Triton and torch through DLPack, and the weights
through Python lists, never numpy: where torch is built against numpy 2 the stub's numpy 1 gave wrong
sizes (DESIGN.md).
"""

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

_WEIGHT_NAMES = ("w1", "b1", "w2", "b2")


def _verify_and_load(weights_dir):
    manifest = weights_dir / "weights.sha256"
    if not manifest.exists():
        raise pb_utils.TritonModelException(f"weights manifest missing: {manifest}")
    expected = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            expected[name.lstrip("*")] = digest
    arrays = {}
    for name in _WEIGHT_NAMES:
        path = weights_dir / f"{name}.npy"
        if not path.exists():
            raise pb_utils.TritonModelException(f"weight file missing: {path.name}")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if expected.get(path.name) != actual:
            raise pb_utils.TritonModelException(
                f"weight file {path.name} is corrupt: sha256 {actual[:12]}... does not match the manifest "
                f"({str(expected.get(path.name))[:12]}...); restore the model repository"
            )
        arrays[name] = np.load(path).astype(np.float32)
    return arrays


def _visible():
    return f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}"


def _gpu_device(args):
    """torch and the instance's CUDA device, or an exception that says why the GPU cannot be used."""
    try:
        import torch
    except ImportError as exc:
        raise pb_utils.TritonModelException(
            f"instance kind is KIND_GPU but torch cannot be imported by the python backend ({exc}); install a "
            "CUDA build of torch where the backend's Python finds it (docs/gpu.md), or use KIND_CPU instances "
            "(--gpus-per-replica 0); the model does not fall back to the CPU"
        ) from None
    if not torch.cuda.is_available():
        raise pb_utils.TritonModelException(
            f"instance kind is KIND_GPU but torch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable "
            f"CUDA device ({_visible()}); the model does not fall back to the CPU"
        )
    index = int(args.get("model_instance_device_id") or 0)
    if index >= torch.cuda.device_count():
        raise pb_utils.TritonModelException(
            f"instance asks for GPU {index} but torch sees {torch.cuda.device_count()} ({_visible()})"
        )
    return torch, f"cuda:{index}"


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        delay = float(os.environ.get("HARNESS_MODEL_LOAD_DELAY_S") or params.get("load_delay_s") or 0)
        arena_mb = int(float(os.environ.get("HARNESS_MODEL_ARENA_MB") or params.get("arena_mb") or 0))
        weights = _verify_and_load(Path(__file__).parent / "weights")

        self.device = "cpu"
        self.torch = None
        if args.get("model_instance_kind") == "GPU":
            self.torch, self.device = _gpu_device(args)
        if self.torch is not None:
            t = self.torch
            try:
                self.params = {k: t.tensor(v.tolist(), dtype=t.float32, device=self.device)
                               for k, v in weights.items()}
                self.arena = t.empty(arena_mb * 2**20, dtype=t.uint8, device=self.device) if arena_mb else None
            except RuntimeError as exc:  # CUDA out of memory under a hog, among others: the load fails
                raise pb_utils.TritonModelException(
                    f"cannot place the model on {self.device} ({_visible()}): {str(exc).splitlines()[0]}"
                ) from None
        else:
            self.params = weights
            self.arena = np.ones(arena_mb * 2**20, dtype=np.uint8) if arena_mb else None
        if delay > 0:
            time.sleep(delay)
        self.cold_mode = os.environ.get("HARNESS_MODEL_COLD_START_MODE") or "fail"
        if self.cold_mode not in ("fail", "slow"):
            raise pb_utils.TritonModelException(
                f"HARNESS_MODEL_COLD_START_MODE must be fail or slow, got {self.cold_mode!r}")
        self.cold_latency_s = float(os.environ.get("HARNESS_MODEL_COLD_START_LATENCY_S") or 1.5)
        cold_s = float(os.environ.get("HARNESS_MODEL_COLD_START_S") or 0)
        self.cold_until = time.monotonic() + cold_s if cold_s > 0 else 0.0

    def _forward_numpy(self, x):
        p = self.params
        h = np.maximum(x @ p["w1"] + p["b1"], 0.0)
        z = h @ p["w2"] + p["b2"]
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def _cold(self):
        """While the planted cold start lasts: fail the whole batch (mode fail) or delay it (mode slow).

        It raises rather than returning error responses: Triton 2.51's python backend crashed (SIGSEGV in
        TRITONBACKEND_ModelInstanceExecute) when a dynamic batch of several requests came back as error
        responses, while an exception from execute() is sent to every request of the batch as its error."""
        if not self.cold_until or time.monotonic() >= self.cold_until:
            self.cold_until = 0.0
            return
        if self.cold_mode == "slow":
            time.sleep(self.cold_latency_s)
            return
        left = self.cold_until - time.monotonic()
        raise pb_utils.TritonModelException(
            f"cold start: warming up for {left:.1f} s more (HARNESS_MODEL_COLD_START_S)")

    def execute(self, requests):
        self._cold()
        responses = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, "INPUT")
            if self.torch is not None:
                t = self.torch
                x = t.utils.dlpack.from_dlpack(tensor.to_dlpack()).to(self.device, dtype=t.float32)
                p = self.params
                h = t.relu(x @ p["w1"] + p["b1"])
                # computed on the GPU, handed back in host memory (Triton's plainest output path)
                probs = t.softmax(h @ p["w2"] + p["b2"], dim=1).to("cpu").contiguous()
                out = pb_utils.Tensor.from_dlpack("PROBS", t.utils.dlpack.to_dlpack(probs))
            else:
                out = pb_utils.Tensor("PROBS", self._forward_numpy(tensor.as_numpy().astype(np.float32)))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses

    def finalize(self):
        self.arena = None
        self.params = None
