"""``harness load``: run a load profile against the service and record every request's outcome."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.load.process import LoadProcess, check_endpoint
from harness.load.profile import check_profile_file
from harness.load.requests import RequestOptions
from harness.load.rundir import RunDir
from harness.load.settings import CONNECTIONS, LoadSettings
from harness.platforms.registry import add_platform_arguments, platform_from_args
from harness.service import describe_endpoint, describe_service
from harness.timeline import copied_workers, workers_note

__all__ = ["register", "summarize"]


def _params(pairs: list[str]) -> dict[str, str]:
    """``--param STEP_S=2`` -> ``{"HARNESS_STEP_S": "2"}``: a profile's own parameters."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {pair!r} must look like NAME=VALUE (e.g. --param STEP_S=5)")
        key = key.strip().upper()
        out[key if key.startswith("HARNESS_") else f"HARNESS_{key}"] = value.strip()
    return out


def _endpoints(args: argparse.Namespace) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """(http URL, gRPC target, platform settings, service under test) from --endpoint or the platform."""
    if args.endpoint:
        ep = args.endpoint.rstrip("/")
        if args.protocol == "grpc":
            target = ep.removeprefix("grpc://")
            if target.startswith("http://"):
                raise ConfigError(f"--endpoint {ep} is an HTTP URL; with --protocol grpc give HOST:PORT")
            return (f"http://{target.rsplit(':', 1)[0]}:8000", target, {},
                    describe_endpoint("", target, protocol="grpc"))
        if not ep.startswith("http://"):
            raise ConfigError(f"--endpoint {ep!r} must look like http://HOST:PORT (or use --protocol grpc)")
        return ep, args.grpc_endpoint or "", {}, describe_endpoint(ep, args.grpc_endpoint or "")

    platform = platform_from_args(args)
    status = platform.status()
    details = {k: v for k, v in status.details.items() if k in ("time_scale", "retries", "gpu")}
    return status.endpoints.http, status.endpoints.grpc, details, describe_service(platform)


def request_options(args: argparse.Namespace) -> RequestOptions:
    """--model/--batch/--shape/--input-data/--variable-dim/--seed; unset ones fall back to HARNESS_*."""
    env = RequestOptions.from_env()
    return RequestOptions.parse(
        models=args.model or [f"{n}:{w:g}" for n, w in env.models],
        batch=args.batch if args.batch is not None else env.batch,
        shapes=args.shape or [";".join(f"{m}:{t}={'x'.join(map(str, d))}" for (m, t), d in env.shapes.items())],
        input_data=args.input_data or [";".join(f"{m}={p}" for m, p in env.input_data.items())],
        variable_dim=args.variable_dim if args.variable_dim is not None else env.variable_dim,
        seed=args.seed if args.seed is not None else env.seed,
    )


def add_request_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("requests (built from the server's model metadata; docs/load.md)")
    g.add_argument("--model", action="append", metavar="NAME[:WEIGHT]",
                   help="model to load, repeatable with weights (--model a:3 --model b:1); default: the only "
                        "ready model of the server ($HARNESS_MODEL)")
    g.add_argument("--batch", type=int, help="batch size for models that batch (1)")
    g.add_argument("--shape", action="append", metavar="[MODEL:]INPUT=DIMS",
                   help="dims of an input with variable dimensions, without the batch dim (e.g. TEXT=1, "
                        "image:PIXELS=3x224x224)")
    g.add_argument("--input-data", action="append", metavar="[MODEL=]FILE",
                   help="sample data file ({\"data\": [{INPUT: values}, ...]}); entries are sent in turn")
    g.add_argument("--variable-dim", type=int, help="size for every variable dimension nobody gave (none)")
    g.add_argument("--seed", type=int, help="seed of the generated data (0)")


