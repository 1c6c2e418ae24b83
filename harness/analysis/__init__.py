"""Measurement: a run directory turned into the figures DESIGN.md defines, and SLA tier verdicts.

The definitions (window, time to impact, time to recover, bad time, capacity recovery, availability,
tiers) are implemented in ``_windows``, ``_replicas`` and ``_aggregate`` and documented with a worked
example in docs/measurement.md.
"""

from harness.analysis._aggregate import FigureStats, TierVerdict, figure_stats, format_duration, judge_tiers
from harness.analysis._repetition import ExperimentInfo, RepetitionResult, analyse_repetition, iso_utc
from harness.analysis._run import ExperimentAnalysis, RunAnalysis, analyse_run, read_run_json
from harness.analysis._settings import (
    DEFAULT_TIERS_FILE,
    AnalysisSettings,
    Objective,
    Settings,
    Tier,
    load_settings,
)

__all__ = [
    "DEFAULT_TIERS_FILE",
    "AnalysisSettings",
    "ExperimentAnalysis",
    "ExperimentInfo",
    "FigureStats",
    "Objective",
    "RepetitionResult",
    "RunAnalysis",
    "Settings",
    "Tier",
    "TierVerdict",
    "analyse_repetition",
    "analyse_run",
    "figure_stats",
    "format_duration",
    "iso_utc",
    "judge_tiers",
    "load_settings",
    "read_run_json",
]
