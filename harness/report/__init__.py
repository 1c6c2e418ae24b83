"""Reports: a run directory's evidence bundle (index.html, summary.md, results.json, junit.xml,
manifest.json), its history in reports/history.sqlite, and the trend page over that history."""

from harness.report._build import ReportResult, build_report
from harness.report._history import HISTORY_FILE, TrendResult, parse_threshold, trend
from harness.report._manifest import MANIFEST, VerifyResult, verify_run
from harness.report._results import SCHEMA_VERSION
from harness.report._text import render_summary_table

__all__ = [
    "HISTORY_FILE",
    "MANIFEST",
    "SCHEMA_VERSION",
    "ReportResult",
    "TrendResult",
    "VerifyResult",
    "build_report",
    "parse_threshold",
    "render_summary_table",
    "trend",
    "verify_run",
]
