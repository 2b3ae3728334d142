"""Linux 6.9's TDP MMU: era G, roots looked up, allocated and freed under the read lock.

Built from the stored 6.9.0 tree (``ec-jt/linux-6.9.0``) read against 6.8.0
(``vivo50kff/linux-6.8``) and, for 6.7/6.8, against 6.6.47.  No class for
6.7 or 6.8: their root-lifecycle change (``shared`` dropped from
``kvm_tdp_mmu_put_root`` and the root walks, ``tdp_mmu_pages_lock`` always
taken to unlink a page) only matters once 6.9 puts roots under the read
lock from the vCPU's free path, so it is folded in here (listed below).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..engine import Var
from ..kernel import (
    LIST_HEAD,
    WARN_ON_ONCE,
    call_rcu,
    list_add_rcu,
    list_del,
    list_del_rcu,
    list_empty,
    list_for_each_entry,
    lockdep_assert_held,
    lockdep_assert_held_read,
    lockdep_assert_held_write,
    rcu_read_lock,
    rcu_read_unlock,
    read_lock,
    read_unlock,
    refcount_dec_and_test,
    refcount_read,
    refcount_set,
    refcount_t,
    spin_lock,
    spin_unlock,
    write_lock,
    write_unlock,
)
from ..kernel.bug import KVM_BUG_ON
from ..kernel.list import list_first_or_null_rcu, list_next_or_null_rcu
from . import fidelity
from . import shared as sh
from .mmu import KVM_MMU_ROOT_CURRENT, KVM_MMU_ROOT_PREVIOUS, KVM_MMU_ROOTS_ALL, PT64_ROOT_4LEVEL
from .spte import PAGE_SHIFT, PG_LEVEL_4K, is_last_spte, is_shadow_present_pte
from .structs import INVALID_PAGE, KVM_MMU_NUM_PREV_ROOTS, kvm_mmu_page
from .tdp_iter import for_each_tdp_pte_min_level, tdp_iter, to_shadow_page
from .tdp_mmu import kvm_mmu_page_as_id
from .v5_13 import role_invalid
from .v5_15 import kvm_gfn_range
from .v6_6 import V6_6

__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions

PG_LEVEL_2M = 2
PG_LEVEL_1G = 3


class V6_9(V6_6):
    """Linux 6.9 (tree 6.9.0): era G.  A vCPU loads its root with
    ``kvm_tdp_mmu_alloc_root`` under ``mmu_lock`` for read: it first looks
    for a valid root of its role with the yield-safe walk (whose reference it
    keeps), and only if there is none takes ``tdp_mmu_pages_lock``, walks the
    list again by hand (another vCPU may have added one meanwhile; getting a
    reference to a usable root must not fail, ``WARN_ON_ONCE``) and else
    allocates a root with a count of two and ``list_add_rcu``\\ s it, still
    under the spinlock.  ``kvm_mmu_free_roots`` takes the read lock for a
    direct MMU with the TDP MMU on, so the vCPU's put -- and, after an
    invalidation, the final put that unlinks and frees the root -- runs
    concurrently with other readers; ``kvm_tdp_mmu_put_root`` unlinks under
    ``tdp_mmu_pages_lock``.

    Mainline commits (6.7 to 6.9) that make it differ from v6.6:

    - KVM: x86/mmu: remove unnecessary "bool shared" argument from functions
      (6.8, Paolo Bonzini; hash not in the sources read):
      ``kvm_tdp_mmu_put_root(kvm, root)`` without its lockdep assertion;
      ``tdp_mmu_next_root(kvm, prev, only_valid)`` asserting ``mmu_lock``
      held in either mode; the yield-safe walks lose ``shared``.
    - KVM: x86/mmu: always take tdp_mmu_pages_lock (6.8; hash not in the
      sources read): ``tdp_mmu_unlink_sp`` takes the spinlock whatever the
      lock mode.
    - KVM: x86/mmu: Check for usable TDP MMU root while holding mmu_lock for
      read, Alloc TDP MMU roots while holding mmu_lock for read, and Free TDP
      MMU roots while holding mmu_lock for read (6.9, Sean Christopherson;
      hashes not in the sources read): ``kvm_tdp_mmu_alloc_root`` with the
      recheck under ``tdp_mmu_pages_lock``; ``mmu_alloc_direct_roots``
      calls it without taking ``mmu_lock``; ``kvm_mmu_free_roots`` chooses
      read (TDP MMU, direct) or write; ``mmu_free_root_page`` asserts the
      read lock for a TDP MMU root; ``__for_each_tdp_mmu_root`` /
      ``for_each_valid_tdp_mmu_root`` and ``as_id`` -1 for all address
      spaces.
    - KVM: x86/mmu: Zap invalidated TDP MMU roots at 4KiB granularity (6.9):
      ``tdp_mmu_zap_root`` zaps at 4K, 2M, 1G, then the root level, unless
      ``CONFIG_KVM_PROVE_MMU`` (default off) keeps 6.6's two passes.
    - KVM: x86/mmu: Don't do TLB flush when zappings SPTEs in invalid roots
      (6.9): ``tdp_mmu_zap_leafs`` asks for a flush only for a valid root;
      ``kvm_tdp_mmu_zap_leafs`` walks only valid roots (``as_id`` -1).
    - 6.9: ``kvm_tdp_mmu_clear_dirty_pt_masked`` and
      ``kvm_tdp_mmu_write_protect_gfn`` skip invalid roots
      (``for_each_valid_tdp_mmu_root``).

    The legacy (shadow) MMU (``tdp_mmu=0``) in 6.7-6.9, from the stored 6.9.0
    tree read against 6.8.0 and 6.6.47: its root functions are 6.6's
    (``mmu_alloc_root``, ``kvm_zap_obsolete_pages``, ``kvm_mmu_zap_all_fast``,
    ``__kvm_mmu_prepare_zap_page``) but for what the three 6.9 commits above
    change around them: ``mmu_alloc_direct_roots`` returns early for the TDP
    MMU and takes the write lock only for a legacy root;
    ``kvm_mmu_free_roots`` keeps the write lock (and commits the zap list)
    for a legacy root; ``mmu_free_root_page`` asserts it.  Not modelled:
    6.8's fault-path checks of the notifier by gfn
    (``mmu_invalidate_retry_gfn`` in ``is_page_fault_stale`` and the lockless
    ``mmu_invalidate_retry_gfn_unsafe`` pre-checks in ``kvm_faultin_pfn``;
    KVM: Use gfn instead of hva for mmu_notifier_retry and KVM: x86/mmu:
    Retry fault before acquiring mmu_lock if mapping is changing, hashes not
    in the sources read): the model's notifier range is in hvas, so both
    MMUs keep 6.1's ``mmu_invalidate_retry_hva`` under ``mmu_lock``.

    Simplifications: 6.8's ``kvm_zap_gfn_range`` takes
    ``kvm_mmu_invalidate_begin(kvm)`` and ``kvm_mmu_invalidate_range_add``
    over the gfn range (guest_memfd's switch of the notifier range to gfns);
    the model's notifier range is in hvas, so it keeps 6.1's all-hva form,
    which makes every racing fault retry (more than 6.9 does).  6.8's leaf
    check in ``clear_dirty_gfn_range`` and 6.9's
    ``tdp_mmu_need_write_protect`` concern A/D-disabled roots, which the
    model does not have.  The model's ``root_role.direct`` is
    ``mmu.direct_map`` (always true: the model's vCPUs use the TDP MMU).
    Everything ``V6_6`` lists.
    """

    name = "v6.9"
    summary = "Linux 6.9: roots looked up, allocated and freed under the read lock"

    # Gone in 6.9: kvm_tdp_mmu_get_vcpu_root_hpa, replaced by
    # kvm_tdp_mmu_alloc_root (above).
    kvm_tdp_mmu_get_vcpu_root_hpa = None

    # 6.9's tdp_mmu_zap_leafs: zapping an invalid root owes no flush (see
    # properties.tlb for what the vCPUs do instead).
    tlb_flush_contract = "before-unlock-valid-root"

    # What-ifs (tests/kvm/test_v6_9.py): drop the recheck under
    # tdp_mmu_pages_lock; unlink a freed root without tdp_mmu_pages_lock.
    alloc_root_recheck = True
    put_root_takes_pages_lock = True

    # A promise the properties check (see properties.root_list): 6.9's
    # kvm_tdp_mmu_alloc_root rechecks under tdp_mmu_pages_lock so that
    # vCPUs racing to load a root of one role share it.
    promises_one_valid_root_per_role = True

    # --------------------------------------------------------- root refs
    def kvm_tdp_mmu_put_root(self, kvm: Any, root: kvm_mmu_page) -> None:  # type: ignore[override]
        """6.8 (no ``shared``, no lockdep assertion): may run under the read
        lock from 6.9, so the unlink is under ``tdp_mmu_pages_lock``."""
        if not refcount_dec_and_test(root.tdp_mmu_root_count):
            return
        KVM_BUG_ON(not root.tdp_mmu_page or not role_invalid(root), kvm)
        if self.put_root_takes_pages_lock:
            spin_lock(kvm.arch.tdp_mmu_pages_lock)
        list_del_rcu(root.link)
        if self.put_root_takes_pages_lock:
            spin_unlock(kvm.arch.tdp_mmu_pages_lock)
        sh.note(f"free {root.name}")
        call_rcu(root.rcu_head, self.tdp_mmu_free_sp_rcu_callback(kvm))

    # ----------------------------------------------------- root iterators
    def tdp_mmu_next_root(self, kvm: Any,  # type: ignore[override]
                          prev_root: kvm_mmu_page | None,
                          only_valid: bool = False) -> kvm_mmu_page | None:
        """6.8: no ``shared``; ``role.invalid`` is read under ``mmu_lock``
        (either mode), asserted."""
        head = kvm.arch.tdp_mmu_roots
        lockdep_assert_held(kvm.mmu_lock)
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
            self.kvm_tdp_mmu_put_root(kvm, prev_root)
        return next_root

    def _for_each_tdp_mmu_root_yield_safe(self, kvm: Any,  # type: ignore[override]
                                          as_id: int, only_valid: bool
                                          ) -> Iterator[kvm_mmu_page]:
        """``__for_each_tdp_mmu_root_yield_safe`` (6.9): ``mmu_lock`` held in
        either mode at every step; ``as_id`` -1 for every address space."""
        root = self.tdp_mmu_next_root(kvm, None, only_valid)
        while True:
            lockdep_assert_held(kvm.mmu_lock)
            if root is None:
                return
            if as_id < 0 or kvm_mmu_page_as_id(root) == as_id:
                yield root
            root = self.tdp_mmu_next_root(kvm, root, only_valid)

    def for_each_valid_tdp_mmu_root_yield_safe(self, kvm: Any,  # type: ignore[override]
                                               as_id: int) -> Iterator[kvm_mmu_page]:
        return self._for_each_tdp_mmu_root_yield_safe(kvm, as_id, True)

    def for_each_tdp_mmu_root_yield_safe(self, kvm: Any  # type: ignore[override]
                                         ) -> Iterator[kvm_mmu_page]:
        return self._for_each_tdp_mmu_root_yield_safe(kvm, -1, False)

    def _for_each_tdp_mmu_root(self, kvm: Any, as_id: int,
                               only_valid: bool) -> Iterator[kvm_mmu_page]:
        """``__for_each_tdp_mmu_root`` (6.9): the write-locked plain walk."""
        for root in list_for_each_entry(kvm.arch.tdp_mmu_roots):
            self.kvm_lockdep_assert_mmu_lock_held(kvm, False)
            if as_id >= 0 and kvm_mmu_page_as_id(root) != as_id:
                continue
            if only_valid and root.role.invalid:
                continue
            yield root

    def for_each_tdp_mmu_root(self, kvm: Any, as_id: int | None = None
                              ) -> Iterator[kvm_mmu_page]:
        return self._for_each_tdp_mmu_root(kvm, -1 if as_id is None else as_id, False)

    def for_each_valid_tdp_mmu_root(self, kvm: Any, as_id: int) -> Iterator[kvm_mmu_page]:
        return self._for_each_tdp_mmu_root(kvm, as_id, True)

    # ------------------------------------------------------ root loading
    def kvm_tdp_mmu_alloc_root(self, vcpu: Any) -> int:
        """6.9: look for a usable root under the read lock; else recheck and
        allocate under ``tdp_mmu_pages_lock``.  Sets the vCPU's root."""
        mmu = vcpu.mmu
        kvm = vcpu.kvm
        role = self.page_role_for_level(vcpu, mmu.shadow_root_level)
        as_id = 1 if role.smm else 0
        read_lock(kvm.mmu_lock)
        root = None
        for r in self.for_each_valid_tdp_mmu_root_yield_safe(kvm, as_id):
            if r.role.word == role.word:
                root = r  # the walk's reference becomes the vCPU's
                break
        if root is None:
            spin_lock(kvm.arch.tdp_mmu_pages_lock)
            if self.alloc_root_recheck:
                # By hand: the walks above expect the pages lock not held.
                for r in list_for_each_entry(kvm.arch.tdp_mmu_roots):
                    if r.role.word == role.word and \
                            not WARN_ON_ONCE(not self.kvm_tdp_mmu_get_root(kvm, r)):
                        root = r
                        break
            if root is None:
                root = self.alloc_tdp_mmu_page(vcpu, 0, mmu.shadow_root_level)
                root.name = f"r{kvm.nr_roots_made}"
                kvm.nr_roots_made += 1
                root.root = root
                root.tdp_mmu_root_count = refcount_t(0, name=f"{root.name}->tdp_mmu_root_count")
                root.role_invalid = Var(False, name=f"{root.name}->role.invalid")
                count = self.tdp_mmu_root_initial_count
                refcount_set(root.tdp_mmu_root_count, count)
                sh.note(f"new root {root.name} ({root.role}) count {count}")
                list_add_rcu(root.link, kvm.arch.tdp_mmu_roots)
            spin_unlock(kvm.arch.tdp_mmu_pages_lock)
        read_unlock(kvm.mmu_lock)
        # An invalidation after the unlock is caught by
        # KVM_REQ_MMU_FREE_OBSOLETE_ROOTS before the guest runs; this
        # vCPU's reference keeps the root alive.
        mmu.root_hpa = root.pfn << PAGE_SHIFT
        return 0

    def mmu_alloc_direct_roots(self, vcpu: Any) -> int:
        """6.9: the TDP MMU takes its own locks; the legacy MMU allocates
        under the write lock as before."""
        kvm = vcpu.kvm
        if kvm.arch.tdp_mmu_enabled:
            return self.kvm_tdp_mmu_alloc_root(vcpu)
        write_lock(kvm.mmu_lock)
        if vcpu.mmu.shadow_root_level >= PT64_ROOT_4LEVEL:
            vcpu.mmu.root_hpa = self.mmu_alloc_root(vcpu, 0, 0, vcpu.mmu.shadow_root_level)
        else:
            WARN_ON_ONCE(True)  # PAE roots are not modelled ("Bad TDP root level")
        write_unlock(kvm.mmu_lock)
        return 0

    def mmu_alloc_shadow_roots(self, vcpu: Any) -> int:
        """6.9: as before, under the write lock (a shadow root is always a
        legacy page)."""
        kvm = vcpu.kvm
        mmu = vcpu.mmu
        root_pgd = self.get_guest_pgd(vcpu, mmu)
        root_gfn = root_pgd >> PAGE_SHIFT
        write_lock(kvm.mmu_lock)
        if mmu.root_level >= PT64_ROOT_4LEVEL:
            mmu.root_hpa = self.mmu_alloc_root(vcpu, root_gfn, 0, mmu.shadow_root_level)
        else:
            WARN_ON_ONCE(True)  # 32-bit and PAE guest page tables are not modelled
        mmu.root_pgd = root_pgd
        write_unlock(kvm.mmu_lock)
        return 0

    def kvm_mmu_free_roots(self, vcpu: Any, mmu: Any,
                           roots_to_free: int = KVM_MMU_ROOTS_ALL) -> None:
        """6.9: the read lock for a direct MMU with the TDP MMU on (root_mmu),
        else the write lock (guest_mmu's shadow-EPT roots, and the legacy
        MMU, whose zap list is committed under it).  Dummy and PAE roots are
        not modelled."""
        kvm = vcpu.kvm
        is_tdp_mmu = kvm.arch.tdp_mmu_enabled and mmu.direct_map
        invalid_list = LIST_HEAD("invalid_list")
        WARN_ON_ONCE(roots_to_free & ~KVM_MMU_ROOTS_ALL)
        free_active_root = bool(roots_to_free & KVM_MMU_ROOT_CURRENT) and \
            mmu.root_hpa != INVALID_PAGE
        if not free_active_root and not self.any_prev_root_to_free(mmu, roots_to_free):
            return
        if is_tdp_mmu:
            read_lock(kvm.mmu_lock)
        else:
            write_lock(kvm.mmu_lock)
        for i in range(KVM_MMU_NUM_PREV_ROOTS):
            if roots_to_free & KVM_MMU_ROOT_PREVIOUS(i):
                self.mmu_free_root_page(kvm, mmu.prev_roots[i], invalid_list)
        if free_active_root:
            if to_shadow_page(kvm, mmu.root_hpa >> PAGE_SHIFT) is not None:  # root_to_sp()
                self.mmu_free_root_page(kvm, mmu, invalid_list)
            mmu.root_hpa = INVALID_PAGE
            mmu.root_pgd = 0
        if is_tdp_mmu:
            read_unlock(kvm.mmu_lock)
            WARN_ON_ONCE(not list_empty(invalid_list))
        else:
            self.kvm_mmu_commit_zap_page(kvm, invalid_list)
            write_unlock(kvm.mmu_lock)

    def mmu_free_root_page(self, kvm: Any, mmu: Any, invalid_list: Any = None) -> None:
        """6.9: a TDP MMU root is put under the read lock, a legacy root under
        the write lock (both asserted)."""
        if mmu.root_hpa == INVALID_PAGE:
            return
        sp = to_shadow_page(kvm, mmu.root_hpa >> PAGE_SHIFT)
        if WARN_ON_ONCE(sp is None):
            return
        if sp.tdp_mmu_page:
            lockdep_assert_held_read(kvm.mmu_lock)
            self.kvm_tdp_mmu_put_root(kvm, sp)
        else:
            lockdep_assert_held_write(kvm.mmu_lock)
            sp.root_count -= 1
            sh.note(f"put {sp.name} -> {sp.root_count}")
            if not sp.root_count and sp.role.invalid:
                self.kvm_mmu_prepare_zap_page(kvm, sp, invalid_list)
        mmu.root_hpa = INVALID_PAGE

    # --------------------------------------------------------------- zap
    def tdp_mmu_unlink_page(self, kvm: Any, sp: kvm_mmu_page, shared: bool) -> None:
        """``tdp_mmu_unlink_sp`` (6.8): always under ``tdp_mmu_pages_lock``
        (6.8 dropped the ``shared`` argument; the model's caller still
        passes it)."""
        spin_lock(kvm.arch.tdp_mmu_pages_lock)
        list_del(sp.link)
        spin_unlock(kvm.arch.tdp_mmu_pages_lock)

    def tdp_mmu_zap_root(self, kvm: Any, root: kvm_mmu_page, shared: bool) -> None:
        """6.9: zap at 4K, 2M, 1G, then the root level (levels above the
        model's root level are skipped), unless ``CONFIG_KVM_PROVE_MMU``."""
        WARN_ON_ONCE(not refcount_read(root.tdp_mmu_root_count))
        self.kvm_lockdep_assert_mmu_lock_held(kvm, shared)
        rcu_read_lock()
        top = root.role.level
        levels = [] if self.CONFIG_KVM_PROVE_MMU else [PG_LEVEL_4K, PG_LEVEL_2M]
        levels.append(PG_LEVEL_1G)
        for level in levels:
            if level < top:
                self._tdp_mmu_zap_root(kvm, root, shared, level)
        self._tdp_mmu_zap_root(kvm, root, shared, top)
        rcu_read_unlock()

    def tdp_mmu_zap_leafs(self, kvm: Any, root: kvm_mmu_page, start: int, end: int,
                          can_yield: bool, flush: bool) -> bool:
        """6.9: zapping SPTEs of an invalid root asks for no TLB flush."""
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
            if not root.role.invalid:
                flush = True
        rcu_read_unlock()
        return flush

    def kvm_tdp_mmu_zap_leafs(self, kvm: Any, start: int, end: int,  # type: ignore[override]
                              flush: bool) -> bool:
        """6.9: valid roots only, of every address space."""
        lockdep_assert_held_write(kvm.mmu_lock)
        for root in self.for_each_valid_tdp_mmu_root_yield_safe(kvm, -1):
            flush = self.tdp_mmu_zap_leafs(kvm, root, start, end, True, flush)
        return flush

    def kvm_tdp_mmu_zap_all(self, kvm: Any) -> None:
        """6.8: asserts the write lock; every root, invalid ones included."""
        lockdep_assert_held_write(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
            self.tdp_mmu_zap_root(kvm, root, False)

    def kvm_tdp_mmu_zap_invalidated_roots(self, kvm: Any) -> None:
        """6.8: 6.6's zap with the walk and put that take no ``shared``."""
        read_lock(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
            if not root.tdp_mmu_scheduled_root_to_zap:
                continue
            root.tdp_mmu_scheduled_root_to_zap = False
            KVM_BUG_ON(not role_invalid(root), kvm)
            self.tdp_mmu_zap_root(kvm, root, True)
            self.kvm_tdp_mmu_put_root(kvm, root)
        read_unlock(kvm.mmu_lock)

    def kvm_tdp_mmu_unmap_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range,
                                    flush: bool) -> bool:
        """6.8: the walk without ``shared`` (every root, invalid ones too)."""
        for root in self._for_each_tdp_mmu_root_yield_safe(kvm, gfn_range.slot.as_id, False):
            flush = self.tdp_mmu_zap_leafs(kvm, root, gfn_range.start, gfn_range.end,
                                           gfn_range.may_block, flush)
        return flush

    # ------------------------------------------------ read-locked slot walks
    def kvm_tdp_mmu_zap_collapsible_sptes(self, kvm: Any, slot: Any) -> None:
        """6.8: the walk without ``shared``."""
        for root in self.for_each_valid_tdp_mmu_root_yield_safe(kvm, slot.as_id):
            self.zap_collapsible_spte_range(kvm, root, slot)

    def kvm_tdp_mmu_wrprot_slot(self, kvm: Any, slot: Any, min_level: int) -> bool:
        """6.8: the walk without ``shared``."""
        spte_set = False
        lockdep_assert_held_read(kvm.mmu_lock)
        for root in self.for_each_valid_tdp_mmu_root_yield_safe(kvm, slot.as_id):
            spte_set |= self.wrprot_gfn_range(kvm, root, slot.base_gfn,
                                              slot.base_gfn + slot.npages, min_level)
        return spte_set

    def kvm_tdp_mmu_clear_dirty_slot(self, kvm: Any, slot: Any) -> bool:
        """6.8: the walk without ``shared``."""
        spte_set = False
        lockdep_assert_held_read(kvm.mmu_lock)
        for root in self.for_each_valid_tdp_mmu_root_yield_safe(kvm, slot.as_id):
            spte_set |= self.clear_dirty_gfn_range(kvm, root, slot.base_gfn,
                                                   slot.base_gfn + slot.npages)
        return spte_set

    # ------------------------------------------------- write-locked walks
    def kvm_tdp_mmu_clear_dirty_pt_masked(self, kvm: Any, slot: Any, gfn: int, mask: int,
                                          wrprot: bool) -> None:
        """6.9: valid roots only."""
        for root in self.for_each_valid_tdp_mmu_root(kvm, slot.as_id):
            self.clear_dirty_pt_masked(kvm, root, gfn, mask, wrprot)

    def kvm_tdp_mmu_write_protect_gfn(self, kvm: Any, slot: Any, gfn: int) -> bool:
        """6.9: valid roots only."""
        spte_set = False
        lockdep_assert_held_write(kvm.mmu_lock)
        for root in self.for_each_valid_tdp_mmu_root(kvm, slot.as_id):
            spte_set |= self.write_protect_gfn(kvm, root, gfn)
        return spte_set


__all__ = ["V6_9"]
