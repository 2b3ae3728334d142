"""Scenario files: every validation error names the file, the place and the reason."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tdpmmu.scenarios import builtin_scenario_path, scenario_names
from tdpmmu.scenarios.format import OPS, ScenarioError, load_scenario, parse_scenario

GOOD_TOML = """\
name = "good"
description = "a valid scenario"

[vm]
vcpus = 2

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
name = "host"
actions = [ { op = "memslot_move", slot = 0, base_gfn = 0x10 } ]

[[thread]]
name = "vcpu0"
actions = [ { op = "vcpu_run", vcpu = 0, guest = ["write 0x1", "read 0x2"] } ]
"""

GOOD: dict[str, Any] = {
    "name": "good",
    "vm": {"vcpus": 2},
    "memslot": [{"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100}],
    "thread": [
        {"name": "host", "actions": [{"op": "memslot_move", "slot": 0, "base_gfn": 0x10}]},
        {"name": "vcpu0", "actions": [{"op": "vcpu_run", "vcpu": 0,
                                        "guest": ["write 0x1", "read 0x2"]}]},
    ],
}
PATH = "my/scen.toml"


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(data, PATH)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{PATH}: ")
    return msg


def edited(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    data.update(changes)
    return data


def with_action(action: dict[str, Any], thread: int = 0) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    data["thread"][thread]["actions"].append(action)
    return data


def test_the_good_scenario_parses():
    s = parse_scenario(copy.deepcopy(GOOD), PATH)
    assert s.name == "good" and s.vcpus == 2 and s.root_level == 3 and s.path == PATH
    assert [t for t, _ in s.threads] == ["host", "vcpu0"]
    move = s.threads[0][1][0]
    assert move.op == "memslot_move" and move.args == {"slot": 0, "base_gfn": 0x10, "as_id": 0}
    assert move.where == "thread 'host' action 0"
    run = s.threads[1][1][0]
    assert run.args["guest"] == [("write", 1), ("read", 2)]


def test_good_file_loads(tmp_path):
    f = tmp_path / "good.toml"
    f.write_text(GOOD_TOML)
    s = load_scenario(f)
    assert s.name == "good" and s.path == str(f)
    assert [a.op for a in s.setup] == ["vcpu_run"]
    assert s.memslots[0].hva == 0x100


@pytest.mark.parametrize("name", scenario_names())
def test_every_builtin_scenario_loads(name):
    s = load_scenario(builtin_scenario_path(name))
    assert s.name == name
    assert s.threads and s.description


def test_the_six_seed_scenarios_are_built_in():
    assert {"seed-bug", "notifier-vs-unload", "next-root-deleted", "root-added-during-walk",
            "dirty-log-new-root", "teardown"} <= set(scenario_names())


# ---------------------------------------------------------------- top level
def test_unknown_top_level_key():
    msg = error_of(edited(threads=[]))
    assert "key 'threads'" in msg and "unknown" in msg and "thread" in msg


def test_missing_name():
    data = edited()
    del data["name"]
    assert re.search(r": name: missing", error_of(data))


def test_unknown_vm_key():
    msg = error_of(edited(vm={"vcpus": 1, "cpus": 2}))
    assert "[vm] key 'cpus'" in msg and "unknown" in msg


def test_no_thread():
    msg = error_of(edited(thread=[]))
    assert "thread" in msg and "at least one" in msg


# ------------------------------------------------------------------ actions
def test_unknown_op_lists_known_ops():
    msg = error_of(with_action({"op": "memslot_resize", "slot": 0}))
    assert "thread 'host' action 1" in msg
    assert "unknown op 'memslot_resize'" in msg
    for op in OPS:
        assert op in msg


@pytest.mark.parametrize("op", [["vcpu_run"], {"name": "x"}, 3, True])
def test_op_of_another_type_is_an_error_not_a_crash(op):
    # A TOML array or inline table as op crashed with "TypeError: unhashable type".
    msg = error_of(with_action({"op": op}))
    assert "thread 'host' action 1" in msg and "unknown op" in msg


def test_action_without_op():
    msg = error_of(with_action({"slot": 0}))
    assert "thread 'host' action 1" in msg and "unknown op None" in msg


def test_missing_field():
    msg = error_of(with_action({"op": "memslot_move", "slot": 0}))
    assert "thread 'host' action 1 (memslot_move)" in msg
    assert "missing field 'base_gfn'" in msg


def test_unknown_field_lists_allowed_fields():
    msg = error_of(with_action({"op": "invalidate", "hva": 0x100, "npages": 1, "len": 2}))
    assert "thread 'host' action 1 (invalidate)" in msg
    assert "unknown field 'len'" in msg and "hva" in msg and "npages" in msg


def test_string_where_int_expected():
    msg = error_of(with_action({"op": "memslot_move", "slot": "one", "base_gfn": 0x10}))
    assert "thread 'host' action 1 (memslot_move) slot" in msg
    assert "must be an integer, got 'one'" in msg


def test_bool_where_int_expected():
    msg = error_of(with_action({"op": "memslot_move", "slot": True, "base_gfn": 0x10}))
    assert "must be an integer, got True" in msg


def test_int_where_bool_expected():
    msg = error_of(with_action({"op": "memslot_create", "slot": 1, "base_gfn": 8,
                                "npages": 2, "hva": 0x200, "huge": 1}))
    assert "(memslot_create) huge" in msg and "must be true or false, got 1" in msg


def test_out_of_range_gfn_in_action():
    msg = error_of(with_action({"op": "memslot_move", "slot": 0, "base_gfn": 64}))
    assert "(memslot_move) base_gfn" in msg and "64 is out of range 0..63" in msg


def test_out_of_range_vcpu():
    data = copy.deepcopy(GOOD)
    data["thread"][1]["actions"][0]["vcpu"] = 2
    msg = error_of(data)
    assert "thread 'vcpu0' action 0 (vcpu_run) vcpu" in msg and "out of range 0..1" in msg


def test_memslot_create_beyond_the_guest_is_rejected():
    # [[memslot]] rejects a slot past the guest's gfns; the action did not.
    msg = error_of(with_action({"op": "memslot_create", "slot": 1, "base_gfn": 60,
                                "npages": 10, "hva": 0x200}))
    assert "thread 'host' action 1 (memslot_create)" in msg
    assert "exceed the guest's 64 gfns" in msg


def test_memslot_create_up_to_the_last_gfn_is_fine():
    s = parse_scenario(with_action({"op": "memslot_create", "slot": 1, "base_gfn": 60,
                                    "npages": 4, "hva": 0x200}), PATH)
    assert s.threads[0][1][1].args["npages"] == 4


# ------------------------------------------------------------------- guests
@pytest.mark.parametrize(("ins", "reason"), [
    ("jump 0x1", "unknown instruction 'jump 0x1'"),
    ("", "unknown instruction ''"),
    ("write", "write takes one gfn"),
    ("read 1 2", "read takes one gfn"),
    ("write x1", "bad gfn 'x1'"),
    ("smi 1", "smi takes no operand"),
    ("write 0x40", "gfn 0x40 is outside the guest's 64 gfns"),
])
def test_bad_guest_instruction(ins, reason):
    data = copy.deepcopy(GOOD)
    data["thread"][1]["actions"][0]["guest"] = ["read 0x1", ins]
    msg = error_of(data)
    assert "thread 'vcpu0' action 0 (vcpu_run) guest[1]" in msg
    assert reason in msg


def test_guest_must_be_a_non_empty_array():
    data = copy.deepcopy(GOOD)
    data["thread"][1]["actions"][0]["guest"] = "write 0x1"
    assert "must be a non-empty array" in error_of(data)


def test_guest_gfn_range_follows_root_level():
    data = copy.deepcopy(GOOD)
    data["vm"]["root_level"] = 2
    data["memslot"][0]["npages"] = 2
    data["thread"][0]["actions"] = [{"op": "zap_all"}]
    data["thread"][1]["actions"][0]["guest"] = ["write 0x10"]
    assert "gfn 0x10 is outside the guest's 16 gfns" in error_of(data)


# ----------------------------------------------------------------- memslots
def test_memslot_missing_field():
    msg = error_of(edited(memslot=[{"id": 0, "base_gfn": 0, "npages": 4}]))
    assert "memslot 0: missing 'hva'" in msg


def test_memslot_out_of_range_gfns():
    msg = error_of(edited(memslot=[{"id": 0, "base_gfn": 62, "npages": 4, "hva": 0}]))
    assert "memslot 0" in msg and "exceed the guest's 64 gfns" in msg


def test_overlapping_memslots():
    msg = error_of(edited(memslot=[{"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100},
                                   {"id": 1, "base_gfn": 3, "npages": 4, "hva": 0x200}]))
    assert "memslot 1: overlaps memslot 0" in msg


def test_same_gfns_in_another_address_space_do_not_overlap():
    s = parse_scenario(edited(memslot=[
        {"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100},
        {"id": 1, "as_id": 1, "base_gfn": 0, "npages": 4, "hva": 0x200}]), PATH)
    assert [m.as_id for m in s.memslots] == [0, 1]


def test_duplicate_memslot_id():
    msg = error_of(edited(memslot=[{"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100},
                                   {"id": 0, "base_gfn": 8, "npages": 4, "hva": 0x200}]))
    assert "memslot 1" in msg and "slot id 0 is defined twice" in msg


def test_unknown_memslot_key():
    msg = error_of(edited(memslot=[{"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100,
                                    "size": 4}]))
    assert "memslot 0 key 'size'" in msg and "unknown" in msg


# ------------------------------------------------------------------ threads
def test_duplicate_thread_names():
    data = copy.deepcopy(GOOD)
    data["thread"][1]["name"] = "host"
    msg = error_of(data)
    assert "thread 'host'" in msg and "defined twice" in msg


def test_vcpu_used_by_two_threads():
    data = copy.deepcopy(GOOD)
    data["thread"][0]["actions"].append({"op": "vcpu_unload", "vcpu": 0})
    msg = error_of(data)
    assert "action 1 (" not in msg  # the place is the action, not the op
    assert re.search(r"thread '(host|vcpu0)' action \d+: vcpu 0 is already run by thread", msg)
    assert "a vCPU belongs to one thread" in msg


def test_thread_without_actions():
    data = copy.deepcopy(GOOD)
    data["thread"][0]["actions"] = []
    assert "thread 'host': needs a non-empty 'actions' array" in error_of(data)


def test_thread_without_name():
    data = copy.deepcopy(GOOD)
    del data["thread"][1]["name"]
    assert "thread 1: missing 'name'" in error_of(data)


def test_setup_action_place():
    msg = error_of(edited(setup=[{"op": "vcpu_run", "vcpu": 0}]))
    assert "setup action 0 (vcpu_run): missing field 'guest'" in msg


# -------------------------------------------------------------------- files
def test_toml_syntax_error(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text('name = "x"\n[vm\nvcpus = 1\n')
    with pytest.raises(ScenarioError) as exc:
        load_scenario(f)
    msg = str(exc.value)
    assert msg.startswith(f"{f}: not valid TOML")
    assert "line 2" in msg and "\n" not in msg


def test_missing_file(tmp_path):
    f = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError) as exc:
        load_scenario(f)
    assert str(exc.value) == f"{f}: cannot read: No such file or directory"


def test_directory_is_unreadable(tmp_path):
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path)
    assert str(exc.value).startswith(f"{tmp_path}: cannot read: ")


def test_binary_file_is_an_error_not_a_crash(tmp_path):
    # Was a UnicodeDecodeError out of Path.read_text().
    f = tmp_path / "binary.toml"
    f.write_bytes(b'name = "x"\n\xff\xfe\x00\n')
    with pytest.raises(ScenarioError) as exc:
        load_scenario(f)
    msg = str(exc.value)
    assert msg.startswith(f"{f}: ") and "UTF-8" in msg and "\n" not in msg


def test_file_error_names_place(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(GOOD_TOML.replace('guest = ["write 0x1", "read 0x2"]',
                                   'guest = ["write 0x1", "fly 0x2"]'))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(f)
    assert str(exc.value).startswith(
        f"{f}: thread 'vcpu0' action 0 (vcpu_run) guest[1]: unknown instruction 'fly 0x2'")


def test_utf8_description_loads(tmp_path):
    f = tmp_path / "utf8.toml"
    f.write_bytes(GOOD_TOML.replace("a valid scenario", "naïve – ok").encode("utf-8"))
    assert load_scenario(f).description == "naïve – ok"


def test_huge_pages_need_a_root_above_the_huge_level():
    """A 2M leaf in the root page table cannot exist on real hardware (roots are
    4/5 levels): a huge memslot with root_level 2 is refused, in [[memslot]]
    and in memslot_create; root_level 3 is accepted."""
    slots = [{"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100, "huge": True}]
    msg = error_of(edited(vm={"vcpus": 2, "root_level": 2}, memslot=slots))
    assert "memslot 0 huge" in msg and "root_level >= 3" in msg
    data = edited(vm={"vcpus": 2, "root_level": 2}, memslot=[])
    data["thread"][0]["actions"] = [{"op": "memslot_create", "slot": 1, "base_gfn": 8,
                                     "npages": 4, "hva": 0x200, "huge": True}]
    msg = error_of(data)
    assert "(memslot_create) huge" in msg and "root_level >= 3" in msg
    assert parse_scenario(edited(memslot=slots), PATH).memslots[0].huge
