"""PML through the command line: ``[vm] pml`` shown, checked, and refused where
the model cannot run it (one line, exit 2)."""

from __future__ import annotations

import json

from test_cli_main import assert_bad_input, tdpmmu

PML_SCENARIO = """\
name = "mine-pml"
[vm]
tdp_mmu = {tdp_mmu}
pml = {pml}
[[memslot]]
id = 0
base_gfn = 0
npages = 4
hva = 0x100
log_dirty = true
[[setup]]
op = "vcpu_run"
vcpu = 0
guest = ["write 0x1"]
[[thread]]
name = "host"
actions = [ {{ op = "get_dirty_log", slot = 0 }} ]
[[thread]]
name = "vcpu0"
actions = [ {{ op = "vcpu_run", vcpu = 0, guest = ["write 0x1"] }} ]
"""


def test_show_says_the_vm_logs_dirty_pages_by_pml():
    proc = tdpmmu("show", "dirty-log-pml-get-vs-writes")
    assert proc.returncode == 0, proc.stderr
    assert "PML (kvm_intel pml=1)" in proc.stdout


def test_a_pml_scenario_file_verifies_on_the_latest_version(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(PML_SCENARIO.format(tdp_mmu=1, pml=1))
    proc = tdpmmu("check", "--kernel", "v6.18", "--scenario", str(path), "-j", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["complete"] and row["violation"] is None and row["executions"] > 1


def test_pml_with_the_legacy_mmu_is_refused_in_one_line(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(PML_SCENARIO.format(tdp_mmu=0, pml=1))
    proc = tdpmmu("check", "--kernel", "v5.11", "--scenario", str(path), "-j", "1")
    assert_bad_input(proc, "mine.toml", "[vm] pml = 1 needs the TDP MMU")


def test_a_pml_value_out_of_range_is_refused_in_one_line(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(PML_SCENARIO.format(tdp_mmu=1, pml=2))
    proc = tdpmmu("check", "--kernel", "v5.11", "--scenario", str(path), "-j", "1")
    assert_bad_input(proc, "mine.toml", "[vm] pml", "out of range")
