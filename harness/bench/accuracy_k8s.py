"""Accuracy on Kubernetes: the harness's time to recover vs an independent prober pod, through the real path.

``harness bench accuracy --platform kubernetes`` does on a cluster what the local bench does beside the local
platform. Each fault is one ``harness run`` of its shipped experiment with ``--platform kubernetes``, so the
Chaos Toolkit action injects it and checks it landed, the load runs where clients are (Locust master and
worker pods aimed at the Service by its cluster DNS name: the default ``--load-from cluster``) and ``t0`` comes
from the Chaos Toolkit journal. Meanwhile the independent prober runs as a pod of its own in the same
namespace (``harness.platforms.kubernetes.prober``: standard library only, open loop, each probe on its own
thread, waiting as long as the load's requests do and good when answered within the objective, through the
Service; every 20 ms on a pooled kept-alive connection and every 20 ms on a new one); its records come back
afterwards with its clock offset to the harness measured as the load workers' are, and corrected. Each fault
is judged against the probes that are the same kind of client as its load (``PER_REQUEST``: kube-proxy picks
the pod per connection, so a pooled client and one that connects per request see different things); the
other kind's figures are shown.

Faults (``--faults``): ``pod-kill`` (``pod-kill.yaml``: one pod deleted with grace 0); ``block-one`` and
``block-all`` (``network-policy-block.yaml`` through the privileged agent route, ``block_via: agent``: a
NetworkPolicy is not enforced on every cluster, and the sandbox's bridge plugin ignores it; the bench passes
``--allow-privileged-agent`` and the sandbox's agent image unless ``--agent-image``); ``slow-load``
(``slow-model-load.yaml``, every pod restarted with a slowed load: the rollout keeps old pods serving, so it
compares what clients see during a rolling restart; minutes per repetition, so not in the default set).
Memory pressure is not in this bench on Kubernetes.

Where: ``--namespace NS`` (with ``--k8s-state-dir``) uses a deployment ``harness up --platform kubernetes``
made; without it the bench needs the harness's sandbox (``harness sandbox up``) and deploys the reference
manifest in a fresh namespace (requests shrunk so two pods and a surge pod fit the 2-core node), taking it
down afterwards. The figures are printed per fault, and ``--compare FILE`` prints a result saved with
``--save`` (e.g. ``harness bench accuracy --save local.json`` on the local platform) beside them. Targets as
locally: median |difference| <= 100 ms and worst <= 250 ms for every fault; exit code 1 when one misses.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.bench.accuracy_common import (
    PROBE_TIMEOUT_S,
    ROOT,
    FaultRun,
    compare_runs,
    load_summary,
    print_summary,
    probe_failure_span,
    probe_ttr,
    save_summary,
)
from harness.errors import ConfigError, HarnessError
from harness.load.settings import LoadSettings

if TYPE_CHECKING:
    from harness.platforms.kubernetes.platform import KubernetesPlatform
    from harness.platforms.kubernetes.prober import ProbeResult

__all__ = ["DEFAULT_FAULTS", "EXPERIMENTS", "FAULTS", "PER_REQUEST", "add_arguments", "leftover_probers", "probe_kinds",
           "run", "run_fault"]

# fault -> (shipped experiment, its variables, observation seconds after the last action). The observation
# must outlast the recovery plus the stability period. A block of every pod needed 60 s while the agent
# dropped the kubelet's probes (the pods went unready, and kube-proxy took 8 to 47 s to route to them again);
# the node's own traffic passes now, the pods stay ready, and clients recover at the lift.
EXPERIMENTS: dict[str, tuple[str, dict[str, Any], float]] = {
    "pod-kill": ("pod-kill.yaml", {"recovery_wait_s": 3}, 25.0),
    "block-one": ("network-policy-block.yaml",
                  {"block_mode": "one", "block_via": "agent", "block_s": "{hold}", "recovery_wait_s": 2}, 30.0),
    "block-all": ("network-policy-block.yaml",
                  {"block_mode": "all", "block_via": "agent", "block_s": "{hold}", "recovery_wait_s": 2}, 30.0),
    "slow-load": ("slow-model-load.yaml", {"slow_mode": "all", "load_delay_s": "{hold}", "recovery_wait_s": 5}, 40.0),
}
FAULTS = tuple(EXPERIMENTS)
# The harness's load and the prober's probes it is judged against are the same kind of client: kept connections
# (the load's default, the pooled probes) but where one pod of several is cut off. Through a plain Service a
# pooled client then recovers when its own pool stops using its connections to that pod, an instant each pool
# reaches by its own luck (measured on the sandbox: the load at 0.27-0.76 s, the pooled prober at 0-0.21 s), so
# two pools disagree whatever the harness measures. There the load opens a connection per request
# (``--connections per-request``) and is judged against the new-connection probes: every request of both is
# routed afresh, meets the blocked pod (still ready, so still in the Service's endpoints) with even odds, and
# both recover at the lift.
PER_REQUEST = frozenset({"block-one"})
DEFAULT_FAULTS = ("pod-kill", "block-one", "block-all")
PROBER_COMPONENT = "prober"


def probe_kinds(fault: str) -> tuple[str, str]:
    """(judged, shown): which of the prober's kinds of probe the fault is judged against, and the other."""
    return ("new_connection", "pooled") if fault in PER_REQUEST else ("pooled", "new_connection")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("on Kubernetes (--platform kubernetes)")
    g.add_argument("--platform", choices=("local", "kubernetes"), default="local",
                   help="local: two Triton replicas behind HAProxy (default); kubernetes: the sandbox (or "
                        "--namespace), in-cluster load, the prober as a pod")
    g.add_argument("--namespace", help="a namespace where harness up --platform kubernetes deployed the service "
                                       "(default: a fresh one on the sandbox, deployed and taken down here)")
    g.add_argument("--kubeconfig", help="kubeconfig (default: the sandbox's)")
    g.add_argument("--k8s-state-dir", help="the state directory harness up used for --namespace")
    g.add_argument("--load-image", help="image with the harness for the load and prober pods (default: "
                                        "the sandbox's harness image)")
    g.add_argument("--agent-image", help="image of the network block's agent (default: the sandbox's)")
    g.add_argument("--observation", type=float,
                   help="seconds observed after the last action (default: per fault, 25 to 40)")


