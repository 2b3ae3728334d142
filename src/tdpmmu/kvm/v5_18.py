"""Linux 5.18's TDP MMU: era D, invalid roots zapped by a work queue, defunct roots.

Built from the stored 5.18.12 tree (``esuoyanyu/kernel-5.18``, under
``common/arch/x86/kvm/mmu/``) read against 5.17-rc5.  The 5.18.y stable
releases up to .12 carry no change to the root, zap and fault functions
modelled here (the TDP MMU fixes of 5.19 -- e.g. the volatile-bits SPTE
writes and the NX recovery changes -- are outside the modelled functions or
were not backported); the code read is taken as the release's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ..engine import cpu_relax
from ..kernel import (
    BUG,
    INIT_WORK,
    WARN_ON,
    WARN_ON_ONCE,
    WQ_CPU_INTENSIVE,
    WQ_MEM_RECLAIM,
    WQ_UNBOUND,
    WRITE_ONCE,
    alloc_workqueue,
    call_rcu,
    cond_resched_rwlock_read,
    cond_resched_rwlock_write,
    destroy_workqueue,
    flush_workqueue,
    list_add,
    list_del,
    list_del_rcu,
    list_empty,
    list_for_each_entry,
    list_move,
    lockdep_assert_held,
    lockdep_assert_held_read,
    lockdep_assert_held_write,
    queue_work,
    rcu_barrier,
    rcu_read_lock,
    rcu_read_unlock,
    read_lock,
    read_unlock,
    refcount_dec_and_test,
    refcount_inc_not_zero,
    refcount_read,
    refcount_set,
    spin_lock,
    spin_unlock,
    srcu_read_lock,
    srcu_read_unlock,
    work_struct,
    xchg,
)
from ..kernel.list import (
    list_first_or_null_rcu,
    list_for_each_entry_safe_reverse,
    list_next_or_null_rcu,
)
from . import fidelity
from . import shared as sh
from .mmu import KVM_MMU_ROOT_CURRENT, KVM_MMU_ROOT_PREVIOUS
from .mmu_legacy import BATCH_ZAP_PAGES
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .spte import (
    ACC_ALL,
    KVM_PAGES_PER_HPAGE,
    PAGE_SHIFT,
    PG_LEVEL_4K,
    PT64_ENT_PER_PAGE,
    PT64_ROOT_MAX_LEVEL,
    REMOVED_SPTE,
    SET_SPTE_WRITE_PROTECTED_PT,
    is_dirty_spte,
    is_last_spte,
    is_mmio_spte,
    is_removed_spte,
    is_shadow_present_pte,
    make_mmio_spte,
    make_spte,
    spte_to_pfn,
)
from .structs import (
    INVALID_PAGE,
    KVM_ADDRESS_SPACE_NUM,
    KVM_MMU_NUM_PREV_ROOTS,
    KVM_REQ_MMU_FREE_OBSOLETE_ROOTS,
    KVM_REQ_TLB_FLUSH,
    KVM_REQ_TLB_FLUSH_CURRENT,
    kvm_mmu_page,
    kvm_mmu_root_info,
)
from .tdp_iter import for_each_tdp_pte_min_level, spte_to_child_pt, tdp_iter, to_shadow_page
from .tdp_mmu import RET_PF_EMULATE, RET_PF_RETRY, RET_PF_SPURIOUS, kvm_mmu_page_as_id
from .v5_13 import role_invalid
from .v5_15 import kvm_gfn_range
from .v5_17 import V5_17

__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions

PG_LEVEL_1G = 3


class V5_18(V5_17):
    """Linux 5.18 (tree 5.18.12): era D.  ``kvm_tdp_mmu_get_root`` is a plain
    ``refcount_inc_not_zero``; readers choose with ``only_valid`` whether to
    take references to invalid roots (``for_each_valid_tdp_mmu_root_yield_safe``
    for the read-locked slot walks; the write-locked zaps walk every root).
    ``kvm_tdp_mmu_invalidate_all_roots`` takes a reference on each valid root,
    marks it invalid and queues its zap on the VM's ``tdp_mmu_zap_wq``; the
    worker zaps it under the read lock and puts that reference;
    ``kvm_tdp_mmu_zap_invalidated_roots`` only flushes the queue.  The last
    put of a still valid root makes it *defunct*: marked invalid, its count
    set back to 1 and its zap queued, so the worker's put frees it; the last
    put of an invalid root only unlinks it and frees it through RCU.  Memslot
    updates ask vCPUs to free obsolete roots
    (``KVM_REQ_MMU_FREE_OBSOLETE_ROOTS``) instead of reloading.

    Mainline commits (5.18 merge window) that make it differ from v5.17:

    - d62007edf01f KVM: x86/mmu: Zap _all_ roots when unmapping gfn range in TDP MMU
    - 614f6970aa70 KVM: x86/mmu: do not allow readers to acquire references to
      invalid roots (``only_valid``; get without the invalid check)
    - 22b94c4b63eb KVM: x86/mmu: Zap invalidated roots via asynchronous worker
    - efd995dae5eb KVM: x86/mmu: Zap defunct roots via asynchronous worker
    - 1b6043e8e584 KVM: x86/mmu: Zap roots in two passes to avoid inducing RCU
      stalls (``tdp_mmu_zap_root``: 1G level, then the root level)
    - acbda82a81c7 KVM: x86/mmu: Require mmu_lock be held for write to zap TDP
      MMU range, and f47e5bbbc92f KVM: x86/mmu: Zap only TDP MMU leafs in zap
      range and mmu_notifier unmap (``tdp_mmu_zap_leafs`` /
      ``kvm_tdp_mmu_zap_leafs``)
    - KVM: x86/mmu: Use common TDP MMU zap helper for MMU notifier unmap hook
    - bd29677952fa KVM: x86/mmu: Do remote TLB flush before dropping RCU in TDP
      MMU resched
    - bb95dfb9e2df KVM: x86/mmu: Defer TLB flush to caller when freeing TDP MMU
      shadow pages (``handle_removed_pt`` without its flush; the fault's flush
      in ``tdp_mmu_map_handle_target_level`` when a huge leaf replaces a page
      table; the contract ``properties.tlb`` checks)
    - 0f53dfa34efa KVM: x86/mmu: Rename handle_removed_tdp_mmu_page() to
      handle_removed_pt()
    - c8e5a0d0e9bc KVM: x86/mmu: Check for !leaf=>leaf, not PFN change, in TDP
      MMU SP removal (``_handle_changed_spte``)
    - 77c8cd6b85af KVM: x86/mmu: Skip remote TLB flush when zapping all of TDP MMU
    - 527d5cd7eece KVM: x86/mmu: Zap only obsolete roots if a root shadow page
      is zapped (``KVM_REQ_MMU_FREE_OBSOLETE_ROOTS``,
      ``kvm_mmu_free_obsolete_roots``)
    - b28cb0cd2c5e KVM: x86/mmu: Update number of zapped pages even if page
      list is stable (legacy MMU: ``kvm_zap_obsolete_pages`` yields between
      batches of plain pages too)
    - 5499ea73e7db KVM: x86/mmu: look for a cached PGD when going from 32-bit
      to 64-bit, with the 5.18 split of ``cached_root_available`` into
      ``cached_root_find_and_keep_current`` / ``_without_current`` (as in the
      stored 5.18.12 tree; the split's own hash not checked)
    - KVM: x86/mmu: Return -EBUSY (and the current SPTE) from a failed
      ``tdp_mmu_set_spte_atomic``: the model keeps a bool and re-reads

    (Titles from the 5.18 pull request; hashes where the oracle's sources
    gave them, and those of the TLB-flush commits from a stored copy of
    mainline's log of the 5.18 merge, whose bb95dfb9e2df also matches a
    later ``Fixes:`` tag.)  The 5.18 merge window first zapped only leaves in
    ``kvm_zap_gfn_range`` (cf3e26427c08), then reverted it (873dd122172f)
    with a flush before ``zap_gfn_range`` dropped RCU (fcb93eb6d09d); KVM's
    next 5.18 pull (tag for-linus of 2022-04-02) brought the leaf-only zap back
    (f47e5bbbc92f, "Zap only TDP MMU leafs in zap range and mmu_notifier
    unmap"), which is what the release and the 5.18.12 tree have, and what is
    modelled: ``tdp_mmu_zap_leafs`` removes no page table, so its flush is
    owed by ``mmu_lock``'s release, not by RCU's.
    Not modelled from bb95dfb9e2df: ``kvm_tdp_mmu_zap_sp`` and the RCU
    section of ``kvm_recover_nx_lpages`` (NX recovery is left out).  The
    model's page-table helpers keep their 5.12 names
    (``tdp_mmu_unlink_page`` for c298a30c2821's ``tdp_mmu_unlink_sp``).

    Simplifications: ``tdp_mmu_zap_root``'s first pass is at the 1G level or
    the root level, whichever is lower (the model's roots have 2-4 levels,
    the kernel's 4 or 5); ``alloc_workqueue`` never fails (see the oracle's
    syzbot row); one kernel worker thread runs the queue (``kworker_threads``;
    the kernel's unbound pool may run zaps of several roots at once: with one
    root per address space the scenarios queue at most two).  Everything
    ``V5_17`` lists.
    """

    name = "v5.18"
    summary = "Linux 5.18: invalid and defunct roots zapped by a work queue (tdp_mmu_zap_wq)"

    # Gone in 5.18 (the 5.17-rc5 tree has them, the 5.18.12 tree none): the
    # range zap split into tdp_mmu_zap_leafs and tdp_mmu_zap_root with its
    # wrappers, handle_removed_tdp_mmu_page renamed handle_removed_pt, and
    # next_invalidated_root with the synchronous zap of invalidated roots
    # (the work queue above).
    zap_gfn_range = None
    kvm_tdp_mmu_zap_gfn_range = None
    _kvm_tdp_mmu_zap_gfn_range = None
    handle_removed_tdp_mmu_page = None
    next_invalidated_root = None

    # Promises the properties check (properties.root_lifecycle): the WARN in
    # kvm_tdp_mmu_invalidate_all_roots ("Because mmu_lock is held for write,
    # it should be impossible to observe a root with zero refcount"), and
    # kvm_mmu_zap_all_fast's "all SPTEs must be dropped before returning to
    # the caller" (both kept until 6.3; the latter to 6.9).
    promises_no_zero_count_root_under_write_lock = True
    promises_invalidated_roots_zapped = True

    # bb95dfb9e2df: a removed page table's flush is its remover's, due before
    # the caller drops RCU; invalid roots and zap_all are zapped without one
    # (tdp_mmu_zap_root_work's and kvm_tdp_mmu_zap_all's comments).  See
    # properties.tlb.
    tlb_flush_contract = "before-unlock-valid-root"

    kworker_threads = 1

    def lock_contract(self, kvm: Any) -> dict[str, Any]:
        """5.18: a root's role word is changed by ``xchg`` in
        ``kvm_tdp_root_mark_invalid``, from a put that may hold ``mmu_lock``
        only for read (the defunct path); other role changes hold it for
        write."""
        contract = super().lock_contract(kvm)
        contract["kvm_mmu_page.role"] = (kvm.mmu_lock, False)
        return contract

    # ------------------------------------------------------------ VM init
    def kvm_mmu_init_tdp_mmu(self, kvm: Any) -> None:
        # The work queue exists only for a VM that runs the TDP MMU: it is
        # allocated after the module parameter's check (tdp_mmu=0: none).
        if not self.is_tdp_mmu_enabled():
            super().kvm_mmu_init_tdp_mmu(kvm)
            return
        wq = alloc_workqueue("kvm", WQ_UNBOUND | WQ_MEM_RECLAIM | WQ_CPU_INTENSIVE, 0)
        super().kvm_mmu_init_tdp_mmu(kvm)
        kvm.arch.tdp_mmu_zap_wq = wq

    def kvm_mmu_uninit_tdp_mmu(self, kvm: Any) -> None:
        if not kvm.arch.tdp_mmu_enabled:
            return
        destroy_workqueue(kvm.arch.tdp_mmu_zap_wq)
        WARN_ON(not list_empty(kvm.arch.tdp_mmu_pages))
        WARN_ON(not list_empty(kvm.arch.tdp_mmu_roots))
        rcu_barrier()

    # ---------------------------------------------------------- zap work
    def tdp_mmu_zap_root_work(self, work: work_struct) -> None:
        root = work.owner  # container_of(work, struct kvm_mmu_page, tdp_mmu_async_work)
        kvm = root.tdp_mmu_async_data
        read_lock(kvm.mmu_lock)
        # The root has a reference (invalidate_all_roots' or the defunct
        # path's) that only this work puts, so it is alive here.
        self.tdp_mmu_zap_root(kvm, root, True)
        self.kvm_tdp_mmu_put_root(kvm, root, True)
        read_unlock(kvm.mmu_lock)

    def tdp_mmu_schedule_zap_root(self, kvm: Any, root: kvm_mmu_page) -> None:
        root.tdp_mmu_async_data = kvm
        work = root.__dict__.get("tdp_mmu_async_work")
        if work is None:  # the work_struct embedded in the page (made on first use)
            work = root.tdp_mmu_async_work = work_struct(root)

        def tdp_mmu_zap_root_work(w: work_struct) -> None:
            self.tdp_mmu_zap_root_work(w)
        INIT_WORK(work, tdp_mmu_zap_root_work)
        queue_work(kvm.arch.tdp_mmu_zap_wq, work)

    # --------------------------------------------------------- root refs
    def kvm_tdp_mmu_get_root(self, kvm: Any, root: kvm_mmu_page) -> bool:
        """614f6970aa70: no invalid check (``only_valid`` callers make it)."""
        return refcount_inc_not_zero(root.tdp_mmu_root_count)

    def kvm_tdp_root_mark_invalid(self, page: kvm_mmu_page) -> bool:
        """Set ``role.invalid`` by ``xchg`` of the role word; the old value."""
        was_invalid = bool(xchg(page.role_invalid, True))
        page.role = replace(page.role, invalid=1)
        return was_invalid

    def kvm_tdp_mmu_put_root(self, kvm: Any, root: kvm_mmu_page, shared: bool) -> None:
        self.kvm_lockdep_assert_mmu_lock_held(kvm, shared)
        if not refcount_dec_and_test(root.tdp_mmu_root_count):
            return
        WARN_ON(not root.tdp_mmu_page)
        # efd995dae5eb: the last reference to a valid root makes it defunct:
        # invalid, with one reference that its queued zap will put.
        if not self.kvm_tdp_root_mark_invalid(root):
            refcount_set(root.tdp_mmu_root_count, 1)
            sh.note(f"{root.name} defunct: zap queued")
            self.tdp_mmu_schedule_zap_root(kvm, root)
            return
        spin_lock(kvm.arch.tdp_mmu_pages_lock)
        list_del_rcu(root.link)
        spin_unlock(kvm.arch.tdp_mmu_pages_lock)
        sh.note(f"free {root.name}")
        call_rcu(root.rcu_head, self.tdp_mmu_free_sp_rcu_callback(kvm))

    # ----------------------------------------------------- root iterators
    def tdp_mmu_next_root(self, kvm: Any, prev_root: kvm_mmu_page | None,
                          shared: bool = False, only_valid: bool = False
                          ) -> kvm_mmu_page | None:
        head = kvm.arch.tdp_mmu_roots
        rcu_read_lock()
        if prev_root is not None:
            next_root = list_next_or_null_rcu(head, prev_root.link)
        else:
            next_root = list_first_or_null_rcu(head)
        while next_root is not None:
            if (not only_valid or not role_invalid(next_root)) and \
                    self.kvm_tdp_mmu_get_root(kvm, next_root):
                break
            next_root = list_next_or_null_rcu(head, next_root.link)
        rcu_read_unlock()
        if prev_root is not None:
            self.kvm_tdp_mmu_put_root(kvm, prev_root, shared)
        return next_root

    def _for_each_tdp_mmu_root_yield_safe(self, kvm: Any, as_id: int, shared: bool,
                                          only_valid: bool) -> Iterator[kvm_mmu_page]:
        """``__for_each_tdp_mmu_root_yield_safe``, with its lockdep assertion at
        every root."""
        root = self.tdp_mmu_next_root(kvm, None, shared, only_valid)
        while root is not None:
            self.kvm_lockdep_assert_mmu_lock_held(kvm, shared)
            if kvm_mmu_page_as_id(root) == as_id:
                yield root
            root = self.tdp_mmu_next_root(kvm, root, shared, only_valid)

    def for_each_valid_tdp_mmu_root_yield_safe(self, kvm: Any, as_id: int,
                                               shared: bool) -> Iterator[kvm_mmu_page]:
        return self._for_each_tdp_mmu_root_yield_safe(kvm, as_id, shared, True)

    def for_each_tdp_mmu_root_yield_safe(self, kvm: Any,  # type: ignore[override]
                                         as_id: int) -> Iterator[kvm_mmu_page]:
        """Every root, invalid ones included, under the write lock."""
        return self._for_each_tdp_mmu_root_yield_safe(kvm, as_id, False, False)

    def for_each_tdp_mmu_root(self, kvm: Any, as_id: int | None = None
                              ) -> Iterator[kvm_mmu_page]:
        """5.18: a plain ``list_for_each_entry`` that asserts the write lock."""
        for root in list_for_each_entry(kvm.arch.tdp_mmu_roots):
            self.kvm_lockdep_assert_mmu_lock_held(kvm, False)
            if as_id is None or kvm_mmu_page_as_id(root) == as_id:
                yield root

    # ------------------------------------------------------------- yield
    def tdp_mmu_iter_cond_resched(self, kvm: Any, it: tdp_iter, flush: bool = False,
                                  shared: bool = False) -> bool:
        """Flush before dropping RCU (5.18)."""
        WARN_ON(it.yielded)
        if it.next_last_level_gfn == it.yielded_gfn:
            return False
        if self.need_resched(kvm, it):
            if flush:
                self.kvm_flush_remote_tlbs(kvm)
            rcu_read_unlock()
            if shared:
                cond_resched_rwlock_read(kvm.mmu_lock)
            else:
                cond_resched_rwlock_write(kvm.mmu_lock)
            rcu_read_lock()
            WARN_ON(it.gfn > it.next_last_level_gfn)
            it.yielded = True
        return it.yielded

    # ------------------------------------------------------- SPTE changes
    def handle_removed_pt(self, kvm: Any, sp: kvm_mmu_page, shared: bool) -> None:
        """0f53dfa34efa's name for ``handle_removed_tdp_mmu_page``, and
        bb95dfb9e2df: no TLB flush here any more.  The page table is freed by
        an RCU callback, so the caller -- who holds ``rcu_read_lock`` -- owes
        the flush and must do it before it drops RCU ("Flows that can remove
        SPs must service pending TLB flushes prior to dropping RCU
        protection", 5.18's ``tdp_iter.h``); until then a vCPU may still hold
        TLB entries cached through the unlinked table.  Callers that zap an
        invalid root or the whole VM (``tdp_mmu_zap_root``) flush not at all
        (see ``properties.tlb``)."""
        level = sp.role.level
        base_gfn = sp.gfn
        self.tdp_mmu_unlink_page(kvm, sp, shared)  # tdp_mmu_unlink_sp (c298a30c2821)
        for i in range(PT64_ENT_PER_PAGE):
            gfn = base_gfn + i * KVM_PAGES_PER_HPAGE(level - 1)
            if shared:
                # Another thread's fault may own a frozen SPTE here: wait
                # until it sets it back, then freeze it ourselves.
                while True:
                    old_spte = sh.xchg_spte(sp, i, REMOVED_SPTE)
                    if not is_removed_spte(old_spte):
                        break
                    cpu_relax()
            else:
                old_spte = sp.spt[i]
                if not is_shadow_present_pte(old_spte):
                    continue
                sh.write_spte(sp, i, REMOVED_SPTE)
            self.handle_changed_spte(kvm, kvm_mmu_page_as_id(sp), gfn, old_spte,
                                     REMOVED_SPTE, level - 1, shared)
        call_rcu(sp.rcu_head, self.tdp_mmu_free_sp_rcu_callback(kvm))

    def _handle_changed_spte(self, kvm: Any, as_id: int, gfn: int, old_spte: int,
                              new_spte: int, level: int, shared: bool = False) -> None:
        """``__handle_changed_spte``: c8e5a0d0e9bc removes the child page table
        when a non-leaf SPTE becomes a leaf or non-present, and WARNs on a
        non-leaf whose pfn changes; it calls ``handle_removed_pt``.  Not
        modelled: ``check_spte_writable_invariants`` (a WARN on the Host- and
        MMU-writable bits, which the model's SPTEs do not carry apart) and
        ``kvm_update_page_stats``."""
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
        if was_leaf and is_dirty_spte(old_spte) and \
                (not is_present or not is_dirty_spte(new_spte) or pfn_changed):
            pass  # kvm_set_pfn_dirty(): host page state, not modelled
        if was_present and not was_leaf and \
                (is_leaf or not is_present or WARN_ON_ONCE(pfn_changed)):
            self.handle_removed_pt(kvm, spte_to_child_pt(kvm, old_spte, level), shared)

    # ---------------------------------------------------------- page fault
    def tdp_mmu_map_handle_target_level(self, vcpu: Any, write: bool, map_writable: bool,
                                        it: tdp_iter, pfn: int | None, prefault: bool) -> int:
        """bb95dfb9e2df: a fault that replaces a page table by a huge leaf
        flushes the TLBs itself (``handle_removed_pt`` no longer does), before
        ``kvm_tdp_mmu_map`` drops RCU.  The rest is the inherited model's
        (its return value included)."""
        kvm = vcpu.kvm
        make_spte_ret = 0
        ret = RET_PF_RETRY  # the inherited model's return value for a fixed fault
        if pfn is None:  # is_noslot_pfn()
            new_spte = make_mmio_spte(it.gfn, self.kvm_memslots_generation(kvm, vcpu), ACC_ALL)
        else:
            make_spte_ret, new_spte = make_spte(it.level, pfn, ACC_ALL, prefault, map_writable,
                                                False)
        if new_spte == it.old_spte:
            ret = RET_PF_SPURIOUS
        elif not self.tdp_mmu_set_spte_atomic(kvm, it, new_spte):
            return RET_PF_RETRY
        elif is_shadow_present_pte(it.old_spte) and not is_last_spte(it.old_spte, it.level):
            self.kvm_flush_remote_tlbs_with_address(kvm, it.sp.gfn,
                                                    KVM_PAGES_PER_HPAGE(it.level + 1))
        if make_spte_ret & SET_SPTE_WRITE_PROTECTED_PT:
            if write:
                ret = RET_PF_EMULATE
            self.kvm_make_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu)
        if is_mmio_spte(new_spte):
            ret = RET_PF_EMULATE
        return ret

    # --------------------------------------------------------------- zap
    def _tdp_mmu_zap_root(self, kvm: Any, root: kvm_mmu_page, shared: bool,
                          zap_level: int) -> None:
        """``__tdp_mmu_zap_root``: zap every present SPTE at ``zap_level``."""
        end = self.max_gfn(kvm)
        for it in for_each_tdp_pte_min_level(tdp_iter(kvm), root, root.role.level, zap_level,
                                             0, end):
            while True:  # retry:
                if self.tdp_mmu_iter_cond_resched(kvm, it, False, shared):
                    break
                if not is_shadow_present_pte(it.old_spte):
                    break
                if it.level > zap_level:
                    break
                if not shared:
                    self.tdp_mmu_set_spte(kvm, it, 0)
                elif not self.tdp_mmu_set_spte_atomic_no_dirty_log(kvm, it, 0):
                    self._reread_for_retry(kvm, it)
                    continue  # goto retry
                break

    def tdp_mmu_zap_root(self, kvm: Any, root: kvm_mmu_page, shared: bool) -> None:
        WARN_ON_ONCE(not refcount_read(root.tdp_mmu_root_count))
        self.kvm_lockdep_assert_mmu_lock_held(kvm, shared)
        rcu_read_lock()
        # Two passes: the 1G level first, so no single step frees a huge
        # subtree, then the root level (see the class docstring for the
        # model's small roots).
        self._tdp_mmu_zap_root(kvm, root, shared, min(PG_LEVEL_1G, root.role.level))
        self._tdp_mmu_zap_root(kvm, root, shared, root.role.level)
        rcu_read_unlock()

    def tdp_mmu_zap_leafs(self, kvm: Any, root: kvm_mmu_page, start: int, end: int,
                          can_yield: bool, flush: bool) -> bool:
        end = min(end, self.max_gfn(kvm))
        lockdep_assert_held_write(kvm.mmu_lock)
        rcu_read_lock()
        for it in for_each_tdp_pte_min_level(tdp_iter(kvm), root, root.role.level,
                                             PG_LEVEL_4K, start, end):
            if can_yield and self.tdp_mmu_iter_cond_resched(kvm, it, flush, False):
                flush = False
                continue
            if not is_shadow_present_pte(it.old_spte) or \
                    not is_last_spte(it.old_spte, it.level):
                continue
            self.tdp_mmu_set_spte(kvm, it, 0)
            flush = True
        rcu_read_unlock()
        return flush

    def kvm_tdp_mmu_zap_leafs(self, kvm: Any, as_id: int, start: int, end: int,
                              can_yield: bool, flush: bool) -> bool:
        """d62007edf01f: every root, invalid ones included."""
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm, as_id):
            flush = self.tdp_mmu_zap_leafs(kvm, root, start, end, can_yield, flush)
        return flush

    def kvm_tdp_mmu_zap_all(self, kvm: Any) -> None:
        """No TLB flush: only VM destruction and the mm's exit come here, when
        no vCPU can run."""
        for i in range(KVM_ADDRESS_SPACE_NUM):
            for root in self.for_each_tdp_mmu_root_yield_safe(kvm, i):
                self.tdp_mmu_zap_root(kvm, root, False)

    def kvm_tdp_mmu_zap_invalidated_roots(self, kvm: Any) -> None:
        """22b94c4b63eb: wait for the zaps queued by invalidate_all_roots."""
        flush_workqueue(kvm.arch.tdp_mmu_zap_wq)

    def kvm_tdp_mmu_invalidate_all_roots(self, kvm: Any) -> None:
        lockdep_assert_held_write(kvm.mmu_lock)
        for root in list_for_each_entry(kvm.arch.tdp_mmu_roots):
            if not role_invalid(root) and \
                    not WARN_ON_ONCE(not self.kvm_tdp_mmu_get_root(kvm, root)):
                root.role = replace(root.role, invalid=1)
                WRITE_ONCE(root.role_invalid, True)
                self.tdp_mmu_schedule_zap_root(kvm, root)

    def kvm_tdp_mmu_unmap_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range,
                                    flush: bool) -> bool:
        return self.kvm_tdp_mmu_zap_leafs(kvm, gfn_range.slot.as_id, gfn_range.start,
                                          gfn_range.end, gfn_range.may_block, flush)

    # mmu.c
    def kvm_memslots_have_rmaps(self, kvm: Any) -> bool:
        """5.14+: rmaps exist unless the TDP MMU is on and no shadow root was
        ever allocated (the model has no nested shadow roots: with the TDP
        MMU there are none)."""
        return not kvm.arch.tdp_mmu_enabled

    def _kvm_zap_rmaps(self, kvm: Any, gfn_start: int, gfn_end: int) -> bool:
        """``__kvm_zap_rmaps`` (5.17, as in the 5.18.12 tree): the legacy MMU's
        part of ``kvm_zap_gfn_range``, where rmaps exist.  The model's
        ``slot_handle_level_range`` keeps 5.10's form and flushes before it
        returns (5.15's hands the flush to the caller; both flush before
        ``mmu_lock`` is dropped), so this returns False."""
        if not self.kvm_memslots_have_rmaps(kvm):
            return False
        self.kvm_zap_gfn_range_rmaps(kvm, gfn_start, gfn_end)
        return False

    def kvm_zap_gfn_range(self, kvm: Any, gfn_start: int, gfn_end: int) -> None:
        if WARN_ON_ONCE(gfn_end <= gfn_start):
            return
        KVM_MMU_LOCK(kvm)
        flush = self._kvm_zap_rmaps(kvm, gfn_start, gfn_end)
        if kvm.arch.tdp_mmu_enabled:
            for i in range(KVM_ADDRESS_SPACE_NUM):
                flush = self.kvm_tdp_mmu_zap_leafs(kvm, i, gfn_start, gfn_end, True, flush)
        if flush:
            self.kvm_flush_remote_tlbs_with_address(kvm, gfn_start, gfn_end - gfn_start)
        KVM_MMU_UNLOCK(kvm)

    def kvm_mmu_zap_all_fast(self, kvm: Any) -> None:
        lockdep_assert_held(kvm.slots_lock)
        KVM_MMU_LOCK(kvm)
        kvm.arch.mmu_valid_gen = 1 - kvm.arch.mmu_valid_gen
        if kvm.arch.tdp_mmu_enabled:
            self.kvm_tdp_mmu_invalidate_all_roots(kvm)
        self.kvm_make_all_cpus_request(kvm, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS)
        self.kvm_zap_obsolete_pages(kvm)
        KVM_MMU_UNLOCK(kvm)
        if kvm.arch.tdp_mmu_enabled:
            self.kvm_tdp_mmu_zap_invalidated_roots(kvm)

    # ------------------------------------------------ read-locked slot walks
    def kvm_tdp_mmu_zap_collapsible_sptes(self, kvm: Any, slot: Any) -> None:
        for root in self.for_each_valid_tdp_mmu_root_yield_safe(kvm, slot.as_id, False):
            self.zap_collapsible_spte_range(kvm, root, slot)

    def kvm_tdp_mmu_wrprot_slot(self, kvm: Any, slot: Any, min_level: int) -> bool:
        spte_set = False
        lockdep_assert_held_read(kvm.mmu_lock)
        for root in self.for_each_valid_tdp_mmu_root_yield_safe(kvm, slot.as_id, True):
            spte_set |= self.wrprot_gfn_range(kvm, root, slot.base_gfn,
                                              slot.base_gfn + slot.npages, min_level)
        return spte_set

    def kvm_tdp_mmu_clear_dirty_slot(self, kvm: Any, slot: Any) -> bool:
        spte_set = False
        lockdep_assert_held_read(kvm.mmu_lock)
        for root in self.for_each_valid_tdp_mmu_root_yield_safe(kvm, slot.as_id, True):
            spte_set |= self.clear_dirty_gfn_range(kvm, root, slot.base_gfn,
                                                   slot.base_gfn + slot.npages)
        return spte_set

    # ------------------------------------------- legacy MMU (tdp_mmu=0)
    def mmu_free_root_page(self, kvm: Any, mmu: Any, invalid_list: Any = None) -> None:
        """5.13's, with the 5.18.12 tree's ``WARN_ON(!sp)`` (a root hpa with no
        shadow page is only ever a special root; the model has none, so the
        WARN names a root page freed under the vCPU).  Not in 5.17-rc5;
        hash not in the sources read."""
        if mmu.root_hpa == INVALID_PAGE:
            return
        sp = to_shadow_page(kvm, mmu.root_hpa >> PAGE_SHIFT)
        if WARN_ON(sp is None):
            return
        if sp.tdp_mmu_page:
            self.kvm_tdp_mmu_put_root(kvm, sp, False)
        else:
            sp.root_count -= 1
            sh.note(f"put {sp.name} -> {sp.root_count}")
            if not sp.root_count and sp.role.invalid:
                self.kvm_mmu_prepare_zap_page(kvm, sp, invalid_list)
        mmu.root_hpa = INVALID_PAGE

    def _kvm_mmu_prepare_zap_page(self, kvm: Any, sp: Any, invalid_list: Any
                                  ) -> tuple[bool, int]:
        """527d5cd7eece (5.18): zapping a legacy root still in use asks every
        vCPU to free its obsolete roots (``KVM_REQ_MMU_FREE_OBSOLETE_ROOTS``)
        instead of reloading them all (``KVM_REQ_MMU_RELOAD`` is gone), and
        makes the request only after ``role.invalid`` is set, so a vCPU that
        sees the request also sees the root as invalid (``is_obsolete_root``
        reads the role without ``mmu_lock``).  As in the stored 5.18.12 tree's
        ``__kvm_mmu_prepare_zap_page``."""
        nr_zapped = 0  # mmu_zap_unsync_children: a direct MMU has no unsync pages
        kvm.arch.prepare_zap_in_progress = True  # model only: see MmuLegacy's
        nr_zapped += self.kvm_mmu_page_unlink_children(kvm, sp, invalid_list)
        self.kvm_mmu_unlink_parents(kvm, sp)
        kvm.arch.prepare_zap_in_progress = False
        list_unstable = bool(nr_zapped)
        zapped_root = False
        if not sp.root_count:
            nr_zapped += 1  # count self
            if sp.role.invalid:
                list_add(sp.link, invalid_list)
            else:
                list_move(sp.link, invalid_list)
        else:
            # Freed when root_count drops to zero (mmu_free_root_page).
            list_del(sp.link)
            sh.note(f"{sp.name} is a root in use (root_count {sp.root_count}): "
                    "unlinked, freed at its last put")
            zapped_root = not self.is_obsolete_sp(kvm, sp)
        sp.role = replace(sp.role, invalid=1)
        if zapped_root:
            self.kvm_make_all_cpus_request(kvm, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS)
        return list_unstable, nr_zapped

    def kvm_zap_obsolete_pages(self, kvm: Any) -> None:
        """b28cb0cd2c5e KVM: x86/mmu: Update number of zapped pages even if
        page list is stable (5.18, in the 5.18.12 tree; Cc stable): every
        zapped page counts towards the batch, so the walk yields between
        batches."""
        batch = 0
        restart = True
        while restart:
            restart = False
            for sp in list_for_each_entry_safe_reverse(kvm.arch.active_mmu_pages):
                if not self.is_obsolete_sp(kvm, sp):
                    break
                if WARN_ON(sp.role.invalid):
                    continue
                if batch >= BATCH_ZAP_PAGES and self.cond_resched_mmu_lock(kvm):
                    batch = 0
                    restart = True
                    break
                unstable, nr_zapped = self._kvm_mmu_prepare_zap_page(
                    kvm, sp, kvm.arch.zapped_obsolete_pages)
                batch += nr_zapped
                if unstable:
                    restart = True
                    break
        self.kvm_mmu_commit_zap_page(kvm, kvm.arch.zapped_obsolete_pages)

    # ------------------------------------------------------- vCPU requests
    def is_obsolete_root(self, kvm: Any, root_hpa: int) -> bool:
        if root_hpa == INVALID_PAGE:
            return False
        sp = to_shadow_page(kvm, root_hpa >> PAGE_SHIFT)
        return sp is None or self.is_obsolete_sp(kvm, sp)

    def _kvm_mmu_free_obsolete_roots(self, vcpu: Any, mmu: Any) -> None:
        """``__kvm_mmu_free_obsolete_roots``: the current and the cached roots
        that are obsolete."""
        roots_to_free = 0
        if self.is_obsolete_root(vcpu.kvm, mmu.root_hpa):
            roots_to_free |= KVM_MMU_ROOT_CURRENT
        for i in range(KVM_MMU_NUM_PREV_ROOTS):
            if self.is_obsolete_root(vcpu.kvm, mmu.prev_roots[i].hpa):
                roots_to_free |= KVM_MMU_ROOT_PREVIOUS(i)
        if roots_to_free:
            self.kvm_mmu_free_roots(vcpu, mmu, roots_to_free)

    def kvm_mmu_free_obsolete_roots(self, vcpu: Any) -> None:
        """Both MMUs: L1's roots and the nested EPT ones."""
        self._kvm_mmu_free_obsolete_roots(vcpu, vcpu.root_mmu)
        self._kvm_mmu_free_obsolete_roots(vcpu, vcpu.guest_mmu)

    def vcpu_enter_guest(self, vcpu: Any, program: list[Any], pc: int) -> int:
        """x86.c 5.18: KVM_REQ_MMU_RELOAD is gone; obsolete roots are freed."""
        kvm = vcpu.kvm
        if self.kvm_request_pending(vcpu):
            if self.kvm_check_request(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, vcpu):
                self.kvm_mmu_free_obsolete_roots(vcpu)
            if self.kvm_check_request(KVM_REQ_TLB_FLUSH, vcpu):
                self.kvm_vcpu_flush_tlb_all(vcpu)
            if self.kvm_check_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu):
                self.kvm_vcpu_flush_tlb_current(vcpu)
            self.kvm_check_cpu_dirty_logging_request(vcpu)
        if self.kvm_mmu_reload(vcpu):
            return pc
        srcu_read_unlock(kvm.srcu, vcpu.srcu_idx)
        vcpu.last_vmentry_cpu = 0  # the vCPU has run (kvm_vcpu_has_run)
        exit_, pc = self.guest_run(vcpu, program, pc)
        vcpu.srcu_idx = srcu_read_lock(kvm.srcu)
        return self.handle_exit(vcpu, exit_, pc)


    # ------------------------------------------------- fast root switch
    def cached_root_find_and_keep_current(self, vcpu: Any, mmu: Any, new_pgd: int,
                                          new_role: Any) -> bool:
        """The current root goes into the cache (MRU); if no entry is usable,
        the LRU one, now current, is freed here."""
        kvm = vcpu.kvm
        if self.is_root_usable(kvm, mmu.root, new_pgd, new_role):
            return True
        for i in range(KVM_MMU_NUM_PREV_ROOTS):
            cur = mmu.root
            mmu.set_root(mmu.prev_roots[i])
            mmu.prev_roots[i] = cur
            if self.is_root_usable(kvm, mmu.root, new_pgd, new_role):
                return True
        self.kvm_mmu_free_roots(vcpu, mmu, KVM_MMU_ROOT_CURRENT)
        return False

    def cached_root_find_without_current(self, vcpu: Any, mmu: Any, new_pgd: int,
                                         new_role: Any) -> bool:
        kvm = vcpu.kvm
        for i in range(KVM_MMU_NUM_PREV_ROOTS):
            if self.is_root_usable(kvm, mmu.prev_roots[i], new_pgd, new_role):
                break
        else:
            return False
        cur = mmu.root
        mmu.set_root(mmu.prev_roots[i])
        mmu.prev_roots[i] = cur
        for j in range(i, KVM_MMU_NUM_PREV_ROOTS - 1):  # bubble up the rest
            mmu.prev_roots[j] = mmu.prev_roots[j + 1]
        mmu.prev_roots[KVM_MMU_NUM_PREV_ROOTS - 1] = kvm_mmu_root_info()
        return True

    def fast_pgd_switch(self, vcpu: Any, new_pgd: int, new_role: Any) -> bool:
        """5499ea73e7db: an uncacheable current root (no shadow page: PAE, not
        modelled) is freed first; the levels are no longer consulted."""
        mmu = vcpu.mmu
        if mmu.root_hpa != INVALID_PAGE and \
                to_shadow_page(vcpu.kvm, mmu.root_hpa >> PAGE_SHIFT) is None:
            self.kvm_mmu_free_roots(vcpu, mmu, KVM_MMU_ROOT_CURRENT)
        if mmu.root_hpa != INVALID_PAGE:
            return self.cached_root_find_and_keep_current(vcpu, mmu, new_pgd, new_role)
        return self.cached_root_find_without_current(vcpu, mmu, new_pgd, new_role)

    def kvm_mmu_new_pgd(self, vcpu: Any, new_pgd: int) -> None:
        """The current MMU's own role; no free here when no root is usable
        (``kvm_mmu_reload`` loads one before the next entry)."""
        mmu = vcpu.mmu
        if not self.fast_pgd_switch(vcpu, new_pgd, mmu.mmu_role):
            return
        sh.note(f"{mmu.name}: fast switch to cached root for pgd {new_pgd:#x}")

    def kvm_init_shadow_ept_mmu(self, vcpu: Any, new_eptp: int) -> None:
        """The role is set first, then ``kvm_mmu_new_pgd`` switches roots."""
        context = vcpu.guest_mmu
        level = vcpu.kvm.root_level
        new_role = self.kvm_calc_shadow_ept_root_page_role(vcpu, level)
        if new_role != context.mmu_role:
            context.mmu_role = new_role
            context.shadow_root_level = level
            context.root_level = level
            context.direct_map = False
        self.kvm_mmu_new_pgd(vcpu, new_eptp)


__all__ = ["V5_18"]
