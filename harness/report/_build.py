"""``build_report``: analyse a run directory and write its evidence bundle.

The runner calls this at the end of ``harness run``; ``harness report`` calls it to rebuild. The
manifest is written last so that it hashes every other file, the raw inputs included.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis import RunAnalysis, analyse_run, load_settings
from harness.report._history import HISTORY_FILE, record_run
from harness.report._html import render_index
from harness.report._junit import junit_xml
from harness.report._manifest import MANIFEST, build_manifest, git_revision
from harness.report._results import results_document
from harness.report._text import render_summary_table, summary_markdown

__all__ = ["ReportResult", "build_report"]


@dataclass(frozen=True)
class ReportResult:
    run_dir: Path
    index_html: Path
    results_json: Path
    summary_md: Path
    junit_xml: Path
    manifest_json: Path
    history: Path | None
    analysis: RunAnalysis
    table: str  # the terminal summary table

    @property
    def passed(self) -> bool:
        return self.analysis.passed

    @property
    def void_repetitions(self) -> list[str]:
        """``"<experiment> #<rep>: <reason>"`` for every void repetition (its fault did not land)."""
        return self.analysis.void_repetitions


def build_report(
    run_dir: Path,
    *,
    tiers_file: Path | None = None,
    required_tier: str | None = None,
    prometheus_url: str | None = None,
    query_server: bool = True,
    record_history: bool = True,
    window_s: float | None = None,
    stability_period_s: float | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> ReportResult:
    """Analyse ``run_dir`` (reports/<run_id>) and write index.html, summary.md, results.json, junit.xml,
    manifest.json; append the run to reports/history.sqlite. ``evidence`` ({quantile, confidence, gate},
    a suite file's) overrides the tiers file's. Bad input raises ConfigError."""
    settings = load_settings(tiers_file)
    if evidence:
        settings = settings.with_evidence(evidence)
    changes = {k: v for k, v in (("window_s", window_s), ("stability_period_s", stability_period_s))
               if v is not None}
    if changes:
        settings = settings.with_analysis(**changes)  # validates them
    analysis = analyse_run(run_dir, settings, required_tier=required_tier, prometheus_url=prometheus_url,
                           overrides=changes,
                           query_server=query_server)
    results = run_dir / "results.json"
    results.write_text(json.dumps(results_document(analysis), indent=2) + "\n", encoding="utf-8")
    summary = run_dir / "summary.md"
    summary.write_text(summary_markdown(analysis), encoding="utf-8")
    index = run_dir / "index.html"
    index.write_text(render_index(analysis), encoding="utf-8")
    junit = run_dir / "junit.xml"
    junit.write_text(junit_xml(analysis), encoding="utf-8")
    notes = list(analysis.notes) + [f"{e.name}: {n}" for e in analysis.experiments for n in e.notes]
    manifest = run_dir / MANIFEST
    manifest.write_text(json.dumps(build_manifest(run_dir, analysis.run, notes, settings.to_json()), indent=2)
                        + "\n", encoding="utf-8")
    history = None
    if record_history:
        history = run_dir.parent / HISTORY_FILE
        record_run(analysis, history, git_revision())
    return ReportResult(run_dir, index, results, summary, junit, manifest, history, analysis,
                        render_summary_table(analysis))
