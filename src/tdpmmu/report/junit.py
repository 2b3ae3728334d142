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
    failures = sum(1 for r in results if r.violation is not None)
    total = sum(r.result.elapsed for r in results)
    root = ET.Element("testsuites", name="tdpmmu")
    ts = ET.SubElement(root, "testsuite", name=suite, errors="0", failures=str(failures),
                       skipped="0", tests=str(len(results)), time=_time(total),
                       timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
                       hostname=socket.gethostname())
    for res in results:
        ts.append(testcase(res))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


__all__ = ["testcase", "to_junit"]
