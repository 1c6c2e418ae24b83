"""The explicit mapping from ``--platform`` names to platform factories."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.platforms.base import Platform

__all__ = ["PLATFORMS", "add_platform_arguments", "platform_from_args"]


def _local(args: argparse.Namespace, for_up: bool) -> Platform:
    from harness.platforms.local.platform import LocalPlatform
    from harness.platforms.local.settings import LocalSettings, default_state_dir

    state_dir = Path(args.state_dir).absolute() if args.state_dir else default_state_dir()
    if not for_up and (state_dir / "settings.json").exists():
        return LocalPlatform(LocalSettings.load(state_dir))
    values: dict[str, Any] = {"state_dir": state_dir}
    for key in ("manifest", "replicas", "http_port", "grpc_port", "prometheus_port", "stats_port",
                "replica_address_base", "front_address", "time_scale", "queue_delay_ms", "model_instances"):
        value = getattr(args, key, None)
        if value is not None:
            values[key] = Path(value).absolute() if key == "manifest" else value
    if getattr(args, "retries", False):
        values["retries"] = True
    if getattr(args, "no_prometheus", False):
        values["prometheus"] = False
    if getattr(args, "ready_timeout", None) is not None:
        values["ready_timeout_s"] = args.ready_timeout
    return LocalPlatform(LocalSettings(**values))


PLATFORMS: dict[str, Callable[[argparse.Namespace, bool], Platform]] = {"local": _local}


def add_platform_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--platform", default="local", help="where the service runs (default: local)")
    parser.add_argument(
        "--state-dir",
        help="the local platform's state directory (default: $HARNESS_STATE_DIR or ./.harness/local)",
    )


def platform_from_args(args: argparse.Namespace, for_up: bool = False) -> Platform:
    try:
        factory = PLATFORMS[args.platform]
    except KeyError:
        raise ConfigError(
            f"unknown platform {args.platform!r}; choose one of: {', '.join(sorted(PLATFORMS))}"
        ) from None
    return factory(args, for_up)
