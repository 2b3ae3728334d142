"""Linux 5.15's TDP MMU: zap-all that stays at the root level.

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
from . import fidelity
from . import shared as sh
from .mmu import KVM_PFN_ERR_RO_FAULT
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .spte import KVM_PAGES_PER_HPAGE, PAGE_SHIFT, PG_LEVEL_4K, is_last_spte, is_shadow_present_pte
from .structs import INVALID_PAGE, kvm_mmu_page
from .tdp_iter import for_each_tdp_pte_min_level, tdp_iter, to_shadow_page
from .tdp_mmu import PFERR_WRITE_MASK, RET_PF_EMULATE, RET_PF_RETRY
from .v5_13 import V5_13, kvm_gfn_range

__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions


class V5_15(V5_13):
    """Linux 5.15: era C as 5.15 released it.  A zap of everything no longer
    steps down below the root level, and ``direct_page_fault`` decides once
    whether the fault is a TDP MMU fault (``is_tdp_mmu``).  The MMU notifier's
    generic walkers are 5.13's (see ``V5_13``): ``kvm_tdp_mmu_unmap_gfn_range``
    still walks the roots without a reference while its zap may yield.

    Mainline commits (5.14 and 5.15) that make it differ from v5.13:

    - 0103098fb4f1 KVM: x86/mmu: Don't step down in the TDP iterator when
      zapping all SPTEs (5.14-rc6)
    - 63f4fd5e0cf3-era ``is_tdp_mmu(vcpu->arch.mmu)`` in direct_page_fault
      (KVM: x86/mmu: Use a separate helper for TDP MMU faults... 5.14/5.15;
      the tree's code, exact hash not checked)
    - ``kvm_mmu_uninit_tdp_mmu`` WARNs on a non-empty ``tdp_mmu_pages`` as well
      (in the 5.15.16 tree, not in 5.12.9; added between them)
    - KVM_SET_CPUID's MMU part moved to ``kvm_mmu_after_set_cpuid`` (5.14:
      49c6f8756cdf-era "KVM: x86: Force all MMUs to reinitialize if guest CPUID
      is modified", hash from memory; the code as in the 5.15.16 tree), and
      ``kvm_set_cpuid`` split from the ioctl
    - 71ba3f3189c7 KVM: x86: enable TDP MMU by default (5.15): the ``tdp_mmu``
      module parameter defaults to 1 (``tdp_mmu = True`` below; a run may
      still set 0 and get the legacy MMU)

    (Hashes from the fixes' "Fixes:" lines and memory of the mainline log.)

    Simplifications: ``kvm_zap_gfn_range``'s
    ``kvm_inc_notifier_count`` (5.15) is left out: no scenario faults on a
    range it zaps while it runs, and its gfn/hva mix-up is a legacy-MMU
    concern.  Everything ``V5_13`` lists.
    """

    name = "v5.15"
    summary = "Linux 5.15: zap-all stays at the root level, is_tdp_mmu faults"

    tdp_mmu = True  # 71ba3f3189c7: the TDP MMU by default

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
            r = self._direct_map(vcpu, gpa, error_code, map_writable, max_level, pfn,
                                 prefault, is_tdp)
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


    # ------------------------------------------------------------- cpuid
    def kvm_vcpu_ioctl_set_cpuid2(self, vcpu: Any, cpuid: Any) -> int:
        return self.kvm_set_cpuid(vcpu, cpuid)

    def kvm_set_cpuid(self, vcpu: Any, cpuid: Any) -> int:
        vcpu.cpuid = cpuid
        self.kvm_vcpu_after_set_cpuid(vcpu)
        return 0

    def kvm_vcpu_after_set_cpuid(self, vcpu: Any) -> None:
        self.kvm_mmu_after_set_cpuid(vcpu)

    def kvm_mmu_after_set_cpuid(self, vcpu: Any) -> None:
        """Every MMU's role is recomputed (``mmu_role.ext.valid = 0``: the
        model's roles have no ext part) and the context reset.  After
        KVM_RUN the kernel only warns that 5.16 will refuse it."""
        self.kvm_mmu_reset_context(vcpu)


__all__ = ["V5_15", "kvm_gfn_range"]
