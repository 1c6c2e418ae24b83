"""Plain (blocking, gevent-free) single requests to the reference model, returning the answering replica.

Used by the demo, the tests and probes; the load generator has its own gevent-native users.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["InferOutcome", "infer_grpc", "infer_http", "reference_input"]

REPLICA_HEADER = "x-triton-replica"


@dataclass(frozen=True)
class InferOutcome:
    ok: bool
    replica: str
    output: tuple[float, ...] = ()
    error: str = ""


def reference_input(seed: int = 0, batch: int = 1) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal((batch, 16)).astype(np.float32)


def infer_http(url: str, data: npt.NDArray[np.float32], model: str = "mlp", timeout_s: float = 2.0) -> InferOutcome:
    host = url.removeprefix("http://").rstrip("/")
    body = json.dumps({"inputs": [{"name": "INPUT", "shape": list(data.shape), "datatype": "FP32",
                                   "data": data.flatten().tolist()}]})
    conn = http.client.HTTPConnection(host, timeout=timeout_s)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        replica = resp.getheader(REPLICA_HEADER, "") or ""
        if resp.status != 200:
            return InferOutcome(False, replica, error=f"HTTP {resp.status}: {payload[:200]!r}")
        out = json.loads(payload)["outputs"][0]["data"]
        return InferOutcome(True, replica, tuple(float(x) for x in out))
    except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
        return InferOutcome(False, "", error=f"{exc.__class__.__name__}: {exc}")
    finally:
        conn.close()


def infer_grpc(target: str, data: npt.NDArray[np.float32], model: str = "mlp", timeout_s: float = 2.0) -> InferOutcome:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add()
    tensor.name = "INPUT"
    tensor.datatype = "FP32"
    tensor.shape.extend(data.shape)
    request.raw_input_contents.append(data.tobytes())
    with grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            response, call = stub.ModelInfer.with_call(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            return InferOutcome(False, "", error=f"gRPC {exc.code().name}: {exc.details()}")
        metadata = dict(call.initial_metadata())
        out = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
        return InferOutcome(True, str(metadata.get(REPLICA_HEADER, "")), tuple(float(x) for x in out))
