"""``harness check-deployment``: static checks of a Triton Deployment, each with its numbers and the
experiment that demonstrates what it predicts. Nothing is started unless ``--measure`` asks for it."""

from harness.deploycheck._checks import CHECKS, TIER_NEEDS, CheckInput, Finding, Report, run_checks
from harness.deploycheck._measure import BASELINE_MB, Measured, measure_load, model_config_facts
from harness.manifest import DeploymentView, ProbeView, parse_quantity_mb, read_documents, read_manifest

__all__ = [
    "BASELINE_MB",
    "CHECKS",
    "TIER_NEEDS",
    "CheckInput",
    "DeploymentView",
    "Finding",
    "Measured",
    "ProbeView",
    "Report",
    "measure_load",
    "model_config_facts",
    "parse_quantity_mb",
    "read_documents",
    "read_manifest",
    "run_checks",
]
