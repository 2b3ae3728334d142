"""The access words of SPTEs: a kernel-side load or store of an SPTE and the
hardware walk through it must name the same word, or the search takes them
for independent and drops the orders in between (a lost interleaving class).

Found by a mutant of v6.9's kvm_mmu_slot_apply_flags that flushes before
write-protecting: DPOR never ran a vCPU walk between the flush and the
write-protect, because TDP MMU page tables below the root keyed their words
by their role.level (one above their entries', 5.12's convention) while the
walk keyed them by the entries' level."""

from __future__ import annotations

import pytest
from kvm_testlib import run_vcpu, scenario, vcpu_root, world

from tdpmmu.checker import check
from tdpmmu.kvm import shared
from tdpmmu.kvm.spte import SHADOW_PT_INDEX, is_last_spte, spte_to_pfn
from tdpmmu.kvm.tdp_iter import to_shadow_page
from tdpmmu.kvm.versions import BUILTIN

HUGE_SLOT = {"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100, "huge": True}


def _walked_words(kvm, root, gfn):
    """spte_word of each entry a walk of gfn passes, root level first."""
    sp, level, words = root, root.role.level, []
    while True:
        idx = SHADOW_PT_INDEX(gfn, level)
        words.append(shared.spte_word(sp, idx))
        spte = sp.spt[idx]
        if is_last_spte(spte, level):
            return words
        sp, level = to_shadow_page(kvm, spte_to_pfn(spte)), level - 1


@pytest.mark.parametrize("version", ["v5.10", "v5.12", "v5.15", "v6.1", "v6.9", "v6.18"])
@pytest.mark.parametrize(("tdp_mmu", "huge"), [(1, False), (1, True), (0, False)])
def test_kernel_side_spte_words_are_the_hardware_walks_words(version, tdp_mmu, huge):
    slots = [HUGE_SLOT] if huge else None
    w = world(BUILTIN[version], scenario([run_vcpu(0, "write 0x1")], memslots=slots,
                                         tdp_mmu=tdp_mmu))
    root = vcpu_root(w.kvm.vcpus[0])
    walked = _walked_words(w.kvm, root, 1)
    path = shared.walk_words(root.root, 1)
    assert len(walked) <= len(path)
    assert all(a is b for a, b in zip(walked, path[:len(walked)], strict=True)), (walked, path)


def test_dpor_finds_a_walk_between_a_flush_and_the_write_protect():
    """The mutant above, as a variant: a write through a TLB entry filled in
    that window is lost from the dirty log."""
    from typing import Any

    from tdpmmu.kvm.mmu import KVM_MR_FLAGS_ONLY
    from tdpmmu.kvm.spte import PG_LEVEL_2M, PG_LEVEL_4K
    from tdpmmu.kvm.structs import KVM_MEM_LOG_DIRTY_PAGES
    from tdpmmu.kvm.v6_9 import V6_9

    class FlushFirst(V6_9):
        name = "v6.9+flush-before-write-protect"

        def kvm_mmu_slot_apply_flags(self, kvm: Any, old: Any, new: Any, change: int) -> None:
            if change != KVM_MR_FLAGS_ONLY or not new.flags & KVM_MEM_LOG_DIRTY_PAGES:
                return super().kvm_mmu_slot_apply_flags(kvm, old, new, change)
            self.kvm_arch_flush_remote_tlbs_memslot(kvm, new)
            if self.kvm_x86_cpu_dirty_log_size(kvm):
                self.kvm_mmu_slot_leaf_clear_dirty(kvm, new)
                self.kvm_mmu_slot_remove_write_access(kvm, new, PG_LEVEL_2M)
            else:
                self.kvm_mmu_slot_remove_write_access(kvm, new, PG_LEVEL_4K)

    assert check(V6_9, "dirty-log-enable-vs-writes").violation is None
    v = check(FlushFirst, "dirty-log-enable-vs-writes").violation
    assert v is not None and v.message.startswith("dirty-log-complete"), v
