"""Suite files (``experiments/suites/<name>.yaml``): which experiments, how often, under which load,
the tier each must support, and the regression rule against history. Parsed once, checked at once.

```yaml
name: nightly
load: {harness_profile: loadprofiles/steady.py, harness_users: 8}
repeat: 3
regression: {threshold: 20%, baseline: median}    # last | median of earlier completed runs
evidence: {quantile: 0.90, confidence: 0.90, gate: indicative}   # overrides the tiers file's
experiments:
  - file: experiments/pod-kill.yaml
    required_tier: multi-active
    vars: {recovery_wait_s: 10}
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.analysis import parse_evidence
from harness.errors import ConfigError
from harness.report import parse_threshold
from harness.run_settings import load_document

__all__ = ["Suite", "SuiteEntry", "find_suite", "load_suite"]

SUITES_DIR = Path("experiments") / "suites"


@dataclass(frozen=True)
class SuiteEntry:
    file: Path
    required_tier: str | None
    variables: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    load: Mapping[str, Any]
    repeat: int
    entries: tuple[SuiteEntry, ...]
    threshold: float | None
    baseline: Literal["last", "median"]
    evidence: Mapping[str, Any] = field(default_factory=dict)  # {quantile, confidence, gate}, checked


def find_suite(name_or_path: str, platform: str = "local") -> Path:
    """The suite file a name or path means. A name has a variant per platform where one is shipped
    (``nightly-kubernetes.yaml`` for ``nightly`` on Kubernetes: the same faults sized for a cluster), so
    ``harness suite nightly --platform kubernetes`` runs what fits the cluster; its history stays apart."""
    path = Path(name_or_path)
    if path.exists():
        return path
    variant = SUITES_DIR / f"{name_or_path}-{platform}.yaml"
    if platform != "local" and variant.exists():
        return variant
    candidate = SUITES_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in SUITES_DIR.glob("*.yaml")) if SUITES_DIR.exists() else []
    raise ConfigError(f"no suite {name_or_path!r}: not a file, and not in {SUITES_DIR}/ (suites: {known})")


def load_suite(path: Path, tier_names: set[str]) -> Suite:
    raw = load_document(path, "suite")  # any depth or size: one clear line
    if not isinstance(raw, dict):
        raise ConfigError(f"suite {path}: expected a mapping with name and experiments")
    problems: list[str] = []
    unknown = sorted(set(raw) - {"name", "description", "load", "repeat", "regression", "evidence",
                                 "experiments"})
    if unknown:
        problems.append(f"unknown keys {unknown}")
    repeat = raw.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 100:
        problems.append(f"repeat must be an integer within 1..100, got {repeat!r}")
        repeat = 1
    load = raw.get("load") or {}
    if not isinstance(load, dict):
        problems.append("load must be a mapping of configuration values")
        load = {}
    regression = raw.get("regression") or {}
    threshold: float | None = None
    baseline = "median"
    if not isinstance(regression, dict):
        problems.append("regression must be a mapping {threshold, baseline}")
    else:
        if regression.get("threshold") is not None:
            try:
                threshold = parse_threshold(str(regression["threshold"]))
            except ConfigError as exc:
                problems.append(str(exc))
        baseline = str(regression.get("baseline", "median"))
        if baseline not in ("last", "median"):
            problems.append(f"regression.baseline must be last or median, got {baseline!r}")
    evidence = raw.get("evidence") or {}
    problems += parse_evidence(evidence, "evidence")[1]
    entries = []
    items = raw.get("experiments")
    if not isinstance(items, list) or not items:
        problems.append("experiments must be a non-empty list")
        items = []
    for i, item in enumerate(items, 1):
        if isinstance(item, str):
            item = {"file": item}
        if not isinstance(item, dict) or "file" not in item:
            problems.append(f"experiments[{i}]: expected a file path or {{file, required_tier, vars}}")
            continue
        file = Path(str(item["file"]))
        if not file.exists():
            problems.append(f"experiments[{i}]: {file} does not exist")
        tier = item.get("required_tier")
        if tier is not None and str(tier) not in tier_names:
            problems.append(f"experiments[{i}]: required_tier {tier!r} is not a tier ({sorted(tier_names)})")
        variables = item.get("vars") or {}
        if not isinstance(variables, dict):
            problems.append(f"experiments[{i}]: vars must be a mapping")
            variables = {}
        entries.append(SuiteEntry(file, str(tier) if tier is not None else None, dict(variables)))
    if problems:
        raise ConfigError(f"suite {path} is not valid; nothing was run:\n  - " + "\n  - ".join(problems))
    return Suite(path=path, name=str(raw.get("name") or path.stem), load=dict(load), repeat=int(repeat),
                 entries=tuple(entries), threshold=threshold,
                 baseline="last" if baseline == "last" else "median",
                 evidence=dict(evidence) if isinstance(evidence, dict) else {})
