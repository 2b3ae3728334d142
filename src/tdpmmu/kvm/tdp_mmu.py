"""``tdp_mmu.c`` and the root refcount helpers of ``mmu_internal.h``, as at v5.10.

Methods keep the kernel's names and order of operations; ``self`` is the
kernel version (so a later version overrides exactly what its patch changed)
and ``kvm``/``vcpu`` are the structures.  Every SPTE store is a visible
operation (hardware walks read SPTEs without ``mmu_lock``); the root list and
``root_count`` are protected by ``mmu_lock`` and read plainly.

Python mangles names with two leading underscores inside a class, so the
kernel's ``__foo`` helpers are spelled ``_foo`` here.

Simplifications (each keeps the behaviour under test):
- the paging geometry is small (see :mod:`tdpmmu.kvm.spte`);
- ``need_resched() || spin_needbreak()`` is a policy (the ``resched`` knob).
  By default it is true at a yield point unless the walk has not moved on to a
  new target gfn since it last yielded: a timeslice has just begun, so the
  re-check after the restart does not yield again.  Yielding means
  ``cond_resched_lock``: the lock is dropped with a scheduling point in
  between, which covers both "nobody wanted the lock" and "somebody ran".
  ``always`` drops the exception: v5.10/v5.11 walks can then restart at one
  SPTE forever (the livelock Linux 5.12 fixed with "KVM: x86/mmu: Ensure
  forward progress when yielding in TDP MMU iter").  ``never`` holds the lock
  for the whole walk, so SPTEs stay zapped but unflushed until its end;
- NX huge pages, MTRR memory types and access tracking without A/D bits are not
  modelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..kernel import (
    BUG,
    BUG_ON,
    INIT_LIST_HEAD,
    WARN_ON,
    cond_resched_lock,
    kmem_cache_free,
    kmem_cache_zalloc,
    list_add,
    list_add_tail,
    list_del,
    list_empty,
    list_for_each_entry,
    lockdep_assert_held,
)
from . import fidelity, shared
from .mmu_internal import MmuInternal
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .spte import (
    ACC_ALL,
    KVM_PAGES_PER_HPAGE,
    PAGE_SHIFT,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    PT64_ENT_PER_PAGE,
    PT64_ROOT_MAX_LEVEL,
    PT_WRITABLE_MASK,
    SET_SPTE_WRITE_PROTECTED_PT,
    SPTE_MMU_WRITEABLE,
    is_accessed_spte,
    is_dirty_spte,
    is_large_pte,
    is_last_spte,
    is_mmio_spte,
    is_shadow_present_pte,
    is_writable_pte,
    kvm_mmu_changed_pte_notifier_make_spte,
    make_mmio_spte,
    make_nonleaf_spte,
    make_spte,
    mark_spte_for_access_track,
    shadow_dirty_mask,
    spte_ad_enabled,
    spte_ad_need_write_protect,
    spte_to_pfn,
)
from .structs import INVALID_PAGE, kvm_mmu_page
from .tdp_iter import (
    for_each_tdp_pte,
    for_each_tdp_pte_min_level,
    spte_to_child_pt,
    tdp_iter,
    tdp_iter_refresh_walk,
    tdp_iter_root_pt,
    to_shadow_page,
)

__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions

RET_PF_RETRY = 0
RET_PF_EMULATE = 1
RET_PF_INVALID = 2
RET_PF_FIXED = 3
RET_PF_SPURIOUS = 4


def spte_with_dirty_cleared(old_spte: int, wrprot: bool) -> int | None:
    """The step clear_dirty_gfn_range and clear_dirty_pt_masked share: write-protect
    the SPTE (``wrprot``, or A/D bits unusable) or clear its dirty bit; None when
    there is nothing to clear."""
    if wrprot or spte_ad_need_write_protect(old_spte):
        return old_spte & ~PT_WRITABLE_MASK if is_writable_pte(old_spte) else None
    return old_spte & ~shadow_dirty_mask if old_spte & shadow_dirty_mask else None


def kvm_mmu_page_as_id(sp: kvm_mmu_page) -> int:
    return 1 if sp.role.smm else 0


class TdpMmu(MmuInternal):
    """The TDP MMU of Linux v5.10 (``arch/x86/kvm/mmu/tdp_mmu.c``)."""

    # ------------------------------------------------------------ knobs
    # The seed's what-ifs; a run may set them (see versions.KNOBS).
    list_add_new_root_tail = False  # get_tdp_mmu_vcpu_root: list_add (v5.10) or list_add_tail
    resched_policy = "progress"  # need_resched(): "progress", "always" or "never"

    # ------------------------------------------------------ lock contract
    def lock_contract(self, kvm: Any) -> dict[str, Any]:
        """What each lock protects at this version: state name -> (lock, exclusive),
        or a list of such alternatives (any one held will do).

        Model only (the kernel states it in comments and some assertions); the
        properties install it so that every write asserts its lock (see
        :mod:`tdpmmu.kernel.guard`).  A version whose locking changed overrides
        this.  At 5.10/5.11 (``struct kvm_arch`` in ``kvm_host.h``, and
        ``mmu_internal.h``): the list of roots and the list of other TDP MMU
        pages are changed under ``mmu_lock``, and a root on the list has a
        positive ``root_count`` except while a thread holding ``mmu_lock`` takes
        it off; ``root_count`` itself is a plain int under ``mmu_lock``, and so
        is a page's role.  ``mmu_notifier_count`` (``kvm_main.c``) and
        ``mmu_valid_gen`` (``kvm_mmu_zap_all_fast``) are changed under
        ``mmu_lock`` too.  ``mmu_lock`` is a spinlock here, so "held" is
        exclusive.  The legacy MMU's pages (``active_mmu_pages``, their
        ``root_count`` and role) are changed under ``mmu_lock`` in every
        version, for write once it is an rwlock (``mmu.c``: the shadow MMU
        never runs under the read lock).
        """
        mmu_lock = (kvm.mmu_lock, True)
        return {
            "kvm->arch.tdp_mmu_roots": mmu_lock,
            "kvm->arch.tdp_mmu_pages": mmu_lock,
            "kvm->arch.active_mmu_pages": mmu_lock,
            "kvm_mmu_page.root_count": mmu_lock,
            "kvm_mmu_page.role": mmu_lock,
            "kvm->mmu_notifier_count": mmu_lock,
            "kvm->arch.mmu_valid_gen": mmu_lock,
        }

    # When a zap's TLB flush is due (model only; see properties.tlb): at 5.10
    # every zap is flushed before mmu_lock is dropped, at a yield
    # (tdp_mmu_iter_flush_cond_resched) or by the caller of zap_gfn_range.
    tlb_flush_contract = "before-unlock"

    # ---------------------------------------------------------- lifecycle
    def kvm_mmu_init_tdp_mmu(self, kvm: Any) -> None:
        if not self.is_tdp_mmu_enabled():
            return
        kvm.arch.tdp_mmu_enabled = True
        INIT_LIST_HEAD(kvm.arch.tdp_mmu_roots)
        INIT_LIST_HEAD(kvm.arch.tdp_mmu_pages)

    def kvm_mmu_uninit_tdp_mmu(self, kvm: Any) -> None:
        if not kvm.arch.tdp_mmu_enabled:
            return
        WARN_ON(not list_empty(kvm.arch.tdp_mmu_roots))

    def for_each_tdp_mmu_root(self, kvm: Any) -> Iterator[kvm_mmu_page]:
        """The plain ``list_for_each_entry`` over the roots: the next entry is read
        from the current one after the loop body ran."""
        return list_for_each_entry(kvm.arch.tdp_mmu_roots)

    def is_tdp_mmu_root(self, kvm: Any, hpa: int) -> bool:
        if not kvm.arch.tdp_mmu_enabled:
            return False
        if WARN_ON(hpa == INVALID_PAGE):
            return False
        sp = to_shadow_page(kvm, hpa >> PAGE_SHIFT)
        if WARN_ON(sp is None):
            return False
        return sp.tdp_mmu_page and bool(sp.root_count)

    def kvm_tdp_mmu_free_root(self, kvm: Any, root: kvm_mmu_page) -> None:
        max_gfn = self.max_gfn(kvm)
        lockdep_assert_held(kvm.mmu_lock)
        WARN_ON(root.root_count)
        WARN_ON(not root.tdp_mmu_page)
        list_del(root.link)
        shared.note(f"free {root.name}", who=1)
        self.zap_gfn_range(kvm, root, 0, max_gfn, False)
        self.free_mmu_page(kvm, root)

    def max_gfn(self, kvm: Any) -> int:
        return KVM_PAGES_PER_HPAGE(kvm.root_level + 1)

    def free_mmu_page(self, kvm: Any, sp: kvm_mmu_page) -> None:
        """``free_page(sp->spt); kmem_cache_free(mmu_page_header_cache, sp)``."""
        kvm.phys.pop(sp.pfn, None)
        kvm.freed_phys[sp.pfn] = sp.name
        kmem_cache_free(kvm.mmu_page_header_cache, sp)

    # -------------------------------------------------------- allocation
    def page_role_for_level(self, vcpu: Any, level: int) -> Any:
        return vcpu.mmu_role.with_level(level)

    def alloc_tdp_mmu_page(self, vcpu: Any, gfn: int, level: int) -> kvm_mmu_page:
        kvm = vcpu.kvm
        sp = kmem_cache_zalloc(kvm.mmu_page_header_cache)
        sp.pfn = kvm.next_pt_pfn
        kvm.next_pt_pfn += 1
        kvm.phys[sp.pfn] = sp
        sp.role = self.page_role_for_level(vcpu, level)
        sp.gfn = gfn
        sp.tdp_mmu_page = True
        return sp

    def get_tdp_mmu_vcpu_root(self, vcpu: Any) -> kvm_mmu_page:
        kvm = vcpu.kvm
        role = self.page_role_for_level(vcpu, vcpu.mmu.shadow_root_level)
        KVM_MMU_LOCK(kvm)
        # Reuse an existing root with the same role.
        for root in self.for_each_tdp_mmu_root(kvm):
            if root.role.word == role.word:
                self.kvm_mmu_get_root(kvm, root)
                KVM_MMU_UNLOCK(kvm)
                return root
        root = self.alloc_tdp_mmu_page(vcpu, 0, vcpu.mmu.shadow_root_level)
        root.name = f"r{kvm.nr_roots_made}"
        kvm.nr_roots_made += 1
        root.root = root
        root.root_count = 1
        shared.note(f"new root {root.name} ({root.role}) count 1", who=0)
        if self.list_add_new_root_tail:
            list_add_tail(root.link, kvm.arch.tdp_mmu_roots)
        else:
            list_add(root.link, kvm.arch.tdp_mmu_roots)
        KVM_MMU_UNLOCK(kvm)
        return root

    def kvm_tdp_mmu_get_vcpu_root_hpa(self, vcpu: Any) -> int:
        root = self.get_tdp_mmu_vcpu_root(vcpu)
        if root is None:
            return INVALID_PAGE
        return root.pfn << PAGE_SHIFT

    # ---------------------------------------------------- SPTE changes
    def handle_changed_spte_acc_track(self, old_spte: int, new_spte: int, level: int) -> None:
        """``kvm_set_pfn_accessed()`` has no effect on what the model checks."""

    def handle_changed_spte_dirty_log(self, kvm: Any, as_id: int, gfn: int, old_spte: int,
                                      new_spte: int, level: int) -> None:
        if level > PG_LEVEL_4K:
            return
        pfn_changed = spte_to_pfn(old_spte) != spte_to_pfn(new_spte)
        if (not is_writable_pte(old_spte) or pfn_changed) and is_writable_pte(new_spte):
            slot = self._gfn_to_memslot(self._kvm_memslots(kvm, as_id), gfn)
            self.mark_page_dirty_in_slot(kvm, slot, gfn)

    def _handle_changed_spte(self, kvm: Any, as_id: int, gfn: int, old_spte: int,
                              new_spte: int, level: int) -> None:
        was_present = is_shadow_present_pte(old_spte)
        is_present = is_shadow_present_pte(new_spte)
        was_leaf = was_present and is_last_spte(old_spte, level)
        is_leaf = is_present and is_last_spte(new_spte, level)
        pfn_changed = spte_to_pfn(old_spte) != spte_to_pfn(new_spte)

        WARN_ON(level > PT64_ROOT_MAX_LEVEL)
        WARN_ON(level < PG_LEVEL_4K)
        WARN_ON(gfn & (KVM_PAGES_PER_HPAGE(level) - 1))

        # A present leaf must never be replaced by one for another pfn: that
        # would need a TLB flush the callers do not do.
        if was_leaf and is_leaf and pfn_changed:
            BUG()

        if old_spte == new_spte:
            return

        self.trace_kvm_tdp_mmu_spte_changed(kvm, as_id, gfn, level, old_spte, new_spte)

        if not was_present and not is_present:
            # Only MMIO SPTEs change between non-present values.
            WARN_ON(not is_mmio_spte(old_spte) and not is_mmio_spte(new_spte))
            return

        if was_leaf and is_dirty_spte(old_spte) and (not is_dirty_spte(new_spte) or pfn_changed):
            pass  # kvm_set_pfn_dirty(): host page state, not modelled

        # A page table was unlinked: clear and free it, and everything below.
        if was_present and not was_leaf and (pfn_changed or not is_present):
            sp = spte_to_child_pt(kvm, old_spte, level)
            list_del(sp.link)
            for i in range(PT64_ENT_PER_PAGE):
                old_child_spte = sp.spt[i]
                shared.write_spte(sp, i, 0)
                self.handle_changed_spte(kvm, as_id, gfn + i * KVM_PAGES_PER_HPAGE(level - 1),
                                         old_child_spte, 0, level - 1)
            self.kvm_flush_remote_tlbs_with_address(kvm, gfn, KVM_PAGES_PER_HPAGE(level))
            self.free_mmu_page(kvm, sp)

    def trace_kvm_tdp_mmu_spte_changed(self, kvm: Any, as_id: int, gfn: int, level: int,
                                       old_spte: int, new_spte: int) -> None:
        """The kernel's tracepoint in ``__handle_changed_spte``: what the properties
        see of every SPTE change (in the step of the store)."""
        self.trace_event(kvm, "kvm_tdp_mmu_spte_changed", as_id=as_id, gfn=gfn, level=level,
                         old_spte=old_spte, new_spte=new_spte)

    def handle_changed_spte(self, kvm: Any, as_id: int, gfn: int, old_spte: int,
                            new_spte: int, level: int) -> None:
        self._handle_changed_spte(kvm, as_id, gfn, old_spte, new_spte, level)
        self.handle_changed_spte_acc_track(old_spte, new_spte, level)
        self.handle_changed_spte_dirty_log(kvm, as_id, gfn, old_spte, new_spte, level)

    def _tdp_mmu_set_spte(self, kvm: Any, it: tdp_iter, new_spte: int,
                           record_acc_track: bool, record_dirty_log: bool) -> None:
        root = tdp_iter_root_pt(it)
        as_id = kvm_mmu_page_as_id(root)
        shared.write_spte(it.sp, it.index, new_spte)
        self._handle_changed_spte(kvm, as_id, it.gfn, it.old_spte, new_spte, it.level)
        if record_acc_track:
            self.handle_changed_spte_acc_track(it.old_spte, new_spte, it.level)
        if record_dirty_log:
            self.handle_changed_spte_dirty_log(kvm, as_id, it.gfn, it.old_spte, new_spte,
                                               it.level)

    def tdp_mmu_set_spte(self, kvm: Any, it: tdp_iter, new_spte: int) -> None:
        self._tdp_mmu_set_spte(kvm, it, new_spte, True, True)

    def tdp_mmu_set_spte_no_acc_track(self, kvm: Any, it: tdp_iter, new_spte: int) -> None:
        self._tdp_mmu_set_spte(kvm, it, new_spte, False, True)

    def tdp_mmu_set_spte_no_dirty_log(self, kvm: Any, it: tdp_iter, new_spte: int) -> None:
        self._tdp_mmu_set_spte(kvm, it, new_spte, True, False)

    # --------------------------------------------------------- iteration
    def tdp_root_for_each_pte(self, kvm: Any, root: kvm_mmu_page, start: int,
                              end: int) -> Iterator[tdp_iter]:
        return for_each_tdp_pte(tdp_iter(kvm), root, root.role.level, start, end)

    def tdp_root_for_each_leaf_pte(self, kvm: Any, root: kvm_mmu_page, start: int,
                                   end: int) -> Iterator[tdp_iter]:
        for it in for_each_tdp_pte(tdp_iter(kvm), root, root.role.level, start, end):
            if not is_shadow_present_pte(it.old_spte) or not is_last_spte(it.old_spte,
                                                                          it.level):
                continue
            yield it

    def tdp_mmu_for_each_pte(self, vcpu: Any, start: int, end: int) -> Iterator[tdp_iter]:
        kvm = vcpu.kvm
        root = to_shadow_page(kvm, vcpu.mmu.root_hpa >> PAGE_SHIFT)
        return for_each_tdp_pte(tdp_iter(kvm), root, vcpu.mmu.shadow_root_level, start, end)

    def need_resched(self, kvm: Any, it: tdp_iter) -> bool:
        """``need_resched() || spin_needbreak(&kvm->mmu_lock)`` under the
        ``resched_policy`` the module docstring describes."""
        if self.resched_policy == "never":
            return False
        if self.resched_policy == "always":
            return True
        if it.yielded_at == it.goal_gfn:
            return False
        it.yielded_at = max(it.goal_gfn, it.gfn)  # where the restart will aim
        return True

    def tdp_mmu_iter_flush_cond_resched(self, kvm: Any, it: tdp_iter) -> bool:
        """Yield ``mmu_lock`` after flushing; returns whether a flush is still owed."""
        if self.need_resched(kvm, it):
            self.kvm_flush_remote_tlbs(kvm)
            cond_resched_lock(kvm.mmu_lock)
            tdp_iter_refresh_walk(it)
            return False
        return True

    def tdp_mmu_iter_cond_resched(self, kvm: Any, it: tdp_iter) -> None:
        if self.need_resched(kvm, it):
            cond_resched_lock(kvm.mmu_lock)
            tdp_iter_refresh_walk(it)

    # --------------------------------------------------------------- zap
    def zap_gfn_range(self, kvm: Any, root: kvm_mmu_page, start: int, end: int,
                      can_yield: bool) -> bool:
        flush_needed = False
        for it in self.tdp_root_for_each_pte(kvm, root, start, end):
            if not is_shadow_present_pte(it.old_spte):
                continue
            # Descend into a non-leaf SPTE that is only partly in the range.
            if (it.gfn < start or it.gfn + KVM_PAGES_PER_HPAGE(it.level) > end) \
                    and not is_last_spte(it.old_spte, it.level):
                continue
            self.tdp_mmu_set_spte(kvm, it, 0)
            if can_yield:
                flush_needed = self.tdp_mmu_iter_flush_cond_resched(kvm, it)
            else:
                flush_needed = True
        return flush_needed

    def kvm_tdp_mmu_zap_gfn_range(self, kvm: Any, start: int, end: int) -> bool:
        flush = False
        for root in self.for_each_tdp_mmu_root(kvm):
            # Take a reference on the root so that it cannot be freed if
            # zap_gfn_range() yields mmu_lock.
            self.kvm_mmu_get_root(kvm, root)
            flush |= self.zap_gfn_range(kvm, root, start, end, True)
            self.kvm_mmu_put_root(kvm, root)
        return flush

    def kvm_tdp_mmu_zap_all(self, kvm: Any) -> None:
        flush = self.kvm_tdp_mmu_zap_gfn_range(kvm, 0, self.max_gfn(kvm))
        if flush:
            self.kvm_flush_remote_tlbs(kvm)

    # ---------------------------------------------------------- page fault
    def tdp_mmu_map_handle_target_level(self, vcpu: Any, write: bool, map_writable: bool,
                                        it: tdp_iter, pfn: int | None, prefault: bool) -> int:
        kvm = vcpu.kvm
        make_spte_ret = 0
        ret = RET_PF_RETRY
        if pfn is None:  # is_noslot_pfn()
            new_spte = make_mmio_spte(it.gfn, self.kvm_memslots_generation(kvm, vcpu), ACC_ALL)
        else:
            make_spte_ret, new_spte = make_spte(it.level, pfn, ACC_ALL, prefault, map_writable,
                                                False)
        if new_spte == it.old_spte:
            ret = RET_PF_SPURIOUS
        else:
            self.tdp_mmu_set_spte(kvm, it, new_spte)
        if make_spte_ret & SET_SPTE_WRITE_PROTECTED_PT and write:
            ret = RET_PF_EMULATE
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
        it = None
        for it in self.tdp_mmu_for_each_pte(vcpu, gfn, gfn + 1):
            if it.level == level:
                break
            # A huge leaf above the target level is zapped first.
            if is_shadow_present_pte(it.old_spte) and is_large_pte(it.old_spte):
                self.tdp_mmu_set_spte(kvm, it, 0)
                self.kvm_flush_remote_tlbs_with_address(kvm, it.gfn,
                                                        KVM_PAGES_PER_HPAGE(it.level))
                it.old_spte = it.sp.spt[it.index]
            if not is_shadow_present_pte(it.old_spte):
                # v5.10 gives the child the level of the SPTE that points to it
                # (later kernels pass iter.level - 1); only bookkeeping reads it.
                sp = self.alloc_tdp_mmu_page(vcpu, it.gfn, it.level)
                sp.name = f"p{kvm.nr_pages_made}"
                kvm.nr_pages_made += 1
                sp.root = tdp_iter_root_pt(it)
                list_add(sp.link, kvm.arch.tdp_mmu_pages)
                new_spte = make_nonleaf_spte(sp.pfn)
                self.tdp_mmu_set_spte(kvm, it, new_spte)
        if it is None or WARN_ON(it.level != level):
            return RET_PF_RETRY
        return self.tdp_mmu_map_handle_target_level(vcpu, write, map_writable, it, pfn,
                                                    prefault)

    # ------------------------------------------------------ hva handlers
    def kvm_tdp_mmu_handle_hva_range(self, kvm: Any, start: int, end: int, data: Any,
                                     handler: Any) -> int:
        ret = 0
        for root in self.for_each_tdp_mmu_root(kvm):
            # Take a reference on the root so that it cannot be freed if
            # the handler yields mmu_lock (none does).
            self.kvm_mmu_get_root(kvm, root)
            ret |= self.handle_hva_range_root(kvm, root, start, end, data, handler)
            self.kvm_mmu_put_root(kvm, root)
        return ret

    def handle_hva_range_root(self, kvm: Any, root: kvm_mmu_page, start: int, end: int,
                              data: Any, handler: Any) -> int:
        """The body of the loop above: run ``handler`` on each memslot's part of the range."""
        ret = 0
        as_id = kvm_mmu_page_as_id(root)
        slots = self._kvm_memslots(kvm, as_id)
        for memslot in slots.slots:
            hva_start = max(start, memslot.userspace_addr)
            hva_end = min(end, memslot.userspace_addr + memslot.npages)
            if hva_start >= hva_end:
                continue
            gfn_start = memslot.base_gfn + (hva_start - memslot.userspace_addr)
            gfn_end = memslot.base_gfn + (hva_end - memslot.userspace_addr)
            ret |= handler(kvm, memslot, root, gfn_start, gfn_end, data)
        return ret

    def zap_gfn_range_hva_wrapper(self, kvm: Any, slot: Any, root: kvm_mmu_page, start: int,
                                  end: int, unused: Any) -> int:
        return int(self.zap_gfn_range(kvm, root, start, end, False))

    def kvm_tdp_mmu_zap_hva_range(self, kvm: Any, start: int, end: int) -> int:
        return self.kvm_tdp_mmu_handle_hva_range(kvm, start, end, 0,
                                                 self.zap_gfn_range_hva_wrapper)

    def age_gfn_range(self, kvm: Any, slot: Any, root: kvm_mmu_page, start: int, end: int,
                      unused: Any) -> int:
        young = 0
        for it in self.tdp_root_for_each_leaf_pte(kvm, root, start, end):
            if not is_accessed_spte(it.old_spte):
                continue
            new_spte = it.old_spte
            if spte_ad_enabled(new_spte):
                new_spte = mark_spte_for_access_track(new_spte)
            new_spte &= ~shadow_dirty_mask
            self.tdp_mmu_set_spte_no_acc_track(kvm, it, new_spte)
            young = 1
        return young

    def kvm_tdp_mmu_age_hva_range(self, kvm: Any, start: int, end: int) -> int:
        return self.kvm_tdp_mmu_handle_hva_range(kvm, start, end, 0, self.age_gfn_range)

    def test_age_gfn(self, kvm: Any, slot: Any, root: kvm_mmu_page, gfn: int, unused: int,
                     unused2: Any) -> int:
        for it in self.tdp_root_for_each_leaf_pte(kvm, root, gfn, gfn + 1):
            if is_accessed_spte(it.old_spte):
                return 1
        return 0

    def kvm_tdp_mmu_test_age_hva(self, kvm: Any, hva: int) -> int:
        return self.kvm_tdp_mmu_handle_hva_range(kvm, hva, hva + 1, 0, self.test_age_gfn)

    def set_tdp_spte(self, kvm: Any, slot: Any, root: kvm_mmu_page, gfn: int, unused: int,
                     data: Any) -> int:
        new_pfn, host_writable = data
        need_flush = False
        for it in self.tdp_root_for_each_pte(kvm, root, gfn, gfn + 1):
            if it.level != PG_LEVEL_4K:
                continue
            if not is_shadow_present_pte(it.old_spte):
                break
            self.tdp_mmu_set_spte(kvm, it, 0)
            self.kvm_flush_remote_tlbs_with_address(kvm, it.gfn, 1)
            if not host_writable:
                new_spte = kvm_mmu_changed_pte_notifier_make_spte(it.old_spte, new_pfn)
                self.tdp_mmu_set_spte(kvm, it, new_spte)
            need_flush = True
        if need_flush:
            self.kvm_flush_remote_tlbs_with_address(kvm, gfn, 1)
        return 0

    def kvm_tdp_mmu_set_spte_hva(self, kvm: Any, address: int, host_pte: Any) -> int:
        return self.kvm_tdp_mmu_handle_hva_range(kvm, address, address + 1, host_pte,
                                                 self.set_tdp_spte)

    # -------------------------------------------------------- dirty logging
    def wrprot_gfn_range(self, kvm: Any, root: kvm_mmu_page, start: int, end: int,
                         min_level: int) -> bool:
        spte_set = False
        BUG_ON(min_level > PG_LEVEL_2M)
        for it in for_each_tdp_pte_min_level(tdp_iter(kvm), root, root.role.level, min_level,
                                             start, end):
            if not is_shadow_present_pte(it.old_spte) or not is_last_spte(it.old_spte,
                                                                          it.level):
                continue
            new_spte = it.old_spte & ~PT_WRITABLE_MASK
            self.tdp_mmu_set_spte_no_dirty_log(kvm, it, new_spte)
            spte_set = True
            self.tdp_mmu_iter_cond_resched(kvm, it)
        return spte_set

    def slot_root_walk(self, kvm: Any, slot: Any, body: Any) -> bool:
        """v5.10's loop shape for the slot walks: skip roots of another address
        space, then get, run the body (which may yield), put."""
        spte_set = False
        for root in self.for_each_tdp_mmu_root(kvm):
            if kvm_mmu_page_as_id(root) != slot.as_id:
                continue
            # Take a reference so the root cannot be freed if the body yields.
            self.kvm_mmu_get_root(kvm, root)
            spte_set |= body(root)
            self.kvm_mmu_put_root(kvm, root)
        return spte_set

    def kvm_tdp_mmu_wrprot_slot(self, kvm: Any, slot: Any, min_level: int) -> bool:
        return self.slot_root_walk(kvm, slot, lambda root: self.wrprot_gfn_range(
            kvm, root, slot.base_gfn, slot.base_gfn + slot.npages, min_level))

    def clear_dirty_gfn_range(self, kvm: Any, root: kvm_mmu_page, start: int, end: int) -> bool:
        spte_set = False
        for it in self.tdp_root_for_each_leaf_pte(kvm, root, start, end):
            new_spte = spte_with_dirty_cleared(it.old_spte, False)
            if new_spte is None:
                continue
            self.tdp_mmu_set_spte_no_dirty_log(kvm, it, new_spte)
            spte_set = True
            self.tdp_mmu_iter_cond_resched(kvm, it)
        return spte_set

    def kvm_tdp_mmu_clear_dirty_slot(self, kvm: Any, slot: Any) -> bool:
        return self.slot_root_walk(kvm, slot, lambda root: self.clear_dirty_gfn_range(
            kvm, root, slot.base_gfn, slot.base_gfn + slot.npages))

    def clear_dirty_pt_masked(self, kvm: Any, root: kvm_mmu_page, gfn: int, mask: int,
                              wrprot: bool) -> None:
        if not mask:
            return
        first = (mask & -mask).bit_length() - 1
        for it in self.tdp_root_for_each_leaf_pte(kvm, root, gfn + first, gfn + 64):
            if not mask:
                break
            if it.level > PG_LEVEL_4K or not (mask & (1 << (it.gfn - gfn))):
                continue
            new_spte = spte_with_dirty_cleared(it.old_spte, wrprot)
            if new_spte is None:
                continue
            self.tdp_mmu_set_spte_no_dirty_log(kvm, it, new_spte)
            mask &= ~(1 << (it.gfn - gfn))

    def kvm_tdp_mmu_clear_dirty_pt_masked(self, kvm: Any, slot: Any, gfn: int, mask: int,
                                          wrprot: bool) -> None:
        lockdep_assert_held(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root(kvm):
            if kvm_mmu_page_as_id(root) != slot.as_id:
                continue
            self.clear_dirty_pt_masked(kvm, root, gfn, mask, wrprot)

    def set_dirty_gfn_range(self, kvm: Any, root: kvm_mmu_page, start: int, end: int) -> bool:
        spte_set = False
        for it in self.tdp_root_for_each_pte(kvm, root, start, end):
            if not is_shadow_present_pte(it.old_spte):
                continue
            new_spte = it.old_spte | shadow_dirty_mask
            self.tdp_mmu_set_spte(kvm, it, new_spte)
            spte_set = True
            self.tdp_mmu_iter_cond_resched(kvm, it)
        return spte_set

    def kvm_tdp_mmu_slot_set_dirty(self, kvm: Any, slot: Any) -> bool:
        return self.slot_root_walk(kvm, slot, lambda root: self.set_dirty_gfn_range(
            kvm, root, slot.base_gfn, slot.base_gfn + slot.npages))

    def zap_collapsible_spte_range(self, kvm: Any, root: kvm_mmu_page, start: int,
                                   end: int) -> bool:
        spte_set = False
        for it in self.tdp_root_for_each_pte(kvm, root, start, end):
            if not is_shadow_present_pte(it.old_spte) or is_last_spte(it.old_spte, it.level):
                continue
            # v5.10 takes the pfn of a non-leaf SPTE: the child page table.
            pfn = spte_to_pfn(it.old_spte)
            if not self.PageTransCompoundMap(kvm, pfn):
                continue
            self.tdp_mmu_set_spte(kvm, it, 0)
            spte_set = self.tdp_mmu_iter_flush_cond_resched(kvm, it)
        if spte_set:
            self.kvm_flush_remote_tlbs(kvm)
        return spte_set

    def kvm_tdp_mmu_zap_collapsible_sptes(self, kvm: Any, slot: Any) -> None:
        self.slot_root_walk(kvm, slot, lambda root: self.zap_collapsible_spte_range(
            kvm, root, slot.base_gfn, slot.base_gfn + slot.npages))

    def write_protect_gfn(self, kvm: Any, root: kvm_mmu_page, gfn: int) -> bool:
        spte_set = False
        for it in self.tdp_root_for_each_leaf_pte(kvm, root, gfn, gfn + 1):
            if not is_writable_pte(it.old_spte):
                break
            new_spte = it.old_spte & ~(PT_WRITABLE_MASK | SPTE_MMU_WRITEABLE)
            self.tdp_mmu_set_spte(kvm, it, new_spte)
            spte_set = True
        return spte_set

    def kvm_tdp_mmu_write_protect_gfn(self, kvm: Any, slot: Any, gfn: int) -> bool:
        spte_set = False
        lockdep_assert_held(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root(kvm):
            if kvm_mmu_page_as_id(root) != slot.as_id:
                continue
            spte_set |= self.write_protect_gfn(kvm, root, gfn)
        return spte_set

    def kvm_tdp_mmu_get_walk(self, vcpu: Any, addr: int) -> list[int]:
        """The SPTEs on the path to ``addr`` in the vCPU's root (for MMIO faults)."""
        gfn = addr >> PAGE_SHIFT
        return [it.old_spte for it in self.tdp_mmu_for_each_pte(vcpu, gfn, gfn + 1)]


PFERR_WRITE_MASK = 1 << 1
PFERR_FETCH_MASK = 1 << 4
