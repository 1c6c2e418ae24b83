"""Chaos Toolkit control: runs the load around the experiment and owns the run's cleanup.

Declared in every experiment (``controls: [{name: harness, provider: {type: python, module:
harness.chaos.control}}]``), so plain ``chaos run`` gets the same behaviour as ``harness run``:

- before the steady-state check: start the load profile in its own process (gevent never enters this
  process), wait for the warm-up, and trap SIGTERM so it interrupts the run like SIGINT does (Chaos
  Toolkit alone only fails the current activity on SIGTERM);
- after the rollbacks: keep the load running for the observation period, undo anything of this run
  that is still injected, stop the load, and write experiment.json, journal.json and the events.

Chaos Toolkit skips a control that fails to import with only a DEBUG line; the ``load_running`` probe
in each hypothesis and ``harness run``'s own check make that failure loud.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.chaos import interrupts
from harness.chaos.actions import FAULT_ACTIONS
from harness.chaos.context import RunContext
from harness.errors import ConfigError
from harness.events import read_events
from harness.faults import network_block
from harness.jsonfile import write_json_atomic
from harness.platforms.kubernetes import cluster_load
from harness.procs import alive

__all__ = [
    "after_experiment_control",
    "before_experiment_control",
    "configure_control",
    "effective_end",
    "fault_window",
    "void_reason",
]

Configuration = MutableMapping[str, Any]


def configure_control(configuration: Configuration | None = None, **_: Any) -> None:
    """Nothing to set up at load time; present so Chaos Toolkit sees a complete control."""


def before_experiment_control(context: dict[str, Any], configuration: Configuration | None = None,
                              **_: Any) -> None:
    from chaoslib.exceptions import InterruptExecution

    configuration = configuration if configuration is not None else {}
    try:  # parsed once: a bad value (a plain ``chaos run`` is not validated first) stops the run here
        ctx = RunContext.from_configuration(configuration, slug=str(context.get("title", "chaos"))[:30])
    except ConfigError as exc:
        raise InterruptExecution(f"harness control: {exc}") from exc
    settings = ctx.settings
    interrupts.push()  # SIGTERM interrupts like SIGINT, and an interrupted activity's pause is skipped
    platform = ctx.platform()
    try:
        status = platform.status()
    except Exception as exc:
        (ctx.run_dir / "control.error").write_text(f"the platform is not usable: {exc}")
        raise InterruptExecution(f"harness control: the platform is not usable: {exc}") from exc
    platform.sweep_faults(only_orphaned=True)
    from harness.service import service_scope

    info: dict[str, Any] = {
        "name": settings.harness_experiment_name or ctx.run_dir.parent.name,
        "title": context.get("title", ""),
        "fault": settings.harness_fault or "",
        "required_tier": settings.harness_required_tier or None,
        "file": settings.harness_experiment_file or "",
        "configuration": {k: v for k, v in configuration.items() if not str(k).startswith("harness_run")},
        "replicas": [r.name for r in status.replicas],
        "time_scale": status.details.get("time_scale", 1.0),
        "retries": bool(status.details.get("retries", False)),
        "load_start_ns": time.time_ns(),
        "status": "running",
        "endpoints": {"http": status.endpoints.http, "grpc": status.endpoints.grpc,
                      "prometheus": status.endpoints.prometheus},
        # The series of this service only, as the platform names its replicas now (analysis/_server.py).
        "metrics_scope": service_scope({**status.details, "endpoints": status.to_json()["endpoints"]}),
    }
    if not settings.load_enabled:
        (ctx.run_dir / "load.pid").write_text("0")
        info["load"] = "disabled"
        write_json_atomic(ctx.run_dir / "experiment.json", info)
        return
    # On disk before the load starts (the in-cluster load takes seconds to schedule its pods): an interrupt
    # meanwhile is recorded with the repetition's fields, and the report says so instead of refusing the run.
    write_json_atomic(ctx.run_dir / "experiment.json", info)
    try:
        if settings.load_in_cluster:  # where clients are: Locust pods aimed at the Service
            info["load"] = cluster_load.start(platform, ctx.run_id, ctx.run_dir, settings.profile,
                                              settings.load_settings(), settings.harness_workers,
                                              settings.harness_load_image, settings.request_options())
            (ctx.run_dir / "load.pid").write_text("0")
        else:
            load = _start_load(ctx, status.endpoints.http, status.endpoints.grpc)
            (ctx.run_dir / "load.pid").write_text(str(load.pid))
            info["load"] = {"from": "local", "pid": load.pid, "profile": settings.harness_profile}
    except KeyboardInterrupt as exc:  # cluster_load.start deleted what it had created; a local load is stopped
        _stop_load(ctx.run_dir / "load.pid")
        info.update(status="interrupted", load_end_ns=time.time_ns(), void=None, landings=[])
        write_json_atomic(ctx.run_dir / "experiment.json", info)
        raise InterruptExecution("interrupted while the load started; nothing was injected") from exc
    except Exception as exc:
        (ctx.run_dir / "control.error").write_text(f"could not start the load: {exc}")
        # Recorded as an interrupted repetition with its reason (nothing was injected), so the report says why
        # instead of finding an experiment.json without its fields.
        info.update(status="interrupted", failure=f"the load could not start: {exc}", load_end_ns=time.time_ns(),
                    void=None, landings=[])
        write_json_atomic(ctx.run_dir / "experiment.json", info)
        raise InterruptExecution(f"harness control: could not start the load: {exc}") from exc
    # Written before the warm-up, so an interrupt during it is recorded as one (not as a missing control).
    write_json_atomic(ctx.run_dir / "experiment.json", info)
    try:
        time.sleep(settings.harness_warmup_s)
    except KeyboardInterrupt as exc:
        _stop_load(ctx.run_dir / "load.pid")
        cluster_load.stop(ctx.run_dir, platform)
        info.update(status="interrupted", load_end_ns=time.time_ns(), void=None, landings=[])
        write_json_atomic(ctx.run_dir / "experiment.json", info)
        raise InterruptExecution("interrupted during the warm-up; nothing was injected") from exc


def _start_load(ctx: RunContext, http: str, grpc: str) -> Any:
    from harness.load.process import LoadProcess

    settings = ctx.settings
    load = settings.load_settings()
    return LoadProcess.start(
        endpoint_http=http,
        endpoint_grpc=grpc,
        profile=settings.profile,
        timeline_dir=ctx.run_dir / "timeline",
        protocol=load.protocol,
        users=load.users,
        rate=load.rate,
        connections=load.connections,
        duration_s=load.duration_s,
        workers=settings.harness_workers,
        stats_path=ctx.run_dir / "load-stats.jsonl",
        log_path=ctx.run_dir / "load.log",
        requests=settings.request_options(),
    )


def _stop_load(pid_file: Path, timeout_s: float = 20.0) -> None:
    """Stop the load process by its pid (no handle is kept between control calls): SIGTERM lets it
    flush its timeline; SIGKILL of its process group after ``timeout_s``."""
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    if pid <= 0:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (another process started it): poll instead
            done = 0 if alive(pid) else pid
        if done:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


UNDO_FUNCS = ("unblock_network", "release_memory_pressure", "restore_model_load", "restore_pod_spec", "restore_model",
              "rollback_all")


def _failure(entry: dict[str, Any]) -> str:
    """The last line of a failed activity's exception: what Chaos Toolkit recorded as its cause."""
    lines = [str(line).strip() for line in entry.get("exception") or [] if str(line).strip()]
    text = lines[-1] if lines else "no reason recorded"
    return text.removeprefix("chaoslib.exceptions.ActivityFailed: ")


