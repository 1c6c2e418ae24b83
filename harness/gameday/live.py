"""The game day's live terminal view: load, replicas and the active fault, refreshed every second.

The load's figures come from the local load's per-second line, or with the load in the cluster from the
workers' newest requests (``harness.gameday.cluster_figures``, a few seconds behind, as the line says).

It runs in its own thread while the main thread runs experiments. Keys: ``a`` aborts (it interrupts the
main thread exactly as Ctrl-C does, so rollbacks run), ``n`` starts a note (typed text, Enter saves it
with a timestamp), and at a gate ``g``/``s``/``a`` answer go / skip / abort. Without a terminal (CI
rehearsals with ``--yes``) it prints one plain line per second instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness.platforms.base import PlatformStatus
from harness.platforms.kubernetes import cluster_load

__all__ = ["LiveView", "Note"]


@dataclass(frozen=True)
class Note:
    ts_ns: int
    text: str
    step: str


def _last_json_line(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - 4096, 0))
            lines = [line for line in fh.read().splitlines() if line.strip()]
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            data: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        if not data.get("final"):
            return data
    return {}


def _active_fault(rep_dir: Path | None) -> tuple[str, float | None]:
    if rep_dir is None:
        return "", None
    path = rep_dir / "injected.jsonl"
    active: dict[str, tuple[str, int]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return "", None
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        kind = str(entry.get("kind", ""))
        if kind.startswith("undone:"):
            active.pop(kind.split(":", 1)[1], None)
        else:
            active[kind] = (", ".join(entry.get("targets") or []), int(entry["ts_ns"]))
    if not active:
        return "", None
    kind, (targets, ts) = max(active.items(), key=lambda kv: kv[1][1])
    return f"{kind} on {targets}" if targets else kind, (time.time_ns() - ts) / 1e9


class LiveView(threading.Thread):
    def __init__(
        self,
        title: str,
        status: Callable[[], PlatformStatus],
        rep_dir: Callable[[], Path | None],
        notes_path: Path,
        interactive: bool,
        out: IO[str] | None = None,
        refresh_s: float = 1.0,
        cluster_figures: Callable[[Path], dict[str, Any] | None] | None = None,
    ) -> None:
        super().__init__(name="gameday-live-view", daemon=True)
        # With the load in the cluster, its per-second figures are sampled from the workers (an exec each) in
        # a thread of their own, so a slow API never stalls the view or the keys.
        self._cluster_figures = cluster_figures
        self._cluster_stats: tuple[Path, dict[str, Any]] | None = None
        self.title = title
        self._status = status
        self._rep_dir = rep_dir
        self.notes_path = notes_path
        self.interactive = interactive
        self.out = out or sys.stdout
        self.refresh_s = refresh_s
        self.step = ""
        self.aborted = False
        self._halt = threading.Event()
        self._gate_question = ""
        self._gate_answer: str | None = None
        self._gate_done = threading.Event()
        self._typing: str | None = None
        self._last_note = ""
        self._lock = threading.Lock()

    # -- called from the main thread -----------------------------------------------------------------
    def gate(self, question: str, assume_yes: bool) -> str:
        """Ask go / skip / abort; the live view keeps refreshing meanwhile."""
        if assume_yes or not self.interactive:
            self._print_plain(f"gate: {question} -> go (--yes)")
            return "go"
        with self._lock:
            self._gate_question, self._gate_answer = question, None
            self._gate_done.clear()
        self._gate_done.wait()
        with self._lock:
            answer, self._gate_question = self._gate_answer or "abort", ""
        return answer

    def stop(self) -> None:
        self._halt.set()

    def add_note(self, text: str) -> Note:
        note = Note(time.time_ns(), text, self.step)
        with self.notes_path.open("a") as fh:
            fh.write(json.dumps({"ts_ns": note.ts_ns, "text": note.text, "step": note.step}) + "\n")
        self._last_note = text
        return note

    # -- the view ------------------------------------------------------------------------------------
    def render(self) -> list[str]:
        stats: dict[str, Any] = {}
        rep = self._rep_dir()
        in_cluster = rep is not None and cluster_load.recorded(rep)
        if rep is not None and not in_cluster:
            stats = _last_json_line(rep / "load-stats.jsonl")
        elif self._cluster_stats is not None and self._cluster_stats[0] == rep:
            stats = self._cluster_stats[1]
        fault, age = _active_fault(rep)
        try:
            status = self._status()
            replicas = " | ".join(
                f"{r.name} {'ready' if r.ready else (r.state or 'not ready')}"
                + (f" (restarts {r.restarts})" if r.restarts else "") for r in status.replicas)
        except Exception as exc:  # noqa: BLE001 - the view must keep running whatever the platform does
            replicas = f"platform status unavailable: {exc}"
        rps = stats.get("rps")
        errors = stats.get("errors_per_s")
        ratio = (errors / rps * 100) if rps else 0.0
        load = (f"requests/s {rps:8.1f}   errors {ratio:5.1f}%   p50 {stats.get('p50_ms') or '-':>5} ms   "
                f"p99 {stats.get('p99_ms') or '-':>5} ms   users {stats.get('users', '-')}") if rps is not None \
            else ("load: in the cluster (Locust pods; figures come with the report)" if in_cluster
                  else "load: (between experiments)")
        if rps is not None and in_cluster:
            load += f"   (in the cluster, the second {stats.get('lag_s', '?')} s ago)"
        lines = [
            f"GAME DAY  {self.title}   step: {self.step or '-'}   {time.strftime('%H:%M:%S')}",
            load,
            f"fault: {fault}, injected {age:.1f} s ago" if fault and age is not None else "fault: none active",
            f"replicas: {replicas}",
        ]
        if self._gate_question:
            lines.append(f"GATE: {self._gate_question}  [g]o  [s]kip  [a]bort")
        elif self._typing is not None:
            lines.append(f"note> {self._typing}_")
        else:
            lines.append("keys: [a] abort (rolls back)   [n] note")
        if self._last_note:
            lines.append(f"last note: {self._last_note}")
        return lines

    def _print_plain(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def _draw(self) -> None:
        lines = self.render()
        if self.interactive:
            self.out.write("\x1b[H\x1b[2J" + "\r\n".join(lines) + "\r\n")
            self.out.flush()
        else:
            self._print_plain(" | ".join(lines[:4]))

    def _key(self, ch: str) -> None:
        if self._typing is not None:
            if ch in ("\r", "\n"):
                if self._typing.strip():
                    self.add_note(self._typing.strip())
                self._typing = None
            elif ch in ("\x7f", "\b"):
                self._typing = self._typing[:-1]
            elif ch == "\x1b":
                self._typing = None
            elif ch.isprintable():
                self._typing += ch
            return
        if self._gate_question and ch in "gsa":
            with self._lock:
                self._gate_answer = {"g": "go", "s": "skip", "a": "abort"}[ch]
            self._gate_done.set()
            if ch == "a":
                self.aborted = True
            return
        if ch == "n":
            self._typing = ""
        elif ch == "a":
            self.aborted = True
            os.kill(os.getpid(), signal.SIGINT)  # the main thread rolls back as on Ctrl-C

    def _sample_cluster(self) -> None:
        while not self._halt.wait(self.refresh_s):
            rep = self._rep_dir()
            if rep is None or not cluster_load.recorded(rep) or self._cluster_figures is None:
                continue
            try:
                figures = self._cluster_figures(rep)
            except Exception:  # noqa: BLE001 - the view must keep running whatever the cluster does
                figures = None
            self._cluster_stats = (rep, figures) if figures is not None else None

    def run(self) -> None:
        if self._cluster_figures is not None:
            threading.Thread(target=self._sample_cluster, name="gameday-cluster-figures", daemon=True).start()
        fd = sys.stdin.fileno() if self.interactive else -1
        saved = termios.tcgetattr(fd) if self.interactive else None
        try:
            if self.interactive:
                tty.setcbreak(fd)
            next_draw = 0.0
            while not self._halt.is_set():
                now = time.monotonic()
                if now >= next_draw:
                    self._draw()
                    next_draw = now + self.refresh_s
                if self.interactive:
                    ready, _, _ = select.select([fd], [], [], 0.1)
                    if ready:
                        for ch in os.read(fd, 64).decode(errors="ignore"):
                            self._key(ch)
                        self._draw()
                else:
                    self._halt.wait(0.1)
        finally:
            if saved is not None:
                with contextlib.suppress(termios.error):
                    termios.tcsetattr(fd, termios.TCSADRAIN, saved)
