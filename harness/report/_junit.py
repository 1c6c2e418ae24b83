"""junit.xml: one test case per experiment and tier, in the format CI systems read (Ant/Jenkins JUnit).

A tier's test case fails only when it is the experiment's required tier and its verdict does not pass the
evidence gate (supported, or also indicative); the other tiers pass and say their verdict in system-out.
Each experiment also has a "repetitions" case that fails when a repetition did not complete or its
steady-state hypothesis deviated, and one error case per void repetition (its fault did not land: the
run measured nothing, which is an error of the test, not a failure of the service). A run that did not
complete adds an error case, so CI never reads an interrupted run as green.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from harness.analysis import RunAnalysis

__all__ = ["junit_xml"]


def junit_xml(a: RunAnalysis) -> str:
    root = ET.Element("testsuites", name=f"resilience {a.run_id}")
    total = failures = errors = 0
    stamp = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if a.status != "completed":
        suite = ET.SubElement(
            root,
            "testsuite",
            name="run",
            tests="1",
            failures="0",
            errors="1",
            skipped="0",
            time="0",
            timestamp=stamp,
            hostname=socket.gethostname(),
        )
        case = ET.SubElement(suite, "testcase", name="run status", classname="resilience.run", time="0")
        ET.SubElement(case, "error", type="RunNotCompleted", message=f"run status is {a.status!r}").text = "; ".join(
            a.notes
        )
        total, errors = total + 1, errors + 1
    for e in a.experiments:
        n_fail = sum(1 for v in e.tiers.values() if v.required and not v.passes(e.gate)) + bool(
            e.failed_repetitions)
        voids = [r for r in e.reps if r.void is not None]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=e.name,
            tests=str(len(e.tiers) + 1 + len(voids)),
            failures=str(n_fail),
            errors=str(len(voids)),
            skipped="0",
            time="0",
            timestamp=stamp,
            hostname=socket.gethostname(),
        )
        props = ET.SubElement(suite, "properties")
        for key, value in (
            ("fault", e.fault),
            ("repetitions", str(len(e.reps))),
            ("required_tier", e.required_tier or ""),
        ):
            ET.SubElement(props, "property", name=key, value=value)
        case = ET.SubElement(suite, "testcase", name="repetitions", classname=f"resilience.{e.name}", time="0")
        if e.failed_repetitions:
            ET.SubElement(
                case,
                "failure",
                type="RepetitionFailed",
                message="a repetition did not complete or its hypothesis deviated",
            ).text = "; ".join(e.failed_repetitions)
        else:
            ET.SubElement(case, "system-out").text = f"{len(e.reps)} repetition(s) completed, hypothesis held"
        for r in voids:
            case = ET.SubElement(suite, "testcase", name=f"repetition {r.repetition}",
                                 classname=f"resilience.{e.name}", time="0")
            ET.SubElement(case, "error", type="VoidRepetition",
                          message=f"repetition {r.repetition} is void: {r.void}").text = (
                "the fault did not land (or a method action failed); this repetition yields no figures")
        for name, v in e.tiers.items():
            case = ET.SubElement(suite, "testcase", name=f"tier {name}", classname=f"resilience.{e.name}", time="0")
            if v.required and not v.passes(e.gate):
                ET.SubElement(
                    case, "failure", type="TierNotSupported",
                    message=f"required tier {name}: {v.outcome} (the gate needs "
                            f"{'supported or indicative' if e.gate == 'indicative' else 'supported'})",
                ).text = v.why
            else:
                verdict = v.outcome + ("" if v.required else " (not required)")
                ET.SubElement(case, "system-out").text = f"{verdict}: {v.why}"
        total += len(e.tiers) + 1 + len(voids)
        failures += n_fail
        errors += len(voids)
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    root.set("time", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
