"""The load's requests, planned from the server's own model metadata before any load starts.

``plan_requests`` asks the server (once) for each model's inputs, outputs and batching, resolves every
shape (a user's ``--shape``, a sample file, or ``--variable-dim``), makes the data (a deterministic seed,
valid for each datatype) or reads it from the user's sample file, and writes the exact bytes of every
request variant into a JSON plan. The load process (or its Locust master) plans once, before it says
ready; its users and workers only decode that plan (``harness.load.prepared``), so metadata is never read
per request and every worker sends the same bytes. An input the harness cannot build (a variable
dimension nobody gave, a sample that does not fit) is a ``ConfigError`` naming the model, the input and
the fix, raised before any request.

The sample data file format is ``harness.load.inputdata``'s.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ConfigError
from harness.load.inputdata import Sample, read_input_data
from harness.load.tensors import SUPPORTED, encode_tensor, generate
from harness.triton.metadata import DATATYPE_BYTES, ModelInfo, TensorInfo, TritonMetadata

__all__ = ["ENV", "PLAN_SCHEMA", "RequestOptions", "plan_models", "plan_requests", "read_plan",
           "write_plan"]

PLAN_SCHEMA = 1
ANY = "*"  # a --shape or --input-data that applies to every model

# RequestOptions field -> environment variable, so the fault runner's load and plain Locust read them too.
ENV = {
    "models": "HARNESS_MODEL",
    "batch": "HARNESS_BATCH",
    "shapes": "HARNESS_SHAPE",
    "input_data": "HARNESS_INPUT_DATA",
    "variable_dim": "HARNESS_VARIABLE_DIM",
    "seed": "HARNESS_SEED",
}

# -- options ---------------------------------------------------------------------------------------------
def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.replace(";", ",").split(",") if part.strip()] if raw else []


def _parse_model(item: str) -> tuple[str, float]:
    name, sep, weight = item.partition(":")
    if not name.strip():
        raise ConfigError(f"--model {item!r}: expected NAME or NAME:WEIGHT (e.g. --model mlp:3)")
    if not sep:
        return name.strip(), 1.0
    try:
        value = float(weight)
    except ValueError:
        raise ConfigError(f"--model {item!r}: weight {weight!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--model {item!r}: the weight must be a number above 0")
    return name.strip(), value


def _parse_shape(item: str) -> tuple[tuple[str, str], tuple[int, ...]]:
    target, sep, dims = item.partition("=")
    model, colon, tensor = target.rpartition(":")
    if not sep or not tensor.strip():
        raise ConfigError(f"--shape {item!r}: expected [MODEL:]INPUT=D1xD2 (e.g. --shape text:WEIGHTS=8)")
    try:
        shape = tuple(int(d) for d in dims.replace("x", " ").replace(",", " ").split())
    except ValueError:
        raise ConfigError(f"--shape {item!r}: dimensions must be whole numbers, like 3x224x224") from None
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(f"--shape {item!r}: give every dimension as a number >= 1")
    return ((model.strip() if colon else ANY), tensor.strip()), shape


def _parse_data(item: str) -> tuple[str, Path]:
    model, sep, path = item.partition("=")
    if not sep:
        model, path = ANY, item
    return model.strip() or ANY, Path(path.strip()).absolute()


@dataclass(frozen=True)
class RequestOptions:
    """What the user said about the requests; everything else comes from the server.

    ``models``: (name, weight) pairs, empty = the only model the server has ready. ``shapes``: dims per
    (model or ``*``, input) for variable dimensions, without the batch dimension. ``input_data``: a
    sample file per model (or ``*``). ``variable_dim``: fill every variable dimension nobody gave (0: none).
    """

    models: tuple[tuple[str, float], ...] = ()
    batch: int = 1
    shapes: Mapping[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    input_data: Mapping[str, Path] = field(default_factory=dict)
    variable_dim: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.batch < 1:
            problems.append(f"batch is {self.batch}; it must be 1 or more")
        if self.variable_dim < 0:
            problems.append(f"variable dimension is {self.variable_dim}; it must be 1 or more (0: none)")
        names = [m for m, _ in self.models]
        if len(set(names)) != len(names):
            problems.append(f"a model is named twice in {names}; give each once, with its weight")
        if problems:
            raise ConfigError("bad request options: " + "; ".join(problems))

    @classmethod
    def parse(cls, models: Sequence[str] = (), batch: int = 1, shapes: Sequence[str] = (),
              input_data: Sequence[str] = (), variable_dim: int = 0, seed: int = 0) -> RequestOptions:
        """From command-line strings (each item may hold several, comma-separated)."""
        return cls(
            models=tuple(_parse_model(m) for raw in models for m in _split(raw)),
            batch=batch,
            shapes=dict(_parse_shape(s) for raw in shapes for s in raw.split(";") if s.strip()),
            input_data=dict(_parse_data(d) for raw in input_data for d in raw.split(";") if d.strip()),
            variable_dim=variable_dim,
            seed=seed,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RequestOptions:
        env = os.environ if env is None else env

        def number(key: str, default: int) -> int:
            raw = env.get(ENV[key], "").strip()
            try:
                return int(raw) if raw else default
            except ValueError:
                raise ConfigError(f"environment variable {ENV[key]}={raw!r} is not a whole number") from None

        return cls.parse(
            models=[env.get(ENV["models"], "")], batch=number("batch", 1),
            shapes=[env.get(ENV["shapes"], "")], input_data=[env.get(ENV["input_data"], "")],
            variable_dim=number("variable_dim", 0), seed=number("seed", 0),
        )

    def to_env(self) -> dict[str, str]:
        """The ``HARNESS_*`` variables that ``from_env`` reads back into these options."""
        return {
            ENV["models"]: ",".join(f"{n}:{w:g}" for n, w in self.models),
            ENV["batch"]: str(self.batch),
            ENV["shapes"]: ";".join(f"{m}:{t}={'x'.join(map(str, d))}" for (m, t), d in self.shapes.items()),
            ENV["input_data"]: ";".join(f"{m}={p}" for m, p in self.input_data.items()),
            ENV["variable_dim"]: str(self.variable_dim),
            ENV["seed"]: str(self.seed),
        }

    def to_json(self) -> dict[str, Any]:
        return {"models": [{"name": n, "weight": w} for n, w in self.models], "batch": self.batch,
                "shapes": {f"{m}:{t}": list(s) for (m, t), s in self.shapes.items()},
                "input_data": {m: str(p) for m, p in self.input_data.items()},
                "variable_dim": self.variable_dim, "seed": self.seed}


# -- planning --------------------------------------------------------------------------------------------
def _resolve_shape(model: ModelInfo, tensor: TensorInfo, options: RequestOptions,
                   sample: Sample | None) -> tuple[int, ...]:
    """The shape of one batch element: the file's, the user's, or the model's with variable dims filled."""
    dims = tensor.dims
    fixed = [d for d in dims if d >= 0]
    if sample is not None and sample.shape is not None:
        shape = sample.shape
    elif sample is not None and sum(1 for d in dims if d < 0) == 1 and math.prod(fixed) > 0:
        # one variable dimension: the number of values decides it
        shape = tuple(sample.values.size // math.prod(fixed) if d < 0 else d for d in dims)
    else:
        given = options.shapes.get((model.name, tensor.name)) or options.shapes.get((ANY, tensor.name))
        if given is not None:
            shape = given
        elif tensor.variable and options.variable_dim:
            shape = tuple(options.variable_dim if d < 0 else d for d in dims)
        elif tensor.variable:
            hint = "x".join("N" if d < 0 else str(d) for d in dims)
            raise ConfigError(
                f"model {model.name!r} input {tensor.name!r} ({tensor.datatype} {list(dims)}) has a variable "
                f"dimension the harness cannot guess: give it with --shape {model.name}:{tensor.name}={hint} "
                "(N a number), a sample file with --input-data, or --variable-dim N for every variable dimension"
            )
        else:
            shape = dims
    if len(shape) != len(dims) or any(d >= 0 and d != s for d, s in zip(dims, shape, strict=False)):
        raise ConfigError(f"model {model.name!r} input {tensor.name!r}: shape {list(shape)} does not fit the "
                          f"model's {list(dims)} (-1 = any size; without the batch dimension)")
    if sample is not None and sample.values.size != math.prod(shape):
        raise ConfigError(f"model {model.name!r} input {tensor.name!r}: the sample has {sample.values.size} values, "
                          f"shape {list(shape)} needs {math.prod(shape)}")
    return shape


def _output_bytes(model: ModelInfo, tensor: TensorInfo, batch: int) -> int:
    """Bytes the output must have, or -1 when it depends on the data (variable dims, BYTES)."""
    if tensor.variable or tensor.datatype not in DATATYPE_BYTES:
        return -1
    return math.prod(tensor.dims) * (batch if model.max_batch_size > 0 else 1) * DATATYPE_BYTES[tensor.datatype]


def _plan_model(index: int, model: ModelInfo, weight: float, options: RequestOptions,
                samples: list[dict[str, Sample]] | None, source: str) -> dict[str, Any]:
    batching = model.max_batch_size > 0
    if not batching and options.batch > 1:
        raise ConfigError(f"model {model.name!r} does not batch (max_batch_size 0): use --batch 1 for it")
    if batching and options.batch > model.max_batch_size:
        raise ConfigError(f"--batch {options.batch} is more than model {model.name!r} takes "
                          f"(max_batch_size {model.max_batch_size})")
    unsupported = [t.name for t in model.inputs if t.datatype not in SUPPORTED]
    if unsupported:
        raise ConfigError(f"model {model.name!r}: the harness cannot build inputs {unsupported} (datatypes "
                          f"{[t.datatype for t in model.inputs if t.name in unsupported]})")
    requests = []
    for step, entry in enumerate(samples or [{}]):
        inputs = []
        for k, tensor in enumerate(model.inputs):
            sample = entry.get(tensor.name)
            if tensor.optional and sample is None:
                continue
            shape = _resolve_shape(model, tensor, options, sample)
            full = (options.batch, *shape) if batching else shape
            if sample is None:
                rng = np.random.default_rng([options.seed, index, step, k])
                values = generate(tensor.datatype, full, rng)
            else:
                one = sample.values.reshape(shape)
                values = np.stack([one] * options.batch) if batching else one
            inputs.append({"name": tensor.name, "datatype": tensor.datatype, "shape": list(full),
                           "source": "generated" if sample is None else f"{source}#{step}",
                           "raw_b64": base64.b64encode(encode_tensor(values, tensor.datatype)).decode()})
        requests.append({"inputs": inputs})
    return {
        "name": model.name, "versions": list(model.versions), "platform": model.platform,
        "max_batch_size": model.max_batch_size, "weight": weight,
        "batch": options.batch if batching else 1,
        "outputs": [{"name": t.name, "datatype": t.datatype, "bytes": _output_bytes(model, t, options.batch)}
                    for t in model.outputs],
        "requests": requests,
    }


def plan_requests(metadata: TritonMetadata, options: RequestOptions) -> dict[str, Any]:
    """Ask the server about each model once and plan every request variant; see the module docstring."""
    models = list(options.models)
    if not models:
        ready = metadata.ready_models()
        if len(ready) != 1:
            raise ConfigError(
                ("the server has no ready model" if not ready else
                 f"the server has {len(ready)} ready models ({', '.join(ready)})")
                + f" at {metadata.endpoint}; choose with --model NAME (several: --model a:3 --model b:1, or "
                "HARNESS_MODEL=a:3,b:1)"
            )
        models = [(ready[0], 1.0)]
    infos = [(metadata.model(name), weight) for name, weight in models]
    return plan_models(infos, options, metadata.endpoint, metadata.protocol)


def plan_models(models: Sequence[tuple[ModelInfo, float]], options: RequestOptions, endpoint: str = "",
                protocol: str = "http") -> dict[str, Any]:
    """The plan for these models (metadata already read) and their weights."""
    unknown = sorted(set(options.input_data) - {ANY} - {m.name for m, _ in models})
    if unknown:
        raise ConfigError(f"--input-data names models {unknown} that the load does not send to "
                          f"({[m.name for m, _ in models]})")
    if ANY in options.input_data and len(models) > 1:
        raise ConfigError("with several models give each its sample file: --input-data MODEL=FILE")
    planned = []
    for index, (info, weight) in enumerate(models):
        path = options.input_data.get(info.name) or options.input_data.get(ANY)
        samples = read_input_data(path, info) if path is not None else None
        planned.append(_plan_model(index, info, weight, options, samples, str(path) if path else ""))
    return {"schema": PLAN_SCHEMA, "endpoint": endpoint, "protocol": protocol, "options": options.to_json(),
            "models": planned}


def write_plan(plan: Mapping[str, Any], path: Path) -> Path:
    from harness.jsonfile import write_json_atomic

    write_json_atomic(path, plan)
    return path


def read_plan(path: Path) -> dict[str, Any]:
    try:
        plan: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"request plan {path}: cannot read it: {exc}") from None
    if plan.get("schema") != PLAN_SCHEMA or not plan.get("models"):
        raise ConfigError(f"request plan {path}: not a schema-{PLAN_SCHEMA} plan with models")
    return plan