def summarize(timeline_dir: Path) -> dict[str, Any]:
    """Totals of a timeline for the closing lines (the timeline, not Locust's statistics, is the truth)."""
    from harness.ranks import nearest_rank_value
    from harness.timeline import read_timeline

    df = read_timeline(timeline_dir)
    if df.empty:
        return {"requests": 0, "ok": 0, "errors": {}, "rps": 0.0, "p50_ms": None, "p99_ms": None}
    span = (df["start_ns"].max() - df["start_ns"].min()) / 1e9
    errors = df[df["outcome"] != "ok"]
    ok = df[df["outcome"] == "ok"]["latency_s"]
    return {
        "requests": len(df),
        "ok": int(len(df) - len(errors)),
        "errors": {str(k): int(v) for k, v in errors["error_class"].value_counts().items()},
        "rps": round(len(df) / span, 1) if span > 0 else float(len(df)),
        # the analysis's nearest rank (a latency a request really had), so these match the report's figures
        "p50_ms": round(nearest_rank_value(ok.to_numpy(), 50) * 1000, 2) if len(ok) else None,
        "p99_ms": round(nearest_rank_value(ok.to_numpy(), 99) * 1000, 2) if len(ok) else None,
        "workers": sorted(str(w) for w in df["worker"].unique()),
    }


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _cmd_load_kubernetes(args: argparse.Namespace, params: dict[str, str], requests: RequestOptions) -> int:
    """Distributed load inside the cluster: a Locust master and N worker pods created for this run, aimed at
    the Service by its cluster DNS name, every setting in the pods' environment (the shape reads it), every
    worker's timeline copied back, every object deleted at the end (harness.platforms.kubernetes)."""
    from harness.platforms.kubernetes.cluster_load import profile_params, request_env, resolve_load_image

    if not args.duration or args.duration <= 0:
        raise ConfigError("on Kubernetes the load pods need a --duration (seconds)")
    from harness.platforms.kubernetes.platform import KubernetesPlatform

    profile = check_profile_file(Path(args.profile))
    env = {**profile_params(profile, params), **request_env(requests)}
    settings = LoadSettings(protocol=args.protocol, users=args.users, rate=args.rate, duration_s=args.duration,
                            timeout_s=args.timeout, connections=args.connections)
    platform = platform_from_args(args)
    assert isinstance(platform, KubernetesPlatform)  # --platform kubernetes
    image = resolve_load_image(platform, args.load_image)
    service = describe_service(platform)  # the Deployment, image(s), models and versions under test
    workers = max(args.workers, 1)
    load: dict[str, Any] = {"profile": str(profile), "protocol": args.protocol, "users": args.users,
                            "rate": args.rate, "duration_s": args.duration, "timeout_s": args.timeout,
                            "connections": args.connections, "workers": workers, "image": image, "params": params,
                            "env": env}
    run = RunDir.create(Path(args.reports), f"load-{profile.stem}", "load", ["harness", *sys.argv[1:]],
                        {"platform": "kubernetes", "load": load},
                        path=Path(args.run_dir).absolute() if args.run_dir else None)
    job = platform.load_job(run.path.name, workers, profile, image, settings, env=env)
    load.update(endpoint=job.host, per_worker={"max_inflight": job.worker_settings().inflight_cap(),
                                               "resources": job.worker_resources()})
    mode = f"open loop {args.rate:g} req/s" if args.rate > 0 else "closed loop"
    print(f"load {profile.name} in the cluster: {args.users} users, {mode}, {args.protocol} -> {job.host}, "
          f"{args.duration:g}s, {workers} worker pod(s) of {image}", flush=True)
    files = platform.run_load(job, run.timeline_dir, args.duration + 300)
    summary = summarize(run.timeline_dir)
    copied = copied_workers(run.timeline_dir) or {}
    summary["dropped"] = copied.get("dropped")  # summed over the workers
    summary["clock_offsets_ms"] = {w["pod"]: [w["clock_offset_ms"], w["clock_uncertainty_ms"]]
                                   for w in copied.get("workers", [])}
    run.write("completed", summary=summary, service=service)  # settings["load"] now has the endpoint too
    print(f"{summary['requests']} requests ({summary['rps']} req/s) in {len(files)} timeline chunk(s); "
          f"run directory: {run.path}")
    if copied:
        print(workers_note(copied))
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    params = _params(args.param or [])
    if args.platform == "kubernetes":
        return _cmd_load_kubernetes(args, params, request_options(args))
    duration = args.duration if args.duration and args.duration > 0 else None
    profile = check_profile_file(Path(args.profile))
    if args.workers < 0:
        raise ConfigError(f"--workers is {args.workers}; it must be 0 (one process) or more")
    requests = request_options(args)
    http, grpc, platform_settings, service = _endpoints(args)
    settings = LoadSettings(http_url=http, grpc_target=grpc, protocol=args.protocol, users=args.users,
                            rate=args.rate, duration_s=duration, timeout_s=args.timeout,
                            connections=args.connections)
    check_endpoint(settings)
    load_settings = {"profile": str(profile), "protocol": args.protocol, "users": args.users,
                     "rate": args.rate, "duration_s": duration, "workers": args.workers,
                     "timeout_s": args.timeout, "connections": args.connections,
                     "endpoint": http if args.protocol == "http" else settings.grpc, "params": params,
                     "requests": requests.to_json()}
    run = RunDir.create(Path(args.reports), f"load-{profile.stem}", "load", ["harness", *sys.argv[1:]],
                        {**platform_settings, "load": load_settings},
                        path=Path(args.run_dir).absolute() if args.run_dir else None)
    mode = f"open loop {args.rate:g} req/s" if args.rate > 0 else "closed loop"
    models = ", ".join(f"{n}:{w:g}" for n, w in requests.models) or "the server's only model"
    print(f"load {profile.name}: {args.users} users, {mode}, {args.protocol} -> {load_settings['endpoint']} "
          f"({models}), "
          f"{'until Ctrl-C' if duration is None else f'{duration:g}s'}"
          + (f", {args.workers} workers" if args.workers else ""), flush=True)
    try:
        load = LoadProcess.start(http, grpc, profile, run.timeline_dir, protocol=args.protocol,
                                 users=args.users, rate=args.rate, duration_s=duration, workers=args.workers,
                                 timeout_s=args.timeout, connections=args.connections,
                                 stats_path=run.path / "load.jsonl", extra_env=params,
                                 requests=requests)
    except HarnessError:
        shutil.rmtree(run.path, ignore_errors=True)  # nothing was sent: leave no empty run behind
        raise
    status = "completed"
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's stop is a Ctrl-C: stop cleanly
    try:
        code = load.wait()
    except KeyboardInterrupt:
        print("stopping (requests in flight finish, the timeline is flushed) ...", file=sys.stderr,
              flush=True)
        code = load.stop()
        status = "interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code not in (0, None) and status == "completed":
        status = "crashed"
    summary = summarize(run.timeline_dir)
    run.write(status, summary=summary, service=service)
    errors = ", ".join(f"{k} {v}" for k, v in sorted(summary["errors"].items())) or "none"
    print(f"{summary['requests']} requests ({summary['rps']} req/s), {summary['ok']} ok, errors: {errors}; "
          f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms")
    print(f"run directory: {run.path}")
    if status == "crashed":
        raise HarnessError(f"the load process exited with code {code}; its output is above")
    return 130 if status == "interrupted" else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "load", help="run a load profile and record the request timeline",
        description="Run a Locust load profile against the service; print a live line each second and "
                    "write reports/<run_id>/ (run.json, load.jsonl, timeline/). The endpoint comes from the "
                    "running platform unless --endpoint is given. An endpoint that fails during the run is "
                    "recorded, not an error.")
    add_platform_arguments(p)
    p.add_argument("--profile", required=True, help="a locustfile with one LoadTestShape (loadprofiles/*.py)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds; 0 runs until Ctrl-C")
    p.add_argument("--protocol", choices=("http", "grpc"), default="http", help="how users call Triton")
    p.add_argument("--users", type=int, default=10, help="the profile's base user count (HARNESS_USERS)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="open loop: requests/s at --users users, sent on schedule whatever the latency "
                        "(0: closed loop, each user waits for its answer)")
    p.add_argument("--load-image", help="Kubernetes only: image with the harness for the Locust pods (default: "
                                        "load_image of --k8s-settings; on the sandbox, its harness image)")
    p.add_argument("--workers", type=int, default=0,
                   help="Locust worker processes under a master (0: one process runs the users)")
    p.add_argument("--timeout", type=float, default=2.0, help="request timeout in seconds")
    p.add_argument("--connections", choices=CONNECTIONS, default="kept",
                   help="HTTP: keep-alive connections in a pool (default) or a new one per request, which a "
                        "Kubernetes Service routes afresh each time")
    p.add_argument("--endpoint", help="http://HOST:PORT (or HOST:PORT with --protocol grpc); "
                                      "default: the running platform's front")
    p.add_argument("--grpc-endpoint", help=argparse.SUPPRESS)
    add_request_arguments(p)
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a profile parameter, e.g. --param STEP_S=5 (sets HARNESS_STEP_S)")
    p.add_argument("--run-dir", help="write the run here instead of reports/<run_id>")
    p.add_argument("--reports", default="reports", help="where run directories are created")
    p.set_defaults(handler=_cmd_load)
