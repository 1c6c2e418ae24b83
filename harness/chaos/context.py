"""The run context that Chaos Toolkit functions share through the experiment's ``configuration``.

Chaos Toolkit hands every activity the same configuration mapping; the control fills in the run
directory and id there, so actions, probes and rollbacks of one run agree on where things go. The
mapping is parsed once per activity, into ``RunSettings`` (with the platform as a ``PlatformRef``); past
``RunContext.from_configuration`` nothing reads it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.platforms.base import Platform
from harness.run_settings import RunSettings

__all__ = ["RunContext", "new_run_id"]


def new_run_id(slug: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in slug)[:40]
    return f"{stamp}-{safe}-{os.getpid() % 100000}"


@dataclass(frozen=True)
class RunContext:
    run_id: str
    run_dir: Path
    settings: RunSettings

    @classmethod
    def from_configuration(cls, configuration: MutableMapping[str, Any] | None, slug: str = "chaos") -> RunContext:
        """Parse the configuration (a ConfigError lists every bad value) and read (and on first use, fill
        in) the run's identity, so the activities after this one find the same run directory."""
        config = configuration if configuration is not None else {}
        settings = RunSettings.from_configuration(config)
        run_id = settings.harness_run_id or new_run_id(slug)
        run_dir = Path(settings.harness_run_dir or Path("reports") / run_id / "experiments" / slug / "1")
        config["harness_run_id"] = run_id
        config["harness_run_dir"] = str(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        return cls(run_id=run_id, run_dir=run_dir, settings=settings)

    def platform(self) -> Platform:
        return self.settings.platform.open()

    # -- what this run injected, so rollbacks undo exactly that ---------------------------------------
    @property
    def injected_path(self) -> Path:
        return self.run_dir / "injected.jsonl"

    def note_injection(self, kind: str, targets: list[str], record: Mapping[str, Any], **extra: Any) -> None:
        entry = {"ts_ns": time.time_ns(), "kind": kind, "targets": targets, "record": dict(record), **extra}
        with self.injected_path.open("a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()

    def injections(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.injected_path.exists():
            return []
        out = []
        for line in self.injected_path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                if kind is None or entry["kind"] == kind:
                    out.append(entry)
        return out

    def pending(self, kind: str) -> list[dict[str, Any]]:
        """Injections of ``kind`` not undone yet: a rollback that runs twice (method and rollbacks) acts once."""
        out: list[dict[str, Any]] = []
        for entry in self.injections():
            if entry["kind"] == kind:
                out.append(entry)
            elif entry["kind"] == f"undone:{kind}":
                out.clear()
        return out

    # -- proof that each fault landed -----------------------------------------------------------------
    @property
    def landings_path(self) -> Path:
        return self.run_dir / "landings.jsonl"

    def note_landing(self, landing: Mapping[str, Any]) -> None:
        with self.landings_path.open("a") as fh:
            fh.write(json.dumps(dict(landing), sort_keys=True, default=str) + "\n")
            fh.flush()

    def rewrite_landings(self, landings: list[dict[str, Any]]) -> None:
        """Replace the landings with completed ones (figures that needed the load's timeline back)."""
        text = "".join(json.dumps(landing, sort_keys=True, default=str) + "\n" for landing in landings)
        tmp = self.landings_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.landings_path)

    def landings(self) -> list[dict[str, Any]]:
        if not self.landings_path.exists():
            return []
        return [json.loads(line) for line in self.landings_path.read_text().splitlines() if line.strip()]

    def mark_undone(self, kind: str) -> None:
        with self.injected_path.open("a") as fh:
            fh.write(json.dumps({"ts_ns": time.time_ns(), "kind": f"undone:{kind}", "targets": [],
                                 "record": {}}) + "\n")


def positive(name: str, value: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= maximum:
        raise ConfigError(f"{name} must be a number in (0, {maximum:g}], got {value!r}")
    return float(value)
