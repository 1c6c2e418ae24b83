"""``reports/<run_id>/`` and its ``run.json`` for a ``harness load`` run (the run-directory contract).

Kept small and free of load-specific imports so it can move to a shared module once the fault runner
writes the same file.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.jsonfile import write_json_atomic

__all__ = ["RunDir", "new_run_id"]

RUN_SCHEMA = 1


def new_run_id(slug: str, now_ns: int | None = None) -> str:
    """UTC ``YYYYmmddTHHMMSSZ-<slug>``; the slug keeps only filename-safe characters."""
    stamp = datetime.fromtimestamp((now_ns or time.time_ns()) / 1e9, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    clean = re.sub(r"[^A-Za-z0-9_.]+", "-", slug).strip("-") or "run"
    return f"{stamp}-{clean}"


@dataclass
class RunDir:
    path: Path
    run_id: str
    kind: str
    command: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    platform: str = "local"
    started_ns: int = field(default_factory=time.time_ns)

    @classmethod
    def create(cls, reports: Path, slug: str, kind: str, command: list[str], settings: dict[str, Any],
               path: Path | None = None, platform: str = "local") -> RunDir:
        """A fresh run directory (``path`` when given, else ``reports/<run_id>``), refusing to reuse one."""
        run_id = new_run_id(slug) if path is None else path.name
        target = path if path is not None else reports / run_id
        if target.exists() and any(target.iterdir()):
            raise ConfigError(f"run directory {target} already exists and is not empty; "
                              "choose another --run-dir")
        target.mkdir(parents=True, exist_ok=True)
        run = cls(path=target, run_id=run_id, kind=kind, command=command, settings=settings,
                  platform=platform)
        run.write("running")
        return run

    @property
    def timeline_dir(self) -> Path:
        return self.path / "timeline"

    def write(self, status: str, **extra: Any) -> None:
        data = {
            "schema": RUN_SCHEMA,
            "run_id": self.run_id,
            "kind": self.kind,
            "started_ns": self.started_ns,
            "finished_ns": None if status == "running" else time.time_ns(),
            "status": status,
            "command": self.command,
            "platform": self.platform,
            "settings": self.settings,
            "experiments": [],
            **extra,
        }
        write_json_atomic(self.path / "run.json", data)
