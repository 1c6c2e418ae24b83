"""The deployment checks: each states its numbers and names the experiment that demonstrates the failure.

A check is a plain function of the parsed manifest and the measured (or given) facts about the model;
it returns one ``Finding``. ``error`` findings are failures a fault will turn into an outage (exit 1);
``warning`` findings are exposures worth a look; ``ok`` findings say what was checked and passed, so the
output is evidence, not silence.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from harness.manifest import DeploymentView

__all__ = ["CHECKS", "TIER_NEEDS", "CheckInput", "Finding", "Report", "run_checks"]

Severity = Literal["error", "warning", "ok", "skipped"]
READY_PATHS = ("/v2/health/ready",)


@dataclass(frozen=True)
class TierNeeds:
    replicas: int
    pdb: bool
    anti_affinity: Severity  # what a missing anti-affinity is for this tier


# What a claimed tier needs from the Deployment (DESIGN.md tiers): a single replica can only be single-point;
# active-standby needs a second replica that survives voluntary disruptions (PDB); the higher tiers also need
# the replicas on different nodes, or one node failure is a full outage.
TIER_NEEDS = {
    "single-point": TierNeeds(1, False, "ok"),
    "active-standby": TierNeeds(2, True, "warning"),
    "99.9": TierNeeds(2, True, "warning"),
    "multi-active": TierNeeds(3, True, "error"),
}


@dataclass(frozen=True)
class CheckInput:
    deployment: DeploymentView
    load_time_s: float | None = None  # model load time, start to ready (given or measured)
    load_peak_mb: float | None = None  # memory peak while the model loads (given, measured or estimated)
    peak_source: str = ""  # "measured", "given", "estimated from arena_mb"
    tier: str | None = None
    dynamic_batching: bool | None = None  # None: no model config was read
    model_config_source: str = ""


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    message: str
    experiment: str  # the experiment that demonstrates what this check predicts
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    manifest: str
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")

    def to_json(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "passed": self.errors == 0, "errors": self.errors,
                "warnings": self.warnings, "findings": [asdict(f) for f in self.findings]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)

    def render(self) -> str:
        marks = {"error": "ERROR", "warning": "warn ", "ok": "ok   ", "skipped": "skip "}
        lines = [f"check-deployment {self.manifest}"]
        for f in self.findings:
            lines.append(f"  {marks[f.severity]} {f.check}: {f.message}")
            if f.severity in ("error", "warning"):
                lines.append(f"          demonstrated by: {f.experiment}")
        lines.append(f"{self.errors} error(s), {self.warnings} warning(s)")
        return "\n".join(lines)


def check_load_budget(c: CheckInput) -> Finding:
    exp = "experiments/probe-kills-slow-load.yaml"
    budget = c.deployment.load_budget
    if budget is None:
        return Finding("load-budget", "warning", "no startup or liveness probe: a hung server is never restarted",
                       exp)
    probe, seconds = budget
    numbers = {"probe": probe, "budget_s": seconds, "load_time_s": c.load_time_s}
    if c.load_time_s is None:
        return Finding("load-budget", "skipped", f"{probe} budget {seconds:g}s; the model load time is unknown "
                       "(pass --load-time S or --measure)", exp, numbers)
    if seconds < c.load_time_s:
        return Finding("load-budget", "error",
                       f"{probe} budget {seconds:g}s (initialDelay + period x failureThreshold) is shorter than the "
                       f"{c.load_time_s:g}s model load: the probe kills every start -> CrashLoopBackOff", exp, numbers)
    if seconds < 2 * c.load_time_s:
        return Finding("load-budget", "warning",
                       f"{probe} budget {seconds:g}s is less than twice the {c.load_time_s:g}s model load: a slower "
                       "node or a cold cache tips it into CrashLoopBackOff", exp, numbers)
    return Finding("load-budget", "ok", f"{probe} budget {seconds:g}s covers the {c.load_time_s:g}s model load", exp,
                   numbers)


def check_liveness_path(c: CheckInput) -> Finding:
    exp = "experiments/probe-kills-slow-load.yaml"
    live = c.deployment.liveness
    if live is not None and ("ready" in live.path):
        return Finding("liveness-path", "error",
                       f"livenessProbe checks {live.path}: readiness fails while a model loads or reloads, so the "
                       "probe kills a healthy server; use /v2/health/live", exp, {"path": live.path})
    return Finding("liveness-path", "ok", f"livenessProbe on {live.path if live else '(none)'}", exp)


def check_memory(c: CheckInput) -> Finding:
    exp = "experiments/oom-at-load.yaml"
    limit = c.deployment.memory_limit_mb
    numbers = {"limit_mb": limit, "load_peak_mb": c.load_peak_mb, "peak_source": c.peak_source}
    if limit is None:
        return Finding("memory-limit", "warning", "no memory limit: the node's OOM killer picks the victim, "
                       "and the scheduler cannot keep the load-time peak in mind", exp, numbers)
    if c.load_peak_mb is None:
        return Finding("memory-limit", "skipped", f"limit {limit:g} MiB; the load-time peak is unknown "
                       "(pass --load-peak-mb or --measure)", exp, numbers)
    if limit < c.load_peak_mb:
        return Finding("memory-limit", "error",
                       f"memory limit {limit:g} MiB is below the model's load-time peak {c.load_peak_mb:.0f} MiB "
                       f"({c.peak_source}): OOMKilled at every load -> CrashLoopBackOff", exp, numbers)
    if limit < 1.2 * c.load_peak_mb:
        return Finding("memory-limit", "warning",
                       f"memory limit {limit:g} MiB leaves less than 20 % over the load-time peak "
                       f"{c.load_peak_mb:.0f} MiB ({c.peak_source})", exp, numbers)
    return Finding("memory-limit", "ok", f"memory limit {limit:g} MiB over the load-time peak "
                   f"{c.load_peak_mb:.0f} MiB ({c.peak_source})", exp, numbers)


def check_tier(c: CheckInput) -> Finding:
    exp = "experiments/pod-kill.yaml"
    d = c.deployment
    if c.tier is None:
        return Finding("tier", "skipped", f"{d.replicas} replica(s); no tier claimed (pass --tier NAME)", exp)
    needs = TIER_NEEDS[c.tier]
    numbers = {"tier": c.tier, "replicas": d.replicas, "needs_replicas": needs.replicas,
               "pdb": d.pdb.name if d.pdb else None, "anti_affinity": d.anti_affinity}
    problems: list[tuple[Severity, str]] = []
    if d.replicas < needs.replicas:
        problems.append(("error", f"{d.replicas} replica(s) cannot support {c.tier} (needs at least "
                                  f"{needs.replicas}): one pod kill is a full outage until it restarts"))
    if needs.pdb and d.pdb is None:
        problems.append(("error", f"no PodDisruptionBudget selects the pods: a node drain may evict every "
                                  f"replica at once, which {c.tier} cannot absorb"))
    elif needs.pdb and d.pdb is not None and d.pdb.min_available in (0, "0%") and d.pdb.max_unavailable is None:
        problems.append(("error", f"PodDisruptionBudget {d.pdb.name} has minAvailable 0: it protects nothing"))
    if not d.anti_affinity and needs.anti_affinity != "ok" and d.replicas > 1:
        problems.append((needs.anti_affinity, "no podAntiAffinity or topologySpreadConstraints: the replicas may "
                                              "share a node, and one node failure takes them all"))
    if not problems:
        return Finding("tier", "ok", f"{d.replicas} replicas, PodDisruptionBudget "
                       f"{d.pdb.name if d.pdb else '(none needed)'}, anti-affinity {d.anti_affinity}: enough for "
                       f"{c.tier}", exp, numbers)
    worst: Severity = "error" if any(s == "error" for s, _ in problems) else "warning"
    return Finding("tier", worst, "; ".join(m for _, m in problems), exp, numbers)


def check_readiness(c: CheckInput) -> Finding:
    exp = "experiments/corrupt-weights-rollout.yaml"
    d = c.deployment
    ready = d.readiness
    strict = (d.arg("--strict-readiness") or "true").lower()
    numbers = {"path": ready.path if ready else None, "strict_readiness": strict}
    if ready is None:
        return Finding("readiness", "error", "no readinessProbe: pods get traffic before the model is loaded and "
                       "while they shut down", exp, numbers)
    if not ready.path.startswith(READY_PATHS) and "/ready" not in ready.path:
        return Finding("readiness", "error", f"readinessProbe checks {ready.path}, not /v2/health/ready: a pod "
                       "whose model failed to load (corrupt weights) still gets traffic", exp, numbers)
    if strict == "false":
        return Finding("readiness", "error", "--strict-readiness=false: /v2/health/ready is true although a model "
                       "failed to load, so a corrupt revision takes traffic", exp, numbers)
    return Finding("readiness", "ok", f"readinessProbe on {ready.path} with strict readiness", exp, numbers)


def check_shutdown(c: CheckInput) -> Finding:
    exp = "experiments/rolling-update.yaml"
    d = c.deployment
    exit_timeout = d.exit_timeout_s
    need = d.prestop_s + exit_timeout
    numbers = {"prestop_s": d.prestop_s, "grace_s": d.termination_grace_s, "exit_timeout_s": exit_timeout}
    if d.termination_grace_s < need:
        return Finding("shutdown", "error",
                       f"terminationGracePeriodSeconds {d.termination_grace_s:g}s < preStop {d.prestop_s:g}s + "
                       f"Triton's --exit-timeout-secs {exit_timeout:g}s = {need:g}s: SIGKILL cuts requests still in "
                       "flight", exp, numbers)
    if d.prestop_s <= 0:
        return Finding("shutdown", "warning",
                       "no preStop delay: Triton gets SIGTERM while the endpoint is still being removed, so requests "
                       "routed in that gap fail during every rollout", exp, numbers)
    return Finding("shutdown", "ok", f"preStop {d.prestop_s:g}s + exit timeout {exit_timeout:g}s fit in the grace "
                   f"period {d.termination_grace_s:g}s", exp, numbers)


def check_rollout(c: CheckInput) -> Finding:
    exp = "experiments/corrupt-weights-rollout.yaml"
    d = c.deployment
    numbers = {"strategy": d.strategy, "replicas": d.replicas, "max_surge": d.max_surge,
               "max_unavailable": d.max_unavailable}
    if d.strategy != "RollingUpdate":
        return Finding("rollout", "error", f"strategy {d.strategy}: every replica stops before the new ones start, "
                       "so each update is a full outage", exp, numbers)
    if d.max_surge == 0 and d.max_unavailable == 0:
        return Finding("rollout", "error", "maxSurge and maxUnavailable are both 0: Kubernetes rejects this", exp,
                       numbers)
    if d.max_unavailable >= d.replicas:
        return Finding("rollout", "error", f"maxUnavailable {d.max_unavailable} of {d.replicas} replicas: a bad "
                       "revision takes the whole service down", exp, numbers)
    if d.max_unavailable > 0:
        return Finding("rollout", "warning", f"maxUnavailable {d.max_unavailable}: a revision that never becomes ready "
                       f"(corrupt weights) leaves {d.replicas - d.max_unavailable} of {d.replicas} replicas serving; "
                       "maxUnavailable 0 with maxSurge 1 keeps full capacity while the rollout stalls", exp, numbers)
    return Finding("rollout", "ok", f"maxSurge {d.max_surge}, maxUnavailable 0: a bad revision stalls the rollout "
                   "without losing capacity", exp, numbers)


def check_batching(c: CheckInput) -> Finding:
    exp = "experiments/pod-kill.yaml"
    if c.dynamic_batching is None:
        return Finding("dynamic-batching", "skipped", "no model config read (pass --model-config)", exp)
    if not c.dynamic_batching:
        return Finding("dynamic-batching", "warning", f"{c.model_config_source} has no dynamic_batching: after a "
                       "replica is lost the others serve one request per execution and latency climbs", exp)
    return Finding("dynamic-batching", "ok", f"dynamic_batching set in {c.model_config_source}", exp)


CHECKS: Sequence[Callable[[CheckInput], Finding]] = (
    check_load_budget, check_liveness_path, check_memory, check_tier, check_readiness, check_shutdown,
    check_rollout, check_batching,
)


def run_checks(c: CheckInput) -> Report:
    return Report(c.deployment.source, tuple(check(c) for check in CHECKS))
