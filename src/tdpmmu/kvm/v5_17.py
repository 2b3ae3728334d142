"""Linux 5.17's TDP MMU: 5.16's fixes to 5.13's design.

Built from the stored 5.17-rc5 tree (``dunli/linux-5.17``) read against
5.15.16.  Between rc5 and 5.17 mainline merged no change to ``tdp_mmu.c``'s
root handling or to the root and fault functions of ``mmu.c`` that the model
covers (the kvm fixes of rc6-rc8 touch the legacy MMU, the emulator and
Hyper-V), so the rc5 code is taken as the release's.  The tree lacks
d62007edf01f ("Zap _all_ roots when unmapping gfn range in TDP MMU",
5.18-rc1, Cc stable), as did 5.17.
"""

from __future__ import annotations

from typing import Any

from ..kernel import (
    WARN_ON,
    WARN_ON_ONCE,
    cond_resched_rwlock_read,
    cond_resched_rwlock_write,
    rcu_read_lock,
    rcu_read_unlock,
)
from ..kernel.bug import KVM_BUG_ON
from . import fidelity
from .spte import PAGE_SHIFT
from .structs import kvm_mmu_page
from .tdp_iter import tdp_iter, to_shadow_page
from .v5_13 import role_invalid
from .v5_15 import V5_15, kvm_gfn_range

__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions

EINVAL = 22