def void_reason(journal: dict[str, Any], landings: list[dict[str, Any]], interrupted: bool = False) -> str | None:
    """Why a repetition measured nothing (one line), or None.

    Void: a fault that did not land, a method action that failed, a rollback that failed. Such a
    repetition yields no figures, never counts towards a tier, and the run does not pass. An interrupted
    repetition keeps these reasons (a landing or an undo that failed is still a fact), except a method action
    that failed because the interrupt stopped it.
    """
    for landing in landings:
        if not landing.get("landed"):
            return f"the {landing.get('fault')} fault did not land: {landing.get('detail')}"
    for entry in [] if interrupted else journal.get("run") or []:
        activity = entry.get("activity") or {}
        if entry.get("status") == "failed" and activity.get("type") == "action":
            return f"method action {activity.get('name')!r} failed: {_failure(entry)}"
    for entry in journal.get("rollbacks") or []:
        if entry.get("status") == "failed":
            return f"rollback {(entry.get('activity') or {}).get('name')!r} failed: {_failure(entry)}"
    return None


def fault_window(journal: dict[str, Any]) -> tuple[int | None, int | None]:
    """(t0, fault end) in ns.

    t0 is the start of the first injecting activity (DESIGN.md). The fault ends with the first undo
    activity after it in the method (experiments lift their fault in the method, so the hypothesis
    checks recovery), else with the last rollback, else with the injecting activity itself.
    """
    t0 = end = None
    for run in journal.get("run", []):
        provider = (run.get("activity") or {}).get("provider") or {}
        func, module = provider.get("func"), provider.get("module")
        if t0 is None and module == "harness.chaos.actions" and func in FAULT_ACTIONS:
            t0, end = _ns(run.get("start")), _ns(run.get("end"))
        elif t0 is not None and module == "harness.chaos.rollbacks" and func in UNDO_FUNCS:
            return t0, _ns(run.get("end"))
        elif t0 is not None and module == "harness.chaos.actions" and func in FAULT_ACTIONS:
            end = _ns(run.get("end"))
    if t0 is not None:
        rollback_ends = [_ns(rb.get("end")) for rb in journal.get("rollbacks", [])]
        ends = [e for e in rollback_ends if e is not None]
        if ends:
            end = max(ends)
    return t0, end


