"""index.html opens in headless Chromium offline, logs no console message, and shows its plots.

Chromium runs with networking features off and a fresh profile; console messages go to stderr
(``--enable-logging=stderr``) as ``:CONSOLE`` lines. A control page with a console.error proves the
capture works, so the test can fail. The screenshot is kept in the test's tmp dir for inspection.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from synthetic_run import steady, write_repetition, write_run

from harness.events import EventKind
from harness.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make setup installs it)")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_console_capture_sees_a_console_error(tmp_path: Path) -> None:
    page = tmp_path / "control.html"
    page.write_text("<html><body><script>console.error('control-message')</script></body></html>")
    proc = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert any("control-message" in line for line in _console(proc.stderr)), proc.stderr[-2000:]


def test_index_html_loads_without_console_messages_and_shows_plots(tmp_path: Path) -> None:
    run = tmp_path / "reports" / "20261128T010000Z-browser"
    reqs = steady(0, 10, 50) + steady(10, 12, 50, 0.002, "connection_refused") + steady(12, 40, 50)
    events = [(10.05, EventKind.EXITED, "triton-0"), (10.5, EventKind.BACKOFF, "triton-0"),
              (11.0, EventKind.RESTARTED, "triton-0"), (12.0, EventKind.READY, "triton-0"),
              (15.0, EventKind.NOT_READY, "triton-1"), (16.0, EventKind.READY, "triton-1")]
    write_repetition(run, "pod-kill", "1", reqs, load=(0, 40), fault_start=9.7, fault_end=9.8, events=events)
    write_repetition(run, "pod-kill", "2", reqs, load=(0, 40), fault_start=9.7, fault_end=9.8, events=events)
    write_run(run, ["pod-kill"])
    index = build_report(run, query_server=False).index_html

    dom = _chromium(tmp_path, "--dump-dom", index.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == []
    assert 'id="summary"' in dom.stdout
    assert len(re.findall(r'<figure class="plot"', dom.stdout)) == 2
    assert dom.stdout.count("<svg") >= 2 and "fault" in dom.stdout and "triton-1" in dom.stdout

    shot = tmp_path / "index.png"
    proc = _chromium(tmp_path, "--window-size=1300,2400", f"--screenshot={shot}", index.as_uri())
    assert proc.returncode == 0 and _console(proc.stderr) == []
    assert shot.exists() and shot.stat().st_size > 50_000  # a rendered page with plots, not a blank one
