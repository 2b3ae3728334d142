"""``check --junit-xml``: xunit2 as pytest writes it, valid against its XSD."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

xmlschema = pytest.importorskip("xmlschema")

XSD = Path(__file__).parent.parent / "data" / "junit-10.xsd"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tdpmmu.cli", *args], capture_output=True,
                          text=True, env={**os.environ, "CI": "1"}, timeout=300)


def test_one_case_per_version_and_scenario_valid_xunit2(tmp_path):
    out = tmp_path / "results.xml"
    proc = run("check", "--kernel", "v5.10", "--kernel", "v5.11", "--scenario", "teardown",
               "--scenario", "next-root-deleted", "--junit-xml", str(out))
    assert proc.returncode == 1, proc.stderr
    xmlschema.XMLSchema(str(XSD)).validate(str(out))
    suite = ET.parse(out).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("tdpmmu.v5.10", "teardown"), ("tdpmmu.v5.10", "next-root-deleted"),
        ("tdpmmu.v5.11", "teardown"), ("tdpmmu.v5.11", "next-root-deleted")]
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("classname") for c in failed] == ["tdpmmu.v5.10", "tdpmmu.v5.10"]
    assert suite.get("tests") == "4" and suite.get("failures") == "2"
    f = failed[0].find("failure")
    assert f.get("type") == "BUG" and "kvm_mmu_get_root" in f.get("message")
    assert "tdpmmu replay --kernel v5.10 --scenario teardown --schedule" in f.text
    assert "verified" in cases[2].find("system-out").text


def test_unwritable_junit_file_is_bad_input(tmp_path):
    proc = run("check", "--kernel", "v5.11", "--scenario", "teardown", "--junit-xml",
               str(tmp_path / "no" / "such" / "dir.xml"))
    assert proc.returncode == 2 and "--junit-xml" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
