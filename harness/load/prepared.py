"""A request plan turned into the bytes the users send, and the check that a response is complete.

Built once per load process from the plan (``harness.load.requests``); per request the users only take
the next ``PreparedRequest`` of a fixed, weighted cycle and compare the answer with what the model's
metadata promised: every output by name and, where the sizes are known, the exact number of bytes.
No numpy, no metadata fetch here: at thousands of requests a second the load's CPU is the service's.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["PreparedRequest", "cycle", "prepare", "schedule"]

T = TypeVar("T")
SCHEDULE_SLOTS = 1000  # weighted mix: this many slots, shuffled once with the plan's seed


@dataclass(frozen=True)
class PreparedRequest:
    model: str
    inputs: tuple[tuple[str, str, tuple[int, ...], bytes], ...]  # name, datatype, shape, raw
    outputs: tuple[str, ...]
    output_bytes: int  # total binary output bytes, -1 when the data decides (variable dims, BYTES)
    output_sizes: tuple[int, ...]  # per output, -1 unknown
    http_body: bytes
    http_json_size: int

    @property
    def needles(self) -> tuple[bytes, ...]:
        """How each output's name appears in Triton's (compact, rapidjson) response header."""
        return tuple(json.dumps({"name": n}, separators=(",", ":"))[1:-1].encode() for n in self.outputs)

    def http_ok(self, header_len: int, payload: bytes, needles: Sequence[bytes]) -> bool:
        """A 200 response carries every expected output, in binary, with the bytes the metadata promised."""
        if header_len < 0 or header_len > len(payload):
            return False
        if self.output_bytes >= 0:
            if len(payload) != header_len + self.output_bytes:
                return False
            for needle in needles:
                if payload.find(needle, 0, header_len) < 0:
                    return self._header_ok(header_len, payload)  # formatted otherwise: read it properly
            return True
        return self._header_ok(header_len, payload)

    def _header_ok(self, header_len: int, payload: bytes) -> bool:
        try:
            header = json.loads(payload[:header_len])
            outputs = {o["name"]: int((o.get("parameters") or {}).get("binary_data_size", -1))
                       for o in header["outputs"]}
        except (ValueError, KeyError, TypeError):
            return False
        if any(name not in outputs or outputs[name] < 0 for name in self.outputs):
            return False
        return sum(outputs.values()) == len(payload) - header_len

    def grpc_ok(self, response: Any) -> bool:
        names = [o.name for o in response.outputs]
        raw = response.raw_output_contents
        if len(raw) != len(names):
            return False
        sizes = dict(zip(names, (len(r) for r in raw), strict=True))
        for name, size in zip(self.outputs, self.output_sizes, strict=True):
            got = sizes.get(name)
            if got is None or (size >= 0 and got != size):
                return False
        return True


def _http_body(inputs: Sequence[tuple[str, str, tuple[int, ...], bytes]], outputs: Sequence[str]) -> tuple[bytes, int]:
    """Triton's binary-tensor extension: a JSON header, then each input's raw bytes in order."""
    header = json.dumps({
        "inputs": [{"name": n, "shape": list(s), "datatype": d, "parameters": {"binary_data_size": len(r)}}
                   for n, d, s, r in inputs],
        "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs],
    }, separators=(",", ":")).encode()
    return header + b"".join(r for *_, r in inputs), len(header)


def prepare(plan: Mapping[str, Any]) -> list[tuple[float, list[PreparedRequest]]]:
    """(weight, request variants) per model of the plan."""
    out = []
    for model in plan["models"]:
        outputs = tuple(str(o["name"]) for o in model["outputs"])
        sizes = tuple(int(o["bytes"]) for o in model["outputs"])
        total = -1 if any(s < 0 for s in sizes) else sum(sizes)
        variants = []
        for request in model["requests"]:
            inputs = tuple((str(i["name"]), str(i["datatype"]), tuple(int(d) for d in i["shape"]),
                            base64.b64decode(i["raw_b64"])) for i in request["inputs"])
            body, json_size = _http_body(inputs, outputs)
            variants.append(PreparedRequest(str(model["name"]), inputs, outputs, total, sizes, body, json_size))
        out.append((float(model.get("weight", 1.0)), variants))
    return out


def schedule(plan: Mapping[str, Any], seed: int = 0) -> list[PreparedRequest]:
    """One cycle of requests: each model's share of ``SCHEDULE_SLOTS`` by weight, its variants in turn,
    shuffled once (deterministically), so any stretch of the load carries the mix."""
    models = prepare(plan)
    if len(models) == 1 and len(models[0][1]) == 1:
        return models[0][1]
    total = sum(w for w, _ in models)
    slots: list[PreparedRequest] = []
    for weight, variants in models:
        count = max(len(variants), round(SCHEDULE_SLOTS * weight / total))
        slots.extend(itertools.islice(itertools.cycle(variants), count))
    random.Random(seed).shuffle(slots)
    return slots


def cycle(items: Sequence[T]) -> Iterator[T]:
    """Endless round of ``items`` (one item: ``repeat``, the cheapest ``next`` there is)."""
    return itertools.repeat(items[0]) if len(items) == 1 else itertools.cycle(items)
