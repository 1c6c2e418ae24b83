"""SIGINT and SIGTERM interrupt a Chaos Toolkit run at once, whatever phase it is in.

Two gaps in Chaos Toolkit 1.x are closed here. SIGTERM only fails the current activity (DESIGN.md), so both
signals raise ``KeyboardInterrupt``, which Chaos Toolkit answers by rolling back. And when the interrupt
lands inside an activity, Chaos Toolkit still sleeps through that activity's ``pauses.after`` in a
``finally`` block before it rolls back (its ``interrupted`` flag is never set): a fault held for a 60 s
pause stayed in place 60 s after Ctrl-C. After an interrupt, a short repeating alarm therefore interrupts
that pause too, and only that pause: it checks that the interrupted frame is Chaos Toolkit's
``execute_activity`` and otherwise lets whatever runs (a rollback, above all) go on.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["disarm", "install", "pop", "push", "restore"]

_ALARM_PERIOD_S = 0.1
_ALARM_TICKS = 10  # the pause starts right after the interrupted activity; one second covers it
Handler = Callable[[int, FrameType | None], Any] | int | None


def _in_activity_pause(frame: FrameType | None) -> bool:
    return (frame is not None and frame.f_code.co_name == "execute_activity"
            and frame.f_code.co_filename.replace("\\", "/").endswith("chaoslib/activity.py"))


class _PauseBreaker:
    """The alarm handler: a few ticks after an interrupt, then it disarms itself."""

    def __init__(self) -> None:
        self.ticks = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.ticks += 1
        if _in_activity_pause(frame):
            disarm()
            raise KeyboardInterrupt("interrupted: the pause after the interrupted activity is skipped")
        if self.ticks >= _ALARM_TICKS:
            disarm()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGALRM, _PauseBreaker())
    signal.setitimer(signal.ITIMER_REAL, _ALARM_PERIOD_S, _ALARM_PERIOD_S)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install() -> dict[int, Handler]:
    """Make SIGINT and SIGTERM interrupt the run; returns the previous handlers for ``restore``."""
    return {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def disarm() -> None:
    """Stop the pause-interrupting alarm (the experiment has returned, or the pause was interrupted)."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)


def restore(previous: dict[int, Handler]) -> None:
    disarm()
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


# Signal handlers are process-wide state, so the handlers they replace are kept process-wide too: the control
# pushes in its before-hook and pops in its after-hook, which Chaos Toolkit calls as separate functions.
_SAVED: list[dict[int, Handler]] = []


def push() -> None:
    _SAVED.append(install())


def pop() -> None:
    restore(_SAVED.pop() if _SAVED else {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL})
