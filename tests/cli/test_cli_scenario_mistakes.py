"""Scenario files that cannot describe a real VM, or that attack the reader:
rejected with one line naming the place and the reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tdpmmu.checker import check
from tdpmmu.scenarios.format import MAX_SCENARIO_BYTES, ScenarioError, load_scenario, parse_scenario

PATH = "my/scen.toml"
BASE: dict[str, Any] = {
    "name": "s",
    "vm": {"vcpus": 1},
    "memslot": [{"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100}],
    "thread": [
        {"name": "host", "actions": [{"op": "zap_all"}]},
        {"name": "vcpu0", "actions": [{"op": "vcpu_run", "vcpu": 0, "guest": ["write 0x1"]}]},
    ],
}


def scen(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(data, PATH)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{PATH}: "), msg
    return msg


def test_destroy_vm_in_setup_is_rejected():
    msg = error_of(scen(setup=[{"op": "destroy_vm"}]))
    assert "setup action 0" in msg and "destroy_vm" in msg


def test_an_action_after_destroy_vm_in_the_same_thread_is_rejected():
    data = scen()
    data["thread"][0]["actions"] = [{"op": "destroy_vm"}, {"op": "zap_all"}]
    msg = error_of(data)
    assert "thread 'host' action 1" in msg and "after destroy_vm" in msg


def test_destroy_vm_in_two_threads_is_rejected():
    data = scen()
    data["thread"][0]["actions"] = [{"op": "destroy_vm"}]
    data["thread"].append({"name": "other", "actions": [{"op": "destroy_vm"}]})
    msg = error_of(data)
    assert "thread 'other' action 0" in msg and "already destroyed" in msg


def run_text(tmp_path, toml: str) -> str:
    f = tmp_path / "s.toml"
    f.write_text(toml)
    res = check("v5.11", str(f))
    return "" if res.violation is None else f"{res.violation.kind}: {res.violation.message}"


HEAD = """
name = "t"
[vm]
vcpus = 1
tdp_mmu = 1
[[memslot]]
id = 0
base_gfn = 0
npages = 4
hva = 0x100
log_dirty = true
"""


def test_a_vcpu_thread_may_close_the_vm_last(tmp_path):
    # Before: destroy_vm waited for its own vCPU thread to exit, a "deadlock".
    assert run_text(tmp_path, HEAD + """
[[thread]]
name = "vcpu0"
actions = [{ op = "vcpu_run", vcpu = 0, guest = ["write 0x1"] }, { op = "destroy_vm" }]
""") == ""


def test_destroy_vm_waits_for_threads_that_hold_the_vm_fd(tmp_path):
    # Another thread's ioctls hold the VM's fd: the VM is destroyed after them
    # (before: it was torn down under them, and a WARN was a "kernel finding").
    assert run_text(tmp_path, HEAD + """
[[thread]]
name = "host"
actions = [{ op = "destroy_vm" }]
[[thread]]
name = "io"
actions = [{ op = "zap_all" }, { op = "get_dirty_log", slot = 0 }]
[[thread]]
name = "vcpu0"
actions = [{ op = "vcpu_run", vcpu = 0, guest = ["write 0x1"] }]
""") == ""


def test_mmu_notifier_events_may_race_with_destroy_vm(tmp_path):
    # The mm is not the VM's fd: its events come until mmu_notifier_unregister.
    assert run_text(tmp_path, HEAD + """
[[thread]]
name = "host"
actions = [{ op = "destroy_vm" }]
[[thread]]
name = "mm"
actions = [{ op = "invalidate", hva = 0x100, npages = 2 }, { op = "age", hva = 0x100, npages = 1 }]
[[thread]]
name = "vcpu0"
actions = [{ op = "vcpu_run", vcpu = 0, guest = ["write 0x1"] }]
""") == ""


@pytest.mark.parametrize("field", ["name", "thread"])
def test_control_characters_in_names_are_rejected(field):
    data = scen()
    if field == "name":
        data["name"] = "a\nb"
    else:
        data["thread"][0]["name"] = "ho\x1b[31mst"
    msg = error_of(data)
    assert "control character" in msg
    assert "\x1b" not in msg


def test_a_deeply_nested_file_is_one_line_not_a_recursion_error(tmp_path):
    f = tmp_path / "deep.toml"
    f.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(f)
    assert "\n" not in str(exc.value) and "nested" in str(exc.value)


def test_dev_zero_is_cut_at_the_size_cap():
    with pytest.raises(ScenarioError) as exc:
        load_scenario("/dev/zero")
    assert f"{MAX_SCENARIO_BYTES}" in str(exc.value) or "larger than" in str(exc.value)


def test_a_big_file_is_rejected(tmp_path):
    f = tmp_path / "big.toml"
    f.write_text("# " + "x" * (MAX_SCENARIO_BYTES + 10) + "\n")
    with pytest.raises(ScenarioError, match="larger than"):
        load_scenario(f)
