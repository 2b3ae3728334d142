"""The KVM model's functions called outside the engine (setup-style), on VMs
built by ``tdpmmu.checker.build_model`` from small scenarios."""

from __future__ import annotations

import pytest
from kvm_testlib import (
    SLOT0,
    SMRAM,
    do,
    host_pfn,
    leaf_sptes,
    page_tables_under,
    roots,
    run_vcpu,
    scenario,
    vcpu_root,
    world,
)

from tdpmmu.engine import Finding
from tdpmmu.kernel import object_is_freed, spin_lock, spin_unlock
from tdpmmu.kvm.spte import (
    PG_LEVEL_4K,
    is_dirty_spte,
    is_writable_pte,
    spte_to_pfn,
)
from tdpmmu.kvm.structs import INVALID_PAGE, KVM_MEM_LOG_DIRTY_PAGES
from tdpmmu.kvm.tdp_mmu import kvm_mmu_page_as_id
from tdpmmu.kvm.versions import BUILTIN, V5_10, V5_11, V5_10_fix_v1

ALL = [V5_10, V5_10_fix_v1, V5_11]


# ---------------------------------------------------------------- vCPU run
@pytest.mark.parametrize("kcls", ALL, ids=lambda c: c.name)
def test_vcpu_run_loads_a_root_and_maps_the_written_gfn_writable(kcls):
    w = world(kcls, scenario([run_vcpu(0, "write 0x1")]))
    kvm = w.kvm
    vcpu = kvm.vcpus[0]
    root = vcpu_root(vcpu)
    assert roots(kvm) == [root]
    assert root.root_count == 1
    assert root.tdp_mmu_page and root.root is root
    assert root.role.level == 3 and not root.role.smm
    leaves = leaf_sptes(kvm, root)
    assert set(leaves) == {0x1}
    level, spte = leaves[0x1]
    assert level == PG_LEVEL_4K
    assert is_writable_pte(spte) and is_dirty_spte(spte)
    assert spte_to_pfn(spte) == host_pfn(kvm, 0x101)
    assert vcpu.tlb.entries[0x1] == (host_pfn(kvm, 0x101), True)


def test_read_of_unmapped_gfn_outside_memslots_installs_mmio_spte():
    w = world(V5_11, scenario([run_vcpu(0, "read 0x20")]))
    root = vcpu_root(w.kvm.vcpus[0])
    assert leaf_sptes(w.kvm, root) == {}  # an MMIO SPTE is not present
    assert 0x20 not in w.kvm.vcpus[0].tlb.entries


def test_each_mapped_gfn_gets_its_own_host_page():
    w = world(V5_11, scenario([run_vcpu(0, "write 0x0", "read 0x5", "write 0x9")]))
    leaves = leaf_sptes(w.kvm, vcpu_root(w.kvm.vcpus[0]))
    assert {g: spte_to_pfn(s) for g, (_, s) in leaves.items()} == {
        g: host_pfn(w.kvm, 0x100 + g) for g in (0x0, 0x5, 0x9)}


@pytest.mark.parametrize("kcls", ALL, ids=lambda c: c.name)
def test_unload_drops_the_last_reference_and_frees_the_root(kcls):
    w = world(kcls, scenario([run_vcpu(0, "write 0x1", "write 0x6")]))
    kvm = w.kvm
    vcpu = kvm.vcpus[0]
    root = vcpu_root(vcpu)
    pt_pfns = [sp.pfn for sp in page_tables_under(kvm, root)]
    assert pt_pfns
    pfn, name = root.pfn, root.name
    w.k.kvm_mmu_unload(vcpu)
    assert vcpu.mmu.root_hpa == INVALID_PAGE
    assert roots(kvm) == []
    assert object_is_freed(root)
    assert pfn not in kvm.phys and kvm.freed_phys[pfn] == name
    # Freeing the root zapped its paging structure: every page table is freed too.
    for pt in pt_pfns:
        assert pt not in kvm.phys and pt in kvm.freed_phys
    assert kvm.phys == {}


def test_unload_twice_is_harmless():
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1")]))
    vcpu = w.kvm.vcpus[0]
    w.k.kvm_mmu_unload(vcpu)
    w.k.kvm_mmu_unload(vcpu)
    assert vcpu.mmu.root_hpa == INVALID_PAGE and roots(w.kvm) == []


