"""``tdpmmu sweep`` end to end: on v5.10 a generated scenario hits the seed's BUG
in kvm_mmu_get_root, its minimal scenario file reproduces it with ``check``;
on v5.11 the same sweep finds no BUG there.

The scope is the smallest that holds the seed's race: 2 threads x 1-2
actions, a VM of one vCPU and one memslot, ops restricted to memslot_move and
vcpu_run, and a bound on executions per scenario (cut ones are reported).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_cli_main import assert_bad_input, tdpmmu

VM = """\
[vm]
vcpus = 1
root_level = 2
tdp_mmu = 1

[[memslot]]
id = 0
base_gfn = 0x0
npages = 1
hva = 0x100
"""


def sweep(tmp_path: Path, kernel: str, *extra: str):
    vm = tmp_path / "vm.toml"
    vm.write_text(VM)
    return tdpmmu("sweep", "--kernel", kernel, "--vm", str(vm), "--threads", "2",
                  "--actions-per-thread", "1..2", "--ops", "memslot_move,vcpu_run",
                  "--max-executions", "300", *extra)


def test_sweep_finds_the_seed_bug_on_v5_10_and_its_file_reproduces_it(tmp_path):
    out = tmp_path / "out"
    proc = sweep(tmp_path, "v5.10", "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "in scope" in proc.stdout and "after symmetry" in proc.stdout
    assert "invalid" in proc.stdout and "to run" in proc.stdout
    files = sorted(out.glob("*kvm_mmu_get_root*.toml"))
    assert files, proc.stdout
    assert "BUG in kvm_mmu_get_root" in proc.stdout
    check = tdpmmu("check", "--kernel", "v5.10", "--scenario", str(files[0]), "--json")
    assert check.returncode == 1, check.stderr
    v = json.loads(check.stdout)["violation"]
    assert (v["kind"], v["function"]) == ("BUG", "kvm_mmu_get_root")


def test_sweep_json_on_v5_11_has_no_bug_in_kvm_mmu_get_root(tmp_path):
    proc = sweep(tmp_path, "v5.11", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    [res] = json.loads(proc.stdout)
    assert res["run"] == res["counts"]["to_run"] > 0
    assert not [f for f in res["findings"]
                if (f["kind"], f["function"]) == ("BUG", "kvm_mmu_get_root")]


def test_sweep_bad_input_is_one_line(tmp_path):
    assert_bad_input(tdpmmu("sweep", "--kernel", "v5.10", "--ops", "nosuch"), "--ops",
                     "nosuch")
    assert_bad_input(tdpmmu("sweep", "--kernel", "v5.10", "--threads", "3..2"), "--threads")
    assert_bad_input(tdpmmu("sweep", "--kernel", "v5.10", "--vm", str(tmp_path / "no.toml")),
                     "--vm", "cannot read")


def test_sweep_junit_xml_is_valid_xunit2_with_a_failing_case_per_finding(tmp_path):
    xmlschema = pytest.importorskip("xmlschema")
    out, xml = tmp_path / "out", tmp_path / "sweep.xml"
    proc = sweep(tmp_path, "v5.10", "--out", str(out), "--junit-xml", str(xml))
    assert proc.returncode == 1, proc.stderr
    xmlschema.XMLSchema(str(Path(__file__).parent.parent / "data" / "junit-10.xsd")
                        ).validate(str(xml))
    cases = ET.parse(xml).getroot().find("testsuite").findall("testcase")
    assert cases[0].get("name") == "scope" and cases[0].find("failure") is None
    failures = [c.find("failure") for c in cases[1:]]
    assert failures and all(f is not None for f in failures)
    bug = [f for f in failures if f.get("type") == "BUG" and "kvm_mmu_get_root" in f.get(
        "message") + f.text]
    assert bug and "tdpmmu replay --kernel v5.10 --scenario" in bug[0].text
