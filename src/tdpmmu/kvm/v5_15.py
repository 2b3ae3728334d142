"""Linux 5.15's TDP MMU: the generic MMU-notifier walkers (a non-yield-safe
root walk that may yield), zap-all that stays at the root level.

Built from the stored 5.15.16 tree (``yashlala/fastswap-linux-5.16.16``: its
Makefile says 5.15.16) read against 5.12.9 and the model's ``V5_13``.  The
tree carries one backport that mainline 5.15 lacks and that this class
leaves out: 3a0f64de479c ("KVM: x86/mmu: Don't advance iterator after
restart due to yielding", 5.16-rc7, Cc stable), the tree's
``iter->yielded``; v5.15 restarts the iterator in
``tdp_mmu_iter_cond_resched`` and the caller's ``continue`` then advances it
(see :class:`V5_17`, which has the fix).  a955cad84cda ("Retry page fault if
root is invalidated by memslot update", 5.16-rc3) did not apply to
5.15-stable and is absent from the tree, as from the release.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..kernel import (
    WARN_ON,
    list_empty,
    rcu_barrier,
    rcu_read_lock,
    rcu_read_unlock,
    read_lock,
    read_unlock,
)
from . import shared as sh
from .mmu import KVM_PFN_ERR_RO_FAULT
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .spte import KVM_PAGES_PER_HPAGE, PAGE_SHIFT, PG_LEVEL_4K, is_last_spte, is_shadow_present_pte
from .structs import INVALID_PAGE, KVM_ADDRESS_SPACE_NUM, kvm_memory_slot, kvm_mmu_page
from .tdp_iter import for_each_tdp_pte_min_level, tdp_iter, to_shadow_page
from .tdp_mmu import PFERR_WRITE_MASK, RET_PF_EMULATE, RET_PF_RETRY
from .v5_13 import V5_13

__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"


@dataclass
class kvm_gfn_range:
    """``struct kvm_gfn_range`` (include/linux/kvm_host.h, 5.13+): one memslot's
    part of an MMU-notifier hva range, in gfns."""

    slot: kvm_memory_slot
    start: int
    end: int
    pte: Any = None
    may_block: bool = False


class V5_15(V5_13):
    """Linux 5.15: era C as 5.15 released it.  The MMU notifier reaches the TDP
    MMU through the generic memslot walker: ``kvm_tdp_mmu_unmap_gfn_range``
    walks every root of the address space with the plain
    ``for_each_tdp_mmu_root`` (invalid roots included, no reference taken)
    and lets ``zap_gfn_range`` yield when the notifier may block;
    ``kvm_tdp_mmu_handle_gfn`` (age, test_age, change_pte) walks the same way
    without yielding.  A zap of everything no longer steps down below the
    root level, and ``direct_page_fault`` decides once whether the fault is a
    TDP MMU fault (``is_tdp_mmu``).

    Mainline commits that make it differ from the model's v5.13 (the first
    two are 5.13 commits the model's ``V5_13`` leaves in 5.12's shape, see its
    docstring; they first appear here):

    - 3039bcc74498 KVM: Move x86's MMU notifier memslot walkers to generic code
      (``kvm_gfn_range``, ``kvm_tdp_mmu_unmap_gfn_range``,
      ``kvm_tdp_mmu_handle_gfn``; 5.13)
    - e1eed5847b09 KVM: x86/mmu: Allow yielding during MMU notifier unmap/zap,
      if possible (``range->may_block`` as ``zap_gfn_range``'s can_yield; 5.13)
    - 0103098fb4f1 KVM: x86/mmu: Don't step down in the TDP iterator when
      zapping all SPTEs (5.14-rc6)
    - 63f4fd5e0cf3-era ``is_tdp_mmu(vcpu->arch.mmu)`` in direct_page_fault
      (KVM: x86/mmu: Use a separate helper for TDP MMU faults... 5.14/5.15;
      the tree's code, exact hash not checked)
    - ``kvm_mmu_uninit_tdp_mmu`` WARNs on a non-empty ``tdp_mmu_pages`` as well
      (in the 5.15.16 tree, not in 5.12.9; added between them)
    - the ``tdp_mmu`` module parameter defaults to 1 (the model always runs
      the TDP MMU)

    (Hashes from the fixes' "Fixes:" lines and memory of the mainline log.)

    Simplifications: the generic walker (``__kvm_handle_hva_range``) is
    modelled by the arch hooks' stand-ins ``kvm_unmap_hva_range`` and
    friends, called from the notifier handlers the model keeps, which take
    ``mmu_lock`` for write whether or not a memslot overlaps the range (the
    real walker takes it on the first overlapping memslot): with no overlap
    nothing is done under it either way.  ``kvm_zap_gfn_range``'s
    ``kvm_inc_notifier_count`` (5.15) is left out: no scenario faults on a
    range it zaps while it runs, and its gfn/hva mix-up is a legacy-MMU
    concern.  Everything ``V5_13`` lists.
    """

    name = "v5.15"
    summary = "Linux 5.15: generic notifier walkers (unreferenced, yielding), zap-all at root level"

    # ------------------------------------------------------------ VM init
    def kvm_mmu_uninit_tdp_mmu(self, kvm: Any) -> None:
        if not kvm.arch.tdp_mmu_enabled:
            return
        WARN_ON(not list_empty(kvm.arch.tdp_mmu_pages))
        WARN_ON(not list_empty(kvm.arch.tdp_mmu_roots))
        rcu_barrier()

    # --------------------------------------------------------------- zap
    def zap_gfn_range(self, kvm: Any, root: kvm_mmu_page, start: int, end: int,
                      can_yield: bool, flush: bool = False, shared: bool = False) -> bool:
        """0103098fb4f1: zapping everything walks only the root level (zapping a
        non-leaf SPTE frees its subtree)."""
        max_gfn_host = self.max_gfn(kvm)
        zap_all = start == 0 and end >= max_gfn_host
        min_level = root.role.level if zap_all else PG_LEVEL_4K
        end = min(end, max_gfn_host)
        self.kvm_lockdep_assert_mmu_lock_held(kvm, shared)
        rcu_read_lock()
        for it in for_each_tdp_pte_min_level(tdp_iter(kvm), root, root.role.level, min_level,
                                             start, end):
            while True:  # retry:
                if can_yield and self.tdp_mmu_iter_cond_resched(kvm, it, flush, shared):
                    flush = False
                    break  # continue
                if not is_shadow_present_pte(it.old_spte):
                    break
                if not zap_all and (it.gfn < start or
                                    it.gfn + KVM_PAGES_PER_HPAGE(it.level) > end) \
                        and not is_last_spte(it.old_spte, it.level):
                    break
                if not shared:
                    self.tdp_mmu_set_spte(kvm, it, 0)
                    flush = True
                elif not self.tdp_mmu_zap_spte_atomic(kvm, it):
                    self._reread_for_retry(kvm, it)
                    continue  # goto retry
                break
        rcu_read_unlock()
        return flush

    # ------------------------------------------- MMU notifier (generic)
    def _kvm_handle_hva_range(self, kvm: Any, start: int, end: int,
                              handler: Callable[[Any, kvm_gfn_range], bool], pte: Any = None,
                              may_block: bool = False) -> bool:
        """``__kvm_handle_hva_range`` (virt/kvm/kvm_main.c, 5.13+) without its
        locking (the caller holds ``mmu_lock``, see the class docstring): the
        handler runs once per memslot overlapping ``[start, end)``, on that
        slot's gfns, address space by address space."""
        ret = False
        for as_id in range(KVM_ADDRESS_SPACE_NUM):
            slots = self._kvm_memslots(kvm, as_id)
            for slot in slots.slots:
                hva_start = max(start, slot.userspace_addr)
                hva_end = min(end, slot.userspace_addr + slot.npages)
                if hva_start >= hva_end:
                    continue
                gfn_range = kvm_gfn_range(
                    slot=slot, start=slot.base_gfn + (hva_start - slot.userspace_addr),
                    end=slot.base_gfn + (hva_end - slot.userspace_addr), pte=pte,
                    may_block=may_block)
                ret |= bool(handler(kvm, gfn_range))
        return ret

    def kvm_unmap_hva_range(self, kvm: Any, start: int, end: int) -> int:
        """invalidate_range_start's walk; the notifier may block (the
        ``mmu_notifier_range_blockable`` case)."""
        return int(self._kvm_handle_hva_range(kvm, start, end, self.kvm_unmap_gfn_range,
                                              may_block=True))

    def kvm_set_spte_hva(self, kvm: Any, hva: int, pte: Any) -> int:
        return int(self._kvm_handle_hva_range(kvm, hva, hva + 1, self.kvm_set_spte_gfn, pte))

    def kvm_age_hva(self, kvm: Any, start: int, end: int) -> int:
        return int(self._kvm_handle_hva_range(kvm, start, end, self.kvm_age_gfn))

    def kvm_test_age_hva(self, kvm: Any, hva: int) -> int:
        return int(self._kvm_handle_hva_range(kvm, hva, hva + 1, self.kvm_test_age_gfn))

    # mmu.c's arch hooks
    def kvm_unmap_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        flush = False
        if kvm.arch.tdp_mmu_enabled:
            flush = self.kvm_tdp_mmu_unmap_gfn_range(kvm, gfn_range, flush)
        return flush

    def kvm_set_spte_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        flush = False
        if kvm.arch.tdp_mmu_enabled:
            flush |= self.kvm_tdp_mmu_set_spte_gfn(kvm, gfn_range)
        return flush

    def kvm_age_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        young = False
        if kvm.arch.tdp_mmu_enabled:
            young |= self.kvm_tdp_mmu_age_gfn_range(kvm, gfn_range)
        return young

    def kvm_test_age_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        young = False
        if kvm.arch.tdp_mmu_enabled:
            young |= self.kvm_tdp_mmu_test_age_gfn(kvm, gfn_range)
        return young

    # tdp_mmu.c
    def kvm_tdp_mmu_unmap_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range,
                                    flush: bool) -> bool:
        """3039bcc74498 + e1eed5847b09: every root of the slot's address space,
        invalid ones included, walked without a reference, and the zap may
        yield ``mmu_lock`` (so the root being zapped can get its last put and
        be freed meanwhile: 7533377215b6, in 5.16, fixed that)."""
        for root in self.for_each_tdp_mmu_root(kvm, gfn_range.slot.as_id):
            flush = self.zap_gfn_range(kvm, root, gfn_range.start, gfn_range.end,
                                       gfn_range.may_block, flush, False)
        return flush

    def kvm_tdp_mmu_handle_gfn(self, kvm: Any, gfn_range: kvm_gfn_range,
                               handler: Any) -> bool:
        """No yielding: none of the notifiers that come here may block.  The
        model's handlers are 5.12's per-root range functions (same SPTE
        changes), called on the range's gfns."""
        ret = False
        rcu_read_lock()
        for root in self.for_each_tdp_mmu_root(kvm, gfn_range.slot.as_id):
            ret |= bool(handler(kvm, gfn_range.slot, root, gfn_range.start, gfn_range.end,
                                gfn_range.pte))
        rcu_read_unlock()
        return ret

    def kvm_tdp_mmu_age_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        return self.kvm_tdp_mmu_handle_gfn(kvm, gfn_range, self.age_gfn_range)

    def kvm_tdp_mmu_test_age_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        return self.kvm_tdp_mmu_handle_gfn(kvm, gfn_range, self.test_age_gfn)

    def kvm_tdp_mmu_set_spte_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        # set_tdp_spte flushes itself; the kernel's handler returns false too.
        self.kvm_tdp_mmu_handle_gfn(kvm, gfn_range, self.set_tdp_spte)
        return False

    # ---------------------------------------------------------- page fault
    def is_tdp_mmu(self, kvm: Any, mmu: Any) -> bool:
        """tdp_mmu.h: the MMU's root is a live TDP MMU root (``sp->root_count``
        shares its word with ``tdp_mmu_root_count``)."""
        hpa = mmu.root_hpa
        if WARN_ON(hpa == INVALID_PAGE):
            return False
        sp = to_shadow_page(kvm, hpa >> PAGE_SHIFT)
        return sp is not None and self.is_tdp_mmu_root(kvm, hpa)

    def is_page_fault_stale(self, vcpu: Any, mmu_seq: int, pfn: Any, hva: Any) -> bool:
        """Before a955cad84cda (5.16) the only staleness check is the notifier's."""
        return pfn is not None and self.mmu_notifier_retry_hva(vcpu.kvm, mmu_seq, hva)

    def direct_page_fault(self, vcpu: Any, gpa: int, error_code: int, prefault: bool,
                          max_level: int, is_tdp: bool) -> int:
        kvm = vcpu.kvm
        is_tdp_mmu_fault = self.is_tdp_mmu(kvm, vcpu.mmu)
        gfn = gpa >> PAGE_SHIFT
        write = bool(error_code & PFERR_WRITE_MASK)
        mmu_seq = kvm.mmu_notifier_seq.load()
        pfn, hva, map_writable = self.try_async_pf(vcpu, prefault, gfn, gpa, write)
        if pfn is KVM_PFN_ERR_RO_FAULT:
            return RET_PF_EMULATE  # handle_abnormal_pfn(): a write to a read-only slot
        r = RET_PF_RETRY
        if is_tdp_mmu_fault:
            read_lock(kvm.mmu_lock)
        else:
            KVM_MMU_LOCK(kvm)
        if self.is_page_fault_stale(vcpu, mmu_seq, pfn, hva):
            sh.note("page fault is stale: it will be retried")
            vcpu.fault_retry_spin = self._stale_fault_spins(vcpu, mmu_seq, pfn, hva)
        elif is_tdp_mmu_fault:
            r = self.kvm_tdp_mmu_map(vcpu, gpa, error_code, map_writable, max_level, pfn,
                                     prefault)
        else:
            r = self._direct_map(vcpu, gpa)
        if is_tdp_mmu_fault:
            read_unlock(kvm.mmu_lock)
        else:
            KVM_MMU_UNLOCK(kvm)
        return r

    def _stale_fault_spins(self, vcpu: Any, mmu_seq: int, pfn: Any, hva: Any) -> bool:
        """Model only: a fault retried because of an invalidation in progress
        waits for it (see ``X86.handle_exit``); one retried for another reason
        (an invalid root, 5.16+) goes round the run loop, which reloads."""
        return pfn is not None and self.mmu_notifier_retry_hva(vcpu.kvm, mmu_seq, hva)


__all__ = ["V5_15", "kvm_gfn_range"]