def test_reload_after_unload_makes_a_new_root():
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1")]))
    vcpu = w.kvm.vcpus[0]
    first = vcpu_root(vcpu)
    w.k.kvm_mmu_unload(vcpu)
    assert w.k.kvm_mmu_load(vcpu) == 0
    second = vcpu_root(vcpu)
    assert second is not first and second.root_count == 1
    assert roots(w.kvm) == [second] and leaf_sptes(w.kvm, second) == {}


# ------------------------------------------------------------------ zap all
@pytest.mark.parametrize("kcls", ALL, ids=lambda c: c.name)
def test_zap_all_removes_every_leaf_and_frees_page_tables(kcls):
    w = world(kcls, scenario([run_vcpu(0, "write 0x0", "write 0x5", "read 0x9",
                                         "write 0xf")]))
    kvm, k = w.kvm, w.k
    vcpu = kvm.vcpus[0]
    root = vcpu_root(vcpu)
    pts = page_tables_under(kvm, root)
    pt_pfns = [sp.pfn for sp in pts]
    assert len(leaf_sptes(kvm, root)) == 4 and pts
    spin_lock(kvm.mmu_lock)
    k.kvm_tdp_mmu_zap_all(kvm)
    spin_unlock(kvm.mmu_lock)
    assert leaf_sptes(kvm, root) == {}
    assert root.spt == [0, 0, 0, 0]
    for sp, pfn in zip(pts, pt_pfns, strict=True):
        assert pfn in kvm.freed_phys and object_is_freed(sp)
    # The root itself stays: the vCPU still holds its reference.
    assert roots(kvm) == [root] and root.root_count == 1
    assert kvm.phys == {root.pfn: root}
    assert vcpu.tlb.entries == {}


def test_zap_all_covers_every_root():
    scen = scenario([run_vcpu(0, "write 0x1"), run_vcpu(1, "smi", "write 0x2")], vcpus=2,
                    memslots=[SLOT0, SMRAM])
    w = world(V5_11, scen)
    kvm = w.kvm
    rs = roots(kvm)
    assert len(rs) == 2 and all(leaf_sptes(kvm, r) for r in rs)
    w.k.kvm_mmu_zap_all(kvm)  # takes mmu_lock itself
    assert all(leaf_sptes(kvm, r) == {} for r in rs)
    assert [r.root_count for r in rs] == [1, 1]


def test_zap_gfn_range_zaps_only_the_range():
    w = world(V5_11, scenario([run_vcpu(0, *(f"write {g:#x}" for g in range(16)))]))
    kvm, k = w.kvm, w.k
    root = vcpu_root(kvm.vcpus[0])
    spin_lock(kvm.mmu_lock)
    k.kvm_tdp_mmu_zap_gfn_range(kvm, 3, 9)
    spin_unlock(kvm.mmu_lock)
    assert set(leaf_sptes(kvm, root)) == set(range(16)) - set(range(3, 9))
    assert root.root_count == 1


# --------------------------------------------------------------- roots, SMM
@pytest.mark.parametrize("kcls", ALL, ids=lambda c: c.name)
def test_two_vcpus_in_the_same_mode_share_one_root(kcls):
    w = world(kcls, scenario([run_vcpu(0, "write 0x1"), run_vcpu(1, "read 0x2")], vcpus=2))
    kvm = w.kvm
    r0, r1 = vcpu_root(kvm.vcpus[0]), vcpu_root(kvm.vcpus[1])
    assert r0 is r1
    assert roots(kvm) == [r0] and r0.root_count == 2
    assert set(leaf_sptes(kvm, r0)) == {0x1, 0x2}
    w.k.kvm_mmu_unload(kvm.vcpus[0])
    assert r0.root_count == 1 and roots(kvm) == [r0] and r0.pfn in kvm.phys


