"""Linux 5.12's TDP MMU: ``mmu_lock`` an rwlock, TDP page faults under the read lock.

Built from the stored 5.12.9 tree (``zhangyinjun/linux-5.12.9``) read against
5.11.0 (``CompressionDuck/linux-5.11``); the 5.12.y stable releases up to .9
carry no change to the functions modelled here that 5.12.0 lacks (their
tdp_mmu fixes, e.g. 57a3e96d6d17's RET_PF_FIXED, came in 5.13 and were not
backported), so the tree's code is the release's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine import cpu_relax
from ..kernel import (
    BUG,
    BUG_ON,
    INIT_LIST_HEAD,
    WARN_ON,
    WARN_ON_ONCE,
    call_rcu,
    cond_resched_rwlock_write,
    list_add,
    list_del,
    list_empty,
    lockdep_assert_held,
    lockdep_assert_held_read,
    lockdep_assert_held_write,
    rcu_barrier,
    rcu_read_lock,
    rcu_read_unlock,
    read_lock,
    read_unlock,
    rwlock_t,
    spin_lock,
    spin_unlock,
    spinlock_t,
    srcu_read_lock,
    srcu_read_unlock,
)
from . import fidelity
from . import shared as sh
from .mmu import KVM_MR_FLAGS_ONLY, KVM_PFN_ERR_RO_FAULT
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .spte import (
    ACC_ALL,
    KVM_MAX_HUGEPAGE_LEVEL,
    KVM_PAGES_PER_HPAGE,
    PAGE_SHIFT,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    PT64_ENT_PER_PAGE,
    PT64_ROOT_MAX_LEVEL,
    PT_WRITABLE_MASK,
    REMOVED_SPTE,
    SET_SPTE_WRITE_PROTECTED_PT,
    is_dirty_spte,
    is_large_pte,
    is_last_spte,
    is_mmio_spte,
    is_removed_spte,
    is_shadow_present_pte,
    make_mmio_spte,
    make_nonleaf_spte,
    make_spte,
    round_gfn_for_level,
    spte_to_pfn,
)
from .structs import (
    INVALID_PAGE,
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_READONLY,
    KVM_MEMSLOT_INVALID,
    KVM_REQ_TLB_FLUSH_CURRENT,
    KVM_REQ_UPDATE_CPU_DIRTY_LOGGING,
    kvm_mmu_page,
)
from .tdp_iter import (
    for_each_tdp_pte_min_level,
    read_spte,
    spte_to_child_pt,
    tdp_iter,
    tdp_iter_restart,
    tdp_iter_root_pt,
)
from .tdp_mmu import (
    PFERR_WRITE_MASK,
    RET_PF_EMULATE,
    RET_PF_RETRY,
    RET_PF_SPURIOUS,
    kvm_mmu_page_as_id,
    spte_with_dirty_cleared,
)
from .versions import V5_11
from .vmx import PML_ENTITY_NUM

__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions


class V5_12(V5_11):
    """Linux 5.12 (tree 5.12.9): era B.  ``mmu_lock`` is an rwlock; a TDP page
    fault takes it for read and changes SPTEs with cmpxchg, so vCPUs fault in
    parallel; a fault that must zap a huge SPTE freezes it at ``REMOVED_SPTE``
    until the TLBs are flushed; removed page tables are freed through
    ``call_rcu`` and walkers hold ``rcu_read_lock``; ``tdp_mmu_pages`` is
    protected by ``tdp_mmu_pages_lock`` for read-locked changes.  Root
    allocation and freeing, range zaps, notifiers and dirty logging still take
    the write lock.  The yield checks forward progress, drops RCU around
    ``cond_resched_rwlock_write`` and flushes before yielding.

    Mainline commits (5.12 merge window and rcs) that make it differ from v5.11
    (hash + title as in mainline's log):

    - 531810caa9f4 KVM: x86/mmu: Use an rwlock for the x86 MMU
    - a9442f594147 KVM: x86/mmu: Factor out functions to add/remove TDP MMU pages
      (tdp_mmu_link_page / tdp_mmu_unlink_page)
    - 9a77daacc87d KVM: x86/mmu: Use atomic ops to set SPTEs in TDP MMU map
      (tdp_mmu_set_spte_atomic, tdp_mmu_pages_lock)
    - 08f07c800e9d KVM: x86/mmu: Flush TLBs after zap in TDP MMU PF handler
      (tdp_mmu_zap_spte_atomic)
    - e25f0e0cd51b KVM: x86/mmu: Mark SPTEs in disconnected pages as removed
      (REMOVED_SPTE)
    - a2855afc7ee8 KVM: x86/mmu: Allow parallel page faults for the TDP MMU
      (direct_page_fault takes the read lock for a TDP MMU root)
    - 7cca2d0b7e7d KVM: x86/mmu: Protect TDP MMU page table memory with RCU
    - a066e61f13cf KVM: x86/mmu: Factor out handling of removed page tables
    - 3a9a4aa56574 KVM: x86/mmu: Add lockdep when setting a TDP MMU SPTE
    - 0f99ee2c7a58 KVM: x86/mmu: Skip no-op changes in TDP MMU functions
      (wrprot_gfn_range skips read-only SPTEs)
    - 1af4a96025b3 KVM: x86/mmu: Yield in TDU MMU iter even if no SPTES changed
    - ed5e484b79e8 KVM: x86/mmu: Ensure forward progress when yielding in TDP MMU iter
    - 74953d353028 KVM: x86/mmu: Rename goal_gfn to next_last_level_gfn
    - e139a34ef9d5 KVM: x86/mmu: Merge flush and non-flush tdp_mmu_iter_cond_resched
    - e28a436ca4f6 KVM: x86/mmu: change TDP MMU yield function returns to match
      cond_resched
    - a835429cda91 KVM: x86/mmu: Ensure TLBs are flushed when yielding during GFN
      range zap (``zap_gfn_range(..., flush)``, ``__kvm_tdp_mmu_zap_gfn_range``)
    - 4a42d848db95 KVM: x86/mmu: Consider the hva in mmu_notifier retry
    - 9eba50f8d7fc KVM: x86/mmu: Consult max mapping level when zapping collapsible
      SPTEs
    - PML, the series "KVM: x86/mmu: Dirty logging fixes and improvements":
      a85863c2ec55 KVM: VMX: Dynamically enable/disable PML based on memslot dirty
      logging; b6e16ae5d99f KVM: x86/mmu: Don't set dirty bits when disabling dirty
      logging w/ PML; a018eba53870 KVM: x86: Move MMU's PML logic to common code;
      6dd03800b1af KVM: x86/mmu: Make dirty log size hook (PML) a value, not a
      function; c3bb9a20834f KVM: nVMX: Disable PML in hardware when running L2;
      a1419f8b5bab KVM: x86: Fold "write-protect large" use case into generic
      write-protect

    Also taken from the tree: ``tdp_mmu_map_handle_target_level`` requests
    KVM_REQ_TLB_FLUSH_CURRENT when it maps a write-protected page table (so do
    5.11's tree and code; the model's v5.10/v5.11 lack it).

    Simplifications: ``need_resched()`` under the ``resched`` knob: with
    ``after-progress`` (the default) and ``always`` it is true at every yield
    point the kernel's own forward-progress check lets through; ``never``
    keeps the lock.  NX huge pages are not modelled.

    The legacy MMU (``tdp_mmu=0``, :mod:`tdpmmu.kvm.mmu_legacy`) at 5.12: the
    same root handling under the write side of the rwlock (531810caa9f4: its
    ``spin_lock`` calls become ``write_lock``, which ``KVM_MMU_LOCK`` already
    is, and its yields ``cond_resched_rwlock_write``: ``cond_resched_mmu_lock``
    below); a legacy root's fault takes the write lock (a2855afc7ee8, in
    ``direct_page_fault``).  The rest of its 5.12 diff to 5.10.7 in the
    functions modelled is ``is_tdp_mmu_enabled(kvm)`` for
    ``kvm->arch.tdp_mmu_enabled`` and ``is_tdp_mmu_page(sp)`` for
    ``sp->tdp_mmu_page``: same meaning.
    """

    name = "v5.12"
    summary = "Linux 5.12: rwlock mmu_lock; faults under the read lock (cmpxchg, RCU)"

    # Gone in 5.12: the flushing variant of the yield, merged into
    # tdp_mmu_iter_cond_resched(..., flush) (e28a436ca4f6 above); and x86's
    # faults check the invalidation with mmu_notifier_retry_hva, so nothing in
    # the modelled x86 code calls the hva-less mmu_notifier_retry any more.
    tdp_mmu_iter_flush_cond_resched = None
    mmu_notifier_retry = None

    # PML (see the dirty-logging section): per-vCPU PML while a slot logs.
    pml_dirty_logging = "cpu_dirty_log_size"

    # ------------------------------------------------------ lock contract
    def lock_contract(self, kvm: Any) -> dict[str, Any]:
        """5.12 (``struct kvm_arch`` in ``kvm_host.h``): ``tdp_mmu_pages`` and the
        pages' links are changed under ``mmu_lock`` held for write, or under
        ``tdp_mmu_pages_lock`` by a thread holding ``mmu_lock`` for read (a
        fault); everything else stays under the write lock."""
        contract = super().lock_contract(kvm)
        contract["kvm->arch.tdp_mmu_pages"] = [(kvm.mmu_lock, True),
                                               (kvm.arch.tdp_mmu_pages_lock, True)]
        return contract

    # ------------------------------------------------------------ VM init
    def kvm_mmu_init_vm(self, kvm: Any) -> None:
        # KVM_MMU_LOCK_INIT() in kvm_create_vm(): the checker builds the VM, so
        # the version chooses its lock type here, before anything takes it.
        kvm.mmu_lock = rwlock_t("kvm->mmu_lock")
        super().kvm_mmu_init_vm(kvm)

    def kvm_mmu_init_tdp_mmu(self, kvm: Any) -> None:
        # The lock is a field of struct kvm_arch whatever tdp_mmu is; the model
        # makes its object before the early return (lock contracts name it).
        kvm.arch.tdp_mmu_pages_lock = spinlock_t("kvm->arch.tdp_mmu_pages_lock")
        if not self.is_tdp_mmu_enabled():
            return
        kvm.arch.tdp_mmu_enabled = True
        INIT_LIST_HEAD(kvm.arch.tdp_mmu_roots)
        INIT_LIST_HEAD(kvm.arch.tdp_mmu_pages)

    def cond_resched_mmu_lock(self, kvm: Any) -> int:
        """531810caa9f4: the legacy MMU's yields (``kvm_zap_obsolete_pages``,
        ``slot_handle_level_range``, ``kvm_mmu_zap_all``) become
        ``cond_resched_rwlock_write`` (and ``spin_needbreak`` ``rwlock_needbreak``)."""
        if self.resched_policy == "never":
            return 0
        return cond_resched_rwlock_write(kvm.mmu_lock)

    def kvm_mmu_uninit_tdp_mmu(self, kvm: Any) -> None:
        if not kvm.arch.tdp_mmu_enabled:
            return
        WARN_ON(not list_empty(kvm.arch.tdp_mmu_roots))
        # Let the RCU callbacks that free page tables run before the VM goes.
        rcu_barrier()

    # -------------------------------------------------------------- roots
    def tdp_mmu_next_root_valid(self, kvm: Any, root: kvm_mmu_page | None) -> bool:
        lockdep_assert_held_write(kvm.mmu_lock)
        if root is None or root.link is kvm.arch.tdp_mmu_roots:
            return False
        self.kvm_mmu_get_root(kvm, root)
        return True

    def kvm_tdp_mmu_free_root(self, kvm: Any, root: kvm_mmu_page) -> None:
        max_gfn = self.max_gfn(kvm)
        lockdep_assert_held_write(kvm.mmu_lock)
        WARN_ON(root.root_count)
        WARN_ON(not root.tdp_mmu_page)
        list_del(root.link)
        sh.note(f"free {root.name}")
        self.zap_gfn_range(kvm, root, 0, max_gfn, False, False)
        self.free_mmu_page(kvm, root)

    # ------------------------------------------------- page-table pages
    def tdp_mmu_free_sp(self, kvm: Any, sp: kvm_mmu_page) -> None:
        self.free_mmu_page(kvm, sp)

    def tdp_mmu_free_sp_rcu_callback(self, kvm: Any) -> Callable[[Any], None]:
        """The ``call_rcu`` callback (bound to the VM: the model has no global
        ``mmu_page_header_cache``)."""
        def callback(head: Any) -> None:
            self.tdp_mmu_free_sp(kvm, head.owner)
        return callback

    def tdp_mmu_link_page(self, kvm: Any, sp: kvm_mmu_page, shared: bool,
                          account_nx: bool) -> None:
        if shared:
            spin_lock(kvm.arch.tdp_mmu_pages_lock)
        else:
            lockdep_assert_held_write(kvm.mmu_lock)
        list_add(sp.link, kvm.arch.tdp_mmu_pages)
        if shared:
            spin_unlock(kvm.arch.tdp_mmu_pages_lock)

    def tdp_mmu_unlink_page(self, kvm: Any, sp: kvm_mmu_page, shared: bool) -> None:
        if shared:
            spin_lock(kvm.arch.tdp_mmu_pages_lock)
        else:
            lockdep_assert_held_write(kvm.mmu_lock)
        list_del(sp.link)
        if shared:
            spin_unlock(kvm.arch.tdp_mmu_pages_lock)

    def handle_removed_tdp_mmu_page(self, kvm: Any, sp: kvm_mmu_page, shared: bool) -> None:
        """A page table was unlinked from the paging structure: freeze and
        process each of its SPTEs, then free it after a grace period."""
        level = sp.role.level
        base_gfn = sp.gfn
        gfn = base_gfn
        self.tdp_mmu_unlink_page(kvm, sp, shared)
        for i in range(PT64_ENT_PER_PAGE):
            gfn = base_gfn + i * KVM_PAGES_PER_HPAGE(level - 1)
            if shared:
                # Another thread's fault may own a frozen SPTE here: wait until
                # it sets it back, then freeze it ourselves.
                while True:
                    old_child_spte = sh.xchg_spte(sp, i, REMOVED_SPTE)
                    if not is_removed_spte(old_child_spte):
                        break
                    cpu_relax()
            else:
                old_child_spte = sp.spt[i]
                if not is_shadow_present_pte(old_child_spte):
                    continue
                sh.write_spte(sp, i, REMOVED_SPTE)
            self.handle_changed_spte(kvm, kvm_mmu_page_as_id(sp), gfn, old_child_spte,
                                     REMOVED_SPTE, level - 1, shared)
        self.kvm_flush_remote_tlbs_with_address(kvm, gfn, KVM_PAGES_PER_HPAGE(level))
        call_rcu(sp.rcu_head, self.tdp_mmu_free_sp_rcu_callback(kvm))

    # ---------------------------------------------------- SPTE changes
    def _handle_changed_spte(self, kvm: Any, as_id: int, gfn: int, old_spte: int,
                              new_spte: int, level: int, shared: bool = False) -> None:
        was_present = is_shadow_present_pte(old_spte)
        is_present = is_shadow_present_pte(new_spte)
        was_leaf = was_present and is_last_spte(old_spte, level)
        is_leaf = is_present and is_last_spte(new_spte, level)
        pfn_changed = spte_to_pfn(old_spte) != spte_to_pfn(new_spte)

        WARN_ON(level > PT64_ROOT_MAX_LEVEL)
        WARN_ON(level < PG_LEVEL_4K)
        WARN_ON(gfn & (KVM_PAGES_PER_HPAGE(level) - 1))

        # A present leaf replaced by one for another pfn: crash the host.
        if was_leaf and is_leaf and pfn_changed:
            BUG()
        if old_spte == new_spte:
            return
        self.trace_kvm_tdp_mmu_spte_changed(kvm, as_id, gfn, level, old_spte, new_spte)
        if not was_present and not is_present:
            # Only MMIO SPTEs and the removed value move between non-present values.
            WARN_ON(not is_mmio_spte(old_spte) and not is_mmio_spte(new_spte)
                    and not is_removed_spte(new_spte))
            return
        if was_leaf and is_dirty_spte(old_spte) and (not is_dirty_spte(new_spte) or pfn_changed):
            pass  # kvm_set_pfn_dirty(): host page state, not modelled
        if was_present and not was_leaf and (pfn_changed or not is_present):
            self.handle_removed_tdp_mmu_page(kvm, spte_to_child_pt(kvm, old_spte, level), shared)

    def handle_changed_spte(self, kvm: Any, as_id: int, gfn: int, old_spte: int,
                            new_spte: int, level: int, shared: bool = False) -> None:
        self._handle_changed_spte(kvm, as_id, gfn, old_spte, new_spte, level, shared)
        self.handle_changed_spte_acc_track(old_spte, new_spte, level)
        self.handle_changed_spte_dirty_log(kvm, as_id, gfn, old_spte, new_spte, level)

    def tdp_mmu_set_spte_atomic(self, kvm: Any, it: tdp_iter, new_spte: int) -> bool:
        """Set an SPTE by cmpxchg under the read lock; False (and no side
        effects) if it is frozen or another thread changed it first."""
        lockdep_assert_held_read(kvm.mmu_lock)
        # Only the thread that froze an SPTE may change it.
        if it.old_spte == REMOVED_SPTE:
            return False
        if sh.cmpxchg_spte(it.sp, it.index, it.old_spte, new_spte) != it.old_spte:
            return False
        self.handle_changed_spte(kvm, kvm_mmu_page_as_id(tdp_iter_root_pt(it)), it.gfn,
                                 it.old_spte, new_spte, it.level, True)
        return True

    def tdp_mmu_zap_spte_atomic(self, kvm: Any, it: tdp_iter) -> bool:
        # Freeze the SPTE so nobody installs a present one before the flush.
        if not self.tdp_mmu_set_spte_atomic(kvm, it, REMOVED_SPTE):
            return False
        self.kvm_flush_remote_tlbs_with_address(kvm, it.gfn, KVM_PAGES_PER_HPAGE(it.level))
        # Nobody else writes a frozen SPTE: a plain store, non-present to non-present.
        sh.write_spte(it.sp, it.index, 0)
        return True

    def _tdp_mmu_set_spte(self, kvm: Any, it: tdp_iter, new_spte: int,
                           record_acc_track: bool, record_dirty_log: bool) -> None:
        lockdep_assert_held_write(kvm.mmu_lock)
        # The removed value is for read-locked changes only.
        WARN_ON(it.old_spte == REMOVED_SPTE)
        as_id = kvm_mmu_page_as_id(tdp_iter_root_pt(it))
        sh.write_spte(it.sp, it.index, new_spte)
        self._handle_changed_spte(kvm, as_id, it.gfn, it.old_spte, new_spte, it.level, False)
        if record_acc_track:
            self.handle_changed_spte_acc_track(it.old_spte, new_spte, it.level)
        if record_dirty_log:
            self.handle_changed_spte_dirty_log(kvm, as_id, it.gfn, it.old_spte, new_spte,
                                               it.level)

    # ------------------------------------------------------------- yield
    def need_resched(self, kvm: Any, it: tdp_iter) -> bool:
        """``need_resched() || rwlock_needbreak()``: the kernel checks forward
        progress itself from 5.12, so the policy only says never or yes."""
        return self.resched_policy != "never"

    def tdp_mmu_iter_cond_resched(self, kvm: Any, it: tdp_iter, flush: bool = False) -> bool:
        """Yield ``mmu_lock`` (flushing first if asked); True if the walk was
        restarted from the root."""
        # Ensure forward progress has been made before yielding.
        if it.next_last_level_gfn == it.yielded_gfn:
            return False
        if self.need_resched(kvm, it):
            rcu_read_unlock()
            if flush:
                self.kvm_flush_remote_tlbs(kvm)
            cond_resched_rwlock_write(kvm.mmu_lock)
            rcu_read_lock()
            WARN_ON(it.gfn > it.next_last_level_gfn)
            tdp_iter_restart(it)
            return True
        return False

    # --------------------------------------------------------------- zap
    def zap_gfn_range(self, kvm: Any, root: kvm_mmu_page, start: int, end: int,
                      can_yield: bool, flush: bool = False) -> bool:
        rcu_read_lock()
        for it in self.tdp_root_for_each_pte(kvm, root, start, end):
            if can_yield and self.tdp_mmu_iter_cond_resched(kvm, it, flush):
                flush = False
                continue
            if not is_shadow_present_pte(it.old_spte):
                continue
            # Descend into a non-leaf SPTE that is only partly in the range.
            if (it.gfn < start or it.gfn + KVM_PAGES_PER_HPAGE(it.level) > end) \
                    and not is_last_spte(it.old_spte, it.level):
                continue
            self.tdp_mmu_set_spte(kvm, it, 0)
            flush = True
        rcu_read_unlock()
        return flush

    def _kvm_tdp_mmu_zap_gfn_range(self, kvm: Any, start: int, end: int,
                                   can_yield: bool) -> bool:
        """``__kvm_tdp_mmu_zap_gfn_range``."""
        flush = False
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
            flush = self.zap_gfn_range(kvm, root, start, end, can_yield, flush)
        return flush

    def kvm_tdp_mmu_zap_gfn_range(self, kvm: Any, start: int, end: int) -> bool:
        return self._kvm_tdp_mmu_zap_gfn_range(kvm, start, end, True)

    # ---------------------------------------------------------- page fault
    def tdp_mmu_map_handle_target_level(self, vcpu: Any, write: bool, map_writable: bool,
                                        it: tdp_iter, pfn: int | None, prefault: bool) -> int:
        kvm = vcpu.kvm
        make_spte_ret = 0
        ret = RET_PF_RETRY  # "int ret = 0": a fixed fault returns RET_PF_RETRY in 5.12
        if pfn is None:  # is_noslot_pfn()
            new_spte = make_mmio_spte(it.gfn, self.kvm_memslots_generation(kvm, vcpu), ACC_ALL)
        else:
            make_spte_ret, new_spte = make_spte(it.level, pfn, ACC_ALL, prefault, map_writable,
                                                False)
        if new_spte == it.old_spte:
            ret = RET_PF_SPURIOUS
        elif not self.tdp_mmu_set_spte_atomic(kvm, it, new_spte):
            return RET_PF_RETRY
        if make_spte_ret & SET_SPTE_WRITE_PROTECTED_PT:
            if write:
                ret = RET_PF_EMULATE
            self.kvm_make_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu)
        if is_mmio_spte(new_spte):
            ret = RET_PF_EMULATE
        return ret

    def kvm_tdp_mmu_map(self, vcpu: Any, gpa: int, error_code: int, map_writable: bool,
                        max_level: int, pfn: int | None, prefault: bool) -> int:
        kvm = vcpu.kvm
        write = bool(error_code & PFERR_WRITE_MASK)
        gfn = gpa >> PAGE_SHIFT
        if WARN_ON(vcpu.mmu.root_hpa == INVALID_PAGE):
            return RET_PF_RETRY
        if WARN_ON(not self.is_tdp_mmu_root(kvm, vcpu.mmu.root_hpa)):
            return RET_PF_RETRY
        level, pfn = self.kvm_mmu_hugepage_adjust(vcpu, gfn, max_level, pfn)
        rcu_read_lock()
        it = None
        for it in self.tdp_mmu_for_each_pte(vcpu, gfn, gfn + 1):
            if it.level == level:
                break
            # A huge leaf above the target level is zapped first (atomically).
            if is_shadow_present_pte(it.old_spte) and is_large_pte(it.old_spte):
                if not self.tdp_mmu_zap_spte_atomic(kvm, it):
                    break
                it.old_spte = read_spte(kvm, it.sp, it.index)
            if not is_shadow_present_pte(it.old_spte):
                sp = self.alloc_tdp_mmu_page(vcpu, it.gfn, it.level)
                sp.name = f"p{kvm.nr_pages_made}"
                kvm.nr_pages_made += 1
                sp.root = tdp_iter_root_pt(it)
                new_spte = make_nonleaf_spte(sp.pfn)
                if self.tdp_mmu_set_spte_atomic(kvm, it, new_spte):
                    self.tdp_mmu_link_page(kvm, sp, True, False)
                else:
                    # Lost the race (or the SPTE is frozen): the page was never
                    # visible to anyone, free it at once.
                    self.tdp_mmu_free_sp(kvm, sp)
                    break
        if it is None or it.level != level:
            self._note_frozen_retry(vcpu, it)
            rcu_read_unlock()
            return RET_PF_RETRY
        ret = self.tdp_mmu_map_handle_target_level(vcpu, write, map_writable, it, pfn,
                                                   prefault)
        if ret == RET_PF_RETRY:
            self._note_frozen_retry(vcpu, it)
        rcu_read_unlock()
        return ret

    @staticmethod
    def _note_frozen_retry(vcpu: Any, it: tdp_iter | None) -> None:
        """Model only: a fault that found a frozen SPTE is retried by the guest
        until the freezing thread writes it back; the vCPU waits for that write
        (``cpu_relax``) instead of exploring identical retries."""
        if it is not None and is_removed_spte(it.old_spte):
            vcpu.fault_retry_spin = True

    def try_async_pf(self, vcpu: Any, prefault: bool, gfn: int, gpa: int,
                     write: bool) -> tuple[int | None, int | None, bool]:
        """``__gfn_to_pfn_memslot``, now also returning the hva (4a42d848db1a)."""
        slot = self.kvm_vcpu_gfn_to_memslot(vcpu, gfn)
        if slot is None or slot.flags & KVM_MEMSLOT_INVALID:
            return None, None, False
        hva = slot.userspace_addr + (gfn - slot.base_gfn)
        writable_slot = not slot.flags & KVM_MEM_READONLY
        if write and not writable_slot:
            return KVM_PFN_ERR_RO_FAULT, hva, False
        pfn, writable = self.hva_to_pfn(vcpu.kvm, hva, write, writable_slot)
        return pfn, hva, writable

    def mmu_notifier_retry_hva(self, kvm: Any, mmu_seq: int, hva: int) -> bool:
        lockdep_assert_held(kvm.mmu_lock)
        # The range covers every address an invalidation in progress may touch.
        if kvm.mmu_notifier_count and \
                kvm.mmu_notifier_range_start <= hva < kvm.mmu_notifier_range_end:
            return True
        return kvm.mmu_notifier_seq.value != mmu_seq

    def direct_page_fault(self, vcpu: Any, gpa: int, error_code: int, prefault: bool,
                          max_level: int, is_tdp: bool) -> int:
        kvm = vcpu.kvm
        gfn = gpa >> PAGE_SHIFT
        write = bool(error_code & PFERR_WRITE_MASK)
        mmu_seq = kvm.mmu_notifier_seq.load()
        pfn, hva, map_writable = self.try_async_pf(vcpu, prefault, gfn, gpa, write)
        if pfn is KVM_PFN_ERR_RO_FAULT:
            return RET_PF_EMULATE  # handle_abnormal_pfn(): a write to a read-only slot
        r = RET_PF_RETRY
        # A TDP MMU root is changed under the read lock, by cmpxchg.
        if self.is_tdp_mmu_root(kvm, vcpu.mmu.root_hpa):
            read_lock(kvm.mmu_lock)
        else:
            KVM_MMU_LOCK(kvm)
        if pfn is not None and self.mmu_notifier_retry_hva(kvm, mmu_seq, hva):
            sh.note("mmu_notifier_retry_hva: the fault will be retried")
            vcpu.fault_retry_spin = True
        elif self.is_tdp_mmu_root(kvm, vcpu.mmu.root_hpa):
            r = self.kvm_tdp_mmu_map(vcpu, gpa, error_code, map_writable, max_level, pfn,
                                     prefault)
        else:
            r = self._direct_map(vcpu, gpa, error_code, map_writable, max_level, pfn,
                                 prefault, is_tdp)
        if self.is_tdp_mmu_root(kvm, vcpu.mmu.root_hpa):
            read_unlock(kvm.mmu_lock)
        else:
            KVM_MMU_UNLOCK(kvm)
        return r

    # -------------------------------------------------------- MMU notifier
    def kvm_mmu_notifier_invalidate_range_start(self, kvm: Any, start: int, end: int) -> None:
        idx = srcu_read_lock(kvm.srcu)
        KVM_MMU_LOCK(kvm)
        # Faults must not install SPTEs from the old pfns of the range until _end.
        kvm.mmu_notifier_count += 1
        if kvm.mmu_notifier_count == 1:
            kvm.mmu_notifier_range_start = start
            kvm.mmu_notifier_range_end = end
        else:
            # Concurrent invalidations: the union is a superset, good enough.
            kvm.mmu_notifier_range_start = min(kvm.mmu_notifier_range_start, start)
            kvm.mmu_notifier_range_end = max(kvm.mmu_notifier_range_end, end)
        need_tlb_flush = self.kvm_unmap_hva_range(kvm, start, end)
        if need_tlb_flush or kvm.tlbs_dirty:
            self.kvm_flush_remote_tlbs(kvm)
        KVM_MMU_UNLOCK(kvm)
        srcu_read_unlock(kvm.srcu, idx)

    # ------------------------------------------------------ hva handlers
    def age_gfn_range(self, kvm: Any, slot: Any, root: kvm_mmu_page, start: int, end: int,
                      unused: Any) -> int:
        rcu_read_lock()
        young = super().age_gfn_range(kvm, slot, root, start, end, unused)
        rcu_read_unlock()
        return young

    def set_tdp_spte(self, kvm: Any, slot: Any, root: kvm_mmu_page, gfn: int, unused: int,
                     data: Any) -> int:
        rcu_read_lock()
        ret = super().set_tdp_spte(kvm, slot, root, gfn, unused, data)
        rcu_read_unlock()
        return ret

    # -------------------------------------------------------- dirty logging
    def wrprot_gfn_range(self, kvm: Any, root: kvm_mmu_page, start: int, end: int,
                         min_level: int) -> bool:
        spte_set = False
        rcu_read_lock()
        BUG_ON(min_level > PG_LEVEL_2M)
        for it in for_each_tdp_pte_min_level(tdp_iter(kvm), root, root.role.level, min_level,
                                             start, end):
            if self.tdp_mmu_iter_cond_resched(kvm, it, False):
                continue
            if not is_shadow_present_pte(it.old_spte) or \
                    not is_last_spte(it.old_spte, it.level) or \
                    not it.old_spte & PT_WRITABLE_MASK:
                continue
            new_spte = it.old_spte & ~PT_WRITABLE_MASK
            self.tdp_mmu_set_spte_no_dirty_log(kvm, it, new_spte)
            spte_set = True
        rcu_read_unlock()
        return spte_set

    def clear_dirty_gfn_range(self, kvm: Any, root: kvm_mmu_page, start: int, end: int) -> bool:
        spte_set = False
        rcu_read_lock()
        for it in self.tdp_root_for_each_leaf_pte(kvm, root, start, end):
            if self.tdp_mmu_iter_cond_resched(kvm, it, False):
                continue
            new_spte = spte_with_dirty_cleared(it.old_spte, False)
            if new_spte is None:
                continue
            self.tdp_mmu_set_spte_no_dirty_log(kvm, it, new_spte)
            spte_set = True
        rcu_read_unlock()
        return spte_set

    def clear_dirty_pt_masked(self, kvm: Any, root: kvm_mmu_page, gfn: int, mask: int,
                              wrprot: bool) -> None:
        rcu_read_lock()
        super().clear_dirty_pt_masked(kvm, root, gfn, mask, wrprot)
        rcu_read_unlock()

    def kvm_tdp_mmu_clear_dirty_pt_masked(self, kvm: Any, slot: Any, gfn: int, mask: int,
                                          wrprot: bool) -> None:
        lockdep_assert_held_write(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root(kvm):
            if kvm_mmu_page_as_id(root) != slot.as_id:
                continue
            self.clear_dirty_pt_masked(kvm, root, gfn, mask, wrprot)

    # PML, from the 5.12 series "KVM: x86/mmu: Dirty logging fixes and
    # improvements": a85863c2ec55 (PML on only while some memslot logs:
    # cpu_dirty_logging_count, KVM_REQ_UPDATE_CPU_DIRTY_LOGGING), b6e16ae5d99f
    # (no dirty bits set when logging stops: kvm_mmu_slot_set_dirty is gone),
    # a018eba53870 (the four kvm_x86_ops hooks gone, their logic in common
    # code), 6dd03800b1af (cpu_dirty_log_size a value), c3bb9a20834f (no PML
    # while L2 runs), a1419f8b5bab (the large-page write-protect folded into
    # kvm_mmu_slot_remove_write_access, which passes its level to the TDP MMU).
    def kvm_x86_cpu_dirty_log_size(self, kvm: Any) -> int:
        """``kvm_x86_ops.cpu_dirty_log_size``: PML_ENTITY_NUM, 0 without PML."""
        return PML_ENTITY_NUM if kvm.enable_pml else 0

    # Gone in 5.12: the functions that set dirty bits when logging stops
    # (b6e16ae5d99f), the large-page write-protect (a1419f8b5bab) and VMX's
    # PML hooks (a018eba53870; kvm_x86_op then finds none).
    kvm_mmu_slot_set_dirty = None
    kvm_tdp_mmu_slot_set_dirty = None
    set_dirty_gfn_range = None
    kvm_mmu_slot_largepage_remove_write_access = None
    vmx_slot_enable_log_dirty = None
    vmx_slot_disable_log_dirty = None
    vmx_flush_log_dirty = None
    vmx_enable_log_dirty_pt_masked = None
    kvm_flush_pml_buffers = None

    def vmx_secondary_exec_control_pml(self, vcpu: Any) -> bool:
        """A vCPU created while some memslot logs starts with PML on."""
        return vcpu.kvm.enable_pml and bool(vcpu.kvm.arch.cpu_dirty_logging_count)

    def kvm_check_cpu_dirty_logging_request(self, vcpu: Any) -> None:
        """``vcpu_enter_guest``'s KVM_REQ_UPDATE_CPU_DIRTY_LOGGING check.  Made
        only in PML VMs: nobody else makes the request
        (``kvm_mmu_update_cpu_dirty_logging`` returns without
        ``cpu_dirty_log_size``) and a check is a visible step."""
        if vcpu.kvm.enable_pml \
                and self.kvm_check_request(KVM_REQ_UPDATE_CPU_DIRTY_LOGGING, vcpu):
            self.vmx_update_cpu_dirty_logging(vcpu)

    def vmx_update_cpu_dirty_logging(self, vcpu: Any) -> None:
        """PML on while some memslot logs dirty pages; while L2 runs the change
        waits for the nested VM-exit."""
        if vcpu.guest_mode:
            vcpu.update_vmcs01_cpu_dirty_logging = True
            return
        vcpu.pml_enabled = bool(vcpu.kvm.arch.cpu_dirty_logging_count)

    def kvm_mmu_update_cpu_dirty_logging(self, kvm: Any, enable: bool) -> None:
        if not self.kvm_x86_cpu_dirty_log_size(kvm):
            return
        ka = kvm.arch
        if enable:
            ka.cpu_dirty_logging_count += 1
            toggled = ka.cpu_dirty_logging_count == 1
        else:
            ka.cpu_dirty_logging_count -= 1
            toggled = ka.cpu_dirty_logging_count == 0
        if toggled:
            self.kvm_make_all_cpus_request(kvm, KVM_REQ_UPDATE_CPU_DIRTY_LOGGING)
        WARN_ON_ONCE(ka.cpu_dirty_logging_count < 0)

    def kvm_mmu_slot_apply_flags(self, kvm: Any, old: Any, new: Any, change: int) -> None:
        """x86.c 5.12: the count of logging slots follows every change of the
        flag; then, for a flags-only change, stop (zap collapsible SPTEs) or
        start logging: with PML clear the leaves' dirty bits and write-protect
        huge leaves, without it write-protect everything.
        (``kvm_dirty_log_manual_protect_and_init_set`` is never true in the
        model.)"""
        log_dirty_pages = bool(new.flags & KVM_MEM_LOG_DIRTY_PAGES)
        old_flags = old.flags if old is not None else 0
        if (old_flags ^ new.flags) & KVM_MEM_LOG_DIRTY_PAGES:
            self.kvm_mmu_update_cpu_dirty_logging(kvm, log_dirty_pages)
        if change != KVM_MR_FLAGS_ONLY or new.flags & KVM_MEM_READONLY:
            return
        if WARN_ON_ONCE(not (old_flags ^ new.flags) & KVM_MEM_LOG_DIRTY_PAGES):
            return
        if not log_dirty_pages:
            self.kvm_mmu_zap_collapsible_sptes(kvm, new)
        else:
            level = PG_LEVEL_4K
            if self.kvm_x86_cpu_dirty_log_size(kvm):
                self.kvm_mmu_slot_leaf_clear_dirty(kvm, new)
                level = PG_LEVEL_2M
            self.kvm_mmu_slot_remove_write_access(kvm, new, level)

    def kvm_mmu_slot_remove_write_access(self, kvm: Any, memslot: Any, start_level: int) -> None:
        """a1419f8b5bab: the TDP MMU write-protects from ``start_level`` too."""
        KVM_MMU_LOCK(kvm)
        flush = self.slot_handle_level(kvm, memslot, self.slot_rmap_write_protect, start_level,
                                       KVM_MAX_HUGEPAGE_LEVEL, False)
        if kvm.arch.tdp_mmu_enabled:
            flush |= self.kvm_tdp_mmu_wrprot_slot(kvm, memslot, start_level)
        KVM_MMU_UNLOCK(kvm)
        if flush:
            self.kvm_arch_flush_remote_tlbs_memslot(kvm, memslot)

    def kvm_arch_mmu_enable_log_dirty_pt_masked(self, kvm: Any, slot: Any, gfn_offset: int,
                                                mask: int) -> None:
        if self.kvm_x86_cpu_dirty_log_size(kvm):
            self.kvm_mmu_clear_dirty_pt_masked(kvm, slot, gfn_offset, mask)
        else:
            self.kvm_mmu_write_protect_pt_masked(kvm, slot, gfn_offset, mask)

    def kvm_arch_sync_dirty_log(self, kvm: Any, memslot: Any) -> None:
        """a018eba53870: kick every vCPU (PML buffers reach the bitmap at their
        exits), whether or not the VM has PML (6.7's 3d30bfcbdc26 returns
        early without it; the model's kick does nothing then anyway)."""
        for vcpu in kvm.vcpus:
            self.kvm_vcpu_kick(vcpu)

    def vmx_handle_exit(self, vcpu: Any, reason: str) -> None:
        """``__vmx_handle_exit`` 5.12: no PML flush while L2 runs (c3bb9a20834f);
        the model's L2 makes no accesses, so its buffer is empty then anyway."""
        if vcpu.guest_mode and vcpu.kvm.enable_pml:
            self.take_kick_ipi(vcpu, reason)
            return
        super().vmx_handle_exit(vcpu, reason)

    def nested_vmx_vmexit(self, vcpu: Any) -> None:
        """A PML change deferred while L2 ran takes effect on L1 (a85863c2ec55)."""
        super().nested_vmx_vmexit(vcpu)
        if vcpu.update_vmcs01_cpu_dirty_logging:
            vcpu.update_vmcs01_cpu_dirty_logging = False
            self.vmx_update_cpu_dirty_logging(vcpu)

    def kvm_mmu_max_mapping_level(self, kvm: Any, slot: Any, gfn: int, pfn: int,
                                  max_level: int) -> int:
        """The largest level ``gfn`` may be mapped at (the slot's alignment and
        dirty logging, the host mapping), as ``kvm_mmu_hugepage_adjust`` asks."""
        pages = KVM_PAGES_PER_HPAGE(PG_LEVEL_2M)
        base = round_gfn_for_level(gfn, PG_LEVEL_2M)
        if slot.flags & KVM_MEM_LOG_DIRTY_PAGES or base < slot.base_gfn \
                or base + pages > slot.base_gfn + slot.npages \
                or (slot.userspace_addr - slot.base_gfn) % pages \
                or not kvm.mm.is_huge_frame(pfn):
            return PG_LEVEL_4K
        return min(max_level, PG_LEVEL_2M)

    def zap_collapsible_spte_range(self, kvm: Any, root: kvm_mmu_page, slot: Any) -> bool:
        start = slot.base_gfn
        end = start + slot.npages
        spte_set = False
        rcu_read_lock()
        for it in self.tdp_root_for_each_pte(kvm, root, start, end):
            if self.tdp_mmu_iter_cond_resched(kvm, it, spte_set):
                spte_set = False
                continue
            if not is_shadow_present_pte(it.old_spte) or not is_last_spte(it.old_spte,
                                                                          it.level):
                continue
            pfn = spte_to_pfn(it.old_spte)
            if it.level >= self.kvm_mmu_max_mapping_level(kvm, slot, it.gfn, pfn, 5):
                continue
            self.tdp_mmu_set_spte(kvm, it, 0)
            spte_set = True
        rcu_read_unlock()
        if spte_set:
            self.kvm_flush_remote_tlbs(kvm)
        return spte_set

    def kvm_tdp_mmu_zap_collapsible_sptes(self, kvm: Any, slot: Any) -> None:
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
            if kvm_mmu_page_as_id(root) != slot.as_id:
                continue
            self.zap_collapsible_spte_range(kvm, root, slot)

    def write_protect_gfn(self, kvm: Any, root: kvm_mmu_page, gfn: int) -> bool:
        rcu_read_lock()
        spte_set = super().write_protect_gfn(kvm, root, gfn)
        rcu_read_unlock()
        return spte_set

    def kvm_tdp_mmu_write_protect_gfn(self, kvm: Any, slot: Any, gfn: int) -> bool:
        lockdep_assert_held_write(kvm.mmu_lock)
        spte_set = False
        for root in self.for_each_tdp_mmu_root(kvm):
            if kvm_mmu_page_as_id(root) != slot.as_id:
                continue
            spte_set |= self.write_protect_gfn(kvm, root, gfn)
        return spte_set

    def kvm_tdp_mmu_get_walk(self, vcpu: Any, addr: int) -> list[int]:
        """A lockless walk: RCU keeps the page tables it reads alive."""
        rcu_read_lock()
        sptes = super().kvm_tdp_mmu_get_walk(vcpu, addr)
        rcu_read_unlock()
        return sptes


__all__ = ["V5_12"]
