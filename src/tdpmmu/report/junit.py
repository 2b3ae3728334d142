"""JUnit XML (``--junit-xml FILE``) in pytest's default family, xunit2: one test
case per kernel version x scenario, a violation as its ``<failure>`` with the
full text report, so a CI system shows what broke where.

xunit2 has no ``<properties>`` inside a test case, so the strategy and counts
go in the case's ``<system-out>``.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from .kinds import kind_of
from .text import ok_report, violation_report


def _time(seconds: float) -> str:
    return f"{seconds:.3f}"


def testcase(res: Any) -> ET.Element:
    knobs = "".join(f" {k}={v}" for k, v in sorted(res.knobs.items()))
    case = ET.Element("testcase", classname=f"tdpmmu.{res.kernel}",
                      name=f"{res.scenario}{knobs}", time=_time(res.result.elapsed))
    v = res.violation
    if v is not None:
        fail = ET.SubElement(case, "failure", type=kind_of(v),
                             message=f"{kind_of(v)}: {v.message}")
        fail.text = violation_report(res)
    else:
        ET.SubElement(case, "system-out").text = ok_report(res)
    return case


def to_junit(results: Iterable[Any], suite: str = "tdpmmu") -> str:
    """The XML document for a list of :class:`tdpmmu.checker.CheckResult`."""
    results = list(results)
    return _document(suite, [testcase(res) for res in results],
                     sum(r.result.elapsed for r in results))


def sweep_junit(sweeps: Iterable[tuple[Any, str, list[str]]],
                suite: str = "tdpmmu sweep") -> str:
    """The XML document of ``tdpmmu sweep``: per version, one test case for the
    scope (its counts; passes when nothing was found) and one failing case per
    unique finding.  ``sweeps`` holds (SweepResult, the kernel as the user
    named it, the finding groups' report lines in order)."""
    cases = []
    total = 0.0
    for res, spec, groups in sweeps:
        total += res.elapsed
        case = ET.Element("testcase", classname=f"tdpmmu.sweep.{res.kernel}",
                          name="scope", time=_time(res.elapsed))
        cut = f", cut by --max-executions: {', '.join(res.cut)}" if res.cut else ""
        ET.SubElement(case, "system-out").text = (
            f"{spec}: {res.generated} scenarios generated, {res.run} run, {res.verified} "
            f"verified, {len(res.findings)} unique findings{cut}")
        cases.append(case)
        for i, (finding, lines) in enumerate(zip(res.findings.values(), groups, strict=True)):
            kind, fn, _ = finding.signature
            case = ET.Element("testcase", classname=f"tdpmmu.sweep.{res.kernel}",
                              name=f"finding {i + 1}: {kind} in {fn}", time=_time(0.0))
            fail = ET.SubElement(case, "failure", type=kind, message=f"{kind}: {finding.message}")
            fail.text = lines
            cases.append(case)
    return _document(suite, cases, total)


def _document(suite: str, cases: list[ET.Element], seconds: float) -> str:
    failures = sum(1 for c in cases if c.find("failure") is not None)
    root = ET.Element("testsuites", name="tdpmmu")
    ts = ET.SubElement(root, "testsuite", name=suite, errors="0", failures=str(failures),
                       skipped="0", tests=str(len(cases)), time=_time(seconds),
                       timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
                       hostname=socket.gethostname())
    ts.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


__all__ = ["sweep_junit", "testcase", "to_junit"]
