"""``harness doctor``: what this machine can run, and why not, with the fix.

``refusal(fault, platform)`` is what ``harness run``, ``harness suite`` and the game day ask before anything
starts; it gives the same reason ``harness doctor`` prints.
"""

from harness.doctor._faults import (
    FAULTS,
    PLATFORMS,
    Diagnosis,
    FaultSupport,
    diagnose,
    experiment_faults,
    fault_support,
    refusal,
    refuse_unrunnable,
    refuse_unrunnable_files,
)
from harness.doctor._machine import Check

__all__ = [
    "FAULTS",
    "PLATFORMS",
    "Check",
    "Diagnosis",
    "FaultSupport",
    "diagnose",
    "experiment_faults",
    "fault_support",
    "refusal",
    "refuse_unrunnable",
    "refuse_unrunnable_files",
]