def effective_start(t0: int | None, injections: list[dict[str, Any]]) -> int | None:
    """t0 moved to when the fault really took effect, where an injection says it was later than its activity
    began (``effective_start_ns``: a network block that first had to start agent pods, after a NetworkPolicy
    that was not enforced). The setup is not part of the outage; TTR counts from the block."""
    later = [int(e["record"]["effective_start_ns"]) for e in injections
             if isinstance(e.get("record"), dict) and e["record"].get("effective_start_ns")]
    return max(t0, min(later)) if t0 is not None and later else t0


def effective_end(t0: int | None, end: int | None, injections: list[dict[str, Any]],
                  landings: list[dict[str, Any]]) -> int | None:
    """The fault's end moved back to when a network block stopped dropping (``lifted_ns`` of its lift's landing),
    where every fault of the repetition is a network block: the undo activity also waits for the agent pods to
    be gone (up to 30 s on the sandbox's kubelet), which the report showed as fault time. Other faults keep
    their activity's end (a compound experiment's other fault may last longer)."""
    kinds = {str(e.get("kind")) for e in injections if not str(e.get("kind", "")).startswith("undone:")}
    lifted = [int(m["lifted_ns"]) for landing in landings
              if isinstance(m := landing.get("measured"), dict) and m.get("lifted_ns")]
    if t0 is None or end is None or kinds != {network_block.NAME} or not lifted:
        return end
    return min(end, max(t0, max(lifted)))


def _ns(stamp: str | None) -> int | None:
    if not stamp:
        return None
    return int(datetime.fromisoformat(stamp).timestamp() * 1e9)


def _complete_landings(ctx: RunContext) -> None:
    """Figures a landing could not take while the load ran in the cluster (the rolling update's errors per
    phase), taken now that the workers' timelines are in the repetition's directory."""
    from harness.faults.rolling_update import errors_once_the_timeline_is_back

    landings = ctx.landings()
    completed = [errors_once_the_timeline_is_back(landing, ctx.run_dir / "timeline") for landing in landings]
    if any(c is not None for c in completed):
        ctx.rewrite_landings([c if c is not None else landing for c, landing in zip(completed, landings, strict=True)])


