"""A user's own model repository, checked before the local platform serves it with the bundled Triton.

The ``tritonserver`` inside the ``nvidia-pytriton`` wheel ships the python backend only (plus the
server's built-in ensemble scheduler), so a repository of ONNX, TensorRT, PyTorch or TensorFlow models
cannot run locally. Saying so before any replica starts, model by model and with the backend each needs,
beats replicas that never become ready. Each ``config.pbtxt`` is parsed with Triton's own protobuf
schema (``tritonclient.grpc.model_config_pb2``), not by hand.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError
from harness.triton.runtime import TritonInstall

__all__ = ["UserModel", "available_backends", "check_repository", "copy_repository", "scan_repository"]

BUILT_IN = frozenset({"ensemble"})  # schedulers inside the server binary, no backend directory needed

# config.pbtxt "platform" -> the backend that serves it
_PLATFORM_BACKEND = {
    "tensorrt_plan": "tensorrt", "tensorflow_graphdef": "tensorflow", "tensorflow_savedmodel": "tensorflow",
    "onnxruntime_onnx": "onnxruntime", "pytorch_libtorch": "pytorch", "ensemble": "ensemble",
}
# default model file name -> backend, for models without config.pbtxt (Triton's auto-complete)
_FILE_BACKEND = {
    "model.py": "python", "model.onnx": "onnxruntime", "model.pt": "pytorch", "model.plan": "tensorrt",
    "model.savedmodel": "tensorflow", "model.graphdef": "tensorflow",
}


@dataclass(frozen=True)
class UserModel:
    name: str
    backend: str
    versions: tuple[str, ...]
    composing: tuple[str, ...] = ()  # models an ensemble calls


def _versions(model_dir: Path) -> tuple[str, ...]:
    return tuple(sorted((p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=int))


def _from_config(model_dir: Path) -> UserModel:
    from google.protobuf import text_format  # type: ignore[import-untyped]  # protobuf ships no stubs; types-protobuf is not a dependency
    from tritonclient.grpc import model_config_pb2

    path = model_dir / "config.pbtxt"
    try:
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except (OSError, text_format.ParseError) as exc:
        raise ConfigError(f"{path}: not a valid Triton model configuration: {exc}") from None
    if config.name and config.name != model_dir.name:
        raise ConfigError(f"{path}: name {config.name!r} differs from its directory {model_dir.name!r}; Triton "
                          "refuses that: rename one")
    backend = config.backend or _PLATFORM_BACKEND.get(config.platform, config.platform)
    if not backend:
        backend = _from_files(model_dir)
    composing = tuple(step.model_name for step in config.ensemble_scheduling.step)
    return UserModel(model_dir.name, backend, _versions(model_dir), composing)


def _from_files(model_dir: Path) -> str:
    for version in _versions(model_dir):
        for entry in (model_dir / version).iterdir():
            if entry.name in _FILE_BACKEND:
                return _FILE_BACKEND[entry.name]
    raise ConfigError(f"model {model_dir.name!r} ({model_dir}) has no config.pbtxt naming its backend or platform "
                      f"and no model file Triton recognises ({', '.join(sorted(_FILE_BACKEND))}); add a config.pbtxt")


def scan_repository(repo: Path) -> list[UserModel]:
    """Every model of ``repo`` with the backend it needs; ``ConfigError`` for what Triton would refuse."""
    if not repo.is_dir():
        raise ConfigError(f"--model-repository {repo} is not a directory")
    models = []
    problems = []
    for model_dir in sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            model = (_from_config(model_dir) if (model_dir / "config.pbtxt").exists()
                     else UserModel(model_dir.name, _from_files(model_dir), _versions(model_dir)))
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if not model.versions:
            problems.append(f"model {model.name!r} ({model_dir}) has no version directory (1/, 2/, ...)")
        models.append(model)
    if problems:
        raise ConfigError(f"model repository {repo}:\n  - " + "\n  - ".join(problems))
    if not models:
        raise ConfigError(f"model repository {repo} holds no model directories (expected <model>/config.pbtxt and "
                          "<model>/1/...)")
    return models


def available_backends(install: TritonInstall) -> set[str]:
    """Backends the bundled server can load: its backend directories, and the built-in schedulers."""
    root = install.python_backend.parent
    return {p.name for p in root.iterdir() if p.is_dir()} | set(BUILT_IN)


def check_repository(repo: Path, install: TritonInstall) -> list[UserModel]:
    """The repository's models, after checking each one's backend is available here (every problem at once)."""
    models = scan_repository(repo)
    have = available_backends(install)
    names = {m.name for m in models}
    problems = [
        f"model {m.name!r} needs the {m.backend!r} backend, which the bundled tritonserver does not ship"
        for m in models if m.backend not in have
    ]
    problems += [f"ensemble {m.name!r} calls model {c!r}, which is not in the repository"
                 for m in models for c in m.composing if c not in names]
    if problems:
        raise ConfigError(
            f"model repository {repo} cannot be served locally:\n  - " + "\n  - ".join(problems)
            + f"\navailable here: {', '.join(sorted(have))}. Serve it with an NGC tritonserver image (the "
            "kubernetes platform), or start a Triton that has the backend and use 'harness attach'"
        )
    return models


def copy_repository(source: Path, target: Path) -> Path:
    """Each replica's own copy (as each pod has its own volume); hard links where possible, so large weights
    cost no space, with copies across file systems."""

    def link_or_copy(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
            return dst
        except OSError:
            return shutil.copy2(src, dst)

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, copy_function=link_or_copy, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def load_model_args(models: Sequence[UserModel]) -> list[str]:
    return [f"--load-model={m.name}" for m in models]
