"""``mmu.c`` at v5.10: the legacy (shadow) MMU's direct roots, for ``tdp_mmu=0``.

With TDP (EPT) enabled and the TDP MMU off, a vCPU's root is a shadow page
of the legacy MMU: ``mmu_alloc_direct_roots`` -> ``mmu_alloc_root`` ->
``kvm_mmu_get_page``, which looks the page up in ``mmu_page_hash`` by gfn and
reuses one whose ``role`` word matches and which is not obsolete, else
allocates one (``kvm_mmu_alloc_page``: stamped with ``mmu_valid_gen``, put at
the head of ``active_mmu_pages``).  ``mmu_alloc_root`` bumps
``sp->root_count`` (a plain int under ``mmu_lock``); ``mmu_free_root_page``
drops it through ``kvm_mmu_put_root`` and, at 0, zaps a root that was
invalidated meanwhile (``kvm_mmu_prepare_zap_page`` onto the caller's
``invalid_list``, freed by ``kvm_mmu_commit_zap_page``).

A memslot change runs ``kvm_mmu_zap_all_fast``: it toggles
``mmu_valid_gen`` (every page becomes obsolete, ``is_obsolete_sp``), asks
every vCPU to reload, and ``kvm_zap_obsolete_pages`` walks
``active_mmu_pages`` from the tail, zapping obsolete pages in batches with a
``cond_resched_lock`` between batches.  ``__kvm_mmu_prepare_zap_page`` on a
root still held by a vCPU (``root_count`` > 0) zaps its children, takes it off
``active_mmu_pages`` and marks it ``role.invalid``; the vCPU's last put frees
it.  ``kvm_mmu_commit_zap_page`` flushes TLBs and frees the pages, WARNing
on one that is not invalid or still counted.

Leaf SPTEs are tracked in per-gfn reverse maps (``rmap``) that cover every
root's SPTEs: dirty logging write-protects a slot by walking its rmaps
(``kvm_mmu_slot_remove_write_access`` -> ``slot_handle_level`` with
``slot_rmap_write_protect``, yielding ``mmu_lock`` between gfns), and the MMU
notifier zaps, ages and changes SPTEs through them
(``kvm_handle_hva_range``).  The fault path is ``__direct_map`` under
``mmu_lock`` after ``mmu_notifier_retry``; ``set_spte`` marks the page dirty
whenever it makes an SPTE writable (``kvm_vcpu_mark_page_dirty``), looking up
the memslot at that moment.

Left out, and why:
- ``prev_roots`` / ``cached_root_available`` / ``fast_pgd_switch``: at 5.10
  they serve the shadow-paging CR3 switch (``kvm_mmu_new_pgd``); a direct
  (TDP) MMU never calls them, and ``kvm_mmu_free_roots`` is only asked to free
  the current root here, so its loop over prev_roots has nothing to free.
- shadow paging proper (``mmu_alloc_shadow_roots``, unsync pages,
  ``kvm_sync_page``, write tracking of guest page tables, ``account_shadowed``),
  PAE roots (``pae_root``; the model's roots are 4-level-like, ``shadow_root_level``
  >= 3 standing for PT64_ROOT_4LEVEL), nested (guest_mode) MMUs;
- ``fast_page_fault``: the lockless cmpxchg that makes a write-protected SPTE
  writable again; the slow path below reaches the same SPTE, marks the same
  page dirty and does not touch roots;
- ``make_mmu_pages_available`` (no page limit), NX huge pages, the PML
  (``kvm_mmu_slot_leaf_clear_dirty``/``set_dirty``) rmap walks (dirty logging
  here is write-protection based, as without PML), ``direct_pte_prefetch``,
  ``rmap_recycle``, the ``lpages`` statistics;
- rmaps are Python lists of ``(sp, index)`` "sptep"s in a per-slot dict
  (``slot.rmap``, keyed by (level, gfn)), shared by a slot's copies as the
  kernel's memcpy'd ``arch.rmap`` pointers are;
- ``BATCH_ZAP_PAGES`` is 1 instead of 10: the model's VMs have a handful of
  shadow pages, so a batch of 10 would never yield; 1 keeps a yield point
  between every two zapped batches, which is where the kernel may yield on a
  big VM (from 5.18, b28cb0cd2c5e: until then only zaps that made the list
  unstable count, and a direct MMU's walk never yields).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ..engine import Finding
from ..kernel import (
    BUG_ON,
    WARN_ON,
    cond_resched_lock,
    kmem_cache_zalloc,
    list_add,
    list_del,
    list_empty,
    list_for_each_entry_safe,
    list_head,
    list_move,
)
from ..kernel.list import list_for_each_entry_safe_reverse
from . import fidelity, shared
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .spte import (
    ACC_ALL,
    KVM_MAX_HUGEPAGE_LEVEL,
    KVM_PAGES_PER_HPAGE,
    PAGE_SHIFT,
    PG_LEVEL_4K,
    PT64_ENT_PER_PAGE,
    PT_WRITABLE_MASK,
    SET_SPTE_NEED_REMOTE_TLB_FLUSH,
    SET_SPTE_SPURIOUS,
    SET_SPTE_WRITE_PROTECTED_PT,
    SHADOW_PT_INDEX,
    SPTE_HOST_WRITEABLE,
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
    round_gfn_for_level,
    shadow_accessed_mask,
    spte_ad_enabled,
    spte_to_pfn,
)
from .structs import INVALID_PAGE, KVM_ADDRESS_SPACE_NUM, KVM_REQ_TLB_FLUSH_CURRENT
from .tdp_iter import to_shadow_page

__kernel_file__ = "arch/x86/kvm/mmu/mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions

BATCH_ZAP_PAGES = 1  # 10 in the kernel; see the module docstring
RET_PF_RETRY = 0
RET_PF_EMULATE = 1
RET_PF_FIXED = 3
RET_PF_SPURIOUS = 4
PFERR_WRITE_MASK = 1 << 1

Sptep = tuple[Any, int]  # u64 *sptep: (shadow page, index)


def sptep_to_sp(sptep: Sptep) -> Any:
    return sptep[0]


def kvm_mmu_page_get_gfn(sp: Any, index: int) -> int:
    """A direct page's SPTE ``index`` maps ``sp->gfn`` plus its share of the range."""
    return sp.gfn + index * KVM_PAGES_PER_HPAGE(sp.role.level)