def after_experiment_control(context: dict[str, Any], state: dict[str, Any] | None = None,
                             configuration: Configuration | None = None, **_: Any) -> None:
    configuration = configuration if configuration is not None else {}
    try:
        ctx = RunContext.from_configuration(configuration)
    except ConfigError:  # before_experiment_control refused the same configuration: nothing started or injected
        return
    journal = state or {}
    interrupted = journal.get("status") == "interrupted"
    undo_error: str | None = None
    load_error: str | None = None
    try:
        if not interrupted:
            time.sleep(ctx.settings.harness_observation_s)
        observation_end = time.time_ns()
    except KeyboardInterrupt:
        interrupted = True
        observation_end = time.time_ns()
    finally:
        from harness.chaos.rollbacks import rollback_all

        try:
            rollback_all(configuration)  # the runner owns cleanup, whatever Chaos Toolkit did
        except Exception as exc:  # noqa: BLE001 - recorded: the repetition is void, its record still written
            undo_error = f"the final rollback failed: {exc}"
            (ctx.run_dir / "undo.error").write_text(undo_error)
        finally:
            _stop_load(ctx.run_dir / "load.pid")
            try:
                if cluster_load.recorded(ctx.run_dir):
                    load_error = cluster_load.stop(ctx.run_dir, ctx.platform())
            except Exception as exc:  # noqa: BLE001 - recorded: the repetition is void, its record still written
                load_error = f"the in-cluster load could not be stopped: {exc}"
            interrupts.pop()
    info_path = ctx.run_dir / "experiment.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    if info.get("status") == "interrupted" or not info:  # interrupted during the warm-up: already recorded;
        # nothing recorded: before_experiment_control refused (control.error says why, the runner reports it)
        write_json_atomic(ctx.run_dir / "journal.json", journal)
        return
    if cluster_load.recorded(ctx.run_dir) and load_error is None:
        _complete_landings(ctx)
    journal_t0, fault_end = fault_window(journal)
    t0 = effective_start(journal_t0, ctx.injections())
    fault_end = effective_end(t0, fault_end, ctx.injections(), ctx.landings())
    before = (journal.get("steady_states") or {}).get("before")
    status = "interrupted" if interrupted else str(journal.get("status", "completed"))
    if status == "completed" and before is not None and not before.get("steady_state_met", True):
        status = "failed"  # chaoslib says "completed" when the service was unhealthy before any fault
        info["failure"] = "the steady state was not met before the fault, so nothing was injected"
    info.update(
        fault_start_ns=t0,
        journal_fault_start_ns=journal_t0,  # the injecting activity's start; differs when setup came first
        fault_end_ns=fault_end,
        observation_end_ns=observation_end,
        load_end_ns=time.time_ns(),
        status=status,
        deviated=bool(journal.get("deviated", False)),
        analogue="; ".join(sorted({e.get("analogue", "") for e in ctx.injections() if e.get("analogue")})),
        injected=[e for e in ctx.injections() if not e["kind"].startswith("undone:")],
        landings=ctx.landings(),
        void=void_reason(journal, ctx.landings(), interrupted) or undo_error or load_error,
    )
    write_json_atomic(info_path, info)
    write_json_atomic(ctx.run_dir / "journal.json", journal)
    try:  # the load has stopped: fold its one-second chunks into one file (the analysis retries if this fails)
        from harness.timeline_store import compact

        compact(ctx.run_dir / "timeline")
    except Exception as exc:  # noqa: BLE001 - the chunks stay, complete; only the folding is put off
        (ctx.run_dir / "compact.error").write_text(str(exc))
    try:
        events_path = ctx.platform().events_path()
        start = int(info.get("load_start_ns") or 0) - 1_000_000_000
        with (ctx.run_dir / "events.jsonl").open("w") as out:
            for event in read_events(events_path):
                if event.ts_ns >= start:
                    out.write(event.to_json() + "\n")
    except Exception as exc:  # noqa: BLE001 - the run's data matters more than its events copy
        (ctx.run_dir / "events.error").write_text(str(exc))
