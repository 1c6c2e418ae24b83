"""The user's sample data file: one JSON format, in the spirit of perf_analyzer's ``--input-data``.

    {"data": [
        {"TEXT": ["hello world"], "WEIGHTS": {"content": [0.5, 1.0, 2.0], "shape": [3]}},
        {"TEXT": {"b64": "...", "shape": [1]}}
    ]}

Each entry of ``data`` is one request variant; the load cycles through them. A value is a flat list, an
object with ``content`` (and optionally ``shape``), or raw bytes in Triton's binary layout (``b64``). Values
are one batch element (shape without the batch dimension). Every problem of a file is reported at once,
naming the file, the entry and the input (docs/load.md).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt

from harness.errors import ConfigError
from harness.load.tensors import decode_tensor, from_values
from harness.triton.metadata import ModelInfo, TensorInfo

__all__ = ["Sample", "read_input_data"]


@dataclass(frozen=True)
class Sample:
    """One input of one entry of a sample file: flat values, and the shape when the file says."""

    values: npt.NDArray[Any]
    shape: tuple[int, ...] | None


def read_input_data(path: Path, model: ModelInfo) -> list[dict[str, Sample]]:
    """Parse a sample file against the model's inputs; every problem in one ``ConfigError``."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"input data file {path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"input data file {path}: not valid JSON: {exc}") from None
    entries = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"input data file {path}: expected {{\"data\": [{{INPUT: values, ...}}, ...]}} with at "
                          "least one entry (docs/load.md)")
    inputs = {t.name: t for t in model.inputs}
    problems: list[str] = []
    out: list[dict[str, Sample]] = []
    for i, entry in enumerate(entries):
        samples: dict[str, Sample] = {}
        for name, value in entry.items():
            where = f"{path} data[{i}].{name}"
            tensor = inputs.get(name)
            if tensor is None:
                problems.append(f"{where}: model {model.name!r} has no input {name!r} (inputs: {sorted(inputs)})")
                continue
            try:
                samples[name] = _sample(value, tensor)
            except (ValueError, TypeError, KeyError, OverflowError) as exc:
                problems.append(f"{where}: {exc}")
        out.append(samples)
    if problems:
        raise ConfigError("the input data does not fit the model:\n  - " + "\n  - ".join(problems))
    return out


def _sample(value: Any, tensor: TensorInfo) -> Sample:
    if isinstance(value, list):
        return Sample(from_values(value, tensor.datatype), None)
    if not isinstance(value, dict):
        raise ValueError("give a list of values, {\"content\": [...], \"shape\": [...]} or {\"b64\": ..., \"shape\": "
                         "[...]}")
    shape = value.get("shape")
    if shape is not None and (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)):
        raise ValueError(f"shape {shape!r} must be a list of whole numbers")
    if "b64" in value:
        values = decode_tensor(base64.b64decode(value["b64"]), tensor.datatype)
    elif "content" in value:
        values = from_values(value["content"], tensor.datatype)
    else:
        raise ValueError("an object needs \"content\" or \"b64\"")
    return Sample(values, tuple(shape) if shape is not None else None)