def spte_can_locklessly_be_made_writable(spte: int) -> bool:
    return (spte & (SPTE_HOST_WRITEABLE | SPTE_MMU_WRITEABLE)) == \
        (SPTE_HOST_WRITEABLE | SPTE_MMU_WRITEABLE)


class shadow_root_tree:
    """Model only: the object that stands for one legacy root's paging structure
    in the engine's accesses (an SPTE store under the root writes it, a
    hardware walk of the root reads it; see :mod:`tdpmmu.kvm.shared`).  The
    TDP MMU uses the root page itself; a legacy root page may be freed while
    its former children are still being zapped (they are pages of their own),
    so the tree is a separate, never freed object.  ``sp`` is the root page."""

    __slots__ = ("name", "sp", "version", "spte_words", "__weakref__")

    def __init__(self, sp: Any) -> None:
        self.name = sp.name
        self.sp = sp
        self.version = 0
        self.spte_words: dict | None = None  # its SPTE words (kvm.shared)


class MmuLegacy:
    """The legacy MMU's part of ``mmu.c`` (direct roots), as at v5.10."""

    # ------------------------------------------------------- module parameter
    # ``module_param_named(tdp_mmu, tdp_mmu_enabled, bool, 0644)``: the default
    # of each version (0 before 5.15); a run sets it (scenario or --tdp-mmu).
    tdp_mmu = False

    def is_tdp_mmu_enabled(self) -> bool:
        """5.10's ``is_tdp_mmu_enabled()``: ``tdp_enabled && READ_ONCE(tdp_mmu_enabled)``
        (the model always runs with TDP, i.e. EPT, on x86_64)."""
        return bool(self.tdp_mmu)

    # ----------------------------------------------------------- VM init
    def kvm_mmu_init_legacy(self, kvm: Any) -> None:
        """The legacy MMU's part of ``kvm_arch_init_vm`` (x86.c)."""
        kvm.arch.active_mmu_pages = list_head(None, "kvm->arch.active_mmu_pages")
        kvm.arch.zapped_obsolete_pages = list_head(None, "kvm->arch.zapped_obsolete_pages")
        kvm.arch.mmu_page_hash = {}
        kvm.arch.prepare_zap_in_progress = False

    # ------------------------------------------------------- shadow pages
    def is_obsolete_sp(self, kvm: Any, sp: Any) -> bool:
        return bool(sp.role.invalid) or sp.mmu_valid_gen != kvm.arch.mmu_valid_gen

    def kvm_page_table_hashfn(self, gfn: int) -> int:
        """``hash_64(gfn, KVM_MMU_HASH_SHIFT)``: one bucket per gfn in the model."""
        return gfn

    def for_each_valid_sp(self, kvm: Any, sp_list: list[Any]) -> Iterator[Any]:
        """``for_each_valid_sp``: the bucket's pages that are not obsolete."""
        for sp in list(sp_list):
            if self.is_obsolete_sp(kvm, sp):
                continue
            yield sp

    def kvm_mmu_alloc_page(self, vcpu: Any, direct: int) -> Any:
        kvm = vcpu.kvm
        sp = kmem_cache_zalloc(kvm.mmu_page_header_cache)
        sp.pfn = kvm.next_pt_pfn  # sp->spt, set_page_private()
        kvm.next_pt_pfn += 1
        kvm.phys[sp.pfn] = sp
        sp.parent_ptes = []
        # active_mmu_pages is FIFO: kvm_zap_obsolete_pages() relies on new
        # (valid) pages being added at the head.
        sp.mmu_valid_gen = kvm.arch.mmu_valid_gen
        list_add(sp.link, kvm.arch.active_mmu_pages)
        return sp

    def kvm_mmu_get_page(self, vcpu: Any, gfn: int, gaddr: int, level: int, direct: int,
                         access: int) -> Any:
        kvm = vcpu.kvm
        role = replace(vcpu.mmu.mmu_role, level=level, direct=direct, access=access)
        sp_list = kvm.arch.mmu_page_hash.setdefault(self.kvm_page_table_hashfn(gfn), [])
        for sp in self.for_each_valid_sp(kvm, sp_list):
            if sp.gfn != gfn:
                continue
            if sp.role.word != role.word:
                continue
            # A direct MMU has no unsync pages to sync.
            shared.note(f"kvm_mmu_get_page: found {sp.name} ({sp.role})")
            return sp
        sp = self.kvm_mmu_alloc_page(vcpu, direct)
        sp.gfn = gfn
        sp.role = role
        sp_list.insert(0, sp)  # hlist_add_head(&sp->hash_link, sp_list)
        return sp

    def kvm_mmu_free_page(self, kvm: Any, sp: Any) -> None:
        WARN_ON(any(sp.spt))  # MMU_WARN_ON(!is_empty_shadow_page(sp->spt))
        bucket = kvm.arch.mmu_page_hash.get(self.kvm_page_table_hashfn(sp.gfn), [])
        if sp in bucket:
            bucket.remove(sp)  # hlist_del(&sp->hash_link)
        list_del(sp.link)
        shared.note(f"free {sp.name}", who=1)
        self.free_mmu_page(kvm, sp)

    # --------------------------------------------------------------- roots
    def mmu_alloc_root(self, vcpu: Any, gfn: int, gva: int, level: int, direct: bool) -> int:
        kvm = vcpu.kvm
        KVM_MMU_LOCK(kvm)
        sp = self.kvm_mmu_get_page(vcpu, gfn, gva, level, int(direct), ACC_ALL)
        if sp.root is None:
            sp.name = f"s{kvm.nr_roots_made}"
            kvm.nr_roots_made += 1
            sp.root = shadow_root_tree(sp)
        sp.root_count += 1
        shared.note(f"root {sp.name} ({sp.role}) root_count -> {sp.root_count}")
        KVM_MMU_UNLOCK(kvm)
        return sp.pfn << PAGE_SHIFT

    def mmu_free_root_page_legacy(self, kvm: Any, sp: Any, invalid_list: Any) -> None:
        """The legacy branch of ``mmu_free_root_page`` (5.10: after
        ``kvm_mmu_put_root`` returned true): a root invalidated while this vCPU
        held it is zapped now that nobody does."""
        if sp.role.invalid:
            self.kvm_mmu_prepare_zap_page(kvm, sp, invalid_list)

    # ---------------------------------------------------------------- SPTEs
    def trace_kvm_mmu_spte_changed(self, kvm: Any, sp: Any, index: int, old_spte: int,
                                   new_spte: int) -> None:
        """Model tracepoint: the legacy MMU's SPTE stores, with the fields of
        ``kvm_tdp_mmu_spte_changed``, for the properties."""
        if old_spte == new_spte:
            return
        self.trace_event(kvm, "kvm_mmu_spte_changed", as_id=1 if sp.role.smm else 0,
                         gfn=kvm_mmu_page_get_gfn(sp, index), level=sp.role.level,
                         old_spte=old_spte, new_spte=new_spte,
                         page_zap=kvm.arch.prepare_zap_in_progress)

    def _mmu_spte_store(self, kvm: Any, sptep: Sptep, new_spte: int) -> int:
        sp, index = sptep
        old_spte = sp.spt[index]
        shared.write_spte(sp, index, new_spte)
        self.trace_kvm_mmu_spte_changed(kvm, sp, index, old_spte, new_spte)
        return old_spte

    def mmu_spte_set(self, kvm: Any, sptep: Sptep, new_spte: int) -> None:
        WARN_ON(is_shadow_present_pte(sptep[0].spt[sptep[1]]))
        self._mmu_spte_store(kvm, sptep, new_spte)

    def mmu_spte_update(self, kvm: Any, sptep: Sptep, new_spte: int) -> bool:
        """Returns whether a TLB flush is needed (a writable or accessed/dirty
        SPTE lost that property)."""
        old_spte = sptep[0].spt[sptep[1]]
        if not is_shadow_present_pte(old_spte):
            self.mmu_spte_set(kvm, sptep, new_spte)
            return False
        self._mmu_spte_store(kvm, sptep, new_spte)
        flush = False
        if spte_can_locklessly_be_made_writable(old_spte) and not is_writable_pte(new_spte):
            flush = True
        if is_accessed_spte(old_spte) and not is_accessed_spte(new_spte):
            flush = True  # kvm_set_pfn_accessed(): host page state, not modelled
        if is_dirty_spte(old_spte) and not is_dirty_spte(new_spte):
            flush = True  # kvm_set_pfn_dirty()
        return flush

    def mmu_spte_clear_track_bits(self, kvm: Any, sptep: Sptep) -> bool:
        old_spte = sptep[0].spt[sptep[1]]
        if not is_shadow_present_pte(old_spte):
            return False
        self._mmu_spte_store(kvm, sptep, 0)
        return True

    def mmu_spte_clear_no_track(self, kvm: Any, sptep: Sptep) -> None:
        self._mmu_spte_store(kvm, sptep, 0)

    # ---------------------------------------------------------------- rmaps
    def _gfn_to_rmap(self, gfn: int, level: int, slot: Any) -> list[Sptep]:
        return slot.rmap.setdefault((level, round_gfn_for_level(gfn, level)), [])

    def gfn_to_rmap(self, kvm: Any, gfn: int, sp: Any) -> list[Sptep]:
        slots = self._kvm_memslots(kvm, 1 if sp.role.smm else 0)
        slot = self._gfn_to_memslot(slots, gfn)
        if slot is None:  # the kernel dereferences the NULL slot
            raise Finding("GPF", f"gfn_to_rmap: no memslot for gfn {gfn:#x}", "gfn_to_rmap")
        return self._gfn_to_rmap(gfn, sp.role.level, slot)

    def rmap_add(self, vcpu: Any, sptep: Sptep, gfn: int) -> int:
        rmap_head = self.gfn_to_rmap(vcpu.kvm, gfn, sptep_to_sp(sptep))
        rmap_head.append(sptep)  # pte_list_add
        return len(rmap_head)

    def rmap_remove(self, kvm: Any, sptep: Sptep) -> None:
        sp, index = sptep
        gfn = kvm_mmu_page_get_gfn(sp, index)
        rmap_head = self.gfn_to_rmap(kvm, gfn, sp)
        self._pte_list_remove(sptep, rmap_head)

    def _pte_list_remove(self, sptep: Sptep, rmap_head: list[Sptep]) -> None:
        if sptep not in rmap_head:
            # pte_list_remove: "%p 0->BUG" / "many->many" in the kernel.
            raise Finding("BUG", f"pte_list_remove: {sptep[0].name}[{sptep[1]}] not in its rmap",
                          "_pte_list_remove")
        rmap_head.remove(sptep)

    def pte_list_remove(self, kvm: Any, rmap_head: list[Sptep], sptep: Sptep) -> None:
        self.mmu_spte_clear_track_bits(kvm, sptep)
        self._pte_list_remove(sptep, rmap_head)

    def for_each_rmap_spte(self, rmap_head: list[Sptep]) -> Iterator[Sptep]:
        for sptep in list(rmap_head):
            BUG_ON(not is_shadow_present_pte(sptep[0].spt[sptep[1]]))
            yield sptep

    def drop_spte(self, kvm: Any, sptep: Sptep) -> None:
        if self.mmu_spte_clear_track_bits(kvm, sptep):
            self.rmap_remove(kvm, sptep)

    def drop_parent_pte(self, kvm: Any, sp: Any, parent_pte: Sptep) -> None:
        sp.parent_ptes.remove(parent_pte)  # mmu_page_remove_parent_pte
        self.mmu_spte_clear_no_track(kvm, parent_pte)

    # ----------------------------------------------------------------- zap
    def mmu_page_zap_pte(self, kvm: Any, sp: Any, index: int, invalid_list: Any) -> int:
        sptep = (sp, index)
        pte = sp.spt[index]
        if is_shadow_present_pte(pte):
            if is_last_spte(pte, sp.role.level):
                self.drop_spte(kvm, sptep)
            else:
                child = to_shadow_page(kvm, spte_to_pfn(pte))
                self.drop_parent_pte(kvm, child, sptep)
                # Only nested (guest_mode) TDP pages are zapped recursively.
        elif is_mmio_spte(pte):
            self.mmu_spte_clear_no_track(kvm, sptep)
        return 0

    def kvm_mmu_page_unlink_children(self, kvm: Any, sp: Any, invalid_list: Any) -> int:
        zapped = 0
        for i in range(PT64_ENT_PER_PAGE):
            zapped += self.mmu_page_zap_pte(kvm, sp, i, invalid_list)
        return zapped

    def kvm_mmu_unlink_parents(self, kvm: Any, sp: Any) -> None:
        while sp.parent_ptes:
            self.drop_parent_pte(kvm, sp, sp.parent_ptes[0])

    def _kvm_mmu_prepare_zap_page(self, kvm: Any, sp: Any, invalid_list: Any
                                  ) -> tuple[bool, int]:
        """``__kvm_mmu_prepare_zap_page``: returns (list_unstable, nr_zapped)."""
        nr_zapped = 0  # mmu_zap_unsync_children: a direct MMU has no unsync pages
        # Model only: the SPTE stores of a page zap (trace_kvm_mmu_prepare_zap_page
        # to the end of the unlinking) owe their TLB flush to
        # kvm_mmu_commit_zap_page, before the page is freed (see properties.tlb).
        kvm.arch.prepare_zap_in_progress = True
        nr_zapped += self.kvm_mmu_page_unlink_children(kvm, sp, invalid_list)
        self.kvm_mmu_unlink_parents(kvm, sp)
        kvm.arch.prepare_zap_in_progress = False
        # Zapping children means active_mmu_pages has become unstable.
        list_unstable = bool(nr_zapped)
        if not sp.root_count:
            nr_zapped += 1  # count self
            # An invalid page (a former root) is already off active_mmu_pages.
            if sp.role.invalid:
                list_add(sp.link, invalid_list)
            else:
                list_move(sp.link, invalid_list)
        else:
            # A root in use leaves active_mmu_pages now and is freed when its
            # root_count drops to zero (mmu_free_root_page).
            list_del(sp.link)
            shared.note(f"{sp.name} is a root in use (root_count {sp.root_count}): "
                        "unlinked, freed at its last put")
            # Obsolete pages are used by no vCPU once they reload.
            if not self.is_obsolete_sp(kvm, sp):
                self.kvm_reload_remote_mmus(kvm)
        sp.role = replace(sp.role, invalid=1)
        return list_unstable, nr_zapped

    def kvm_mmu_prepare_zap_page(self, kvm: Any, sp: Any, invalid_list: Any) -> int:
        return self._kvm_mmu_prepare_zap_page(kvm, sp, invalid_list)[1]

    def kvm_mmu_commit_zap_page(self, kvm: Any, invalid_list: Any) -> None:
        if list_empty(invalid_list):
            return
        # The flush also waits for vCPUs to leave guest mode (and lockless
        # walks), so no hardware walk is inside the pages freed below.
        self.kvm_flush_remote_tlbs(kvm)
        for sp in list_for_each_entry_safe(invalid_list):
            WARN_ON(not sp.role.invalid or sp.root_count)
            self.kvm_mmu_free_page(kvm, sp)

    def kvm_zap_obsolete_pages(self, kvm: Any) -> None:
        """Zaps obsolete pages from the tail, yielding when ``batch`` reached
        ``BATCH_ZAP_PAGES``.  Until 5.18 (b28cb0cd2c5e) the batch only counts
        the pages of a zap that made the list unstable (a page with child
        shadow pages): a direct MMU's pages have none outside nested
        (guest_mode) TDP, so the walk never yields -- the soft lockup that
        commit fixes."""
        batch = 0
        restart = True
        while restart:
            restart = False
            for sp in list_for_each_entry_safe_reverse(kvm.arch.active_mmu_pages):
                # active_mmu_pages is FIFO: no obsolete page before a new one.
                if not self.is_obsolete_sp(kvm, sp):
                    break
                # An invalid page never lands back on active_mmu_pages.
                if WARN_ON(sp.role.invalid):
                    continue
                # No TLB flush: every vCPU has been asked to load a new root,
                # so these pages are not in active use by the guest.
                if batch >= BATCH_ZAP_PAGES and self.cond_resched_mmu_lock(kvm):
                    batch = 0
                    restart = True
                    break
                unstable, nr_zapped = self._kvm_mmu_prepare_zap_page(
                    kvm, sp, kvm.arch.zapped_obsolete_pages)
                if unstable:
                    batch += nr_zapped
                    restart = True
                    break
        # Flush before freeing: a lockless walk may still reference the pages.
        self.kvm_mmu_commit_zap_page(kvm, kvm.arch.zapped_obsolete_pages)

    def cond_resched_mmu_lock(self, kvm: Any) -> int:
        """``cond_resched_lock(&kvm->mmu_lock)`` (5.12: ``cond_resched_rwlock_write``)
        under the ``resched`` knob: ``never`` keeps the lock."""
        if self.resched_policy == "never":
            return 0
        return cond_resched_lock(kvm.mmu_lock)

    # ---------------------------------------------------------- page fault
    def for_each_shadow_entry(self, vcpu: Any, gpa: int) -> Iterator[tuple[Sptep, int, int]]:
        """``for_each_shadow_entry``: (sptep, level, addr) from the root down;
        the SPTE is read when the walk steps on, so a page linked by the body
        is walked into."""
        kvm = vcpu.kvm
        gfn = gpa >> PAGE_SHIFT
        sp = to_shadow_page(kvm, vcpu.mmu.root_hpa >> PAGE_SHIFT)
        level = vcpu.mmu.shadow_root_level
        while level >= PG_LEVEL_4K:
            sptep = (sp, SHADOW_PT_INDEX(gfn, level))
            yield sptep, level, gpa
            spte = sp.spt[sptep[1]]
            if is_last_spte(spte, level) or not is_shadow_present_pte(spte):
                return
            sp = to_shadow_page(kvm, spte_to_pfn(spte))
            level -= 1

    def link_shadow_page(self, vcpu: Any, sptep: Sptep, sp: Any) -> None:
        spte = make_nonleaf_spte(sp.pfn)
        self.mmu_spte_set(vcpu.kvm, sptep, spte)
        sp.parent_ptes.append(sptep)  # mmu_page_add_parent_pte

    def drop_large_spte(self, vcpu: Any, sptep: Sptep) -> None:
        sp = sptep_to_sp(sptep)
        if is_large_pte(sp.spt[sptep[1]]):  # __drop_large_spte
            WARN_ON(sp.role.level == PG_LEVEL_4K)
            self.drop_spte(vcpu.kvm, sptep)
            self.kvm_flush_remote_tlbs_with_address(vcpu.kvm, sp.gfn,
                                                    KVM_PAGES_PER_HPAGE(sp.role.level))

    def _direct_map(self, vcpu: Any, gpa: int, error_code: int, map_writable: bool,
                    max_level: int, pfn: int | None, prefault: bool, is_tdp: bool) -> int:
        """``__direct_map``."""
        kvm = vcpu.kvm
        write = bool(error_code & PFERR_WRITE_MASK)
        gfn = gpa >> PAGE_SHIFT
        base_gfn = gfn
        if WARN_ON(vcpu.mmu.root_hpa == INVALID_PAGE):
            return RET_PF_RETRY
        root = to_shadow_page(kvm, vcpu.mmu.root_hpa >> PAGE_SHIFT)
        if root is not None and root.tdp_mmu_page:
            # With tdp_mmu=1 a root whose root_count fell to 0 is no TDP MMU root
            # for is_tdp_mmu_root(), and the kernel would build legacy pages in the
            # TDP MMU's paging structure: reported, not modelled.
            raise Finding("BUG", "direct_page_fault: vCPU root is not a live TDP MMU root "
                          "(root_count 0); __direct_map on a TDP MMU page is not modelled",
                          "direct_page_fault")
        level, pfn = self.kvm_mmu_hugepage_adjust(vcpu, gfn, max_level, pfn)
        sptep = None
        for sptep, it_level, it_addr in self.for_each_shadow_entry(vcpu, gpa):
            base_gfn = gfn & ~(KVM_PAGES_PER_HPAGE(it_level) - 1)
            if it_level == level:
                break
            self.drop_large_spte(vcpu, sptep)
            if not is_shadow_present_pte(sptep[0].spt[sptep[1]]):
                sp = self.kvm_mmu_get_page(vcpu, base_gfn, it_addr, it_level - 1, 1, ACC_ALL)
                if sp.root is None:
                    sp.name = f"p{kvm.nr_pages_made}"
                    kvm.nr_pages_made += 1
                    sp.root = sptep_to_sp(sptep).root
                self.link_shadow_page(vcpu, sptep, sp)
        if sptep is None:
            return RET_PF_RETRY
        ret = self.mmu_set_spte(vcpu, sptep, ACC_ALL, write, level, base_gfn, pfn, prefault,
                                map_writable)
        return ret

    def set_spte(self, vcpu: Any, sptep: Sptep, pte_access: int, level: int, gfn: int,
                 pfn: int | None, speculative: bool, can_unsync: bool,
                 host_writable: bool) -> int:
        kvm = vcpu.kvm
        if pfn is None:  # set_mmio_spte(): is_noslot_pfn()
            self.mmu_spte_set(kvm, sptep, make_mmio_spte(
                gfn, self.kvm_memslots_generation(kvm, vcpu), pte_access))
            return 0
        ret, spte = make_spte(level, pfn, pte_access, speculative, host_writable, False)
        if spte & PT_WRITABLE_MASK:
            self.kvm_vcpu_mark_page_dirty(vcpu, gfn)
        if sptep[0].spt[sptep[1]] == spte:
            ret |= SET_SPTE_SPURIOUS
        elif self.mmu_spte_update(kvm, sptep, spte):
            ret |= SET_SPTE_NEED_REMOTE_TLB_FLUSH
        return ret

    def kvm_vcpu_mark_page_dirty(self, vcpu: Any, gfn: int) -> None:
        """kvm_main.c: the memslot is looked up now, in the vCPU's address space."""
        self.mark_page_dirty_in_slot(vcpu.kvm, self.kvm_vcpu_gfn_to_memslot(vcpu, gfn), gfn)

    def mmu_set_spte(self, vcpu: Any, sptep: Sptep, pte_access: int, write_fault: bool,
                     level: int, gfn: int, pfn: int | None, speculative: bool,
                     host_writable: bool) -> int:
        kvm = vcpu.kvm
        was_rmapped = False
        ret = RET_PF_FIXED
        flush = False
        old = sptep[0].spt[sptep[1]]
        if is_shadow_present_pte(old):
            if level > PG_LEVEL_4K and not is_large_pte(old):
                # A huge leaf replaces a page table: unlink the child.
                child = to_shadow_page(kvm, spte_to_pfn(old))
                self.drop_parent_pte(kvm, child, sptep)
                flush = True
            elif pfn != spte_to_pfn(old):
                self.drop_spte(kvm, sptep)
                flush = True
            else:
                was_rmapped = True
        set_spte_ret = self.set_spte(vcpu, sptep, pte_access, level, gfn, pfn, speculative,
                                     True, host_writable)
        if set_spte_ret & SET_SPTE_WRITE_PROTECTED_PT:
            if write_fault:
                ret = RET_PF_EMULATE
            self.kvm_make_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu)
        if set_spte_ret & SET_SPTE_NEED_REMOTE_TLB_FLUSH or flush:
            self.kvm_flush_remote_tlbs_with_address(kvm, gfn, KVM_PAGES_PER_HPAGE(level))
        spte = sptep[0].spt[sptep[1]]
        if is_mmio_spte(spte):
            ret = RET_PF_EMULATE
        # Fully spurious only if nothing changed and no emulation is needed.
        if set_spte_ret & SET_SPTE_SPURIOUS and ret == RET_PF_FIXED:
            WARN_ON(not was_rmapped)
            return RET_PF_SPURIOUS
        if is_shadow_present_pte(spte) and not was_rmapped:
            self.rmap_add(vcpu, sptep, gfn)
        return ret

    # ------------------------------------------------------- rmap walks
    def slot_rmap_walk(self, memslot: Any, start_level: int, end_level: int, start_gfn: int,
                       end_gfn: int) -> Iterator[tuple[list[Sptep], int, int]]:
        """``for_each_slot_rmap_range``: (rmap, gfn, level) level by level, every
        rmap slot of the range (``end_gfn`` inclusive)."""
        for level in range(start_level, end_level + 1):
            step = KVM_PAGES_PER_HPAGE(level)
            gfn = start_gfn
            last = round_gfn_for_level(end_gfn, level)
            base = round_gfn_for_level(gfn, level)
            while base <= last:
                yield self._gfn_to_rmap(base, level, memslot), gfn, level
                base += step
                gfn = base

    def slot_handle_level_range(self, kvm: Any, memslot: Any, fn: Any, start_level: int,
                                end_level: int, start_gfn: int, end_gfn: int,
                                lock_flush_tlb: bool) -> bool:
        """Yields (``cond_resched_lock``) after each rmap that held SPTEs.

        Simplification: the kernel may yield after any rmap, empty or not; the
        model only after a non-empty one, which keeps the yield points of a
        walk to the SPTEs it visits (the search of a slot's empty rmaps would
        multiply the interleavings by the slot's size).  It is not an exact
        reduction: a fault that runs in such a yield and fills a later rmap of
        the walk is only explored running before the walk, at an earlier
        yield, or after it."""
        flush = False
        for rmap, gfn, _level in self.slot_rmap_walk(memslot, start_level, end_level,
                                                     start_gfn, end_gfn):
            if not rmap:
                # Simplification: no yield point after an empty rmap (see
                # slot_handle_level_range's docstring).
                continue
            flush |= fn(kvm, rmap)
            if self.resched_policy != "never":  # need_resched() || spin_needbreak()
                if flush and lock_flush_tlb:
                    self.kvm_flush_remote_tlbs_with_address(kvm, start_gfn,
                                                            gfn - start_gfn + 1)
                    flush = False
                self.cond_resched_mmu_lock(kvm)
        if flush and lock_flush_tlb:
            self.kvm_flush_remote_tlbs_with_address(kvm, start_gfn, end_gfn - start_gfn + 1)
            flush = False
        return flush

    def slot_handle_level(self, kvm: Any, memslot: Any, fn: Any, start_level: int,
                          end_level: int, lock_flush_tlb: bool) -> bool:
        return self.slot_handle_level_range(kvm, memslot, fn, start_level, end_level,
                                            memslot.base_gfn,
                                            memslot.base_gfn + memslot.npages - 1,
                                            lock_flush_tlb)

    def spte_write_protect(self, kvm: Any, sptep: Sptep, pt_protect: bool) -> bool:
        spte = sptep[0].spt[sptep[1]]
        if not is_writable_pte(spte) and \
                not (pt_protect and spte_can_locklessly_be_made_writable(spte)):
            return False
        if pt_protect:
            spte &= ~SPTE_MMU_WRITEABLE
        spte &= ~PT_WRITABLE_MASK
        return self.mmu_spte_update(kvm, sptep, spte)

    def _rmap_write_protect(self, kvm: Any, rmap_head: list[Sptep], pt_protect: bool) -> bool:
        """``__rmap_write_protect``."""
        flush = False
        for sptep in self.for_each_rmap_spte(rmap_head):
            flush |= self.spte_write_protect(kvm, sptep, pt_protect)
        return flush

    def slot_rmap_write_protect(self, kvm: Any, rmap_head: list[Sptep]) -> bool:
        return self._rmap_write_protect(kvm, rmap_head, False)

    def kvm_mmu_write_protect_pt_masked_legacy(self, kvm: Any, slot: Any, gfn_offset: int,
                                               mask: int) -> None:
        """The rmap loop of ``kvm_mmu_write_protect_pt_masked``."""
        while mask:
            gfn = slot.base_gfn + gfn_offset + ((mask & -mask).bit_length() - 1)
            self._rmap_write_protect(kvm, self._gfn_to_rmap(gfn, PG_LEVEL_4K, slot), False)
            mask &= mask - 1  # clear the first set bit

    def kvm_mmu_slot_gfn_write_protect(self, kvm: Any, slot: Any, gfn: int) -> bool:
        write_protected = False
        for level in range(PG_LEVEL_4K, KVM_MAX_HUGEPAGE_LEVEL + 1):
            write_protected |= self._rmap_write_protect(
                kvm, self._gfn_to_rmap(gfn, level, slot), True)
        if kvm.arch.tdp_mmu_enabled:
            write_protected |= self.kvm_tdp_mmu_write_protect_gfn(kvm, slot, gfn)
        return write_protected

    def kvm_zap_rmapp(self, kvm: Any, rmap_head: list[Sptep]) -> bool:
        flush = False
        while rmap_head:
            sptep = rmap_head[0]  # rmap_get_first
            BUG_ON(not is_shadow_present_pte(sptep[0].spt[sptep[1]]))
            self.pte_list_remove(kvm, rmap_head, sptep)
            flush = True
        return flush

    # ------------------------------------------------------- hva handlers
    def kvm_handle_hva_range(self, kvm: Any, start: int, end: int, data: Any,
                             handler: Any) -> int:
        ret = 0
        for i in range(KVM_ADDRESS_SPACE_NUM):
            slots = self._kvm_memslots(kvm, i)
            for memslot in slots.slots:
                hva_start = max(start, memslot.userspace_addr)
                hva_end = min(end, memslot.userspace_addr + memslot.npages)
                if hva_start >= hva_end:
                    continue
                gfn_start = memslot.base_gfn + (hva_start - memslot.userspace_addr)
                gfn_end = memslot.base_gfn + (hva_end - memslot.userspace_addr)
                for rmap, gfn, level in self.slot_rmap_walk(memslot, PG_LEVEL_4K,
                                                            KVM_MAX_HUGEPAGE_LEVEL,
                                                            gfn_start, gfn_end - 1):
                    ret |= handler(kvm, rmap, memslot, gfn, level, data)
        return ret

    def kvm_handle_hva(self, kvm: Any, hva: int, data: Any, handler: Any) -> int:
        return self.kvm_handle_hva_range(kvm, hva, hva + 1, data, handler)

    def kvm_unmap_rmapp(self, kvm: Any, rmap_head: list[Sptep], slot: Any, gfn: int,
                        level: int, data: Any) -> int:
        return int(self.kvm_zap_rmapp(kvm, rmap_head))

    def kvm_set_pte_rmapp(self, kvm: Any, rmap_head: list[Sptep], slot: Any, gfn: int,
                          level: int, data: Any) -> int:
        new_pfn, host_writable = data
        need_flush = 0
        restart = True
        while restart:
            restart = False
            for sptep in self.for_each_rmap_spte(rmap_head):
                need_flush = 1
                if host_writable:  # pte_write(*ptep)
                    self.pte_list_remove(kvm, rmap_head, sptep)
                    restart = True
                    break
                new_spte = kvm_mmu_changed_pte_notifier_make_spte(
                    sptep[0].spt[sptep[1]], new_pfn)
                self.mmu_spte_clear_track_bits(kvm, sptep)
                self.mmu_spte_set(kvm, sptep, new_spte)
        # kvm_available_flush_tlb_with_range() is false without Hyper-V.
        return need_flush

    def mmu_spte_age(self, kvm: Any, sptep: Sptep) -> bool:
        spte = sptep[0].spt[sptep[1]]
        if not is_accessed_spte(spte):
            return False
        if spte_ad_enabled(spte):
            # clear_bit() of the accessed bit
            self._mmu_spte_store(kvm, sptep, spte & ~shadow_accessed_mask)
        else:
            # kvm_set_pfn_dirty() of a writable SPTE: host page state, not modelled
            self._mmu_spte_store(kvm, sptep, mark_spte_for_access_track(spte))
        return True

    def kvm_age_rmapp(self, kvm: Any, rmap_head: list[Sptep], slot: Any, gfn: int,
                      level: int, data: Any) -> int:
        young = 0
        for sptep in self.for_each_rmap_spte(rmap_head):
            young |= int(self.mmu_spte_age(kvm, sptep))
        return young

    def kvm_test_age_rmapp(self, kvm: Any, rmap_head: list[Sptep], slot: Any, gfn: int,
                           level: int, data: Any) -> int:
        for sptep in self.for_each_rmap_spte(rmap_head):
            if is_accessed_spte(sptep[0].spt[sptep[1]]):
                return 1
        return 0


__all__ = ["BATCH_ZAP_PAGES", "MmuLegacy", "kvm_mmu_page_get_gfn", "sptep_to_sp"]