@pytest.mark.parametrize("kcls", ALL, ids=lambda c: c.name)
def test_smm_vcpu_gets_a_second_root_in_as_id_1(kcls):
    scen = scenario([run_vcpu(0, "write 0x1"), run_vcpu(1, "smi", "write 0x1")], vcpus=2,
                    memslots=[SLOT0, SMRAM])
    w = world(kcls, scen)
    kvm = w.kvm
    r0, r1 = vcpu_root(kvm.vcpus[0]), vcpu_root(kvm.vcpus[1])
    assert r0 is not r1
    assert kvm.vcpus[1].smm == 1
    assert r1.role.smm == 1 and r0.role.smm == 0
    assert kvm_mmu_page_as_id(r0) == 0 and kvm_mmu_page_as_id(r1) == 1
    assert {r.name for r in roots(kvm)} == {r0.name, r1.name}
    assert r0.root_count == 1 and r1.root_count == 1
    # list_add: the newest root is first on the list.
    assert roots(kvm) == [r1, r0]
    # The same gfn maps each address space's own host page.
    assert spte_to_pfn(leaf_sptes(kvm, r0)[0x1][1]) == host_pfn(kvm, 0x101)
    assert spte_to_pfn(leaf_sptes(kvm, r1)[0x1][1]) == host_pfn(kvm, 0x301)


def test_list_add_tail_knob_puts_the_new_root_last():
    from tdpmmu.checker import build_model
    scen = scenario([run_vcpu(0, "write 0x1"), run_vcpu(1, "smi", "write 0x1")], vcpus=2,
                    memslots=[SLOT0, SMRAM])
    w = build_model(V5_11, scen, {"new-root": "list_add_tail"}).setup()
    r0, r1 = vcpu_root(w.kvm.vcpus[0]), vcpu_root(w.kvm.vcpus[1])
    assert roots(w.kvm) == [r0, r1]


def test_entering_smm_drops_the_old_root():
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1", "smi")], memslots=[SLOT0, SMRAM]))
    kvm = w.kvm
    vcpu = kvm.vcpus[0]
    # kvm_mmu_reset_context unloaded the only root, which was freed; the SMM
    # root is only made at the next entry.
    assert vcpu.mmu.root_hpa == INVALID_PAGE
    assert roots(kvm) == []
    assert vcpu.mmu_role.smm == 1
    assert w.k.kvm_mmu_load(vcpu) == 0
    assert vcpu_root(vcpu).role.smm == 1


# ------------------------------------------------------------ dirty logging
def _slot(kvm, slot_id=0, as_id=0):
    return kvm.memslots[as_id].value.id_to_memslot(slot_id)


@pytest.mark.parametrize("kcls", ALL, ids=lambda c: c.name)
def test_dirty_logging_round_trip(kcls):
    w = world(kcls, scenario([run_vcpu(0, "write 0x1", "read 0x2", "write 0x9")]))
    kvm = w.kvm
    root = vcpu_root(kvm.vcpus[0])
    assert all(is_writable_pte(s) for _, s in leaf_sptes(kvm, root).values())

    do(w, "dirty_log_enable", slot=0)
    slot = _slot(kvm)
    assert slot.flags & KVM_MEM_LOG_DIRTY_PAGES
    assert slot.dirty_bitmap == [0] * 16
    leaves = leaf_sptes(kvm, root)
    assert set(leaves) == {0x1, 0x2, 0x9}
    assert not any(is_writable_pte(s) for _, s in leaves.values())
    assert kvm.vcpus[0].tlb.entries == {}  # flushed with the write-protection

    do(w, "vcpu_run", vcpu=0, guest=["write 0x9", "read 0x1"])
    assert [g for g, bit in enumerate(slot.dirty_bitmap) if bit] == [0x9]
    assert is_writable_pte(leaf_sptes(kvm, root)[0x9][1])
    assert not is_writable_pte(leaf_sptes(kvm, root)[0x1][1])

    do(w, "get_dirty_log", slot=0)
    assert w.dirty_reads == [(0, [0x9])]
    assert slot.dirty_bitmap == [0] * 16
    assert not is_writable_pte(leaf_sptes(kvm, root)[0x9][1])

    # Nothing written since: the next read is empty.
    assert w.k.kvm_vm_ioctl_get_dirty_log(kvm, 0, 0) == []


def test_dirty_log_marks_a_write_that_faults_in_a_new_page():
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1")]))
    do(w, "dirty_log_enable", slot=0)
    do(w, "vcpu_run", vcpu=0, guest=["write 0x3"])
    assert w.k.kvm_vm_ioctl_get_dirty_log(w.kvm, 0, 0) == [0x3]


def test_get_dirty_log_without_dirty_logging_fails():
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1")]))
    assert w.k.kvm_vm_ioctl_get_dirty_log(w.kvm, 0, 0) is None  # -ENOENT
    assert w.k.kvm_vm_ioctl_get_dirty_log(w.kvm, 0, 7) is None  # no such slot


