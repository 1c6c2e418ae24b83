"""In-cluster load for experiments: the load profile runs where clients are, as Locust pods in the cluster.

On ``--platform kubernetes`` the harness machine usually cannot reach a ClusterIP, and a port-forward pins
every request to one pod (a kill of another pod shows nothing; a kill of that pod breaks the forward), so
the experiment's load runs as a Locust master and worker pods (``harness.platforms.kubernetes.load``)
aimed at the Service by its cluster DNS name. The Chaos Toolkit control starts it before the warm-up and
stops it after the observation exactly as it does the local load process:

- ``start``: the job is recorded on disk (``cluster-load.json`` in the repetition's directory) before any
  object is created, the objects are created (labelled with the run and an expiry, so ``harness cleanup``
  removes a crash's leftovers), and it returns once a worker has recorded requests;
- ``live_timeline``: the steady-state probes read the requests of the last seconds, copied from the workers
  into ``timeline-live/`` (the final timeline comes back once, at the end);
- ``stop``: SIGINT to the master through exec (Locust quits its workers, which finish their requests in
  flight and flush), every worker's timeline copied into the repetition's ``timeline/`` (where the analysis
  reads it), and the objects deleted whatever happened.

``--load-from local`` keeps the local load process (the sandbox's root namespace routes to ClusterIPs).
The image: ``--load-image``, else ``load_image`` of the platform settings (``--k8s-settings``), else, on the
harness's own sandbox, the harness image it builds (``Sandbox.harness_image``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from harness.errors import ConfigError, PlatformError
from harness.jsonfile import write_json_atomic
from harness.load.requests import RequestOptions
from harness.load.settings import LoadSettings
from harness.platforms.base import Platform
from harness.platforms.kubernetes import load as kload
from harness.platforms.kubernetes.api import KIND_BY_NAME, KubeApi
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.kubernetes.render import slug

__all__ = [
    "RECORD",
    "VIEW_DIR",
    "LoadFrom",
    "add_load_placement_arguments",
    "live_timeline",
    "placement",
    "profile_params",
    "recorded",
    "request_env",
    "resolve_load_image",
    "running",
    "start",
    "stop",
]

LoadFrom = Literal["cluster", "local"]
RECORD = "cluster-load.json"
LIVE_DIR = "timeline-live"
VIEW_DIR = "timeline-view"  # the game day live view's copies of the newest chunks
START_TIMEOUT_S = 180.0


def add_load_placement_arguments(parser: argparse.ArgumentParser) -> None:
    """``--load-from`` and ``--load-image`` for ``run``, ``suite`` and ``gameday``."""
    parser.add_argument("--load-from", choices=("cluster", "local"),
                        help="kubernetes: run the load as Locust pods in the cluster, aimed at the Service by its "
                             "cluster DNS name (default), or from this machine (it must reach the Service)")
    parser.add_argument("--load-image", help="kubernetes: image with the harness for the load pods (default: "
                                             "load_image of --k8s-settings; on the sandbox, its harness image)")


def _sandbox_image(kubeconfig: str) -> str:
    """The sandbox's harness image when the platform talks to the harness's own sandbox (built and imported
    on first use, which needs root as the sandbox does); "" elsewhere."""
    from harness.sandbox.cluster import Sandbox

    sandbox = Sandbox()
    path = kubeconfig or os.environ.get("KUBECONFIG", "")
    if not path or Path(path).absolute() != sandbox.kubeconfig.absolute() or not sandbox.kubeconfig.exists():
        return ""
    if os.geteuid() != 0:
        return ""
    print("load image: the sandbox's harness image (built and imported on first use) ...", file=sys.stderr,
          flush=True)
    return sandbox.harness_image()


def resolve_load_image(platform: Platform, explicit: str | None) -> str:
    """The load pods' image: explicit, else the settings' ``load_image``, else the sandbox's; else exit 2."""
    settings = _kubernetes(platform).settings
    image = explicit or settings.load_image or _sandbox_image(settings.kubeconfig)
    if not image:
        raise ConfigError(
            "the load runs in the cluster (--load-from cluster, the default on Kubernetes) but no image for the "
            "load pods was given: pass --load-image IMAGE (the harness with Locust, e.g. built from this "
            "checkout and pushed where the cluster pulls from), or set load_image in the --k8s-settings file; "
            "or use --load-from local when this machine reaches the Service itself. Nothing was injected")
    return str(image)