def leftover_probers(platform: KubernetesPlatform) -> list[str]:
    """Prober pods still in the platform's namespace (none may outlive the bench)."""
    from harness.platforms.kubernetes.api import KIND_BY_NAME
    from harness.platforms.kubernetes.netagent import COMPONENT

    return [p["metadata"]["name"] for p in
            platform.api.list(KIND_BY_NAME["Pod"], platform.namespace, f"{COMPONENT}={PROBER_COMPONENT}")]


def run_fault(platform: KubernetesPlatform, fault: str, workdir: Path, *, common: list[str], image: str,
              agent_image: str, reps: int, rate: float, hold_s: float, stability_s: float,
              observation_s: float | None, warmup_s: float = 3.0
              ) -> tuple[FaultRun, dict[str, float], ProbeResult | None]:
    """``harness run`` of the fault's shipped experiment on the cluster, the prober pod beside it: the run (with the
    TTR per repetition of the probes that are the same kind of client as the load, ``PER_REQUEST``), the other
    probes' TTR per repetition, and what the prober saw."""
    from harness.platforms.kubernetes.prober import ClusterProber

    experiment, variables, default_observation = EXPERIMENTS[fault]
    reports = workdir / "reports" / fault
    args = [sys.executable, "-m", "harness.cli", "run", str(ROOT / "experiments" / experiment), *common,
            "--reports-dir", str(reports), "--repeat", str(reps), "--users", "10", "--rate", f"{rate:g}",
            "--warmup", f"{warmup_s:g}", "--observation", f"{observation_s or default_observation:g}",
            "--load-image", image, "--var", f"analysis={{stability_period_s: {stability_s:g}}}",
            # too slow means what the prober calls failed: no answer within its timeout
            "--var", f"max_p99_ms={PROBE_TIMEOUT_S * 1000:g}"]
    if fault.startswith("block-"):
        args += ["--allow-privileged-agent", "--agent-image", agent_image]
    if fault in PER_REQUEST:
        args += ["--connections", "per-request"]
    for key, value in variables.items():
        args += ["--var", f"{key}={str(value).format(hold=f'{hold_s:g}')}"]
    limit_s = 600 + 240 * reps
    shape = platform.shape
    host = f"{shape.service}.{platform.namespace}.svc.cluster.local"
    env = {**os.environ, "HARNESS_REPORTS_DIR": str(reports)}
    result = None
    # The prober waits as long as the load's requests do and keeps a connection that answered late, as the
    # load's pool does; a probe is good when answered within the objective, which is the load's too slow.
    with ClusterProber(platform.api, platform.namespace, image, host, shape.service_port("http"),
                       max_s=limit_s + 60, run_id=f"bench-accuracy-{uuid.uuid4().hex[:6]}",
                       timeout_s=LoadSettings().timeout_s, objective_s=PROBE_TIMEOUT_S) as prober:
        try:
            proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=limit_s, env=env)
            code, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, output = 124, f"harness run did not finish within {limit_s}s: {exc}"
        result = prober.finish(workdir / "probers" / fault)
    runs = sorted(reports.glob("*/run.json"))
    run_dir = runs[-1].parent if runs else None
    records = {"pooled": result.pooled, "new_connection": result.records}
    judged, shown = probe_kinds(fault)
    ttrs: dict[str, dict[str, float]] = {"pooled": {}, "new_connection": {}}
    failures: dict[str, tuple[int, float]] = {}
    for info_path in sorted(run_dir.glob("experiments/*/*/experiment.json")) if run_dir else []:
        info = json.loads(info_path.read_text())
        if info.get("fault_start_ns"):  # t0 from the Chaos Toolkit journal, as the analysis takes it
            window = (int(info["fault_start_ns"]), int(info.get("load_start_ns") or 0),
                      int(info.get("observation_end_ns") or time.time_ns()))
            for kind, kept in records.items():
                ttrs[kind][info_path.parent.name] = probe_ttr(kept, *window)
            # for the blip rule (accuracy_common): an outage shorter than the tolerance only one side sampled
            failures[info_path.parent.name] = probe_failure_span(records[judged], *window)
    return FaultRun(run_dir, code, output, ttrs[judged], failures), ttrs[shown], result


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except HarnessError as exc:
        print(f"bench accuracy --platform kubernetes: {exc}")
        return 2 if isinstance(exc, ConfigError) else 3


