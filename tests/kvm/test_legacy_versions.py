"""The legacy (shadow) MMU's root handling in the later versions (``tdp_mmu=0``):
each version's class reaches the legacy functions under the names and in the
order its kernel has them (5.18's WARN on a root without a shadow page, 6.0's
split of ``kvm_mmu_get_page``, 6.4's slot rmap walkers), and every version's
``kvm_zap_gfn_range`` zaps the legacy MMU's SPTEs."""

from __future__ import annotations

from typing import Any

import pytest
from kvm_testlib import do, leaf_sptes, run_vcpu, scenario, vcpu_root, world

from tdpmmu.engine import Finding
from tdpmmu.kernel import list_empty, list_for_each_entry
from tdpmmu.kvm.versions import BUILTIN

HUGE_SLOT = {"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100, "huge": True}


def recording(base: type, *names: str) -> tuple[type, list[tuple[str, Any]]]:
    """A subclass of ``base`` that logs each call of ``names`` (with its first
    argument after kvm/vcpu where it helps) and then runs the real method."""
    calls: list[tuple[str, Any]] = []

    def wrap(name: str) -> Any:
        real = getattr(base, name)

        def method(self: Any, *args: Any, **kw: Any) -> Any:
            calls.append((name, args[1] if len(args) > 1 else None))
            return real(self, *args, **kw)
        return method

    cls = type(f"Recording{base.__name__}", (base,), {n: wrap(n) for n in names})
    return cls, calls


@pytest.mark.parametrize("version", list(BUILTIN))
def test_zap_gfn_range_zaps_the_legacy_mmus_sptes(version: str) -> None:
    """``kvm_zap_gfn_range`` walks the rmaps first (5.10's loop, 5.17's
    ``__kvm_zap_rmaps``, 6.0's ``kvm_rmap_zap_gfn_range``) wherever rmaps exist:
    with the legacy MMU the vCPU's leaf SPTEs are gone afterwards."""
    w = world(BUILTIN[version], scenario([run_vcpu(0, "write 0x1", "write 0x2")], tdp_mmu=0))
    vcpu = w.kvm.vcpus[0]
    assert sorted(leaf_sptes(w.kvm, vcpu_root(vcpu))) == [1, 2]
    do(w, "zap_gfn_range", base_gfn=0, npages=16)
    assert leaf_sptes(w.kvm, vcpu_root(vcpu)) == {}


def test_v6_1_builds_legacy_pages_through_6_0s_functions() -> None:
    """6.0 (94c8136448c8, 876546436db9, 2e65e842c57d): a root comes from
    ``kvm_mmu_get_shadow_page`` (lookup, else allocation) and a page table from
    ``kvm_mmu_get_child_sp``, whose role is the parent's one level down; a
    second vCPU of the same role finds the root by its role."""
    cls, calls = recording(BUILTIN["v6.1"], "kvm_mmu_find_shadow_page",
                           "kvm_mmu_alloc_shadow_page", "kvm_mmu_get_child_sp",
                           "kvm_mmu_get_page")
    w = world(cls, scenario([run_vcpu(0, "write 0x1"), run_vcpu(1, "read 0x1")], vcpus=2,
                            tdp_mmu=0, root_level=3))
    names = [n for n, _ in calls]
    assert "kvm_mmu_get_page" not in names
    assert names.count("kvm_mmu_alloc_shadow_page") == 3  # the root and two page tables
    assert names.count("kvm_mmu_get_child_sp") == 2       # vcpu0's walk from level 3 to 1
    vcpu0, vcpu1 = w.kvm.vcpus
    root = vcpu_root(vcpu0)
    assert vcpu_root(vcpu1) is root and root.root_count == 2
    levels = sorted(sp.role.level for sp in w.kvm.phys.values() if hasattr(sp, "role"))
    assert levels == [1, 2, 3]


def test_v6_1_drops_a_huge_spte_when_it_links_the_child() -> None:
    """0cd8dc739833: ``__direct_map`` looks the child page up first and
    ``__link_shadow_page`` drops the huge SPTE it replaces; 5.10 dropped it
    before the lookup (``drop_large_spte`` in the walk)."""
    order = {}
    for version in ("v5.10", "v6.1"):
        cls, calls = recording(BUILTIN[version], "drop_large_spte", "kvm_mmu_get_page",
                               *(["kvm_mmu_get_child_sp"] if version == "v6.1" else []))
        w = world(cls, scenario([run_vcpu(0, "read 0x1")], memslots=[HUGE_SLOT], tdp_mmu=0))
        assert leaf_sptes(w.kvm, vcpu_root(w.kvm.vcpus[0]))[0][0] == 2  # a 2M leaf
        do(w, "dirty_log_enable", slot=0)
        calls.clear()
        do(w, "vcpu_run", vcpu=0, guest=["write 0x1"])
        order[version] = [n for n, _ in calls]
        assert leaf_sptes(w.kvm, vcpu_root(w.kvm.vcpus[0]))[1][0] == 1  # split to 4K
    # v5.10's drop_large_spte runs at every level of the walk above the target
    # (it checks for a huge SPTE itself), before the new page table's lookup;
    # v6.1 asks for a child at each level (EEXIST at level 3, where a page
    # table is) and drops the 2M leaf only when it links the new one.
    assert order["v5.10"] == ["drop_large_spte", "drop_large_spte", "kvm_mmu_get_page"]
    assert order["v6.1"] == ["kvm_mmu_get_child_sp", "kvm_mmu_get_child_sp", "drop_large_spte"]


def test_v6_4_write_protects_and_zaps_through_walk_slot_rmaps() -> None:
    """727ae3770132: dirty logging's write-protection and ``kvm_zap_gfn_range``
    walk the rmaps with ``walk_slot_rmaps`` / ``__walk_slot_rmaps``."""
    cls, calls = recording(BUILTIN["v6.4"], "walk_slot_rmaps", "_walk_slot_rmaps")
    w = world(cls, scenario([run_vcpu(0, "write 0x1")], tdp_mmu=0))
    do(w, "dirty_log_enable", slot=0)
    assert [n for n, _ in calls] == ["walk_slot_rmaps", "_walk_slot_rmaps"]
    calls.clear()
    do(w, "zap_gfn_range", base_gfn=0, npages=16)
    assert [n for n, _ in calls] == ["_walk_slot_rmaps"]


def test_v5_18_warns_on_a_root_without_a_shadow_page() -> None:
    """The 5.18.12 tree's ``mmu_free_root_page`` WARNs (and keeps the hpa) when
    the root has no shadow page; 5.17's dereferences it."""
    w = world(BUILTIN["v5.18"], scenario([run_vcpu(0, "write 0x1")], tdp_mmu=0))
    vcpu = w.kvm.vcpus[0]
    vcpu.mmu.root_hpa = 999 << 12  # no page there
    with pytest.raises(Finding, match="WARNING.*mmu_free_root_page"):
        w.k.kvm_mmu_unload(vcpu)
    w = world(BUILTIN["v5.17"], scenario([run_vcpu(0, "write 0x1")], tdp_mmu=0))
    vcpu = w.kvm.vcpus[0]
    vcpu.mmu.root_hpa = 999 << 12
    with pytest.raises(AttributeError):
        w.k.kvm_mmu_unload(vcpu)


@pytest.mark.parametrize(("version", "yields"), [("v5.10", False), ("v5.17", False),
                                                 ("v5.18", True), ("v6.9", True)])
def test_obsolete_page_zap_yields_between_plain_pages_from_5_18(version: str,
                                                                yields: bool) -> None:
    """b28cb0cd2c5e (5.18): ``kvm_zap_obsolete_pages`` counts every zapped page
    towards its batch; before, only zaps that made the list unstable (pages
    with child shadow pages, which a direct MMU has only nested), so a
    memslot deletion's fast zap never offered to yield."""
    cls, calls = recording(BUILTIN[version], "cond_resched_mmu_lock")
    slot1 = {"id": 1, "base_gfn": 0x10, "npages": 4, "hva": 0x200}
    w = world(cls, scenario([run_vcpu(0, "write 0x1")], tdp_mmu=0,
                            memslots=[{"id": 0, "base_gfn": 0, "npages": 16, "hva": 0x100},
                                      slot1]))
    assert len(list(list_for_each_entry(w.kvm.arch.active_mmu_pages))) == 3  # root + 2 tables
    calls.clear()
    do(w, "memslot_delete", slot=1)
    assert list_empty(w.kvm.arch.active_mmu_pages)  # all obsolete, all zapped
    assert bool(calls) is yields
