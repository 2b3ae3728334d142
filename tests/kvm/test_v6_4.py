"""Linux 6.4 (``V6_4``): roots start with a count of two and are kept until
they are explicitly invalidated (edbdb43fc96b)."""

from __future__ import annotations

import pytest
from kvm_testlib import do, leaf_sptes, roots, run_vcpu, scenario, vcpu_root, world

from tdpmmu.checker import check
from tdpmmu.kernel import refcount_read, write_lock, write_unlock
from tdpmmu.kvm.spte import is_writable_pte, spte_to_pfn
from tdpmmu.kvm.v6_1 import V6_1
from tdpmmu.kvm.v6_4 import V6_4
from tdpmmu.kvm.versions import BUILTIN
from tdpmmu.scenarios import scenario_names


def test_v6_4_is_built_in_a_v6_1():
    assert BUILTIN["v6.4"] is V6_4
    assert issubclass(V6_4, V6_1)


@pytest.mark.parametrize("name", scenario_names())
def test_v6_4_runs_every_builtin_scenario(name):
    """No finding on any built-in scenario (bounded here; the note has the runs)."""
    res = check("v6.4", name, max_executions=15)
    assert res.result.executions >= 1
    assert res.violation is None, res.violation.message


def test_a_new_root_holds_the_vcpus_and_the_tdp_mmus_references():
    w = world(V6_4, scenario([run_vcpu(0, "write 0x1")]))
    root = vcpu_root(w.kvm.vcpus[0])
    assert refcount_read(root.tdp_mmu_root_count) == 2


def test_an_unloaded_root_stays_valid_and_the_next_load_reuses_it():
    """The vCPU's put leaves the TDP MMU's reference: no defunct path, the
    root stays valid on the list and the vCPU's next run takes it again."""
    w = world(V6_4, scenario([run_vcpu(0, "write 0x1")]))
    root = vcpu_root(w.kvm.vcpus[0])
    do(w, "vcpu_unload", vcpu=0)
    assert not root.role.invalid
    assert refcount_read(root.tdp_mmu_root_count) == 1
    assert roots(w.kvm) == [root]
    do(w, "vcpu_run", vcpu=0, guest=["read 0x1"])
    assert vcpu_root(w.kvm.vcpus[0]) is root
    assert refcount_read(root.tdp_mmu_root_count) == 2


def test_invalidation_gifts_the_tdp_mmus_reference_to_the_zap_work():
    """kvm_tdp_mmu_invalidate_all_roots takes no reference: the root keeps
    its count of two (vCPU + TDP MMU) and is marked invalid."""
    w = world(V6_4, scenario([run_vcpu(0, "write 0x1")]))
    root = vcpu_root(w.kvm.vcpus[0])
    write_lock(w.kvm.mmu_lock)
    w.k.kvm_tdp_mmu_invalidate_all_roots(w.kvm)
    write_unlock(w.kvm.mmu_lock)
    assert root.role.invalid
    assert refcount_read(root.tdp_mmu_root_count) == 2


@pytest.mark.parametrize("name", ["teardown", "destroy-vm-with-queued-zap", "last-root-put"])
def test_teardown_and_unloads_verify(name):
    """VM destruction invalidates every root from kvm_mmu_uninit_tdp_mmu
    without mmu_lock (lockdep waived: no users); the worker's puts free
    them, and uninit's WARNs on leftover roots and pages stay quiet."""
    res = check("v6.4", name, max_executions=2000)
    assert res.violation is None, res.violation.message
    assert res.result.complete


class RootsStartAtOne(V6_4):
    """What-if: edbdb43fc96b without its count of two (5.18's count of 1 at
    allocation, with 6.4's put, which has no defunct path)."""

    name = "v6.4+root-count-1"
    tdp_mmu_root_initial_count = 1


def test_roots_starting_at_one_are_reported_by_kvm_bug_on():
    """With only the vCPU's reference, its unload puts a valid root to 0:
    6.4's KVM_BUG_ON in kvm_tdp_mmu_put_root fires."""
    res = check(RootsStartAtOne, "last-root-put", max_executions=2000)
    assert res.violation is not None
    assert res.violation.kind == "WARN", res.violation.message
    assert res.violation.function == "kvm_tdp_mmu_put_root", res.violation.message


def test_roots_starting_at_one_lose_the_zap_works_reference():
    """When the invalidation comes first, it gifts the zap work a reference
    that is the vCPU's: the vCPU's put frees the root under the queued work,
    which then finds a count of 0 (tdp_mmu_zap_root's WARN_ON_ONCE) or a
    freed page (KASAN)."""
    res = check(RootsStartAtOne, "teardown", max_executions=2000)
    assert res.violation is not None
    v = res.violation
    assert (v.kind == "WARN" and v.function in ("tdp_mmu_zap_root", "kvm_tdp_mmu_put_root")) \
        or "use-after-free" in v.message, v.message


HUGE_SLOT = {"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100, "huge": True}


@pytest.mark.parametrize(("version", "pieces"), [("v6.1", 1), ("v6.4", 4), ("v6.9", 4)])
def test_a_write_fault_on_a_write_protected_huge_page_splits_it_in_place(version, pieces):
    """6.2+'s kvm_tdp_mmu_map replaces the huge leaf with a page table of its
    pieces (tdp_mmu_split_huge_page), where 6.1 zapped it and mapped only the
    faulting page."""
    w = world(BUILTIN[version], scenario(
        [run_vcpu(0, "write 0x0"), {"op": "dirty_log_enable", "slot": 0},
         run_vcpu(0, "write 0x1")], memslots=[HUGE_SLOT]))
    leaves = leaf_sptes(w.kvm, vcpu_root(w.kvm.vcpus[0]))
    assert all(level == 1 for level, _ in leaves.values()), leaves
    assert len(leaves) == pieces, leaves
    assert is_writable_pte(leaves[1][1])  # the faulting page, mapped writable
    host = [spte_to_pfn(spte) - gfn for gfn, (_, spte) in leaves.items()]
    assert len(set(host)) == 1  # every piece maps its own frame of the huge page