def _run(args: argparse.Namespace) -> int:
    from harness.platforms.kubernetes.cluster_load import resolve_load_image

    faults = [f.strip() for f in str(args.faults or ",".join(DEFAULT_FAULTS)).split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ConfigError(f"unknown fault(s) {unknown} on Kubernetes; choose from {', '.join(FAULTS)} (memory "
                          "pressure is local only in this bench)")
    beside = load_summary(Path(args.compare)) if args.compare else None
    workdir = Path(args.keep).absolute() if args.keep else Path(tempfile.mkdtemp(prefix="harness-accuracy-k8s-"))
    workdir.mkdir(parents=True, exist_ok=True)
    platform, own = _platform(args, workdir)
    kubeconfig = platform.settings.kubeconfig
    common = ["--platform", "kubernetes", "--namespace", platform.namespace, "--kubeconfig", kubeconfig,
              "--k8s-state-dir", str(platform.settings.state_dir)]
    runs: dict[str, FaultRun] = {}
    other: dict[str, dict[str, float]] = {}
    probers: dict[str, dict[str, Any]] = {}
    left: list[str] = []
    pins = _Pins(kubeconfig)
    try:
        image = pins.pin(resolve_load_image(platform, args.load_image), "harness")
        agent_image = args.agent_image or ""
        if not agent_image and any(f.startswith("block-") for f in faults):
            agent_image = pins.pin(_sandbox_agent_image(kubeconfig), "netagent")
        for fault in faults:
            print(f"== {fault}: harness run on {platform.namespace}, prober pod beside it ...", flush=True)
            fault_run, other[fault], probed = run_fault(platform, fault, workdir, common=common, image=image,
                                          agent_image=agent_image, reps=args.reps, rate=args.rate, hold_s=args.hold,
                                          stability_s=args.stability, observation_s=args.observation)
            runs[fault] = fault_run
            if probed is not None:
                judged, shown = probe_kinds(fault)
                probers[fault] = {**probed.to_json(), "judged": judged, f"{judged}_ttr_s": fault_run.prober_ttr,
                                  f"{shown}_ttr_s": other[fault]}
                applied = "applied" if probed.corrected else "within its uncertainty: not applied"
                print(f"   prober {probed.pod}: {len(probed.pooled)} pooled probes, {probed.pooled_failures} "
                      f"failed; {len(probed.records)} on new connections, {probed.failures} failed; "
                      f"Service {probed.address}; clock offset {probed.clock.offset_ns / 1e6:+.3f} ms "
                      f"± {probed.clock.uncertainty_ns / 1e6:.3f} ({applied})", flush=True)
        left = leftover_probers(platform)
    finally:
        try:
            if own:
                platform.down()
        finally:
            pins.release()
    summary, missed, other_summary = compare_runs(runs, other, "other prober")
    met = print_summary(summary, missed, beside[1] if beside else None, beside[0] if beside else "")
    if other_summary:
        print("the harness vs the prober's other probes (shown, not judged: a different kind of client from the "
              "harness's load, see docs/measurement.md):")
        for row in other_summary:
            print(f"  {row.fault:<16} {row.reps:>4} median |diff| {row.median_ms:.0f} ms, worst {row.worst_ms:.0f} ms")
    if left:
        print(f"MISSED: prober pod(s) left behind: {', '.join(left)}")
        met = False
    conditions = (f"Kubernetes ({platform.namespace}{', deployed by the bench' if own else ''}): faults injected by "
                  f"harness run --platform kubernetes (t0 from the journal), load in the cluster (Locust pods, open "
                  f"loop {args.rate:g} req/s from 10 users, kept-alive connections; a connection per request for "
                  f"{', '.join(sorted(PER_REQUEST))}), prober pod through the Service every 20 ms on a pooled "
                  f"kept-alive connection and every 20 ms on a new one, the same kind as the load's judged, each "
                  f"waiting {LoadSettings().timeout_s:g} s as the load's requests do and good when answered within "
                  f"{PROBE_TIMEOUT_S:g} s")
    print(f"targets: median <= 100 ms and worst <= 250 ms for every fault: {'MET' if met else 'MISSED'}; {conditions}")
    if beside is None:
        print("(the local figures beside these: harness bench accuracy --save local.json, then --compare local.json)")
    if args.save:
        save_summary(Path(args.save), "kubernetes", summary, missed, conditions,
                     extra={"probers": probers, "probers_left": left, "namespace": platform.namespace})
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if met else 1


class _Pins:
    """Images the bench uses, tagged under a name of its own in the sandbox's containerd while it runs.

    The sandbox is shared: importing a harness image (another checkout's, or this one's after an edit) removes
    the older tags of that repository (``Sandbox.import_image``), which twice removed the image under a running
    bench, so its next load pods could not start. A tag in a repository nobody imports into keeps the image;
    it is removed at the end. Off the sandbox nothing is tagged (the cluster pulls what it is told)."""

    def __init__(self, kubeconfig: str) -> None:
        from harness.sandbox.cluster import Sandbox

        self.sandbox = Sandbox()
        self.on_sandbox = Path(kubeconfig).absolute() == self.sandbox.kubeconfig.absolute()
        self.id = uuid.uuid4().hex[:8]
        self.tags: list[str] = []

    def pin(self, image: str, name: str) -> str:
        if not self.on_sandbox:
            return image
        from harness.sandbox import host

        pinned = f"triton-harness/bench-accuracy-{name}:{self.id}"
        host.run(["ctr", "--address", str(self.sandbox.socket), "-n", "k8s.io", "images", "tag", "--force",
                  f"docker.io/{image}", f"docker.io/{pinned}"], what="ctr images tag")
        self.tags.append(f"docker.io/{pinned}")
        return pinned

    def release(self) -> None:
        if self.tags:
            from harness.sandbox import host

            host.run(["ctr", "--address", str(self.sandbox.socket), "-n", "k8s.io", "images", "rm", *self.tags],
                     what="ctr images rm", check=False)
            self.tags.clear()


def _sandbox_agent_image(kubeconfig: str) -> str:
    from harness.sandbox.cluster import Sandbox

    sandbox = Sandbox()
    if Path(kubeconfig).absolute() != sandbox.kubeconfig.absolute():
        raise ConfigError("the network block runs through the privileged agent: pass --agent-image IMAGE (sh, "
                          "nsenter, ip, nft) for this cluster")
    return sandbox.agent_image()


def _platform(args: argparse.Namespace, workdir: Path) -> tuple[KubernetesPlatform, bool]:
    """The deployment the bench measures, and whether the bench deployed it (and takes it down)."""
    from harness.platforms.kubernetes.platform import KubernetesPlatform
    from harness.platforms.kubernetes.settings import KubernetesSettings
    from harness.platforms.registry import platform_from_args

    if args.namespace:
        platform = platform_from_args(argparse.Namespace(
            platform="kubernetes", namespace=args.namespace, kubeconfig=args.kubeconfig,
            k8s_state_dir=args.k8s_state_dir))
        assert isinstance(platform, KubernetesPlatform)
        if not platform.status().ready_replicas:
            raise ConfigError(f"nothing ready in namespace {args.namespace}: harness up --platform kubernetes "
                              f"--namespace {args.namespace} first, or leave --namespace out on the sandbox")
        return platform, False
    from harness.sandbox import Sandbox

    sandbox = Sandbox()
    status = sandbox.status()
    if not status.up:
        raise ConfigError("no --namespace given and the harness's sandbox is not up: harness sandbox up (root), "
                          "or deploy with harness up --platform kubernetes and pass --namespace")
    platform = KubernetesPlatform(KubernetesSettings(
        namespace=f"bench-accuracy-{uuid.uuid4().hex[:6]}", namespace_confirmed=True,
        kubeconfig=args.kubeconfig or status.kubeconfig, state_dir=workdir / "k8s",
        manifest=_sandbox_manifest(workdir), image=status.triton_image, gpus_per_replica=0, replicas=2,
        ready_timeout_s=240.0))
    print(f"deploying the reference service in {platform.namespace} on the sandbox ...", flush=True)
    try:
        platform.up()
    except BaseException:
        platform.down()
        raise
    return platform, True


def _sandbox_manifest(workdir: Path) -> Path:
    """The reference manifest with requests the sandbox's 2-core node can roll (a surge pod must fit too)."""
    from harness.sandbox.manifest import write_small_manifest

    return write_small_manifest(workdir / "triton.yaml")
