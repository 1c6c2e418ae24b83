"""Measurement: a run directory turned into the figures DESIGN.md defines, and SLA tier verdicts.

The definitions (window, time to impact, time to recover, bad time, capacity recovery, availability,
tiers) are implemented in ``_windows``, ``_replicas`` and ``_aggregate`` and documented with a worked
example in docs/measurement.md.
"""

from harness.analysis._aggregate import (
    BudgetProjection,
    FigureStats,
    Outcome,
    TierVerdict,
    confidence,
    figure_stats,
    format_duration,
    judge_tiers,
    repetitions_needed,
)
from harness.analysis._repetition import ExperimentInfo, RepetitionResult, TtrState, analyse_repetition, iso_utc
from harness.analysis._run import ExperimentAnalysis, RunAnalysis, analyse_run, read_run_json
from harness.analysis._settings import (
    DEFAULT_TIERS_FILE,
    AnalysisSettings,
    Evidence,
    Gate,
    Objective,
    Settings,
    Tier,
    load_settings,
    parse_evidence,
)
from harness.analysis._windows import effective_starts

__all__ = [
    "DEFAULT_TIERS_FILE",
    "AnalysisSettings",
    "BudgetProjection",
    "Evidence",
    "ExperimentAnalysis",
    "ExperimentInfo",
    "FigureStats",
    "Gate",
    "Objective",
    "Outcome",
    "RepetitionResult",
    "RunAnalysis",
    "Settings",
    "Tier",
    "TierVerdict",
    "TtrState",
    "analyse_repetition",
    "analyse_run",
    "confidence",
    "effective_starts",
    "figure_stats",
    "format_duration",
    "iso_utc",
    "judge_tiers",
    "load_settings",
    "parse_evidence",
    "read_run_json",
    "repetitions_needed",
]
