"""Linux 6.1's TDP MMU: era D as it stood in 6.1 (5.18's root lifecycle).

Built from the stored 6.1-rc7 tree (``krr-io/linux-6.1.0``) read against
5.18.12.  ``tdp_mmu.c``'s root functions (get, put with the defunct path,
``tdp_mmu_next_root``, the work queue, ``kvm_tdp_mmu_invalidate_all_roots``,
``kvm_tdp_mmu_get_vcpu_root_hpa``) are 5.18's, word for word but for the
``mmu_role.base`` -> ``root_role`` rename.  47b0c2e4c220 ("KVM: x86/mmu:
Fix race condition in direct_page_fault", said to land late in 6.1) only
moves ``make_mmu_pages_available`` to the legacy MMU's branch of
``direct_page_fault``; the stored rc7 tree already reads that way, and it is
a legacy-MMU fix either way.  No other change to the modelled functions
between rc7 and 6.1 is known to me (no 6.1 release tree is stored to diff
against), so the rc7 code is taken as the release's.

No 6.2 or 6.3 class: those releases changed no root-lifecycle code the
checker can tell apart from 6.1 (6.2 and 6.3 reworked SPTE bookkeeping, the
NX huge page tracking and the TDP MMU's module parameter; roots still start
at a count of 1 and die through the defunct path until 6.4's edbdb43fc96b).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..kernel import (
    WARN_ON_ONCE,
    read_lock,
    read_unlock,
)
from ..kernel.bug import KVM_BUG_ON
from .mmu import KVM_MR_FLAGS_ONLY
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .spte import KVM_MAX_HUGEPAGE_LEVEL, PG_LEVEL_4K
from .structs import KVM_ADDRESS_SPACE_NUM, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY
from .v5_18 import V5_18

__kernel_file__ = "arch/x86/kvm/mmu/mmu.c"


class V6_1(V5_18):
    """Linux 6.1 (tree 6.1-rc7): 5.18's roots (count 1 at allocation, the last
    put of a valid root makes it defunct, invalid roots zapped by
    ``tdp_mmu_zap_wq``).  What 6.1 changed on the modelled paths:

    Mainline commits (5.19 to 6.1) that make it differ from v5.18:

    - b64d740ea7dd kvm: x86: mmu: Always flush TLBs when enabling dirty logging
      (6.1): ``kvm_mmu_slot_remove_write_access`` and
      ``kvm_mmu_slot_leaf_clear_dirty`` no longer flush;
      ``kvm_mmu_slot_apply_flags`` flushes the slot unconditionally after
      write-protecting it.
    - KVM: x86/mmu: Block all page faults during kvm_zap_gfn_range() (6.1,
      Fixes: edb298c663fc; hash not in the sources read):
      ``kvm_zap_gfn_range`` brackets its zap with
      ``kvm_mmu_invalidate_begin(kvm, 0, -1ul)`` / ``_end``, so every page
      fault that raced it retries.
    - the 6.0/6.1 renames (``mmu_notifier_seq`` -> ``mmu_invalidate_seq``,
      ``mmu_role.base`` -> ``root_role``): same behaviour, the model keeps
      the older names of its fields.

    Simplifications: 5.19's rework of ``zap_collapsible_spte_range`` (zap
    the non-leaf SPTEs a huge page could replace) is not modelled: the model
    keeps 5.12's form, as every class since ``V5_13`` does (see its
    docstring); ``kvm_tdp_mmu_get_walk`` is the base model's.  5.18 already
    bumped the invalidation count in ``kvm_zap_gfn_range`` (over gfns passed
    as hvas, the bug the second item fixes); ``V5_18`` does not model that,
    ``V6_1`` models 6.1's form.  Everything ``V5_18`` lists.
    """

    name = "v6.1"
    summary = "Linux 6.1: era D (5.18's defunct roots and tdp_mmu_zap_wq), 6.1's flush moves"

    # ---------------------------------------------------------- kvm_main.c
    def kvm_mmu_invalidate_begin(self, kvm: Any, start: int, end: int) -> None:
        """kvm_main.c 6.1 (renamed from ``kvm_inc_notifier_count``); under
        ``mmu_lock``."""
        kvm.mmu_notifier_count += 1
        if kvm.mmu_notifier_count == 1:
            kvm.mmu_notifier_range_start = start
            kvm.mmu_notifier_range_end = end
        else:
            kvm.mmu_notifier_range_start = min(kvm.mmu_notifier_range_start, start)
            kvm.mmu_notifier_range_end = max(kvm.mmu_notifier_range_end, end)

    def kvm_mmu_invalidate_end(self, kvm: Any, start: int, end: int) -> None:
        kvm.mmu_notifier_seq.store(kvm.mmu_notifier_seq.value + 1)
        kvm.mmu_notifier_count -= 1

    # ---------------------------------------------------------------- mmu.c
    def kvm_zap_gfn_range(self, kvm: Any, gfn_start: int, gfn_end: int) -> None:
        """Every fault retries while the zap runs: the invalidation covers all
        hvas (``0, -1ul``)."""
        if WARN_ON_ONCE(gfn_end <= gfn_start):
            return
        KVM_MMU_LOCK(kvm)
        self.kvm_mmu_invalidate_begin(kvm, 0, (1 << 64) - 1)
        flush = False
        if kvm.arch.tdp_mmu_enabled:
            for i in range(KVM_ADDRESS_SPACE_NUM):
                flush = self.kvm_tdp_mmu_zap_leafs(kvm, i, gfn_start, gfn_end, True, flush)
        if flush:
            self.kvm_flush_remote_tlbs_with_address(kvm, gfn_start, gfn_end - gfn_start)
        self.kvm_mmu_invalidate_end(kvm, 0, (1 << 64) - 1)
        KVM_MMU_UNLOCK(kvm)

    def kvm_memslots_have_rmaps(self, kvm: Any) -> bool:
        """5.14+: rmaps exist unless the TDP MMU is on and no shadow root was
        ever allocated (the model has no nested shadow roots: with the TDP
        MMU there are none)."""
        return not kvm.arch.tdp_mmu_enabled

    def kvm_mmu_slot_remove_write_access(self, kvm: Any, memslot: Any, start_level: int) -> None:
        """b64d740ea7dd: the caller flushes.  The rmap walk (the legacy MMU's
        SPTEs) runs under the write lock only where rmaps exist; the model's
        5.15-5.18 still take the lock around an empty walk with the TDP MMU
        (a simplification: one extra lock round trip)."""
        if self.kvm_memslots_have_rmaps(kvm):
            KVM_MMU_LOCK(kvm)
            self.slot_handle_level(kvm, memslot, self.slot_rmap_write_protect, start_level,
                                   KVM_MAX_HUGEPAGE_LEVEL, False)
            KVM_MMU_UNLOCK(kvm)
        if kvm.arch.tdp_mmu_enabled:
            read_lock(kvm.mmu_lock)
            self.kvm_tdp_mmu_wrprot_slot(kvm, memslot, start_level)
            read_unlock(kvm.mmu_lock)

    def kvm_mmu_slot_leaf_clear_dirty(self, kvm: Any, memslot: Any) -> None:
        """b64d740ea7dd: the caller flushes.  The rmap walk (``__rmap_clear_dirty``)
        serves PML, which the model does not have; it is skipped where rmaps
        do not exist."""
        if self.kvm_memslots_have_rmaps(kvm):
            KVM_MMU_LOCK(kvm)
            KVM_MMU_UNLOCK(kvm)
        if kvm.arch.tdp_mmu_enabled:
            read_lock(kvm.mmu_lock)
            self.kvm_tdp_mmu_clear_dirty_slot(kvm, memslot)
            read_unlock(kvm.mmu_lock)

    # ---------------------------------------------------------------- x86.c
    def kvm_mmu_slot_apply_flags(self, kvm: Any, old: Any, new: Any, change: int) -> None:
        """x86.c 6.1: after write-protecting a slot whose dirty logging was
        just enabled, flush its TLB entries whatever the walk reported
        (b64d740ea7dd).  The model's VMs have no PML and no eager splitting
        (the parent's shape)."""
        if change != KVM_MR_FLAGS_ONLY or new.flags & KVM_MEM_READONLY:
            return
        if old is not None and old.flags & KVM_MEM_LOG_DIRTY_PAGES \
                and not new.flags & KVM_MEM_LOG_DIRTY_PAGES:
            self.kvm_mmu_zap_collapsible_sptes(kvm, new)
        if new.flags & KVM_MEM_LOG_DIRTY_PAGES:
            self.kvm_mmu_slot_remove_write_access(kvm, new, PG_LEVEL_4K)
            self.kvm_arch_flush_remote_tlbs_memslot(kvm, new)


    # ------------------------------------------------------------- cpuid
    def kvm_mmu_after_set_cpuid(self, vcpu: Any) -> None:
        """6.1 (as in the stored 6.1-rc7 tree): the MMUs' root roles are marked
        invalid so they are recomputed (``root_role.invalid = 1``), then the
        reset and 5.17's ``KVM_BUG_ON``."""
        vcpu.root_mmu.mmu_role = replace(vcpu.root_mmu.mmu_role, invalid=1)
        if vcpu.guest_mmu.mmu_role is not None:
            vcpu.guest_mmu.mmu_role = replace(vcpu.guest_mmu.mmu_role, invalid=1)
        self.kvm_mmu_reset_context(vcpu)
        KVM_BUG_ON(self.kvm_vcpu_has_run(vcpu), vcpu.kvm)


__all__ = ["V6_1"]
