"""Bad model version rollout: a new version directory that fails to load, added while the old one serves.

What a model registry sync or a CI job that publishes a broken version does: the new version appears in the
model repository and is picked up as an explicit load would pick it up (``POST .../load`` with the model's
full current config, so only the version set changes; a repository poll in ``--model-control-mode=poll``
does the same load). ``initialize-raises`` ships a python-backend ``model.py`` whose ``initialize()``
raises; ``corrupt-file`` copies the newest version and flips the last bytes of its largest data file (the
reference model's SHA-256 check refuses it, as any framework's parser would refuse a truncated file).

Landed when Triton reports the new version's load failure: the load call returned an error, or the
repository index lists the version UNAVAILABLE with a reason. Measured: whether the old version kept
serving on each target (its index state, and requests sent straight to the replica right after the failed
load), and whether the server still reports ready. Measured on Triton 2.51: the old version keeps
answering, but with ``--strict-readiness`` the failed version makes ``/v2/health/ready`` false, so the
front and the kubelet's readiness probe take every replica that tried the version out of service; the run's
timeline shows what users saw. Undo removes the version directory, makes Triton forget the failed version
(``harness.faults.model_lifecycle``) and loads the model with the config it had: the old version ready, the
server ready.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from harness.errors import ConfigError, FaultError
from harness.faults import model_lifecycle as lifecycle
from harness.faults.family import FamilySpec, FaultScope, Landing

__all__ = ["FAMILY", "NAME", "Args", "inject", "undo", "verify"]

NAME = "bad-version-rollout"


class Args(lifecycle.ModelArgs):
    failure: Literal["initialize-raises", "corrupt-file"] = "initialize-raises"
    version: int | None = Field(default=None, ge=1, le=2**31)  # None: one above the highest version there
    probe_requests: int = Field(default=20, ge=0, le=10_000)  # sent to each target after the failed load


FAMILY = FamilySpec(name=NAME, action="bad_version_rollout", args=Args,
                    summary="add a model version that fails to load and load it; landed when Triton reports the "
                            "version's load failure; whether the old version kept serving measured")


def inject(scope: FaultScope, targets: list[str], args: Args, changes: list[dict[str, Any]]) -> dict[str, Any]:
    """``changes`` receives each target's undo record as it is written (before its change), so the caller
    keeps them even when a later target fails."""
    controls = [lifecycle.control(scope, name) for name in targets]
    before = {c.replica: (c.config(args.model), c.versions(args.model)) for c in controls}
    for ctl in controls:
        existing = before[ctl.replica][1]
        if not existing:
            raise FaultError(f"replica {ctl.replica}: the model repository has no version of {args.model}")
        if args.version is not None and str(args.version) in existing:
            raise ConfigError(f"version: {args.version} already exists on {ctl.replica} (versions {existing}); "
                              "give a new version number, or leave version empty for the next one")
    added, loads = {}, {}
    for ctl in controls:
        config, existing = before[ctl.replica]
        version = str(args.version if args.version is not None else int(existing[-1]) + 1)
        changes.append(lifecycle.record_change(ctl, scope.run_id, args.model, config, args.max_duration_s,
                                               f"bad version {version} of {args.model}", remove_version=version,
                                               clear_with=existing[-1]))
        added[ctl.replica] = {"version": version, "old": existing,
                              "written": ctl.add_version(args.model, version, args.failure, existing[-1])}
        began = time.monotonic()
        ok, why = ctl.load(args.model, config)
        loads[ctl.replica] = {"ok": ok, "error": why, "load_s": round(time.monotonic() - began, 3)}
    return {"model": args.model, "added": added, "loads": loads}


def verify(scope: FaultScope, targets: list[str], record: Mapping[str, Any], args: Args) -> Landing:
    check = "Triton reports the new version's load failure (load error or the index lists it UNAVAILABLE)"
    per: dict[str, Any] = {}
    not_failed, old_down = [], []
    for name in targets:
        ctl = lifecycle.control(scope, name)
        version = str(record["added"][name]["version"])
        old = [str(v) for v in record["added"][name]["old"]]
        index = lifecycle.states(ctl, args.model)
        load = record["loads"][name]
        new_state = index.get(version, {"state": "(not listed)", "reason": ""})
        failed = (not load["ok"]) or (new_state["state"] not in (lifecycle.READY, "LOADING", "(not listed)"))
        old_ready = [v for v in old if index.get(v, {}).get("state") == lifecycle.READY]
        served = ctl.burst(args.model, args.probe_requests, 1) if args.probe_requests else {}
        per[name] = {"version": version, "load_error": load["error"], "index": index, "old_ready": old_ready,
                     "server_ready": ctl.server_ready(),
                     "old_version_serving": bool(old_ready) and served.get("ok", 0) == args.probe_requests,
                     "probe": {k: served.get(k) for k in ("ok", "queue_full", "error", "samples")} if served else {}}
        if not failed:
            not_failed.append(name)
        if not per[name]["old_version_serving"]:
            old_down.append(name)
    unready = sorted(n for n, p in per.items() if not p["server_ready"])
    measured = {"targets": per, "old_version_kept_serving": not old_down, "servers_unready": unready}
    if not_failed:
        return Landing(NAME, tuple(targets), check, False,
                       f"the bad version loaded on {', '.join(not_failed)} (Triton reported no failure): the "
                       f"{args.failure} change did not make the load fail", measured)
    detail = "; ".join(
        f"{n}: v{p['version']} failed to load ({_reason(p)[:160]}); "
        + (f"old version {','.join(p['old_ready'])} kept answering" if p["old_version_serving"]
           else f"old version NOT serving (ready: {p['old_ready'] or 'none'}, probe {p['probe']})")
        + ("" if p["server_ready"] else "; the server reports NOT ready (strict readiness), so probes take it out")
        for n, p in per.items())
    return Landing(NAME, tuple(targets), check, True, detail, measured)


def _reason(per_target: Mapping[str, Any]) -> str:
    """Triton's words for the failure: the load call's error, else the index's reason for the version."""
    return str(per_target["load_error"] or per_target["index"].get(per_target["version"], {}).get("reason", ""))


undo = lifecycle.undo_injection  # the model back as it was: see harness.faults.model_lifecycle
