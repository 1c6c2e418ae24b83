"""Benchmarks: each prints its numbers beside a baseline and the ratios, never a timed assertion.

``BENCHMARKS`` maps a name to ``"module:function"``; the function takes the parsed ``harness bench``
arguments and returns an exit code. ``harness bench all`` runs every entry in order. Add a benchmark by
adding an entry (and, when it needs options, an ``add_arguments(parser)`` function in its module).
"""

from __future__ import annotations

__all__ = ["BENCHMARKS"]

BENCHMARKS: dict[str, str] = {
    "load": "harness.bench.load:run",
}
