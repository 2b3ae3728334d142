"""Linux 6.4's TDP MMU: era E, roots kept until they are explicitly invalidated.

Built from the stored 6.4.6 tree (``lewisevans2007/linux-6.4``) read against
6.1-rc7.  No 6.4.0 tree is stored to diff against; the root functions of
the stored 6.4.6 are edbdb43fc96b's as merged for 6.4 (the root-lifecycle
fixes after it, 0df9dab891ff and 441a5dfcd968, are 6.6-rc3 and absent from
this tree), so no 6.4.y backport is modelled and the stored code is taken
as 6.4's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..engine import Var
from ..kernel import (
    WARN_ON,
    WARN_ON_ONCE,
    WRITE_ONCE,
    call_rcu,
    destroy_workqueue,
    list_add_rcu,
    list_del_rcu,
    list_empty,
    list_for_each_entry_rcu,
    lockdep_assert_held_write,
    rcu_barrier,
    rcu_read_lock,
    rcu_read_unlock,
    read_lock,
    read_unlock,
    refcount_dec_and_test,
    refcount_set,
    refcount_t,
    spin_lock,
    spin_unlock,
    write_lock,
    write_unlock,
)
from ..kernel.bug import KVM_BUG_ON
from ..kernel.guard import lock_contract_waived
from . import fidelity
from . import shared as sh
from .mmu_legacy import MmuLegacy
from .spte import (
    KVM_MAX_HUGEPAGE_LEVEL,
    PAGE_SHIFT,
    PG_LEVEL_4K,
    PT64_ENT_PER_PAGE,
    is_large_pte,
    is_removed_spte,
    is_shadow_present_pte,
    make_huge_page_split_spte,
    make_nonleaf_spte,
)
from .structs import INVALID_PAGE, KVM_ADDRESS_SPACE_NUM, kvm_mmu_page
from .tdp_iter import tdp_iter_root_pt
from .tdp_mmu import PFERR_WRITE_MASK, RET_PF_RETRY
from .v5_13 import role_invalid
from .v6_1 import V6_1

__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions

IS_ENABLED_CONFIG_PROVE_LOCKING = True  # the model's lockdep is always on


EBUSY = 16  # include/uapi/asm-generic/errno-base.h


class V6_4(V6_1):
    """Linux 6.4 (tree 6.4.6): era E.  A new root starts with a count of two,
    one for the vCPU that loaded it and one for the TDP MMU itself; the TDP
    MMU's reference is only put by the zap work that
    ``kvm_tdp_mmu_invalidate_all_roots`` queues (the work is gifted it, no
    extra get).  A vCPU that unloads its root leaves it valid on the list for
    the next load; the defunct path is gone and a put to 0 of a valid root is
    ``KVM_BUG_ON``.  VM teardown invalidates every root from
    ``kvm_mmu_uninit_tdp_mmu`` without holding ``mmu_lock`` (the lockdep
    assertion is waived when the VM has no users or no vCPUs; the list walk
    is under RCU against the worker's ``list_del_rcu``).

    Mainline commits (6.2 to 6.4) that make it differ from v6.1:

    - edbdb43fc96b KVM: x86/mmu: Preserve TDP MMU roots until they are
      explicitly invalidated (6.4): the count of two, ``KVM_BUG_ON`` in
      ``kvm_tdp_mmu_put_root`` in place of the defunct path (and of
      ``kvm_tdp_root_mark_invalid``), no get in
      ``kvm_tdp_mmu_invalidate_all_roots``, which
      ``kvm_mmu_uninit_tdp_mmu`` now calls with its lockdep waiver and RCU
      walk.
    - the 6.3 rework (titles not checked) of the TDP MMU's enablement (``tdp_mmu_enabled`` a
      module-wide read-only flag instead of ``kvm->arch.tdp_mmu_enabled``)
      and of ``tdp_mmu_pages`` (an ``atomic64_t`` count instead of a list):
      the model keeps the per-VM flag (always true) and the list, whose
      emptiness is what the count's WARN checks.
    - KVM: x86/mmu: Split huge pages mapped by the TDP MMU on fault (6.2; hash
      not in the sources read): ``kvm_tdp_mmu_map`` splits a huge SPTE above
      the target level in place (``tdp_mmu_split_huge_page``) instead of
      zapping it (see the fault paragraph below).

    The legacy (shadow) MMU (``tdp_mmu=0``), from the stored 6.4.6 tree read
    against 6.1-rc7 and 6.0.1:

    - 727ae3770132 KVM: x86/mmu: Rename slot rmap walkers to add clarity and
      clean up code: ``slot_handle_level`` / ``slot_handle_level_range``
      become ``walk_slot_rmaps`` / ``__walk_slot_rmaps``;
    - eddd9e8302de KVM: x86/mmu: Replace comment with an actual lockdep
      assertion on mmu_lock: ``__walk_slot_rmaps`` asserts the write lock;
    - the 6.3 rename of ``__direct_map`` to ``direct_map`` (KVM: x86/mmu:
      Rename __direct_map() to direct_map(); the stored revlists carry the
      title under several hashes, none checked against mainline):
      ``direct_map`` below, which the kept 6.1 fault path reaches through
      ``_direct_map``.
    - KVM: x86/mmu: Sanity check input to kvm_mmu_free_roots() (the
      ``WARN_ON_ONCE`` below, which cannot fire).

    The root functions themselves (``mmu_alloc_root``, ``mmu_free_root_page``,
    ``kvm_mmu_free_roots``, ``__kvm_mmu_prepare_zap_page``,
    ``kvm_zap_obsolete_pages``, ``kvm_mmu_zap_all_fast``) read as in 6.1 but
    for ``is_tdp_mmu_page()``, ``tdp_mmu_enabled`` and, in
    ``mmu_free_root_page``, ``spte_to_child_sp()`` for ``to_shadow_page()``:
    same meaning.

    The fault (6.2, "KVM: x86/mmu: Split huge pages mapped by the TDP MMU on
    fault", with 5.18's frozen-SPTE checks; hash not in the sources read):
    ``kvm_tdp_mmu_map`` gives up on a frozen SPTE at any level and, where a
    huge leaf lies above the target level, replaces it with a page table of
    its pieces (``tdp_mmu_split_huge_page``) instead of zapping it first: no
    flush, as the translation stays the same (read in the 6.4.6 tree).

    Simplifications: 6.3's other page-fault changes (TDP faults split into
    ``kvm_tdp_mmu_page_fault``; 6.2's dirty-log accounting in ``make_spte``)
    are not modelled: the fault keeps 6.1's lock mode, stale check and root
    use, which is what the root lifecycle reads.
    ``kvm_mmu_free_roots``' new ``WARN_ON_ONCE(roots_to_free &
    ~KVM_MMU_ROOTS_ALL)`` cannot fire in the model (it frees the current
    root only).  Everything ``V6_1`` lists.
    """

    name = "v6.4"
    summary = "Linux 6.4: roots start at count 2 (vCPU + TDP MMU), kept until invalidated"

    # edbdb43fc96b: invalidation no longer takes a reference (it gifts the TDP
    # MMU's own), and the zero-count WARN and its comment are gone.
    promises_no_zero_count_root_under_write_lock = False
    # The function that puts the TDP MMU's own reference to an invalidated
    # root ("is ultimately put by tdp_mmu_zap_root_work()"), checked by
    # properties.root_lifecycle.TdpMmuReferencePutOnce.
    tdp_mmu_reference_put_by = "tdp_mmu_zap_root_work"

    tdp_mmu_root_initial_count = 2  # edbdb43fc96b (a what-if may set 1)

    # ------------------------------------------------------------ fault
    def kvm_tdp_mmu_map(self, vcpu: Any, gpa: int, error_code: int, map_writable: bool,
                        max_level: int, pfn: int | None, prefault: bool) -> int:
        """6.2+: a huge leaf above the target level is split in place; a
        frozen SPTE anywhere on the way ends the walk (retry)."""
        kvm = vcpu.kvm
        write = bool(error_code & PFERR_WRITE_MASK)
        gfn = gpa >> PAGE_SHIFT
        if WARN_ON(vcpu.mmu.root_hpa == INVALID_PAGE):
            return RET_PF_RETRY
        if WARN_ON(not self.is_tdp_mmu_root(kvm, vcpu.mmu.root_hpa)):
            return RET_PF_RETRY
        level, pfn = self.kvm_mmu_hugepage_adjust(vcpu, gfn, max_level, pfn)
        ret = RET_PF_RETRY
        rcu_read_lock()
        it = None
        for it in self.tdp_mmu_for_each_pte(vcpu, gfn, gfn + 1):
            if is_removed_spte(it.old_spte):
                break  # goto retry
            if it.level == level:
                ret = self.tdp_mmu_map_handle_target_level(vcpu, write, map_writable, it,
                                                           pfn, prefault)
                break  # map_target_level
            if is_shadow_present_pte(it.old_spte) and not is_large_pte(it.old_spte):
                continue  # step down into the existing page table
            sp = self.tdp_mmu_alloc_sp(vcpu, it)
            if is_shadow_present_pte(it.old_spte):
                r = self.tdp_mmu_split_huge_page(kvm, it, sp, True)
            else:
                r = self.tdp_mmu_link_sp(kvm, it, sp, True)
            if r:
                self.tdp_mmu_free_sp(kvm, sp)
                break  # goto retry
        else:
            # The walk ended before the target level (an upper SPTE changed).
            WARN_ON_ONCE(it is not None and it.level == level)
        if ret == RET_PF_RETRY:
            self._note_frozen_retry(vcpu, it)
        rcu_read_unlock()
        return ret

    def tdp_mmu_alloc_sp(self, vcpu: Any, it: Any) -> kvm_mmu_page:
        """``tdp_mmu_alloc_sp`` + ``tdp_mmu_init_child_sp``: a page table for
        the level below ``it``, of ``it``'s root.  Its role's level follows
        the model's (5.12's) convention, the level of the SPTE it hangs from,
        which ``handle_removed_tdp_mmu_page`` and the walks read."""
        kvm = vcpu.kvm
        sp = self.alloc_tdp_mmu_page(vcpu, it.gfn, it.level)
        sp.name = f"p{kvm.nr_pages_made}"
        kvm.nr_pages_made += 1
        sp.root = tdp_iter_root_pt(it)
        return sp

    def tdp_mmu_link_sp(self, kvm: Any, it: Any, sp: kvm_mmu_page, shared: bool) -> int:
        """Install ``sp`` at ``it`` (cmpxchg under the read lock); -EBUSY if
        the SPTE changed meanwhile."""
        new_spte = make_nonleaf_spte(sp.pfn)
        if shared:
            if not self.tdp_mmu_set_spte_atomic(kvm, it, new_spte):
                return -EBUSY
        else:
            self.tdp_mmu_set_spte(kvm, it, new_spte)
        self.tdp_mmu_link_page(kvm, sp, shared, False)  # tdp_account_mmu_page
        return 0

    def tdp_mmu_split_huge_page(self, kvm: Any, it: Any, sp: kvm_mmu_page,
                                shared: bool) -> int:
        """Fill ``sp`` with the huge leaf's pieces (plain stores: nobody can
        reach it yet) and link it in its place, with no TLB flush: vCPUs may
        use the huge translation or a piece of it, which map the same frames.
        (``kvm_update_page_stats`` is not modelled.)"""
        huge_spte = it.old_spte
        for i in range(PT64_ENT_PER_PAGE):
            sp.spt[i] = make_huge_page_split_spte(huge_spte, it.level - 1, i)
        return self.tdp_mmu_link_sp(kvm, it, sp, shared)

    # ------------------------------------------------------------ VM init
    def kvm_mmu_uninit_tdp_mmu(self, kvm: Any) -> None:
        """edbdb43fc96b: invalidating every root queues the zaps that put the
        TDP MMU's references; destroying the queue waits for them."""
        if not kvm.arch.tdp_mmu_enabled:
            return
        self.kvm_tdp_mmu_invalidate_all_roots(kvm)
        destroy_workqueue(kvm.arch.tdp_mmu_zap_wq)
        WARN_ON(not list_empty(kvm.arch.tdp_mmu_pages))
        WARN_ON(not list_empty(kvm.arch.tdp_mmu_roots))
        rcu_barrier()

    # ------------------------------------------- legacy MMU (tdp_mmu=0)
    def _walk_slot_rmaps(self, kvm: Any, slot: Any, fn: Any, start_level: int,
                         end_level: int, start_gfn: int, end_gfn: int,
                         flush_on_yield: bool) -> bool:
        """``__walk_slot_rmaps`` (727ae3770132, eddd9e8302de): 5.10's
        ``slot_handle_level_range`` loop (the model's form of it, see its
        docstring) under an assertion of the write lock."""
        lockdep_assert_held_write(kvm.mmu_lock)
        return MmuLegacy.slot_handle_level_range(self, kvm, slot, fn, start_level, end_level,
                                                 start_gfn, end_gfn, flush_on_yield)

    def walk_slot_rmaps(self, kvm: Any, slot: Any, fn: Any, start_level: int, end_level: int,
                        flush_on_yield: bool) -> bool:
        return self._walk_slot_rmaps(kvm, slot, fn, start_level, end_level, slot.base_gfn,
                                     slot.base_gfn + slot.npages - 1, flush_on_yield)

    def kvm_rmap_zap_gfn_range(self, kvm: Any, gfn_start: int, gfn_end: int) -> bool:
        """727ae3770132: the memslot loop calls ``__walk_slot_rmaps``."""
        if not self.kvm_memslots_have_rmaps(kvm):
            return False
        for i in range(KVM_ADDRESS_SPACE_NUM):
            for memslot in self._kvm_memslots(kvm, i).slots:
                start = max(gfn_start, memslot.base_gfn)
                end = min(gfn_end, memslot.base_gfn + memslot.npages)
                if start >= end:
                    continue
                self._walk_slot_rmaps(kvm, memslot, self.kvm_zap_rmapp, PG_LEVEL_4K,
                                      KVM_MAX_HUGEPAGE_LEVEL, start, end - 1, True)
        return False  # flushed by the walk (see V5_18._kvm_zap_rmaps)

    def kvm_mmu_slot_remove_write_access(self, kvm: Any, memslot: Any, start_level: int) -> None:
        """6.1's, calling ``walk_slot_rmaps`` (727ae3770132)."""
        if self.kvm_memslots_have_rmaps(kvm):
            write_lock(kvm.mmu_lock)
            self.walk_slot_rmaps(kvm, memslot, self.slot_rmap_write_protect, start_level,
                                 KVM_MAX_HUGEPAGE_LEVEL, False)
            write_unlock(kvm.mmu_lock)
        if kvm.arch.tdp_mmu_enabled:
            read_lock(kvm.mmu_lock)
            self.kvm_tdp_mmu_wrprot_slot(kvm, memslot, start_level)
            read_unlock(kvm.mmu_lock)

    def direct_map(self, vcpu: Any, gpa: int, error_code: int, map_writable: bool,
                   max_level: int, pfn: int | None, prefault: bool, is_tdp: bool) -> int:
        """6.3's name for ``__direct_map`` (6.0's body, see ``V6_1``)."""
        return V6_1._direct_map(self, vcpu, gpa, error_code, map_writable, max_level, pfn,
                                prefault, is_tdp)

    def _direct_map(self, vcpu: Any, gpa: int, error_code: int, map_writable: bool,
                    max_level: int, pfn: int | None, prefault: bool, is_tdp: bool) -> int:
        """Model only: 6.4 has no ``__direct_map``; the kept 6.1 fault path
        (see the class docstring) calls ``direct_map`` through this name."""
        return self.direct_map(vcpu, gpa, error_code, map_writable, max_level, pfn, prefault,
                               is_tdp)

    # --------------------------------------------------------- root refs
    def kvm_tdp_mmu_put_root(self, kvm: Any, root: kvm_mmu_page, shared: bool) -> None:
        """edbdb43fc96b: the final put only ever comes to an invalid root."""
        self.kvm_lockdep_assert_mmu_lock_held(kvm, shared)
        if not refcount_dec_and_test(root.tdp_mmu_root_count):
            return
        KVM_BUG_ON(not root.tdp_mmu_page or not role_invalid(root), kvm)
        spin_lock(kvm.arch.tdp_mmu_pages_lock)
        list_del_rcu(root.link)
        spin_unlock(kvm.arch.tdp_mmu_pages_lock)
        sh.note(f"free {root.name}")
        call_rcu(root.rcu_head, self.tdp_mmu_free_sp_rcu_callback(kvm))

    def kvm_tdp_mmu_get_vcpu_root_hpa(self, vcpu: Any) -> int:
        """edbdb43fc96b: a new root's count is two (the vCPU's reference and
        the TDP MMU's)."""
        kvm = vcpu.kvm
        lockdep_assert_held_write(kvm.mmu_lock)
        role = self.page_role_for_level(vcpu, vcpu.mmu.shadow_root_level)
        as_id = 1 if role.smm else 0
        for root in self.for_each_tdp_mmu_root(kvm, as_id):
            if root.role.word == role.word and self.kvm_tdp_mmu_get_root(kvm, root):
                return root.pfn << PAGE_SHIFT
        root = self.alloc_tdp_mmu_page(vcpu, 0, vcpu.mmu.shadow_root_level)
        root.name = f"r{kvm.nr_roots_made}"
        kvm.nr_roots_made += 1
        root.root = root
        root.tdp_mmu_root_count = refcount_t(0, name=f"{root.name}->tdp_mmu_root_count")
        root.role_invalid = Var(False, name=f"{root.name}->role.invalid")
        count = self.tdp_mmu_root_initial_count
        refcount_set(root.tdp_mmu_root_count, count)
        sh.note(f"new root {root.name} ({root.role}) count {count}")
        spin_lock(kvm.arch.tdp_mmu_pages_lock)
        list_add_rcu(root.link, kvm.arch.tdp_mmu_roots)
        spin_unlock(kvm.arch.tdp_mmu_pages_lock)
        return root.pfn << PAGE_SHIFT

    def kvm_tdp_mmu_invalidate_all_roots(self, kvm: Any) -> None:
        """edbdb43fc96b: the zap work is gifted the TDP MMU's reference.  From
        VM teardown ``mmu_lock`` is not held: lockdep's assertion is waived
        when the VM has no users (or no vCPUs, hence no roots); the walk is
        under RCU because the worker may unlink roots meanwhile."""
        waived = not (kvm.users_count and kvm.created_vcpus)
        if IS_ENABLED_CONFIG_PROVE_LOCKING and not waived:
            lockdep_assert_held_write(kvm.mmu_lock)
        rcu_read_lock()
        for root in list_for_each_entry_rcu(kvm.arch.tdp_mmu_roots):
            if not role_invalid(root):
                if waived:
                    # The model's lock contract asserts mmu_lock at every write
                    # of a role; the kernel waives its assertion here, so the
                    # contract is waived for this write too.
                    with lock_contract_waived():
                        root.role = replace(root.role, invalid=1)
                else:
                    root.role = replace(root.role, invalid=1)
                WRITE_ONCE(root.role_invalid, True)
                self.tdp_mmu_schedule_zap_root(kvm, root)
        rcu_read_unlock()


__all__ = ["V6_4"]