def placement(args: argparse.Namespace) -> dict[str, str]:
    """``harness_load_from`` and ``harness_load_image`` for the experiments' configuration, checked before
    anything runs (a missing image is a ConfigError, exit 2, nothing injected)."""
    load_from = getattr(args, "load_from", None)
    if args.platform != "kubernetes":
        if load_from == "cluster":
            raise ConfigError("--load-from cluster needs --platform kubernetes (the load pods run in the cluster)")
        return {}
    load_from = load_from or "cluster"
    if load_from == "local":
        return {"harness_load_from": "local"}
    from harness.platforms.registry import platform_from_args

    request_env(None)  # sample files in this environment (HARNESS_INPUT_DATA) cannot reach the pods: exit 2 now
    image = resolve_load_image(platform_from_args(args), getattr(args, "load_image", None))
    return {"harness_load_from": "cluster", "harness_load_image": image}


_PARAM = re.compile(r"\bHARNESS_[A-Z0-9_]+\b")


def profile_params(profile: Path, explicit: Mapping[str, str] | None = None,
                   environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The profile's own parameters for pods, which do not inherit this process's environment: every
    ``HARNESS_*`` variable the profile's source names that is set here (``HARNESS_STEP_S`` ...), then
    ``explicit`` (``--param``). The settings (users, rate, ...) are set from the run's own values after."""
    environ = os.environ if environ is None else environ
    names = set(_PARAM.findall(profile.read_text(encoding="utf-8")))
    out = {name: environ[name] for name in sorted(names) if name in environ}
    out.update(explicit or {})
    return out


def request_env(requests: RequestOptions | None) -> dict[str, str]:
    """Request options for the pods: these, or those of this process's environment (``HARNESS_MODEL`` ...).

    Sample files stay on this machine, so they are refused (exit 2) rather than silently not sent."""
    options = requests if requests is not None else RequestOptions.from_env()
    if options.input_data:
        raise ConfigError("sample data files (--input-data, harness_input_data, HARNESS_INPUT_DATA) are not "
                          "shipped to the load pods; give variable dimensions with --shape/--variable-dim "
                          "(harness_shape, harness_variable_dim) on Kubernetes, or use --load-from local")
    return {k: v for k, v in options.to_env().items() if v}


# -- the job on disk: the control keeps no handle between its calls -------------------------------------
def _save(run_dir: Path, job: kload.LoadJob, state: str) -> None:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(job.settings).items()}
    write_json_atomic(run_dir / RECORD, {
        "state": state, "run_id": job.run_id, "name": job.name, "namespace": job.namespace,
        "workers": job.workers, "image": job.image, "profile": str(job.profile), "expires_at": job.expires_at,
        "env": job.env, "settings": settings, "objects_label": f"harness.load-run={job.run_label}",
    })


def _load(run_dir: Path) -> tuple[kload.LoadJob, dict[str, Any]] | None:
    path = run_dir / RECORD
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    settings = LoadSettings(**{k: v for k, v in raw["settings"].items()
                               if k not in ("timeline_dir", "requests_file")})
    job = kload.LoadJob(run_id=raw["run_id"], namespace=raw["namespace"], workers=int(raw["workers"]),
                        image=raw["image"], profile=Path(raw["profile"]), settings=settings, name=raw["name"],
                        expires_at=raw["expires_at"], env=dict(raw["env"]))
    return job, raw


def recorded(run_dir: Path) -> bool:
    """Whether this repetition's load was started in the cluster (its record is on disk)."""
    return (run_dir / RECORD).exists()


def _kubernetes(platform: Platform) -> KubernetesPlatform:
    if not isinstance(platform, KubernetesPlatform):
        raise ConfigError(f"in-cluster load needs the kubernetes platform, not {platform.name}")
    return platform


def _api(platform: Platform) -> KubeApi:
    return _kubernetes(platform).api