class V5_17(V5_15):
    """Linux 5.17 (tree 5.17-rc5): a page fault on a root that a memslot update
    invalidated is retried (the vCPU then reloads), the MMU notifier's unmap
    walks the roots with the yield-safe (reference-taking) iterator, which
    skips invalid roots, and a walk that yielded restarts instead of
    advancing past the SPTE it restarted on.

    Mainline commits (5.16 and 5.17) that make it differ from v5.15:

    - a955cad84cda KVM: x86/mmu: Retry page fault if root is invalidated by
      memslot update (5.16-rc3; here in 5.17's form, ``is_page_fault_stale``
      asking ``is_obsolete_sp`` of the root)
    - 7533377215b6 KVM: x86/mmu: Use yield-safe TDP MMU root iter in MMU
      notifier unmapping (5.16-rc, Cc stable; Fixes: e1eed5847b09)
    - 3a0f64de479c KVM: x86/mmu: Don't advance iterator after restart due to
      yielding (5.16-rc7; ``iter->yielded``, and the WARNs on changing an SPTE
      through an iterator that yielded)
    - feb627e8d6f6 KVM: x86: Forbid KVM_SET_CPUID{,2} after KVM_RUN (5.16)
      and c6617c61e8fe KVM: x86: Partially allow KVM_SET_CPUID{,2} after
      KVM_RUN (5.17): identical data only, as in the stored 5.17-rc5 tree's
      ``kvm_set_cpuid`` (hashes from memory; the titles are the patches')
    - the 5.17 page-fault rework (``struct kvm_page_fault``,
      ``tdp_mmu_set_spte_atomic_no_dirty_log`` renamed
      ``tdp_mmu_set_spte_atomic``): same behaviour, the model keeps the older
      signatures and names.

    (Hashes from the fixes' own messages and "Fixes:" lines as quoted in the
    stable reviews; 7533377215b6 from memory of the mainline log.)
    """

    name = "v5.17"
    summary = "Linux 5.17: faults on invalid roots retried, notifier unmap skips invalid roots"

    # ------------------------------------------------------------- yield
    def tdp_mmu_iter_cond_resched(self, kvm: Any, it: tdp_iter, flush: bool = False,
                                  shared: bool = False) -> bool:
        """3a0f64de479c: mark the iterator yielded; its next step restarts."""
        WARN_ON(it.yielded)
        if it.next_last_level_gfn == it.yielded_gfn:
            return False
        if self.need_resched(kvm, it):
            rcu_read_unlock()
            if flush:
                self.kvm_flush_remote_tlbs(kvm)
            if shared:
                cond_resched_rwlock_read(kvm.mmu_lock)
            else:
                cond_resched_rwlock_write(kvm.mmu_lock)
            rcu_read_lock()
            WARN_ON(it.gfn > it.next_last_level_gfn)
            it.yielded = True
        return it.yielded

    def tdp_mmu_set_spte_atomic_no_dirty_log(self, kvm: Any, it: tdp_iter,
                                             new_spte: int) -> bool:
        WARN_ON_ONCE(it.yielded)  # 3a0f64de479c
        return super().tdp_mmu_set_spte_atomic_no_dirty_log(kvm, it, new_spte)

    def _tdp_mmu_set_spte(self, kvm: Any, it: tdp_iter, new_spte: int,
                           record_acc_track: bool, record_dirty_log: bool) -> None:
        WARN_ON_ONCE(it.yielded)  # 3a0f64de479c
        super()._tdp_mmu_set_spte(kvm, it, new_spte, record_acc_track, record_dirty_log)

    # -------------------------------------------------------- MMU notifier
    def kvm_tdp_mmu_unmap_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range,
                                    flush: bool) -> bool:
        """7533377215b6: hold a reference on each root while the zap may yield.
        The iterator's get refuses invalid roots, so a root that a memslot
        update invalidated and is still zapping is skipped (d62007edf01f, in
        5.18, zaps them too)."""
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm, gfn_range.slot.as_id, False):
            flush = self.zap_gfn_range(kvm, root, gfn_range.start, gfn_range.end,
                                       gfn_range.may_block, flush, False)
        return flush

    # ---------------------------------------------------------- page fault
    def is_obsolete_sp(self, kvm: Any, sp: kvm_mmu_page) -> bool:
        """mmu.c: an invalid page, or a legacy page of an older generation."""
        if role_invalid(sp):
            return True
        return not sp.tdp_mmu_page and sp.mmu_valid_gen != kvm.arch.mmu_valid_gen

    def is_page_fault_stale(self, vcpu: Any, mmu_seq: int, pfn: Any, hva: Any) -> bool:
        """a955cad84cda: a fault on a root invalidated meanwhile (checked under
        mmu_lock, which the invalidation took for write) is retried.  Roots
        without a shadow page (PAE roots) and their reload request are the
        legacy MMU's."""
        sp = to_shadow_page(vcpu.kvm, vcpu.mmu.root_hpa >> PAGE_SHIFT)
        if sp is not None and self.is_obsolete_sp(vcpu.kvm, sp):
            return True
        return pfn is not None and self.mmu_notifier_retry_hva(vcpu.kvm, mmu_seq, hva)


    # ------------------------------------------------------------- cpuid
    # feb627e8d6f6 refused every KVM_SET_CPUID after KVM_RUN (5.16);
    # c6617c61e8fe accepts identical data again (5.17).
    set_cpuid_after_run = "identical"

    def kvm_vcpu_has_run(self, vcpu: Any) -> bool:
        return vcpu.last_vmentry_cpu != -1

    def kvm_set_cpuid(self, vcpu: Any, cpuid: Any) -> int:
        """After the first KVM_RUN only identical data is accepted, and then
        nothing is done (no MMU reset); other data fails
        ``kvm_cpuid_check_equal`` with -EINVAL (so in the stored 5.17-rc5,
        6.1-rc7 and 6.9 trees).  The scenario format refuses a scenario that
        asks for that (see ``check_for_kernel``), so the model never returns
        it."""
        if vcpu.last_vmentry_cpu != -1:
            if cpuid != vcpu.cpuid:  # kvm_cpuid_check_equal
                return -EINVAL
            return 0
        vcpu.cpuid = cpuid
        self.kvm_vcpu_after_set_cpuid(vcpu)
        return 0

    def kvm_mmu_after_set_cpuid(self, vcpu: Any) -> None:
        """Reset, then ``KVM_BUG_ON`` if the vCPU has run (5.16 forbade it)."""
        self.kvm_mmu_reset_context(vcpu)
        KVM_BUG_ON(self.kvm_vcpu_has_run(vcpu), vcpu.kvm)


__all__ = ["V5_17"]
