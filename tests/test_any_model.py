"""Load for any model: requests built from the server's own metadata, against a real Triton serving the
reference model and a second model with other inputs (a BYTES input, a variable dimension, no batching)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.load.clients import BAD_RESPONSE, HTTP_STATUS, NONE, GrpcInfer, HttpInfer
from harness.load.prepared import _http_body, prepare, schedule
from harness.load.requests import RequestOptions, plan_models, plan_requests
from harness.timeline import read_timeline
from harness.triton.metadata import ModelInfo, TensorInfo, TritonMetadata
from harness.triton.modelrepo import ModelSettings, materialise
from tests.conftest import random_subnet
from tests.outside_triton import TEST_REPOSITORY, TEXTSTATS_INPUT, OutsideTriton, outside_triton

ROOT = Path(__file__).resolve().parent.parent
STEADY = ROOT / "loadprofiles" / "steady.py"

TEXTLIKE = ModelInfo(
    name="textlike", versions=("3",), platform="python", max_batch_size=0,
    inputs=(TensorInfo("TEXT", "BYTES", (1,)), TensorInfo("WEIGHTS", "FP32", (-1,)),
            TensorInfo("FLAGS", "BOOL", (2,)), TensorInfo("HALF", "FP16", (3,)), TensorInfo("IDS", "INT64", (2, -1)),
            TensorInfo("MASK", "INT32", (4,), optional=True)),
    outputs=(TensorInfo("LENGTH", "INT32", (1,)), TensorInfo("TOKENS", "BYTES", (-1,))),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutsideTriton]:
    """One Triton started outside the harness with both models: the reference ``mlp`` and ``textstats``."""
    tmp = tmp_path_factory.mktemp("anymodel")
    repo = materialise(tmp / "repo", ModelSettings(queue_delay_ms=1.0))
    shutil.copytree(TEST_REPOSITORY / "textstats", repo / "textstats")
    with outside_triton(tmp, f"{random_subnet()}.9", repo) as s:
        yield s


def _load(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "load", "--profile", str(STEADY), "--users", "4",
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def _served(server: OutsideTriton, model: str) -> int:
    stats = server.get(f"/v2/models/{model}/stats")
    return sum(int(m["inference_stats"]["success"]["count"]) for m in stats["model_stats"])  # type: ignore[index]


# -- planning, without a server -----------------------------------------------------------------------
def test_http_body_is_what_tritonclient_sends_for_every_datatype() -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import deserialize_bytes_tensor, triton_to_np_dtype

    plan = plan_models([(TEXTLIKE, 1.0)], RequestOptions(variable_dim=5, seed=7))
    (request,) = prepare(plan)[0][1]
    assert [name for name, *_ in request.inputs] == ["TEXT", "WEIGHTS", "FLAGS", "HALF", "IDS"]  # MASK: optional
    inputs = []
    for name, datatype, shape, raw in request.inputs:
        values = (deserialize_bytes_tensor(raw) if datatype == "BYTES"
                  else np.frombuffer(raw, dtype=triton_to_np_dtype(datatype))).reshape(shape)
        if datatype == "BYTES":
            assert all(len(v) == 16 and v.decode().isalpha() for v in values.reshape(-1))
        inp = httpclient.InferInput(name, list(shape), datatype)
        inp.set_data_from_numpy(values, binary_data=True)
        inputs.append(inp)
    assert dict((n, s) for n, _, s, _ in request.inputs) == {"TEXT": (1,), "WEIGHTS": (5,), "FLAGS": (2,),
                                                             "HALF": (3,), "IDS": (2, 5)}
    outputs = [httpclient.InferRequestedOutput(o, binary_data=True) for o in ("LENGTH", "TOKENS")]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    assert (request.http_body, request.http_json_size) == (body, json_size)
    assert plan == plan_models([(TEXTLIKE, 1.0)], RequestOptions(variable_dim=5, seed=7))  # deterministic
    assert plan != plan_models([(TEXTLIKE, 1.0)], RequestOptions(variable_dim=5, seed=8))


def test_inputs_the_harness_cannot_build_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"input 'WEIGHTS' .* variable dimension .* --shape textlike:WEIGHTS=N"):
        plan_models([(TEXTLIKE, 1.0)], RequestOptions())
    with pytest.raises(ConfigError, match=r"does not batch .* --batch 1"):
        plan_models([(TEXTLIKE, 1.0)], RequestOptions(variable_dim=2, batch=4))
    with pytest.raises(ConfigError, match=r"shape \[3, 3\] does not fit the model.s \[2, -1\]"):
        plan_models([(TEXTLIKE, 1.0)], RequestOptions.parse(shapes=["IDS=3x3"], variable_dim=2))
    sample = tmp_path / "bad.json"
    sample.write_text(json.dumps({"data": [{"TEXT": ["a"], "NOPE": [1]},
                                           {"HALF": {"content": [1, 2], "shape": [3]}, "WEIGHTS": [1, 2]}]}))
    with pytest.raises(ConfigError) as info:
        plan_models([(TEXTLIKE, 1.0)], RequestOptions.parse(input_data=[str(sample)], variable_dim=2))
    assert "has no input 'NOPE'" in str(info.value)
    with pytest.raises(ConfigError, match=r"input 'HALF': the sample has 2 values, shape \[3\] needs 3"):
        sample.write_text(json.dumps({"data": [{"HALF": {"content": [1, 2], "shape": [3]}}]}))
        plan_models([(TEXTLIKE, 1.0)], RequestOptions.parse(input_data=[str(sample)], variable_dim=2))
    with pytest.raises(ConfigError, match="weight must be a number above 0"):
        RequestOptions.parse(models=["a:0"])


def test_sample_file_values_are_sent_and_decide_variable_dims() -> None:
    info = dataclasses.replace(TEXTLIKE, inputs=TEXTLIKE.inputs[:2])
    plan = plan_models([(info, 1.0)], RequestOptions.parse(input_data=[str(TEXTSTATS_INPUT)]))
    first, second = prepare(plan)[0][1]
    assert first.inputs[0][3] == b"\x13\x00\x00\x00the quick brown fox"
    assert first.inputs[1][2] == (3,) and np.frombuffer(first.inputs[1][3], "<f4").tolist() == [0.5, 1.0, 2.0]
    assert second.inputs[1][2] == (8,)


# -- against the real Triton ------------------------------------------------------------------------
def test_load_learns_the_second_model_from_the_server(server: OutsideTriton, tmp_path: Path) -> None:
    before = _served(server, "textstats")
    proc = _load("--endpoint", server.http, "--model", "textstats", "--input-data", str(TEXTSTATS_INPUT),
                 "--duration", "3", "--run-dir", str(tmp_path / "http"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frame = read_timeline(tmp_path / "http" / "timeline")
    assert len(frame) > 50 and (frame["outcome"] == "ok").all()
    assert _served(server, "textstats") - before >= len(frame)  # the server, not the harness, says so
    run = json.loads((tmp_path / "http" / "run.json").read_text())
    assert {"name": "textstats", "version": "1", "state": "READY", "platform": "python"} in run["service"]["models"]
    assert run["service"]["server"]["version"] and run["service"]["endpoint"] == server.http
    plan = json.loads((tmp_path / "http" / "request-plan.json").read_text())
    assert [m["name"] for m in plan["models"]] == ["textstats"] and len(plan["models"][0]["requests"]) == 2

    proc = _load("--endpoint", server.grpc, "--protocol", "grpc", "--model", "textstats", "--variable-dim", "6",
                 "--duration", "3", "--run-dir", str(tmp_path / "grpc"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frame = read_timeline(tmp_path / "grpc" / "timeline")
    assert len(frame) > 50 and (frame["outcome"] == "ok").all()


def test_unbuildable_input_fails_before_any_load(server: OutsideTriton, tmp_path: Path) -> None:
    proc = _load("--endpoint", server.http, "--model", "textstats", "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert "input 'WEIGHTS'" in proc.stderr and "--shape textstats:WEIGHTS=N" in proc.stderr
    assert not (tmp_path / "run").exists()
    proc = _load("--endpoint", server.http, "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2 and "2 ready models (mlp, textstats)" in proc.stderr
    proc = _load("--endpoint", server.http, "--model", "nope", "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2 and "model 'nope' is not served" in proc.stderr and "textstats v1 READY" in proc.stderr


def test_several_models_share_the_load_by_weight(server: OutsideTriton, tmp_path: Path) -> None:
    before = {m: _served(server, m) for m in ("mlp", "textstats")}
    proc = _load("--endpoint", server.http, "--model", "mlp:3", "--model", "textstats:1", "--input-data",
                 f"textstats={TEXTSTATS_INPUT}", "--duration", "3", "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    served = {m: _served(server, m) - before[m] for m in before}
    frame = read_timeline(tmp_path / "run" / "timeline")
    assert (frame["outcome"] == "ok").all() and sum(served.values()) >= len(frame) > 100
    assert 2.0 < served["mlp"] / served["textstats"] < 4.5


def test_a_response_without_an_expected_output_is_not_ok(server: OutsideTriton) -> None:
    import grpc

    plan = plan_requests(TritonMetadata(server.http), RequestOptions.parse(models=["textstats"], variable_dim=3))
    (request,) = schedule(plan)
    assert HttpInfer(server.http, [request], 2.0)()[:2] == (True, NONE)
    # the release under test lost an output the metadata promised: HTTP asks for it and is refused ...
    lost = dataclasses.replace(request, outputs=("LENGTH", "TOTAL", "EXTRA"), output_sizes=(4, 4, 4), output_bytes=12)
    lost = dataclasses.replace(lost, **dict(zip(("http_body", "http_json_size"),
                                                _http_body(lost.inputs, lost.outputs), strict=True)))
    ok, error_class, status, *_ = HttpInfer(server.http, [lost], 2.0)()
    assert (ok, error_class, status) == (False, HTTP_STATUS, 400)
    # ... a response that carries fewer outputs than expected is a bad response, whatever its status
    short_body = _http_body(request.inputs, ("LENGTH",))
    short = dataclasses.replace(request, output_sizes=(-1, -1), output_bytes=-1, http_body=short_body[0],
                                http_json_size=short_body[1])
    assert HttpInfer(server.http, [short], 2.0)()[:3] == (False, BAD_RESPONSE, 200)
    with grpc.insecure_channel(server.grpc) as channel:
        assert GrpcInfer(channel, [request], 2.0)()[:2] == (True, NONE)
        assert GrpcInfer(channel, [lost], 2.0)()[:2] == (False, BAD_RESPONSE)


def test_batching_models_get_the_batch_dimension(server: OutsideTriton) -> None:
    import grpc

    plan = plan_requests(TritonMetadata(server.grpc, "grpc"), RequestOptions.parse(models=["mlp"], batch=4))
    (request,) = schedule(plan)
    assert request.inputs[0][2] == (4, 16) and request.output_bytes == 4 * 8 * 4
    assert HttpInfer(server.http, [request], 2.0)()[:2] == (True, NONE)
    with grpc.insecure_channel(server.grpc) as channel:
        assert GrpcInfer(channel, [request], 2.0)()[:2] == (True, NONE)
    with pytest.raises(ConfigError, match=r"--batch 64 is more than model 'mlp' takes \(max_batch_size 32\)"):
        plan_requests(TritonMetadata(server.http), RequestOptions(models=(("mlp", 1.0),), batch=64))
