"""Linux 5.13's TDP MMU: refcount_t roots on an RCU list, fast invalidation,
root walkers and the last put under the read lock.

No 5.13 tree is stored: built from the 5.12.9 tree (``V5_12``), the 5.15.16
tree (``yashlala/fastswap-linux-5.16.16``) and the 5.13 mainline patches
listed in the class docstring, leaving out what 5.14 and 5.15 changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..engine import Var, cpu_relax
from ..kernel import (
    BUG_ON,
    READ_ONCE,
    WARN_ON,
    WRITE_ONCE,
    call_rcu,
    cond_resched_rwlock_read,
    cond_resched_rwlock_write,
    list_add_rcu,
    list_add_tail_rcu,
    list_del_rcu,
    list_for_each_entry,
    list_for_each_entry_rcu,
    lockdep_assert_held,
    lockdep_assert_held_read,
    lockdep_assert_held_write,
    lockdep_is_held,
    rcu_read_lock,
    rcu_read_unlock,
    read_lock,
    read_unlock,
    refcount_dec_and_test,
    refcount_inc_not_zero,
    refcount_read,
    refcount_set,
    refcount_t,
    spin_lock,
    spin_unlock,
    srcu_read_lock,
    srcu_read_unlock,
)
from ..kernel.list import list_first_or_null_rcu, list_next_or_null_rcu
from ..kernel.lockdep import lockdep_is_held_type
from . import fidelity
from . import shared as sh
from .mmu import PT64_ROOT_4LEVEL
from .mmu_legacy import shadow_root_tree
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .spte import (
    ACC_ALL,
    KVM_MAX_HUGEPAGE_LEVEL,
    KVM_PAGES_PER_HPAGE,
    PAGE_SHIFT,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    PT_WRITABLE_MASK,
    REMOVED_SPTE,
    is_accessed_spte,
    is_last_spte,
    is_removed_spte,
    is_shadow_present_pte,
    mark_spte_for_access_track,
    shadow_accessed_mask,
    spte_ad_enabled,
)
from .structs import INVALID_PAGE, KVM_ADDRESS_SPACE_NUM, kvm_memory_slot, kvm_mmu_page
from .tdp_iter import (
    for_each_tdp_pte_min_level,
    read_spte,
    tdp_iter,
    tdp_iter_restart,
    tdp_iter_root_pt,
    to_shadow_page,
)
from .tdp_mmu import kvm_mmu_page_as_id, spte_with_dirty_cleared
from .v5_12 import V5_12

__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions


def role_invalid(root: kvm_mmu_page) -> bool:
    """``root->role.invalid``: for a TDP MMU page a shared word from 5.13 (set
    under the write lock, read by root walkers under the read lock or RCU
    alone); a legacy shadow page's role is only changed and read under
    ``mmu_lock`` held for write, so it stays a plain field."""
    if not root.tdp_mmu_page:
        return bool(root.role.invalid)
    return bool(READ_ONCE(root.role_invalid))


@dataclass
class kvm_gfn_range:
    """``struct kvm_gfn_range`` (include/linux/kvm_host.h, 5.13+): one memslot's
    part of an MMU-notifier hva range, in gfns."""

    slot: kvm_memory_slot
    start: int
    end: int
    pte: Any = None
    may_block: bool = False


class V5_13(V5_12):
    """Linux 5.13: era C begins.  A TDP MMU root's count is a ``refcount_t``
    (``tdp_mmu_root_count``); ``kvm_tdp_mmu_get_root`` refuses an invalid root
    and is ``refcount_inc_not_zero``; the roots list is RCU-protected and
    changed under ``tdp_mmu_pages_lock``; ``tdp_mmu_next_root`` takes the next
    root's reference under RCU, skipping roots whose get fails, then puts the
    previous one, and the last put (``kvm_tdp_mmu_put_root``, possibly under
    the read lock) unlinks the root, zaps it and frees it through RCU.  A
    memslot update marks every root invalid under the write lock (taking a
    reference on each) and zaps them under the read lock
    (``kvm_tdp_mmu_zap_invalidated_roots``); dirty-log write-protection and
    clearing run under the read lock with cmpxchg and retry; a yield under the
    read lock is ``cond_resched_rwlock_read``.

    Mainline commits (5.13 merge window) that make it differ from v5.12:

    - 6103bc074048 KVM: x86/mmu: Allow zap gfn range to operate under the mmu read lock
    - fb10129335ef KVM: x86/mmu: Make TDP MMU root refcount atomic
    - c0e64238ac8e KVM: x86/mmu: Protect the tdp_mmu_roots list with RCU
    - 2b9663d8ba52 KVM: x86/mmu: Add a shared argument to kvm_tdp_mmu_put_root
    - a889ea54b3da's iterator reworked: KVM: x86/mmu: Make TDP MMU root iterators
      take references / tdp_mmu_next_root under RCU (the 5.13 series above)
    - b7cccd397f31 KVM: x86/mmu: Fast invalidation for TDP MMU
    - 4c6654bd160d KVM: x86/mmu: Tear down roots before kvm_mmu_zap_all_fast returns
    - 24ae4cfaaaa2 KVM: x86/mmu: Allow enabling/disabling dirty logging under MMU
      read lock
    - a3f15bda46e8 KVM: x86/mmu: Pass address space ID to TDP MMU root walkers
    - 33a3164161fc-era as_id/shared arguments of
      ``for_each_tdp_mmu_root_yield_safe`` and ``tdp_mmu_iter_cond_resched``
    - 3039bcc74498 KVM: Move x86's MMU notifier memslot walkers to generic code
      (``kvm_gfn_range``, ``kvm_tdp_mmu_unmap_gfn_range``, ``kvm_tdp_mmu_handle_gfn``)
    - e1eed5847b09 KVM: x86/mmu: Allow yielding during MMU notifier unmap/zap,
      if possible (``range->may_block`` as ``zap_gfn_range``'s can_yield)
    - 4a38162ee9f1-era mmu_alloc_direct_roots holding mmu_lock for write around
      ``kvm_tdp_mmu_get_vcpu_root_hpa``
    - "KVM: x86/mmu: Remove spurious clearing of dirty bit from TDP MMU SPTE"
      (Sean Christopherson, lore 20210331004942.2444916-2-seanjc@google.com,
      Fixes: a6a0b05da9f3; hash not in the sources read; the 5.12.9 tree has
      the clear, the 5.15.16 tree does not): ``age_gfn_range`` clears only
      the Accessed bit

    (Hashes from memory of the mainline log; the closing note of issue 6 says
    which were checked against the stored archives.)

    The MMU notifier reaches the TDP MMU through the generic memslot walker
    (3039bcc74498 KVM: Move x86's MMU notifier memslot walkers to generic
    code): ``kvm_tdp_mmu_unmap_gfn_range`` walks every root of the address
    space with the plain ``for_each_tdp_mmu_root`` (invalid roots included,
    no reference taken) and lets ``zap_gfn_range`` yield when the notifier
    may block (e1eed5847b09 KVM: x86/mmu: Allow yielding during MMU notifier
    unmap/zap, if possible); ``kvm_tdp_mmu_handle_gfn`` (age, test_age,
    change_pte) walks the same way without yielding.

    Simplifications: the generic walker (``__kvm_handle_hva_range``) is
    modelled by the arch hooks' stand-ins ``kvm_unmap_hva_range`` and
    friends, called from the notifier handlers the model keeps, which take
    ``mmu_lock`` for write whether or not a memslot overlaps the range (the
    real walker takes it on the first overlapping memslot): with no overlap
    nothing is done under it either way.  The handlers are 5.12's per-root
    range functions, called on each range's gfns (same SPTE changes).
    ``zap_collapsible_spte_range`` stays at 5.12's write-locked form (no
    scenario disables dirty logging).  Everything 5.12's docstring lists.

    The legacy MMU's roots (``tdp_mmu=0``) at 5.13, as in the 5.15.16 tree
    (no 5.13 tree is stored): ``mmu_alloc_direct_roots`` holds ``mmu_lock``
    for write around either MMU's root allocation and ``mmu_alloc_root`` no
    longer takes it (the 4a38162ee9f1-era change above); ``mmu_free_root_page``
    drops a legacy root's count by hand (``--sp->root_count``) since
    fb10129335ef removed ``kvm_mmu_put_root``; ``kvm_mmu_zap_all_fast``
    invalidates TDP MMU roots first and zaps obsolete legacy pages in the same
    write-locked section (b7cccd397f31); the slot's rmaps are write-protected
    under the write lock before the TDP MMU's read-locked walk (24ae4cfaaaa2).
    """

    name = "v5.13"
    summary = "Linux 5.13: refcount_t roots, RCU roots list, fast invalidation"

    # Gone in 5.13 (the 5.12.9 tree has them, the 5.15.16 tree none): the
    # int root count's helpers (fb10129335ef), the root lookup and free they
    # served (the refcount_t roots: kvm_tdp_mmu_get_root/put_root), 5.11's
    # tdp_mmu_next_root_valid (the RCU iterator, c0e64238ac8e), the hva-range
    # walkers of the MMU notifier (3039bcc74498: kvm_gfn_range handlers), and
    # the model's helpers of 5.10-5.12's memslot walks, which 5.13's
    # as_id-aware root iterators replace (a3f15bda46e8).
    kvm_mmu_get_root = None
    kvm_mmu_put_root = None
    tdp_mmu_put_root = None
    get_tdp_mmu_vcpu_root = None
    kvm_tdp_mmu_free_root = None
    tdp_mmu_next_root_valid = None
    kvm_tdp_mmu_handle_hva_range = None
    handle_hva_range_root = None
    zap_gfn_range_hva_wrapper = None
    slot_root_walk = None
    slot_tdp_walk_and_flush = None

    def lock_contract(self, kvm: Any) -> dict[str, tuple[Any, bool]]:
        """5.13: the roots list is changed under ``tdp_mmu_pages_lock`` (the last
        put may hold ``mmu_lock`` only for read); a root's count is a
        ``refcount_t`` (atomic, no lock); its role changes (``invalid``) under
        ``mmu_lock`` held for write."""
        contract = super().lock_contract(kvm)
        contract["kvm->arch.tdp_mmu_roots"] = (kvm.arch.tdp_mmu_pages_lock, True)
        del contract["kvm_mmu_page.root_count"]
        return contract

    # --------------------------------------------------------- root refs
    def kvm_lockdep_assert_mmu_lock_held(self, kvm: Any, shared: bool) -> None:
        if shared:
            lockdep_assert_held_read(kvm.mmu_lock)
        else:
            lockdep_assert_held_write(kvm.mmu_lock)

    def kvm_tdp_mmu_get_root(self, kvm: Any, root: kvm_mmu_page) -> bool:
        """``__must_check``: False for an invalid root or one whose count hit 0."""
        if role_invalid(root):
            return False
        return refcount_inc_not_zero(root.tdp_mmu_root_count)

    def kvm_tdp_mmu_put_root(self, kvm: Any, root: kvm_mmu_page, shared: bool) -> None:
        max_gfn = self.max_gfn(kvm)
        self.kvm_lockdep_assert_mmu_lock_held(kvm, shared)
        if not refcount_dec_and_test(root.tdp_mmu_root_count):
            return
        WARN_ON(not root.tdp_mmu_page)
        spin_lock(kvm.arch.tdp_mmu_pages_lock)
        list_del_rcu(root.link)
        spin_unlock(kvm.arch.tdp_mmu_pages_lock)
        sh.note(f"free {root.name}")
        self.zap_gfn_range(kvm, root, 0, max_gfn, False, False, shared)
        call_rcu(root.rcu_head, self.tdp_mmu_free_sp_rcu_callback(kvm))

    def is_tdp_mmu_root(self, kvm: Any, hpa: int) -> bool:
        if not kvm.arch.tdp_mmu_enabled:
            return False
        if WARN_ON(hpa == INVALID_PAGE):
            return False
        sp = to_shadow_page(kvm, hpa >> PAGE_SHIFT)
        if WARN_ON(sp is None):
            return False
        # sp->root_count shares its word with tdp_mmu_root_count (a union).
        return sp.tdp_mmu_page and bool(refcount_read(sp.tdp_mmu_root_count))

    # ----------------------------------------------------- root iterators
    def tdp_mmu_next_root(self, kvm: Any, prev_root: kvm_mmu_page | None,
                          shared: bool = False) -> kvm_mmu_page | None:
        """The next root after ``prev_root`` (the first if None) that a reference
        can be taken on; then drops ``prev_root``'s reference."""
        head = kvm.arch.tdp_mmu_roots
        rcu_read_lock()
        if prev_root is not None:
            next_root = list_next_or_null_rcu(head, prev_root.link)
        else:
            next_root = list_first_or_null_rcu(head)
        while next_root is not None and not self.kvm_tdp_mmu_get_root(kvm, next_root):
            next_root = list_next_or_null_rcu(head, next_root.link)
        rcu_read_unlock()
        if prev_root is not None:
            self.kvm_tdp_mmu_put_root(kvm, prev_root, shared)
        return next_root

    def for_each_tdp_mmu_root_yield_safe(self, kvm: Any, as_id: int | None = None,
                                         shared: bool = False) -> Iterator[kvm_mmu_page]:
        """Roots of address space ``as_id``, each held by a reference while the
        body runs (``as_id`` None: every root, for the 5.12-shaped notifier
        handlers the model keeps)."""
        root = self.tdp_mmu_next_root(kvm, None, shared)
        while root is not None:
            if as_id is None or kvm_mmu_page_as_id(root) == as_id:
                yield root
            root = self.tdp_mmu_next_root(kvm, root, shared)

    def for_each_tdp_mmu_root(self, kvm: Any, as_id: int | None = None
                              ) -> Iterator[kvm_mmu_page]:
        """``list_for_each_entry_rcu`` with its lockdep condition: mmu_lock held
        for write, or tdp_mmu_pages_lock."""
        cond = lockdep_is_held_type(kvm.mmu_lock, False) or \
            lockdep_is_held(kvm.arch.tdp_mmu_pages_lock)
        for root in list_for_each_entry_rcu(kvm.arch.tdp_mmu_roots, cond):
            if as_id is None or kvm_mmu_page_as_id(root) == as_id:
                yield root

    # ------------------------------------------------------ root lookup
    def kvm_tdp_mmu_get_vcpu_root_hpa(self, vcpu: Any) -> int:
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
        refcount_set(root.tdp_mmu_root_count, 1)
        sh.note(f"new root {root.name} ({root.role}) count 1")
        spin_lock(kvm.arch.tdp_mmu_pages_lock)
        if self.list_add_new_root_tail:
            list_add_tail_rcu(root.link, kvm.arch.tdp_mmu_roots)
        else:
            list_add_rcu(root.link, kvm.arch.tdp_mmu_roots)
        spin_unlock(kvm.arch.tdp_mmu_pages_lock)
        return root.pfn << PAGE_SHIFT

    def mmu_alloc_direct_roots(self, vcpu: Any) -> int:
        kvm = vcpu.kvm
        KVM_MMU_LOCK(kvm)
        if kvm.arch.tdp_mmu_enabled:
            vcpu.mmu.root_hpa = self.kvm_tdp_mmu_get_vcpu_root_hpa(vcpu)
        elif vcpu.mmu.shadow_root_level >= PT64_ROOT_4LEVEL:
            vcpu.mmu.root_hpa = self.mmu_alloc_root(vcpu, 0, 0, vcpu.mmu.shadow_root_level,
                                                    True)
        else:
            WARN_ON(True)  # PAE roots are not modelled ("Bad TDP root level")
        KVM_MMU_UNLOCK(kvm)
        return 0

    def mmu_alloc_shadow_roots(self, vcpu: Any) -> int:
        """As ``mmu_alloc_direct_roots``: ``mmu_lock`` held for write around
        ``mmu_alloc_root`` (the same 4a38162ee9f1-era change; as in the stored
        5.15.16 tree).  Same simplifications as v5.10's."""
        kvm = vcpu.kvm
        mmu = vcpu.mmu
        root_pgd = self.get_guest_pgd(vcpu, mmu)
        root_gfn = root_pgd >> PAGE_SHIFT
        KVM_MMU_LOCK(kvm)
        if mmu.root_level >= PT64_ROOT_4LEVEL:
            mmu.root_hpa = self.mmu_alloc_root(vcpu, root_gfn, 0, mmu.shadow_root_level, False)
        else:
            WARN_ON(True)  # 32-bit and PAE guest page tables are not modelled
        mmu.root_pgd = root_pgd
        KVM_MMU_UNLOCK(kvm)
        return 0

    def mmu_alloc_root(self, vcpu: Any, gfn: int, gva: int, level: int, direct: bool) -> int:
        """The caller holds mmu_lock for write now (mmu_alloc_direct_roots)."""
        kvm = vcpu.kvm
        sp = self.kvm_mmu_get_page(vcpu, gfn, gva, level, int(direct), ACC_ALL)
        if sp.root is None:
            sp.name = f"s{kvm.nr_roots_made}"
            kvm.nr_roots_made += 1
            sp.root = shadow_root_tree(sp)
        sp.root_count += 1
        sh.note(f"root {sp.name} ({sp.role}) root_count -> {sp.root_count}")
        return sp.pfn << PAGE_SHIFT

    def mmu_free_root_page(self, kvm: Any, mmu: Any, invalid_list: Any = None) -> None:
        if mmu.root_hpa == INVALID_PAGE:
            return
        sp = to_shadow_page(kvm, mmu.root_hpa >> PAGE_SHIFT)
        if sp.tdp_mmu_page:
            self.kvm_tdp_mmu_put_root(kvm, sp, False)
        else:
            # fb10129335ef: kvm_mmu_put_root() is gone; the legacy count is
            # dropped here, and an invalidated root is zapped at 0.
            sp.root_count -= 1
            sh.note(f"put {sp.name} -> {sp.root_count}")
            if not sp.root_count and sp.role.invalid:
                self.kvm_mmu_prepare_zap_page(kvm, sp, invalid_list)
        mmu.root_hpa = INVALID_PAGE

    # ------------------------------------------------------------- yield
    def tdp_mmu_iter_cond_resched(self, kvm: Any, it: tdp_iter, flush: bool = False,
                                  shared: bool = False) -> bool:
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
            tdp_iter_restart(it)
            return True
        return False

    # --------------------------------------------------------------- zap
    def _reread_for_retry(self, kvm: Any, it: tdp_iter) -> None:
        """After a failed cmpxchg the iterator re-reads the SPTE and retries.
        Model only: a frozen SPTE stays frozen until its owner writes it, so the
        retry waits for that write instead of spinning."""
        it.old_spte = read_spte(kvm, it.sp, it.index)
        if is_removed_spte(it.old_spte):
            cpu_relax()

    def zap_gfn_range(self, kvm: Any, root: kvm_mmu_page, start: int, end: int,
                      can_yield: bool, flush: bool = False, shared: bool = False) -> bool:
        self.kvm_lockdep_assert_mmu_lock_held(kvm, shared)
        rcu_read_lock()
        for it in self.tdp_root_for_each_pte(kvm, root, start, end):
            while True:  # retry:
                if can_yield and self.tdp_mmu_iter_cond_resched(kvm, it, flush, shared):
                    flush = False
                    break  # continue
                if not is_shadow_present_pte(it.old_spte):
                    break
                if (it.gfn < start or it.gfn + KVM_PAGES_PER_HPAGE(it.level) > end) \
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

    def _kvm_tdp_mmu_zap_gfn_range(self, kvm: Any, as_id: int, start: int, end: int,
                                   can_yield: bool, flush: bool = False) -> bool:
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm, as_id, False):
            flush = self.zap_gfn_range(kvm, root, start, end, can_yield, flush, False)
        return flush

    def kvm_tdp_mmu_zap_gfn_range(self, kvm: Any, as_id: int, start: int, end: int,
                                  flush: bool = False) -> bool:
        return self._kvm_tdp_mmu_zap_gfn_range(kvm, as_id, start, end, True, flush)

    def kvm_tdp_mmu_zap_all(self, kvm: Any) -> None:
        max_gfn = self.max_gfn(kvm)
        flush = False
        for i in range(KVM_ADDRESS_SPACE_NUM):
            flush = self.kvm_tdp_mmu_zap_gfn_range(kvm, i, 0, max_gfn, flush)
        if flush:
            self.kvm_flush_remote_tlbs(kvm)

    def kvm_zap_gfn_range(self, kvm: Any, gfn_start: int, gfn_end: int) -> None:
        """mmu.c: the TDP MMU zap now goes address space by address space."""
        KVM_MMU_LOCK(kvm)
        self.kvm_zap_gfn_range_rmaps(kvm, gfn_start, gfn_end)
        if kvm.arch.tdp_mmu_enabled:
            flush = False
            for i in range(KVM_ADDRESS_SPACE_NUM):
                flush = self.kvm_tdp_mmu_zap_gfn_range(kvm, i, gfn_start, gfn_end, flush)
            if flush:
                self.kvm_flush_remote_tlbs(kvm)
        KVM_MMU_UNLOCK(kvm)

    # --------------------------------------------------- fast invalidation
    def next_invalidated_root(self, kvm: Any, prev_root: kvm_mmu_page | None
                              ) -> kvm_mmu_page | None:
        head = kvm.arch.tdp_mmu_roots
        if prev_root is not None:
            next_root = list_next_or_null_rcu(head, prev_root.link)
        else:
            next_root = list_first_or_null_rcu(head)
        while next_root is not None and not (role_invalid(next_root) and
                                             refcount_read(next_root.tdp_mmu_root_count)):
            next_root = list_next_or_null_rcu(head, next_root.link)
        return next_root

    def kvm_tdp_mmu_zap_invalidated_roots(self, kvm: Any) -> None:
        """Zap each invalidated root under the read lock, then put the reference
        kvm_tdp_mmu_invalidate_all_roots took, so whoever drops the last one has
        little left to do."""
        max_gfn = self.max_gfn(kvm)
        flush = False
        lockdep_assert_held_read(kvm.mmu_lock)
        rcu_read_lock()
        root = self.next_invalidated_root(kvm, None)
        while root is not None:
            next_root = self.next_invalidated_root(kvm, root)
            rcu_read_unlock()
            flush = self.zap_gfn_range(kvm, root, 0, max_gfn, True, flush, True)
            # The reference from kvm_tdp_mmu_invalidate_all_roots.
            self.kvm_tdp_mmu_put_root(kvm, root, True)
            root = next_root
            rcu_read_lock()
        rcu_read_unlock()
        if flush:
            self.kvm_flush_remote_tlbs(kvm)

    def kvm_tdp_mmu_invalidate_all_roots(self, kvm: Any) -> None:
        """Mark every live root invalid, taking a reference on it for the zapper
        (a root at count 0 is already being torn down)."""
        lockdep_assert_held_write(kvm.mmu_lock)
        for root in list_for_each_entry(kvm.arch.tdp_mmu_roots):
            if refcount_inc_not_zero(root.tdp_mmu_root_count):
                root.role = replace(root.role, invalid=1)
                WRITE_ONCE(root.role_invalid, True)

    def kvm_mmu_zap_all_fast(self, kvm: Any) -> None:
        lockdep_assert_held(kvm.slots_lock)
        KVM_MMU_LOCK(kvm)
        kvm.arch.mmu_valid_gen = 1 - kvm.arch.mmu_valid_gen
        # Invalidate in the same critical section as the reload request, and
        # before anything that may drop the lock.
        if kvm.arch.tdp_mmu_enabled:
            self.kvm_tdp_mmu_invalidate_all_roots(kvm)
        self.kvm_reload_remote_mmus(kvm)
        self.kvm_zap_obsolete_pages(kvm)
        KVM_MMU_UNLOCK(kvm)
        if kvm.arch.tdp_mmu_enabled:
            read_lock(kvm.mmu_lock)
            self.kvm_tdp_mmu_zap_invalidated_roots(kvm)
            read_unlock(kvm.mmu_lock)

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

    def kvm_mmu_notifier_change_pte(self, kvm: Any, address: int, pte: Any) -> None:
        """5.13's generic handler (3039bcc74498, 071064f14d87): no sequence
        bump any more -- ``.change_pte()`` runs between the same change's
        ``invalidate_range_start`` and ``_end``, whose raised count already
        makes every fault retry -- and nothing to do when no invalidation is in
        progress; the memslot walker takes ``mmu_lock`` and flushes if the
        handler asks.  (The 5.15 tree's ``WARN_ON_ONCE`` on
        ``mn_active_invalidate_count`` is not modelled: the model has no such
        count; its ``invalidate_range_start`` always raises the notifier count,
        so inside the pair the early return is never taken.)"""
        if not kvm.mmu_notifier_count:  # READ_ONCE (a plain int in the model)
            return
        idx = srcu_read_lock(kvm.srcu)
        KVM_MMU_LOCK(kvm)
        if self.kvm_set_spte_hva(kvm, address, pte):
            self.kvm_flush_remote_tlbs(kvm)
        KVM_MMU_UNLOCK(kvm)
        srcu_read_unlock(kvm.srcu, idx)

    def kvm_set_spte_hva(self, kvm: Any, hva: int, pte: Any) -> int:
        return int(self._kvm_handle_hva_range(kvm, hva, hva + 1, self.kvm_set_spte_gfn, pte))

    def kvm_age_hva(self, kvm: Any, start: int, end: int) -> int:
        return int(self._kvm_handle_hva_range(kvm, start, end, self.kvm_age_gfn))

    def kvm_test_age_hva(self, kvm: Any, hva: int) -> int:
        return int(self._kvm_handle_hva_range(kvm, hva, hva + 1, self.kvm_test_age_gfn))

    # mmu.c's arch hooks: the rmaps (every legacy SPTE of the range), then the
    # TDP MMU's roots if it is enabled (3039bcc74498).
    def kvm_handle_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range, handler: Any) -> bool:
        ret = False
        for rmap, gfn, level in self.slot_rmap_walk(gfn_range.slot, PG_LEVEL_4K,
                                                    KVM_MAX_HUGEPAGE_LEVEL, gfn_range.start,
                                                    gfn_range.end - 1):
            ret |= bool(handler(kvm, rmap, gfn_range.slot, gfn, level, gfn_range.pte))
        return ret

    def kvm_unmap_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        flush = self.kvm_handle_gfn_range(kvm, gfn_range, self.kvm_unmap_rmapp)
        if kvm.arch.tdp_mmu_enabled:
            flush = self.kvm_tdp_mmu_unmap_gfn_range(kvm, gfn_range, flush)
        return flush

    def kvm_set_spte_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        flush = self.kvm_handle_gfn_range(kvm, gfn_range, self.kvm_set_pte_rmapp)
        if kvm.arch.tdp_mmu_enabled:
            flush |= self.kvm_tdp_mmu_set_spte_gfn(kvm, gfn_range)
        return flush

    def kvm_age_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        young = self.kvm_handle_gfn_range(kvm, gfn_range, self.kvm_age_rmapp)
        if kvm.arch.tdp_mmu_enabled:
            young |= self.kvm_tdp_mmu_age_gfn_range(kvm, gfn_range)
        return young

    def kvm_test_age_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        young = self.kvm_handle_gfn_range(kvm, gfn_range, self.kvm_test_age_rmapp)
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

    def age_gfn_range(self, kvm: Any, slot: Any, root: kvm_mmu_page, start: int, end: int,
                      unused: Any) -> int:
        """Aging no longer clears the Dirty bit ("Prematurely clearing the
        dirty bit could cause spurious PML updates if aging a page happened to
        coincide with dirty logging", the patch in the class docstring).  The
        RCU read side is ``kvm_tdp_mmu_handle_gfn``'s; per-root range form as
        the class docstring says."""
        young = 0
        for it in self.tdp_root_for_each_leaf_pte(kvm, root, start, end):
            if not is_accessed_spte(it.old_spte):
                continue
            new_spte = it.old_spte
            if spte_ad_enabled(new_spte):
                new_spte &= ~shadow_accessed_mask
            else:  # the model's SPTEs have A/D bits: access tracking clears A too
                new_spte = mark_spte_for_access_track(new_spte)
            self.tdp_mmu_set_spte_no_acc_track(kvm, it, new_spte)
            young = 1
        return young

    def kvm_tdp_mmu_age_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        return self.kvm_tdp_mmu_handle_gfn(kvm, gfn_range, self.age_gfn_range)

    def kvm_tdp_mmu_test_age_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        return self.kvm_tdp_mmu_handle_gfn(kvm, gfn_range, self.test_age_gfn)

    def kvm_tdp_mmu_set_spte_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        # set_tdp_spte flushes itself; the kernel's handler returns false too.
        self.kvm_tdp_mmu_handle_gfn(kvm, gfn_range, self.set_tdp_spte)
        return False

    # ------------------------------------------------ 5.12-shaped callers
    def kvm_tdp_mmu_zap_collapsible_sptes(self, kvm: Any, slot: Any) -> None:
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm, slot.as_id, False):
            self.zap_collapsible_spte_range(kvm, root, slot)

    def kvm_tdp_mmu_clear_dirty_pt_masked(self, kvm: Any, slot: Any, gfn: int, mask: int,
                                          wrprot: bool) -> None:
        lockdep_assert_held_write(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root(kvm, slot.as_id):
            self.clear_dirty_pt_masked(kvm, root, gfn, mask, wrprot)

    def kvm_tdp_mmu_write_protect_gfn(self, kvm: Any, slot: Any, gfn: int) -> bool:
        lockdep_assert_held_write(kvm.mmu_lock)
        spte_set = False
        for root in self.for_each_tdp_mmu_root(kvm, slot.as_id):
            spte_set |= self.write_protect_gfn(kvm, root, gfn)
        return spte_set

    # ------------------------------------------- dirty logging, read lock
    def tdp_mmu_set_spte_atomic_no_dirty_log(self, kvm: Any, it: tdp_iter,
                                             new_spte: int) -> bool:
        lockdep_assert_held_read(kvm.mmu_lock)
        if it.old_spte == REMOVED_SPTE:
            return False
        if sh.cmpxchg_spte(it.sp, it.index, it.old_spte, new_spte) != it.old_spte:
            return False
        as_id = kvm_mmu_page_as_id(tdp_iter_root_pt(it))
        self._handle_changed_spte(kvm, as_id, it.gfn, it.old_spte, new_spte, it.level, True)
        self.handle_changed_spte_acc_track(it.old_spte, new_spte, it.level)
        return True

    def tdp_mmu_set_spte_atomic(self, kvm: Any, it: tdp_iter, new_spte: int) -> bool:
        if not self.tdp_mmu_set_spte_atomic_no_dirty_log(kvm, it, new_spte):
            return False
        self.handle_changed_spte_dirty_log(kvm, kvm_mmu_page_as_id(tdp_iter_root_pt(it)),
                                           it.gfn, it.old_spte, new_spte, it.level)
        return True

    def wrprot_gfn_range(self, kvm: Any, root: kvm_mmu_page, start: int, end: int,
                         min_level: int) -> bool:
        spte_set = False
        rcu_read_lock()
        BUG_ON(min_level > PG_LEVEL_2M)
        for it in for_each_tdp_pte_min_level(tdp_iter(kvm), root, root.role.level, min_level,
                                             start, end):
            while True:  # retry:
                if self.tdp_mmu_iter_cond_resched(kvm, it, False, True):
                    break
                if not is_shadow_present_pte(it.old_spte) or \
                        not is_last_spte(it.old_spte, it.level) or \
                        not it.old_spte & PT_WRITABLE_MASK:
                    break
                new_spte = it.old_spte & ~PT_WRITABLE_MASK
                if not self.tdp_mmu_set_spte_atomic_no_dirty_log(kvm, it, new_spte):
                    self._reread_for_retry(kvm, it)
                    continue
                spte_set = True
                break
        rcu_read_unlock()
        return spte_set

    def kvm_tdp_mmu_wrprot_slot(self, kvm: Any, slot: Any, min_level: int) -> bool:
        spte_set = False
        lockdep_assert_held_read(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm, slot.as_id, True):
            spte_set |= self.wrprot_gfn_range(kvm, root, slot.base_gfn,
                                              slot.base_gfn + slot.npages, min_level)
        return spte_set

    def clear_dirty_gfn_range(self, kvm: Any, root: kvm_mmu_page, start: int, end: int) -> bool:
        spte_set = False
        rcu_read_lock()
        for it in self.tdp_root_for_each_leaf_pte(kvm, root, start, end):
            while True:  # retry:
                if self.tdp_mmu_iter_cond_resched(kvm, it, False, True):
                    break
                new_spte = spte_with_dirty_cleared(it.old_spte, False)
                if new_spte is None:
                    break
                if not self.tdp_mmu_set_spte_atomic_no_dirty_log(kvm, it, new_spte):
                    self._reread_for_retry(kvm, it)
                    if not is_shadow_present_pte(it.old_spte) or \
                            not is_last_spte(it.old_spte, it.level):
                        break  # the leaf walk would not visit it now
                    continue
                spte_set = True
                break
        rcu_read_unlock()
        return spte_set

    def kvm_tdp_mmu_clear_dirty_slot(self, kvm: Any, slot: Any) -> bool:
        spte_set = False
        lockdep_assert_held_read(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm, slot.as_id, True):
            spte_set |= self.clear_dirty_gfn_range(kvm, root, slot.base_gfn,
                                                   slot.base_gfn + slot.npages)
        return spte_set

    def kvm_mmu_slot_remove_write_access(self, kvm: Any, memslot: Any, start_level: int) -> None:
        # The legacy MMU's rmap walk under the write lock, then the TDP MMU's
        # walk under the read lock.
        KVM_MMU_LOCK(kvm)
        flush = self.slot_handle_level(kvm, memslot, self.slot_rmap_write_protect, start_level,
                                       KVM_MAX_HUGEPAGE_LEVEL, False)
        KVM_MMU_UNLOCK(kvm)
        if kvm.arch.tdp_mmu_enabled:
            read_lock(kvm.mmu_lock)
            flush |= self.kvm_tdp_mmu_wrprot_slot(kvm, memslot, start_level)
            read_unlock(kvm.mmu_lock)
        if flush:
            self.kvm_arch_flush_remote_tlbs_memslot(kvm, memslot)

    def kvm_mmu_slot_leaf_clear_dirty(self, kvm: Any, memslot: Any) -> None:
        KVM_MMU_LOCK(kvm)
        KVM_MMU_UNLOCK(kvm)
        flush = False
        if kvm.arch.tdp_mmu_enabled:
            read_lock(kvm.mmu_lock)
            flush |= self.kvm_tdp_mmu_clear_dirty_slot(kvm, memslot)
            read_unlock(kvm.mmu_lock)
        if flush:
            self.kvm_arch_flush_remote_tlbs_memslot(kvm, memslot)


__all__ = ["V5_13", "kvm_gfn_range", "role_invalid"]
