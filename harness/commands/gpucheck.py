"""``harness gpu-check`` (``make gpu-check``): the demo suite with GPU instances, as a pass/fail table.

What a GPU machine must show, each from its own evidence:
  model on the GPU    per replica, from its own process (harness.gpu_evidence): its model config is KIND_GPU,
                      its python-backend stub is among its pinned GPU's compute apps with GPU memory attributed
                      to it, requests sent straight to it succeeded, and its outputs equal the CPU path's;
  hog on the target   the memory-pressure landing held free memory at the level asked, with the hog pinned to
                      the GPU the target replica is pinned to (its status names the device's UUID);
  fail, then recover  the target did not come back while memory was held (restarts, not ready, read at the
                      release while the hog still held: a hog that had let go earlier fails the row), and every
                      replica was ready again after the release (capacity recovered);
  report              index.html, results.json and a manifest that names the GPU.
Without a GPU it refuses (exit 3) before anything starts.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness.errors import EnvironmentProblem, HarnessError
from harness.gpu_evidence import exercise_replica, judge_all, kinds_of, query_compute_apps, stub_pids
from harness.platforms.base import PlatformStatus
from harness.triton.gpus import GpuInfo, query_gpus, read_assignment

__all__ = ["Row", "format_table", "metric_by_gpu", "run_gpu_check"]

_SAMPLE = re.compile(r'^(nv_gpu_utilization|nv_gpu_memory_used_bytes)\{[^}]*gpu_uuid="([^"]+)"[^}]*\}\s+(\S+)')


@dataclass(frozen=True)
class Row:
    check: str
    passed: bool
    detail: str
    info: bool = False  # a fact about the machine (INFO), not a check that passed: it never reads PASS

    @property
    def result(self) -> str:
        return "INFO" if self.info else "PASS" if self.passed else "FAIL"


def format_table(rows: list[Row]) -> str:
    width = max(len(r.check) for r in rows)
    lines = [f"{'CHECK':<{width}}  RESULT  DETAIL"]
    lines += [f"{r.check:<{width}}  {r.result:<6}  {r.detail}" for r in rows]
    return "\n".join(lines)


def metric_by_gpu(text: str) -> dict[str, dict[str, float]]:
    """``{metric: {gpu_uuid: value}}`` for Triton's GPU gauges in a /metrics page."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            out.setdefault(match.group(1), {})[match.group(2)] = float(match.group(3))
    return out


def _model_on_gpu(status: PlatformStatus, pinned: dict[str, list[GpuInfo]], state: Path, model: str) -> Row:
    """Each replica's own evidence (``harness.gpu_evidence``): its stub on its GPU with memory, requests sent
    straight to it that succeeded, and outputs equal to the CPU path's."""
    runs = []
    for replica in status.replicas:
        try:
            kinds = kinds_of(json.loads(_get(f"{replica.http}/v2/models/{model}/config")))
        except (OSError, ValueError):
            kinds = frozenset()
        gpus = pinned.get(replica.name, [])
        weights = state / "replicas" / replica.name / "models" / model / "1" / "weights"
        runs.append(exercise_replica(replica.name, replica.http, gpus[0].uuid if gpus else "", kinds,
                                     stub_pids(replica.pid), weights))
    apps, problem = query_compute_apps()  # after the requests: every stub has run the model by now
    passed, detail = judge_all(runs, apps, problem)
    return Row("model runs on the GPU", passed, detail)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return str(resp.read().decode())


def _latest_run(reports_dir: Path, before: set[Path]) -> Path | None:
    new = [p for p in reports_dir.iterdir() if p.is_dir() and p not in before] if reports_dir.exists() else []
    return max(new, key=lambda p: p.stat().st_mtime) if new else None


