"""Materialise the reference model repository with a rendered config.

Each replica gets its own copy, as each pod gets its own volume: a fault (or a test) can corrupt one
replica's weights without touching the others.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.errors import ConfigError

__all__ = ["REFERENCE_REPOSITORY", "ModelSettings", "materialise", "render_config", "verify_repository"]

REFERENCE_REPOSITORY = Path(str(resources.files("harness") / "reference" / "model_repository"))


@dataclass(frozen=True)
class ModelSettings:
    """What the deployment guide lets an operator tune on the reference model."""

    name: str = "mlp"
    queue_delay_ms: float = 50.0
    instances: int = 1
    gpu: bool = False
    load_delay_s: float = 0.0
    arena_mb: int = 0

    def __post_init__(self) -> None:
        if self.queue_delay_ms < 0 or self.queue_delay_ms > 10_000:
            raise ConfigError(f"queue delay must be within 0..10000 ms, got {self.queue_delay_ms}")
        if self.instances < 1:
            raise ConfigError(f"model instances must be at least 1, got {self.instances}")
        if self.load_delay_s < 0 or self.arena_mb < 0:
            raise ConfigError("load delay and arena size must not be negative")


def render_config(settings: ModelSettings) -> str:
    kind = "KIND_GPU" if settings.gpu else "KIND_CPU"
    return f"""# Rendered by harness.triton.modelrepo (render_config); edit ModelSettings, not this file.
name: "{settings.name}"
backend: "python"
max_batch_size: 32
input [
  {{
    name: "INPUT"
    data_type: TYPE_FP32
    dims: [ 16 ]
  }}
]
output [
  {{
    name: "PROBS"
    data_type: TYPE_FP32
    dims: [ 8 ]
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: {int(settings.queue_delay_ms * 1000)}
}}
instance_group [
  {{
    kind: {kind}
    count: {settings.instances}
  }}
]
parameters [
  {{
    key: "load_delay_s"
    value: {{ string_value: "{settings.load_delay_s:g}" }}
  }},
  {{
    key: "arena_mb"
    value: {{ string_value: "{settings.arena_mb}" }}
  }}
]
"""


def verify_repository(repo: Path, model: str = "mlp") -> None:
    """Check a model repository before any replica starts, so a broken one is a clear error, not a hang."""
    model_dir = repo / model
    if not (model_dir / "1" / "model.py").exists():
        raise ConfigError(f"model repository {repo} has no {model}/1/model.py; restore it from the package")
    weights = model_dir / "1" / "weights"
    manifest = weights / "weights.sha256"
    if not manifest.exists():
        raise ConfigError(f"{manifest} is missing: the weights cannot be verified")
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split()
        path = weights / name.lstrip("*")
        if not path.exists():
            raise ConfigError(f"weight file {path} is missing; restore the model repository")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ConfigError(f"weight file {path} does not match its SHA-256 manifest; restore it")


def materialise(target: Path, settings: ModelSettings, source: Path = REFERENCE_REPOSITORY) -> Path:
    """Copy ``source`` to ``target`` (replacing it) and write the rendered config."""
    verify_repository(source, settings.name)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    (target / settings.name / "config.pbtxt").write_text(render_config(settings))
    return target