def test_slot_created_with_dirty_logging_starts_with_a_bitmap():
    scen = scenario([run_vcpu(0, "write 0x1")],
                    memslots=[{**SLOT0, "log_dirty": True}])
    w = world(V5_11, scen)
    assert _slot(w.kvm).dirty_bitmap[0x1] == 1
    assert w.k.kvm_vm_ioctl_get_dirty_log(w.kvm, 0, 0) == [0x1]


# ----------------------------------------------------------- MMU notifier
@pytest.mark.parametrize("kcls", ALL, ids=lambda c: c.name)
def test_invalidate_zaps_the_range_and_moves_the_host_pages(kcls):
    w = world(kcls, scenario([run_vcpu(0, "write 0x0", "write 0x1", "write 0x2")]))
    kvm = w.kvm
    root = vcpu_root(kvm.vcpus[0])
    old = host_pfn(kvm, 0x101)
    seq = kvm.mmu_notifier_seq.value
    do(w, "invalidate", hva=0x101, npages=1)
    leaves = leaf_sptes(kvm, root)
    assert set(leaves) == {0x0, 0x2}
    assert 0x1 not in kvm.vcpus[0].tlb.entries
    new = host_pfn(kvm, 0x101)
    assert new != old and kvm.mm.old_pfns[0x101] == [old]
    assert kvm.mmu_notifier_seq.value == seq + 1 and kvm.mmu_notifier_count == 0
    assert root.root_count == 1 and roots(kvm) == [root]
    # The next access faults the new page in.
    do(w, "vcpu_run", vcpu=0, guest=["read 0x1"])
    assert spte_to_pfn(leaf_sptes(kvm, root)[0x1][1]) == new


def test_invalidate_outside_every_memslot_changes_no_spte():
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1")]))
    root = vcpu_root(w.kvm.vcpus[0])
    before = leaf_sptes(w.kvm, root)
    do(w, "invalidate", hva=0x900, npages=2)
    assert leaf_sptes(w.kvm, root) == before


def test_fault_during_invalidation_retries():
    """With an invalidation in progress (count > 0) the fault path installs nothing."""
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1")]))
    kvm, k = w.kvm, w.k
    vcpu = kvm.vcpus[0]
    root = vcpu_root(vcpu)
    k.kvm_mmu_notifier_invalidate_range_start(kvm, 0x102, 0x103)
    assert kvm.mmu_notifier_count == 1
    from tdpmmu.kvm.tdp_mmu import PFERR_WRITE_MASK, RET_PF_RETRY
    assert k.kvm_mmu_page_fault(vcpu, 0x2 << 12, PFERR_WRITE_MASK) == RET_PF_RETRY
    assert vcpu.fault_retry_spin
    assert 0x2 not in leaf_sptes(kvm, root)
    k.kvm_mmu_notifier_invalidate_range_end(kvm, 0x102, 0x103)
    vcpu.fault_retry_spin = False
    # v5.10's TDP MMU returns 0 (RET_PF_RETRY: re-enter the guest) after a map too.
    k.kvm_mmu_page_fault(vcpu, 0x2 << 12, PFERR_WRITE_MASK)
    assert not vcpu.fault_retry_spin
    assert is_writable_pte(leaf_sptes(kvm, root)[0x2][1])


def test_change_pte_maps_the_new_page_read_only():
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1")]))
    kvm = w.kvm
    root = vcpu_root(kvm.vcpus[0])
    do(w, "change_pte", hva=0x101)
    new_pfn, writable = kvm.mm.ptes[0x101].value
    assert not writable
    # invalidate_range_start zapped it first; change_pte finds nothing to change.
    assert 0x1 not in leaf_sptes(kvm, root)
    do(w, "vcpu_run", vcpu=0, guest=["read 0x1"])
    spte = leaf_sptes(kvm, root)[0x1][1]
    assert spte_to_pfn(spte) == new_pfn and not is_writable_pte(spte)


