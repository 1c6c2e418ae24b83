"""How long a model load took, as Triton's own log tells it.

The Triton this project ships (2.51, in the ``nvidia-pytriton`` wheel and the 24.10 image) exposes no model
load metric on ``/metrics`` (``nv_model_load_duration_secs`` came later), but it logs every load at INFO::

    I1206 19:36:59.352047 31784 model_lifecycle.cc:472] "loading: mlp:1"
    I1206 19:37:04.291210 31784 model_lifecycle.cc:839] "successfully loaded 'mlp'"

The two lines, written by the server itself around the backend's ``initialize()``, are the load's own
measure: independent of probes and of the platform's clocks (both timestamps come from the same process, to
the microsecond). Older releases print the messages without quotes and add `` version 1``; both are read.
"""

from __future__ import annotations

import re

__all__ = ["load_seconds"]

_LINE = re.compile(r"^[IWEF]\d{4} (\d\d):(\d\d):(\d\d(?:\.\d+)?)\s+(\d+)\s+\S+\]\s*\"?(.*?)\"?\s*$")


def _seconds(hours: str, minutes: str, seconds: str) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def load_seconds(log: str, model: str, pid: int | None = None) -> float | None:
    """The duration of the last completed load of ``model`` in ``log`` (by the process ``pid`` when given):
    from its ``loading: model:version`` line to the ``successfully loaded 'model'`` after it. None when the log
    holds no completed load (the load failed, is still running, or the log lines are not there)."""
    began: float | None = None
    last: float | None = None
    for line in log.splitlines():
        match = _LINE.match(line)
        if match is None or (pid is not None and int(match.group(4)) != pid):
            continue
        message = match.group(5)
        at = _seconds(match.group(1), match.group(2), match.group(3))
        if message.startswith(f"loading: {model}:"):
            began = at
        elif began is not None and message.startswith(f"successfully loaded '{model}'"):
            took = at - began
            last = round(took + 86400 if took < 0 else took, 6)  # the log has no date: a load across midnight
            began = None
    return last
