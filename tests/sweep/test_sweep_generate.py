"""The sweep's generator: counts for a tiny vocabulary match a hand count, the
symmetry reduction keeps one scenario per orbit (checked by brute force), the
format's validation decides what is invalid, and a new op in the op table joins
the sweep with no sweep code."""

from __future__ import annotations

import itertools

import pytest

from tdpmmu.scenarios import format as fmt
from tdpmmu.sweep import Scope, generate, load_vm
from tdpmmu.sweep.generate import scenario_data
from tdpmmu.sweep.vocabulary import DEFAULT_VM


def counts(scope: Scope) -> tuple[int, int, int, int]:
    data, vm = load_vm(None)
    g = generate(data, vm, scope)
    return g.in_scope, g.after_symmetry, g.invalid, g.to_run


def test_hand_count_one_action():
    # Thread candidates: host [zap_all], vcpu0 [unload], vcpu1 [unload]: 3.
    # Ordered pairs: 9, of which (v0,v0) and (v1,v1) put a vCPU on two threads.
    # Orbits: {h,h} {h,v0}={h,v1} {v0,v0}={v1,v1} {v0,v1}: 4, one invalid.
    scope = dict(threads=(2, 2), actions=(1, 1), ops=("zap_all", "vcpu_unload"))
    assert counts(Scope(**scope, symmetry=False)) == (9, 9, 2, 7)
    assert counts(Scope(**scope)) == (9, 4, 1, 3)


def test_hand_count_two_actions():
    # Candidates: host z, zz; vcpu v: u, uu (v = 0, 1): 6; ordered pairs 36.
    # Invalid without symmetry: same vCPU twice, 2 vCPUs x 2 x 2 lists = 8.
    # Orbits: host-host 3, host-vcpu 2x2 = 4, same vCPU 3 (invalid),
    # vcpu0-vcpu1 with the vCPUs interchangeable: multisets of 2 of {u, uu} = 3.
    scope = dict(threads=(2, 2), actions=(1, 2), ops=("zap_all", "vcpu_unload"))
    assert counts(Scope(**scope, symmetry=False)) == (36, 36, 8, 28)
    assert counts(Scope(**scope)) == (36, 13, 3, 10)


def _orbit_key(data: dict) -> tuple:
    """Brute force: the least sorted thread list over every renaming of vCPUs."""
    best = None
    for perm in itertools.permutations(range(DEFAULT_VM["vm"]["vcpus"])):
        threads = []
        for t in data["thread"]:
            acts = tuple(repr(sorted({**a, **({"vcpu": perm[a["vcpu"]]} if "vcpu" in a
                                              else {})}.items())) for a in t["actions"])
            threads.append(acts)
        key = tuple(sorted(threads))
        best = key if best is None or key < best else best
    return best


@pytest.mark.parametrize("ops", [("zap_all", "vcpu_unload", "vcpu_run"),
                                 ("memslot_delete", "vcpu_unload", "destroy_vm")])
def test_symmetry_keeps_one_scenario_per_orbit(ops):
    data, vm = load_vm(None)
    full = generate(data, vm, Scope((2, 3), (1, 1), ops, symmetry=False))
    reduced = generate(data, vm, Scope((2, 3), (1, 1), ops))
    orbits_run = {_orbit_key(d) for d, _ in full.scenarios}
    reduced_keys = [_orbit_key(d) for d, _ in reduced.scenarios]
    assert len(reduced_keys) == len(set(reduced_keys))  # each orbit once
    assert set(reduced_keys) == orbits_run  # and none missing


def test_invalid_sequences_are_the_formats_own():
    data, vm = load_vm(None)
    g = generate(data, vm, Scope((2, 2), (1, 2), ("memslot_delete",)))
    assert g.invalid > 0
    for d, _ in g.scenarios:
        for t in d["thread"]:
            deleted = [(a["as_id"], a["slot"]) for a in t["actions"]]
            assert len(deleted) == len(set(deleted))  # no slot deleted twice by one thread
    # Everything rejected is rejected by parse_scenario, with its reason.
    assert any("was deleted by" in e for e in g.invalid_examples)


def test_format_rejects_a_slot_deleted_twice_and_actions_after_destroy():
    vm = {k: v for k, v in DEFAULT_VM.items() if k != "name"}
    twice = {**vm, "name": "x", "thread": [{"name": "h", "actions": [
        {"op": "memslot_delete", "slot": 0}, {"op": "memslot_delete", "slot": 0}]}]}
    with pytest.raises(fmt.ScenarioError, match="action 1: memslot 0 was deleted by"):
        fmt.parse_scenario(twice, "f.toml")
    after = {**vm, "name": "x", "thread": [{"name": "h", "actions": [
        {"op": "destroy_vm"}, {"op": "zap_all"}]}]}
    with pytest.raises(fmt.ScenarioError, match="action 1: comes after destroy_vm"):
        fmt.parse_scenario(after, "f.toml")


def test_a_new_op_joins_the_sweep_from_the_op_table(monkeypatch):
    monkeypatch.setitem(fmt.OPS, "new_host_op", (("hva",), {}))
    monkeypatch.setitem(fmt.OP_META, "new_host_op", fmt.OpMeta("host"))
    data, vm = load_vm(None)
    g = generate(data, vm, Scope((2, 2), (1, 1), ("new_host_op", "vcpu_unload")))
    ops = {a["op"] for d, _ in g.scenarios for t in d["thread"] for a in t["actions"]}
    assert "new_host_op" in ops
    hvas = {a["hva"] for d, _ in g.scenarios for t in d["thread"] for a in t["actions"]
            if a["op"] == "new_host_op"}
    assert hvas == {m["hva"] for m in DEFAULT_VM["memslot"]}


def test_an_op_runs_only_from_its_version(monkeypatch):
    from tdpmmu.kvm.versions import V5_10, V5_11
    monkeypatch.setitem(fmt.OP_META, "zap_all", fmt.OpMeta("host", since="v5.11"))
    data, vm = load_vm(None)
    scope = Scope((2, 2), (1, 1), ("zap_all", "vcpu_unload"))
    assert "zap_all" not in generate(data, vm, scope, V5_10).ops
    assert "zap_all" in generate(data, vm, scope, V5_11).ops


def test_setup_has_the_used_vcpus_run_first():
    data, vm = load_vm(None)
    d = scenario_data(data, [("vcpu", 1, (("vcpu_unload", (("vcpu", 1),)),)),
                             ("host", -1, (("zap_all", ()),))], "s")
    assert [a["vcpu"] for a in d["setup"]] == [1]
    assert d["setup"][0]["guest"] == ["write 0x0", "write 0x1"]