def start(platform: Platform, run_id: str, run_dir: Path, profile: Path, settings: LoadSettings, workers: int,
          image: str | None, requests: RequestOptions | None) -> dict[str, Any]:
    """Start the experiment's load in the cluster; its record for ``experiment.json`` once requests flow.

    ``settings``: protocol, users and rate of the run; ``workers``: worker pods (at least one); ``image``: the
    load pods' image, else as ``resolve_load_image`` finds it."""
    profile = profile.absolute()
    image = resolve_load_image(platform, image)
    env = {**profile_params(profile), **request_env(requests)}
    digest = hashlib.sha1(str(run_dir.absolute()).encode()).hexdigest()[:6]
    name = slug(f"{run_dir.parent.name[:24]}-{run_dir.name}-{digest}", 40)
    workers = max(workers, 1)
    job = _kubernetes(platform).load_job(run_id, workers, profile, image, settings, env, name)
    api = _api(platform)
    _save(run_dir, job, "starting")  # on disk before any object exists: stop() finds it whatever happens
    try:
        created = kload.start_load(api, job)
        kload.wait_sending(api, job, START_TIMEOUT_S)
    except BaseException:
        kload.delete_load(api, job)
        _save(run_dir, job, "deleted")
        raise
    _save(run_dir, job, "running")
    worker = job.worker_settings()
    return {
        "from": "cluster", "profile": str(profile), "image": image, "namespace": job.namespace,
        "target": job.host, "grpc_target": job.settings.grpc_target, "workers": job.workers,
        "master": job.master, "objects": created, "label": f"harness.load-run={job.run_label}",
        "users": settings.users, "rate": settings.rate, "protocol": settings.protocol,
        "timeout_s": settings.timeout_s, "connections": settings.connections,
        "per_worker": {"max_inflight": worker.inflight_cap(), "resources": job.worker_resources()},
        "env": env,
    }


def running(run_dir: Path, platform: Platform) -> bool | None:
    """None when this repetition's load is not in the cluster; else whether its master pod still runs."""
    loaded = _load(run_dir)
    if loaded is None:
        return None
    job, raw = loaded
    if raw["state"] != "running":
        return False
    pod = _api(platform).get(f"{KIND_BY_NAME['Pod'].collection(job.namespace)}/{job.master}")
    return pod is not None and (pod.get("status") or {}).get("phase") == "Running"


def stop(run_dir: Path, platform: Platform) -> str | None:
    """Stop, collect and delete this repetition's in-cluster load; why its timeline is incomplete, or None.

    Nothing to do (None) when the load is not in the cluster or is already deleted. The objects are
    deleted whatever happens, also when stopping or copying failed."""
    loaded = _load(run_dir)
    if loaded is None or loaded[1]["state"] == "deleted":
        return None
    job, _ = loaded
    api = _api(platform)
    problem = None
    try:
        kload.stop_load(api, job, wait_s=job.settings.timeout_s + 60)
        kload.collect_timelines(api, job, run_dir / "timeline", wait_s=60.0)
    except Exception as exc:  # noqa: BLE001 - recorded: a repetition without its whole timeline is void
        problem = f"the in-cluster load's timelines did not all come back: {exc}"
    finally:
        kload.delete_load(api, job)
        _save(run_dir, job, "deleted")
        for copies in (LIVE_DIR, VIEW_DIR):  # the probes' and the live view's copies; timeline/ has it all
            shutil.rmtree(run_dir / copies, ignore_errors=True)
    return problem


_RECENT = ("import os, sys, tarfile, time\n"
           "cut = time.time() - float(sys.argv[1])\n"
           "with tarfile.open(fileobj=sys.stdout.buffer, mode='w|') as tar:\n"
           "    for n in sorted(os.listdir('/timeline')):\n"
           "        p = '/timeline/' + n\n"
           "        if n.startswith('part-') and n.endswith('.arrow') and os.stat(p).st_mtime >= cut:\n"
           "            tar.add(p, arcname=n)\n")


def live_timeline(run_dir: Path, platform: Platform, window_s: float, into: str = LIVE_DIR) -> Path | None:
    """The chunks of the last ``window_s`` seconds from every worker, in ``timeline-live/`` for the
    steady-state probes (``into``: another folder for another reader, such as the game day's live view, so
    neither reads a chunk the other is writing); None when this repetition's load is not in the cluster or
    no longer running."""
    loaded = _load(run_dir)
    if loaded is None or (into != LIVE_DIR and loaded[1]["state"] != "running"):
        return None
    job, _ = loaded
    api = _api(platform)
    dest = run_dir / into
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(job.workers):
        code, out, err = kload._exec_bytes(api, job.namespace, job.worker(i),
                                           ["python3", "-c", _RECENT, f"{window_s + 5:g}"])
        if code != 0:
            raise PlatformError(f"cannot read the recent timeline of load worker {job.worker(i)}: {err[:200]}")
        with tarfile.open(fileobj=io.BytesIO(out)) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member)
                if member.isfile() and data is not None and "/" not in member.name:
                    (dest / member.name).write_bytes(data.read())  # part-w<i>-<seq>: unique per worker
    return dest