def _pressure_rows(run_dir: Path | None, pinned: dict[str, list[GpuInfo]]) -> list[Row]:
    hog = "hog held the target's GPU memory at the level asked"
    cycle = "target failed to reload under pressure, recovered after release"
    if run_dir is None or not (run_dir / "results.json").exists():
        return [Row(hog, False, "no results.json from the demo suite"), Row(cycle, False, "no results.json")]
    results = json.loads((run_dir / "results.json").read_text())
    runs = [run for e in results.get("experiments", []) if e.get("fault") == "gpu-memory-pressure"
            for run in e.get("runs", [])]
    if not runs:
        return [Row(hog, False, "the demo suite ran no gpu-memory-pressure repetition (skipped? see its output)"),
                Row(cycle, False, "no gpu-memory-pressure repetition")]
    run = runs[0]
    landings = [x for x in run.get("landings", []) if x.get("fault") == "gpu-memory-pressure"]
    held = next((x for x in landings if str(x.get("check", "")).startswith("free memory held")), None)
    until = next((x for x in landings if str(x.get("check", "")).startswith("the pressure held")), None)
    rows = []
    if held is None:
        rows.append(Row(hog, False, "no landing check recorded"))
    else:
        hogs = (held.get("measured") or {}).get("hogs") or {}
        wrong = [f"{t}: hog on {(s or {}).get('device', '?')!s}, replica on {[g.uuid for g in pinned.get(t, [])]}"
                 for t, s in hogs.items()
                 if not any(str((s or {}).get("device", "")).startswith(g.uuid) for g in pinned.get(t, []))]
        analogue = (held.get("measured") or {}).get("analogue")
        ok = bool(held.get("landed")) and not wrong and not analogue
        rows.append(Row(hog, ok, "; ".join(wrong) or (f"host analogue used: {analogue}" if analogue else "")
                        or str(held.get("detail", ""))))
    # The replicas are read at the release; that says "under pressure" only when the hog still held then.
    did = ((until or {}).get("measured") or {}).get("replicas_under_pressure") or {}
    held_then = until is not None and bool(until.get("landed"))
    failed = {n: d for n, d in did.items() if d.get("restarts", 0) >= 1 and not d.get("ready")}
    recovered = run.get("capacity_recovered") is True and run.get("ttr_state") in ("recovered", "no-impact")
    detail = (f"under pressure: {json.dumps(did, sort_keys=True)}; TTR {run.get('time_to_recover_display')}, "
              f"capacity recovered after {run.get('capacity_recovery_s')} s")
    if not held_then:
        detail = (f"the pressure was not held when the replicas were read ({(until or {}).get('detail', 'no check')})"
                  f"; {detail}")
    rows.append(Row(cycle, held_then and bool(did) and len(failed) == len(did) and recovered, detail))
    return rows


def _report_row(run_dir: Path | None) -> Row:
    check = "report written, naming the GPU"
    if run_dir is None:
        return Row(check, False, "no run directory")
    missing = [n for n in ("index.html", "results.json", "manifest.json") if not (run_dir / n).exists()]
    if missing:
        return Row(check, False, f"{run_dir}: missing {', '.join(missing)}")
    gpu = json.loads((run_dir / "manifest.json").read_text()).get("gpu")
    named = isinstance(gpu, list) and any("GPU-" in str(g) for g in gpu)
    return Row(check, named, f"{run_dir / 'index.html'}; manifest gpu: {gpu}")


def run_gpu_check(state_dir: Path, reports_dir: Path, replicas: int = 2) -> tuple[list[Row], int]:
    """Bring the service up with GPU instances, run the demo suite, check; always takes it down again."""
    from harness.commands.demo import _skip_what_cannot_run
    from harness.commands.suite_cmd import run_suite
    from harness.platforms.local.platform import LocalPlatform
    from harness.platforms.local.settings import LocalSettings
    from harness.platforms.registry import PlatformRef
    from harness.suite import find_suite

    gpus = query_gpus()
    if not gpus:
        raise EnvironmentProblem("gpu-check needs an NVIDIA GPU (/dev/nvidia0 and nvidia-smi) and this machine has "
                                 "none visible; nothing was started. Run it on a GPU machine (docs/gpu.md)")
    rows = [Row("GPU visible", True, "; ".join(g.describe() for g in gpus))]
    # Prometheus only feeds the report's GPU figures; a GPU machine without it still runs every check. Its
    # absence is information, not a check that passed.
    prometheus = shutil.which("prometheus") is not None
    if not prometheus:
        rows.append(Row("Prometheus (report GPU figures)", True, "not installed: the report has no GPU figures",
                        info=True))
    platform = LocalPlatform(LocalSettings(state_dir=state_dir.absolute(), replicas=replicas, gpus_per_replica=1,
                                           prometheus=prometheus))
    before = set(reports_dir.iterdir()) if reports_dir.exists() else set()
    code = 1
    try:
        try:
            status = platform.up()  # EnvironmentProblem (exit 3) when torch cannot use the GPU
        except HarnessError as exc:
            rows.append(Row("service up with GPU instances", False, str(exc)))
            return rows, exc.exit_code
        pinned = read_assignment(platform.state)
        rows.append(Row("service up with GPU instances", True,
                        "; ".join(f"{n}: {', '.join(g.uuid for g in gs)}" for n, gs in sorted(pinned.items()))))
        rows.append(_model_on_gpu(status, pinned, platform.state, "mlp"))
        platform_args = PlatformRef(name="local", state_dir=platform.state).to_configuration()
        code = run_suite(platform, find_suite("demo"), reports_dir, platform_args, skip=_skip_what_cannot_run)
        run_dir = _latest_run(reports_dir, before)
        rows.extend(_pressure_rows(run_dir, pinned))
        final = platform.status()
        rows.append(Row("every replica ready at the end", all(r.ready for r in final.replicas),
                        "; ".join(f"{r.name}: {'ready' if r.ready else r.reason}" for r in final.replicas)))
        rows.append(_report_row(run_dir))
        rows.append(Row("demo suite exit code", code == 0, f"{code} (0: every experiment passed its checks)"))
    finally:
        platform.down()
    return rows, 0 if all(r.passed for r in rows) else 1
