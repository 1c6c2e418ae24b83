"""``harness check-deployment``: is this Deployment exposed to the faults the field sees? Exit 1 on an error."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.deploycheck import (
    BASELINE_MB,
    TIER_NEEDS,
    CheckInput,
    measure_load,
    model_config_facts,
    read_manifest,
    run_checks,
)
from harness.deployment import DEFAULT_MANIFEST
from harness.errors import ConfigError
from harness.triton.modelrepo import REFERENCE_REPOSITORY

__all__ = ["register"]

DEFAULT_MODEL_CONFIG = REFERENCE_REPOSITORY / "mlp" / "config.pbtxt"


def _cmd_check(args: argparse.Namespace) -> int:
    manifest = Path(args.manifest)
    deployment = read_manifest(manifest)
    try:
        config_text = Path(args.model_config).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the model config {args.model_config}: {exc.strerror}; pass "
                          "--model-config PATH/config.pbtxt") from exc
    batching, arena_mb = model_config_facts(config_text)
    load_time, peak, source = args.load_time, args.load_peak_mb, "given"
    if args.measure:
        measured = measure_load(manifest)
        load_time, peak, source = measured.load_time_s, measured.peak_mb, "measured"
    elif peak is None:
        peak, source = arena_mb + BASELINE_MB, f"estimated: arena_mb {arena_mb:g} + {BASELINE_MB:g} MiB baseline"
    report = run_checks(CheckInput(deployment, load_time, peak, source, args.tier, batching, str(args.model_config)))
    print(report.dumps() if args.json else report.render())
    return 1 if report.errors else 0


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or MiB, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check-deployment", help="static checks of a Deployment against the faults seen in the field (exit 1 on "
                                 "an error)",
        description="Check a Triton Deployment manifest, with numbers: startup/liveness budget against the model "
                    "load time, memory limit against the load-time peak, replicas/PodDisruptionBudget/anti-affinity "
                    "against the claimed tier, readiness on /v2/health/ready with strict readiness, preStop and "
                    "grace period against Triton's --exit-timeout-secs, rollout maxSurge/maxUnavailable, and dynamic "
                    "batching. Each finding names the experiment that demonstrates it. Exit 1 when a finding is an "
                    "error, 2 on bad input.")
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="the Kubernetes manifest (Deployment, "
                   "PodDisruptionBudget)")
    p.add_argument("--model-config", default=str(DEFAULT_MODEL_CONFIG), help="the model's config.pbtxt "
                   "(dynamic batching, arena_mb)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--load-time", type=_positive, metavar="S", help="the model's load time, start to ready")
    when.add_argument("--measure", action="store_true", help="measure load time and load-time memory peak by "
                      "starting one replica on the local platform")
    p.add_argument("--load-peak-mb", type=_positive, metavar="MB", help="the load-time memory peak (default: "
                   f"measured with --measure, else arena_mb + {BASELINE_MB:g} MiB)")
    p.add_argument("--tier", choices=sorted(TIER_NEEDS), help="the availability tier you claim")
    p.add_argument("--json", action="store_true", help="one JSON object (for CI)")
    p.set_defaults(handler=_cmd_check)
