"""The scenario format's nested-guest instructions, ``set_cpuid`` and
``set_nx_huge_pages``: what it accepts, and the one-line rejections (exit 2)
of what the model does not do or the kernel version refuses."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_cli_main import assert_bad_input, tdpmmu

from tdpmmu.checker import UserError, build_model
from tdpmmu.kvm.versions import V5_15, V5_17, V6_9
from tdpmmu.scenarios.format import ScenarioError, parse_scenario

PATH = "my/scen.toml"
BASE: dict[str, Any] = {
    "name": "s",
    "vm": {"vcpus": 1, "tdp_mmu": 1},
    "memslot": [{"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100}],
    "thread": [
        {"name": "host", "actions": [{"op": "set_nx_huge_pages", "value": True}]},
        {"name": "vcpu0", "actions": [{"op": "vcpu_run", "vcpu": 0, "guest": ["write 0x1"]}]},
    ],
}


def with_guest(*guest: str) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["thread"][1]["actions"][0]["guest"] = list(guest)
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(data, PATH)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{PATH}: "), msg
    return msg


def test_nested_instructions_parse():
    s = parse_scenario(with_guest("write 0x1", "vmlaunch 0x2", "vmexit", "invept"), PATH)
    assert s.threads[1][1][0].args["guest"] == [("write", 1), ("vmlaunch", 2), ("vmexit", 0),
                                                ("invept", 0)]
    assert s.threads[0][1][0].args == {"value": True}


@pytest.mark.parametrize(("guest", "index", "reason"), [
    (["vmlaunch 0x2", "read 0x1", "vmexit"], 1, "read in L2"),
    (["vmlaunch 0x2", "smi", "vmexit"], 1, "smi in L2"),
    (["vmlaunch 0x2", "invept", "vmexit"], 1, "invept in L2"),
    (["vmlaunch 0x2", "vmlaunch 0x3"], 1, "vmlaunch in L2"),
    (["vmexit"], 0, "vmexit without a vmlaunch"),
    (["write 0x1", "vmlaunch 0x2"], 1, "vmlaunch without a vmexit"),
    (["vmlaunch"], 0, "vmlaunch takes one gfn"),
    (["vmexit 1"], 0, "vmexit takes no operand"),
])
def test_nesting_mistakes_are_one_line_errors(guest, index, reason):
    msg = error_of(with_guest(*guest))
    assert f"thread 'vcpu0' action 0 (vcpu_run) guest[{index}]" in msg
    assert reason in msg


def test_set_nx_huge_pages_value_must_be_a_bool():
    data = copy.deepcopy(BASE)
    data["thread"][0]["actions"][0]["value"] = 1
    assert "(set_nx_huge_pages) value: must be true or false" in error_of(data)


def cpuid_scenario(*sets: int, setup_cpuid: int | None = 1) -> Any:
    data = copy.deepcopy(BASE)
    data["setup"] = ([] if setup_cpuid is None else
                     [{"op": "set_cpuid", "vcpu": 0, "cpuid": setup_cpuid}])
    data["setup"].append({"op": "vcpu_run", "vcpu": 0, "guest": ["write 0x1"]})
    data["thread"][1]["actions"] = [{"op": "set_cpuid", "vcpu": 0, "cpuid": c} for c in sets]
    return parse_scenario(data, PATH)


@pytest.mark.parametrize("kernel", [V5_17, V6_9], ids=lambda k: k.name)
def test_changed_cpuid_after_run_is_refused_from_5_17(kernel):
    with pytest.raises(UserError) as exc:
        build_model(kernel, cpuid_scenario(1, 2))
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{PATH}: thread 'vcpu0' action 1 (set_cpuid)")
    assert f"{kernel.name} refuses KVM_SET_CPUID after KVM_RUN" in msg
    assert "has cpuid 1, asked for cpuid 2" in msg


def test_first_cpuid_after_run_is_refused_from_5_17():
    """The vCPU has no CPUID yet (nent 0): any data differs."""
    with pytest.raises(UserError, match="has no CPUID, asked for cpuid 1"):
        build_model(V5_17, cpuid_scenario(1, setup_cpuid=None))


@pytest.mark.parametrize("kernel", [V5_17, V6_9], ids=lambda k: k.name)
def test_identical_cpuid_after_run_is_accepted_from_5_17(kernel):
    build_model(kernel, cpuid_scenario(1, 1))


def test_changed_cpuid_after_run_is_accepted_up_to_5_15():
    build_model(V5_15, cpuid_scenario(1, 2))


def test_cpuid_refusal_from_the_command_line_is_exit_2(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text("""
name = "s"
[vm]
tdp_mmu = 1
[[memslot]]
id = 0
base_gfn = 0
npages = 4
hva = 0x100
[[setup]]
op = "vcpu_run"
vcpu = 0
guest = ["write 0x1"]
[[thread]]
name = "vcpu0"
actions = [ { op = "set_cpuid", vcpu = 0, cpuid = 3 } ]
""")
    proc = tdpmmu("check", "--kernel", "v6.9", "--scenario", str(f), "-j", "1")
    assert_bad_input(proc, "thread 'vcpu0' action 0 (set_cpuid)", "v6.9 refuses")
    ok = tdpmmu("check", "--kernel", "v5.15", "--scenario", str(f), "-j", "1",
                "--max-executions", "20")
    assert ok.returncode == 0, ok.stderr