def test_age_clears_accessed_and_test_age_sees_it():
    from tdpmmu.kvm.spte import is_accessed_spte
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1")]))
    kvm, k = w.kvm, w.k
    root = vcpu_root(kvm.vcpus[0])
    assert k.kvm_mmu_notifier_test_young(kvm, 0x101) == 1
    assert k.kvm_mmu_notifier_clear_flush_young(kvm, 0x100, 0x104) == 1
    assert not is_accessed_spte(leaf_sptes(kvm, root)[0x1][1])
    assert k.kvm_mmu_notifier_test_young(kvm, 0x101) == 0
    assert k.kvm_mmu_notifier_clear_flush_young(kvm, 0x100, 0x104) == 0
    assert root.root_count == 1  # the walks dropped their references


# ----------------------------------------------------------------- memslots
@pytest.mark.parametrize("kcls", ALL, ids=lambda c: c.name)
def test_memslot_move_zaps_and_requests_reload(kcls):
    memslots = [{"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100},
                {"id": 1, "base_gfn": 8, "npages": 4, "hva": 0x200}]
    w = world(kcls, scenario([run_vcpu(0, "write 0x9")], memslots=memslots))
    kvm = w.kvm
    vcpu = kvm.vcpus[0]
    root = vcpu_root(vcpu)
    gen = kvm.memslots[0].value.generation
    do(w, "memslot_move", slot=1, base_gfn=0x10)
    assert leaf_sptes(kvm, root) == {}
    assert vcpu.requests.value  # KVM_REQ_MMU_RELOAD pending
    assert _slot(kvm, 1).base_gfn == 0x10
    assert kvm.memslots[0].value.generation == gen + 2  # invalid slot, then the move
    assert root.root_count == 1  # the zap's own reference was dropped
    do(w, "vcpu_run", vcpu=0, guest=["write 0x11"])
    assert not vcpu.requests.value
    assert spte_to_pfn(leaf_sptes(kvm, vcpu_root(vcpu))[0x11][1]) == host_pfn(kvm, 0x201)


def test_memslot_delete_makes_the_gfn_mmio():
    memslots = [{"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100}]
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1")], memslots=memslots))
    do(w, "memslot_delete", slot=0)
    assert w.kvm.memslots[0].value.slots == []
    do(w, "vcpu_run", vcpu=0, guest=["write 0x1"])  # emulated as MMIO: it completes
    assert leaf_sptes(w.kvm, vcpu_root(w.kvm.vcpus[0])) == {}


# ------------------------------------------------------------ teardown
@pytest.mark.parametrize("kcls", ALL, ids=lambda c: c.name)
def test_destroy_vm_frees_every_root(kcls):
    scen = scenario([run_vcpu(0, "write 0x1"), run_vcpu(1, "smi", "write 0x1")], vcpus=2,
                    memslots=[SLOT0, SMRAM])
    w = world(kcls, scen)
    w.k.kvm_destroy_vm(w.kvm)
    assert w.kvm.destroyed
    assert roots(w.kvm) == [] and w.kvm.phys == {}


# --------------------------------------------- the seed's sequence, by hand
def _walker_get_vcpu_unload_walker_put(w):
    """A walk takes a reference, "yields", the vCPU unloads, the walk puts."""
    kvm, k = w.kvm, w.k
    vcpu = kvm.vcpus[0]
    root = vcpu_root(vcpu)
    spin_lock(kvm.mmu_lock)
    k.kvm_mmu_get_root(kvm, root)
    spin_unlock(kvm.mmu_lock)
    k.kvm_mmu_unload(vcpu)
    assert root.root_count == 1
    return root


def test_v5_10_put_to_zero_leaves_the_root_listed_and_the_next_get_bugs():
    w = world(V5_10, scenario([run_vcpu(0, "write 0x1")]))
    kvm, k = w.kvm, w.k
    root = _walker_get_vcpu_unload_walker_put(w)
    spin_lock(kvm.mmu_lock)
    assert k.kvm_mmu_put_root(kvm, root) is True  # v5.10's walks ignore this
    spin_unlock(kvm.mmu_lock)
    assert roots(kvm) == [root] and root.root_count == 0
    with pytest.raises(Finding) as exc:
        k.kvm_mmu_load(kvm.vcpus[0])
    assert exc.value.kind == "BUG"
    assert exc.value.function == "kvm_mmu_get_root"
    assert exc.value.message == ("kernel BUG at arch/x86/kvm/mmu/mmu_internal.h: "
                                 "kvm_mmu_get_root")


@pytest.mark.parametrize("kcls", [V5_10_fix_v1, V5_11], ids=lambda c: c.name)
def test_fixed_put_frees_at_zero(kcls):
    w = world(kcls, scenario([run_vcpu(0, "write 0x1")]))
    kvm, k = w.kvm, w.k
    root = _walker_get_vcpu_unload_walker_put(w)
    pfn = root.pfn
    spin_lock(kvm.mmu_lock)
    k.tdp_mmu_put_root(kvm, root)
    spin_unlock(kvm.mmu_lock)
    assert roots(kvm) == [] and pfn in kvm.freed_phys and object_is_freed(root)
    assert k.kvm_mmu_load(kvm.vcpus[0]) == 0
    assert vcpu_root(kvm.vcpus[0]) is not root


def test_v5_11_yield_safe_walk_pins_each_root_during_the_body():
    scen = scenario([run_vcpu(0, "write 0x1"), run_vcpu(1, "smi", "write 0x1")], vcpus=2,
                    memslots=[SLOT0, SMRAM])
    w = world(V5_11, scen)
    kvm, k = w.kvm, w.k
    rs = roots(kvm)
    spin_lock(kvm.mmu_lock)
    seen = []
    for root in k.for_each_tdp_mmu_root_yield_safe(kvm):
        seen.append((root, root.root_count))
    spin_unlock(kvm.mmu_lock)
    assert seen == [(rs[0], 2), (rs[1], 2)]
    assert [r.root_count for r in rs] == [1, 1]


def test_v5_11_yield_safe_walk_frees_a_root_released_during_the_body():
    scen = scenario([run_vcpu(0, "write 0x1"), run_vcpu(1, "smi", "write 0x1")], vcpus=2,
                    memslots=[SLOT0, SMRAM])
    w = world(V5_11, scen)
    kvm, k = w.kvm, w.k
    smm_root, root0 = roots(kvm)
    smm_pfn = smm_root.pfn
    spin_lock(kvm.mmu_lock)
    visited = []
    for root in k.for_each_tdp_mmu_root_yield_safe(kvm):
        visited.append(root)
        if root is smm_root:
            # "Yield": the SMM vCPU drops its root while the walk holds one.
            spin_unlock(kvm.mmu_lock)
            k.kvm_mmu_unload(kvm.vcpus[1])
            spin_lock(kvm.mmu_lock)
            assert smm_root.root_count == 1
    spin_unlock(kvm.mmu_lock)
    assert visited == [smm_root, root0]
    assert roots(kvm) == [root0] and smm_pfn in kvm.freed_phys
    assert object_is_freed(smm_root)


# ------------------------------------------------------- version classes
def test_version_classes_override_what_their_patch_changed():
    assert issubclass(V5_11, V5_10) and issubclass(V5_10_fix_v1, V5_10)
    assert not issubclass(V5_11, V5_10_fix_v1)
    v5_11_patch = {"kvm_tdp_mmu_zap_gfn_range", "kvm_tdp_mmu_handle_hva_range",
                   "slot_root_walk", "tdp_mmu_put_root", "for_each_tdp_mmu_root_yield_safe",
                   "tdp_mmu_next_root", "tdp_mmu_next_root_valid"}
    assert v5_11_patch <= set(vars(V5_11))
    for name in ("kvm_tdp_mmu_zap_gfn_range", "kvm_tdp_mmu_handle_hva_range",
                 "slot_root_walk"):
        assert getattr(V5_11, name) is not getattr(V5_10, name)
    assert "tdp_mmu_put_root" in vars(V5_10_fix_v1)
    assert not hasattr(V5_10, "tdp_mmu_put_root")
    assert not hasattr(V5_10_fix_v1, "for_each_tdp_mmu_root_yield_safe")
    # Untouched code is inherited, not copied.
    for name in ("zap_gfn_range", "kvm_mmu_get_root", "kvm_mmu_put_root",
                 "get_tdp_mmu_vcpu_root", "kvm_tdp_mmu_free_root", "kvm_mmu_load"):
        assert name not in vars(V5_11) and name not in vars(V5_10_fix_v1)
        assert getattr(V5_11, name) is getattr(V5_10, name)


def test_builtin_versions_by_name():
    assert {"v5.10": V5_10, "v5.10-fix-v1": V5_10_fix_v1, "v5.11": V5_11}.items() <= BUILTIN.items()
