"""Linux 6.1's TDP MMU: era D as it stood in 6.1 (5.18's root lifecycle).

Built from the stored 6.1-rc7 tree (``krr-io/linux-6.1.0``) read against
5.18.12.  ``tdp_mmu.c``'s root functions (get, put with the defunct path,
``tdp_mmu_next_root``, the work queue, ``kvm_tdp_mmu_invalidate_all_roots``,
``kvm_tdp_mmu_get_vcpu_root_hpa``) are 5.18's, word for word but for the
``mmu_role.base`` -> ``root_role`` rename.  47b0c2e4c220 ("KVM: x86/mmu:
Fix race condition in direct_page_fault", said to land late in 6.1) only
moves ``make_mmu_pages_available`` to the legacy MMU's branch of
``direct_page_fault``; the stored rc7 tree already reads that way, and it is
a legacy-MMU fix either way.  No other change to the modelled functions
between rc7 and 6.1 is known to me (no 6.1 release tree is stored to diff
against), so the rc7 code is taken as the release's.

No 6.2 or 6.3 class: those releases changed no root-lifecycle code the
checker can tell apart from 6.1 (6.2 and 6.3 reworked SPTE bookkeeping, the
NX huge page tracking and the TDP MMU's module parameter; roots still start
at a count of 1 and die through the defunct path until 6.4's edbdb43fc96b).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..kernel import (
    LIST_HEAD,
    WARN_ON,
    WARN_ON_ONCE,
    kmem_cache_zalloc,
    list_add,
    list_del,
    list_empty,
    list_for_each_entry_safe,
    lockdep_assert_held,
    lockdep_assert_held_write,
    read_lock,
    read_unlock,
    write_lock,
    write_unlock,
)
from ..kernel.bug import KVM_BUG_ON
from . import fidelity
from . import shared as sh
from .mmu import KVM_MR_FLAGS_ONLY, PT64_ROOT_4LEVEL
from .mmu_legacy import PFERR_WRITE_MASK, RET_PF_RETRY, Sptep, shadow_root_tree, sptep_to_sp
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .spte import (
    ACC_ALL,
    KVM_MAX_HUGEPAGE_LEVEL,
    KVM_PAGES_PER_HPAGE,
    PAGE_SHIFT,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    is_large_pte,
    is_shadow_present_pte,
    make_nonleaf_spte,
)
from .structs import (
    INVALID_PAGE,
    KVM_ADDRESS_SPACE_NUM,
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_READONLY,
    kvm_mmu_page,
)
from .tdp_iter import to_shadow_page
from .v5_18 import V5_18

EEXIST = object()  # ERR_PTR(-EEXIST) from kvm_mmu_get_child_sp

__kernel_file__ = "arch/x86/kvm/mmu/mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions


class V6_1(V5_18):
    """Linux 6.1 (tree 6.1-rc7): 5.18's roots (count 1 at allocation, the last
    put of a valid root makes it defunct, invalid roots zapped by
    ``tdp_mmu_zap_wq``).  What 6.1 changed on the modelled paths:

    Mainline commits (5.19 to 6.1) that make it differ from v5.18:

    - b64d740ea7dd kvm: x86: mmu: Always flush TLBs when enabling dirty logging
      (6.1): ``kvm_mmu_slot_remove_write_access`` and
      ``kvm_mmu_slot_leaf_clear_dirty`` no longer flush;
      ``kvm_mmu_slot_apply_flags`` flushes the slot unconditionally after
      write-protecting it.
    - KVM: x86/mmu: Block all page faults during kvm_zap_gfn_range() (6.1,
      Fixes: edb298c663fc; hash not in the sources read):
      ``kvm_zap_gfn_range`` brackets its zap with
      ``kvm_mmu_invalidate_begin(kvm, 0, -1ul)`` / ``_end``, so every page
      fault that raced it retries.
    - 20ec3ebd707c KVM: Rename mmu_notifier_* to mmu_invalidate_* (6.0-rc3;
      in the stored 6.0.1 tree ``HHRhr/linux-6.0.1``, not in 5.19.0):
      ``mmu_notifier_retry_hva`` -> ``mmu_invalidate_retry_hva``
      (``is_page_fault_stale`` calls it), ``mmu_notifier_retry`` ->
      ``mmu_invalidate_retry``, ``kvm_inc_notifier_count`` ->
      ``kvm_mmu_invalidate_begin``; the fields ``mmu_notifier_seq`` /
      ``mmu_notifier_count`` became ``mmu_invalidate_seq`` /
      ``mmu_invalidate_in_progress`` in the same commit, and the model keeps
      the older field names (as it keeps ``mmu_role.base`` for 5.19's
      ``root_role``): same behaviour.

    The legacy (shadow) MMU's roots (``tdp_mmu=0``): 6.0 split
    ``kvm_mmu_get_page`` (David Matlack's series, hashes as in mainline's log):

    - 86938ab6925b KVM: x86/mmu: Stop passing "direct" to mmu_alloc_root()
    - 2e65e842c57d KVM: x86/mmu: Derive shadow MMU page role from parent
      (``kvm_mmu_child_role``, ``kvm_mmu_get_child_sp``)
    - 7f49777550e5 KVM: x86/mmu: Always pass 0 for @quadrant when gptes are 8
      bytes (``mmu_alloc_root(vcpu, gfn, quadrant, level)``)
    - 94c8136448c8 KVM: x86/mmu: Decompose kvm_mmu_get_page() into separate
      functions (``kvm_mmu_find_shadow_page``, ``kvm_mmu_alloc_shadow_page``)
    - c306aec81ae1 KVM: x86/mmu: Consolidate shadow page allocation and
      initialization
    - 876546436db9 KVM: x86/mmu: Rename shadow MMU functions that deal with
      shadow pages (``kvm_mmu_get_shadow_page``, ``kvm_mmu_free_shadow_page``)
    - 2f8b1b539be3 KVM: x86/mmu: Pass memory caches to allocate SPs separately,
      336081fb3f26 KVM: x86/mmu: Replace vcpu with kvm in
      kvm_mmu_alloc_shadow_page(), 3cc736b35799 KVM: x86/mmu: Pass kvm pointer
      separately from vcpu to kvm_mmu_find_shadow_page()
      (``__kvm_mmu_get_shadow_page(kvm, vcpu, caches, gfn, role)``)
    - 0cd8dc739833 KVM: x86/mmu: pull call to drop_large_spte() into
      __link_shadow_page(): ``__direct_map`` gets the child page first and
      ``__link_shadow_page`` drops the huge SPTE it replaces just before
      linking it (5.10 dropped it before looking the child up; both under
      the write lock, with no yield between).

    and 6.1 asserts the write lock in ``__kvm_mmu_prepare_zap_page`` (in the
    6.1-rc7 tree, not in 6.0.1; hash not in the sources read).  The root
    functions (``mmu_free_root_page``, ``kvm_mmu_free_roots``,
    ``kvm_zap_obsolete_pages``, ``kvm_mmu_zap_all_fast``, the obsolete-root
    request of 527d5cd7eece) are 5.18's; the 6.0.1 and 6.1-rc7 trees agree on
    them.  ``make_mmu_pages_available`` moving into the legacy branch of
    ``direct_page_fault`` (47b0c2e4c220) is outside the model (no page limit).
    The series' new ``WARN_ON_ONCE`` checks of ``mmu_alloc_root`` (a
    quadrant or 4-byte gPTEs for a direct role) cannot fire: the model's
    roles have neither.

    Simplifications: 5.19's rework of ``zap_collapsible_spte_range`` (zap
    the non-leaf SPTEs a huge page could replace) is not modelled: the model
    keeps 5.12's form, as every class since ``V5_13`` does (see its
    docstring); ``kvm_tdp_mmu_get_walk`` is the base model's.  5.18 already
    bumped the invalidation count in ``kvm_zap_gfn_range`` (over gfns passed
    as hvas, the bug the second item fixes); ``V5_18`` does not model that,
    ``V6_1`` models 6.1's form.  Everything ``V5_18`` lists.
    """

    name = "v6.1"
    summary = "Linux 6.1: era D (5.18's defunct roots and tdp_mmu_zap_wq), 6.1's flush moves"

    # Gone in 6.1: mmu_notifier_retry_hva, renamed mmu_invalidate_retry_hva
    # (20ec3ebd707c above).
    mmu_notifier_retry_hva = None

    # ---------------------------------------------------------- kvm_main.c
    def kvm_mmu_invalidate_begin(self, kvm: Any, start: int, end: int) -> None:
        """kvm_main.c 6.1 (renamed from ``kvm_inc_notifier_count``); under
        ``mmu_lock``."""
        kvm.mmu_notifier_count += 1
        if kvm.mmu_notifier_count == 1:
            kvm.mmu_notifier_range_start = start
            kvm.mmu_notifier_range_end = end
        else:
            kvm.mmu_notifier_range_start = min(kvm.mmu_notifier_range_start, start)
            kvm.mmu_notifier_range_end = max(kvm.mmu_notifier_range_end, end)

    def kvm_mmu_invalidate_end(self, kvm: Any, start: int, end: int) -> None:
        kvm.mmu_notifier_seq.store(kvm.mmu_notifier_seq.value + 1)
        kvm.mmu_notifier_count -= 1

    # ---------------------------------------------------------------- mmu.c
    def kvm_zap_gfn_range(self, kvm: Any, gfn_start: int, gfn_end: int) -> None:
        """Every fault retries while the zap runs: the invalidation covers all
        hvas (``0, -1ul``)."""
        if WARN_ON_ONCE(gfn_end <= gfn_start):
            return
        KVM_MMU_LOCK(kvm)
        self.kvm_mmu_invalidate_begin(kvm, 0, (1 << 64) - 1)
        flush = self.kvm_rmap_zap_gfn_range(kvm, gfn_start, gfn_end)
        if kvm.arch.tdp_mmu_enabled:
            for i in range(KVM_ADDRESS_SPACE_NUM):
                flush = self.kvm_tdp_mmu_zap_leafs(kvm, i, gfn_start, gfn_end, True, flush)
        if flush:
            self.kvm_flush_remote_tlbs_with_address(kvm, gfn_start, gfn_end - gfn_start)
        self.kvm_mmu_invalidate_end(kvm, 0, (1 << 64) - 1)
        KVM_MMU_UNLOCK(kvm)

    def kvm_rmap_zap_gfn_range(self, kvm: Any, gfn_start: int, gfn_end: int) -> bool:
        """6.0's name for 5.17's ``__kvm_zap_rmaps`` (same body)."""
        return self._kvm_zap_rmaps(kvm, gfn_start, gfn_end)

    def kvm_mmu_slot_remove_write_access(self, kvm: Any, memslot: Any, start_level: int) -> None:
        """b64d740ea7dd: the caller flushes.  The rmap walk (the legacy MMU's
        SPTEs) runs under the write lock only where rmaps exist; the model's
        5.15-5.18 still take the lock around an empty walk with the TDP MMU
        (a simplification: one extra lock round trip)."""
        if self.kvm_memslots_have_rmaps(kvm):
            KVM_MMU_LOCK(kvm)
            self.slot_handle_level(kvm, memslot, self.slot_rmap_write_protect, start_level,
                                   KVM_MAX_HUGEPAGE_LEVEL, False)
            KVM_MMU_UNLOCK(kvm)
        if kvm.arch.tdp_mmu_enabled:
            read_lock(kvm.mmu_lock)
            self.kvm_tdp_mmu_wrprot_slot(kvm, memslot, start_level)
            read_unlock(kvm.mmu_lock)

    def kvm_mmu_slot_leaf_clear_dirty(self, kvm: Any, memslot: Any) -> None:
        """b64d740ea7dd: the caller flushes.  The rmap walk (``__rmap_clear_dirty``)
        serves PML, which the model does not have; it is skipped where rmaps
        do not exist."""
        if self.kvm_memslots_have_rmaps(kvm):
            KVM_MMU_LOCK(kvm)
            KVM_MMU_UNLOCK(kvm)
        if kvm.arch.tdp_mmu_enabled:
            read_lock(kvm.mmu_lock)
            self.kvm_tdp_mmu_clear_dirty_slot(kvm, memslot)
            read_unlock(kvm.mmu_lock)

    # -------------------------------------------------------- kvm_host.h
    def mmu_invalidate_retry_hva(self, kvm: Any, mmu_seq: int, hva: int) -> bool:
        """20ec3ebd707c: ``mmu_notifier_retry_hva`` renamed (same body; the
        model's fields keep the older names)."""
        lockdep_assert_held(kvm.mmu_lock)
        if kvm.mmu_notifier_count and \
                kvm.mmu_notifier_range_start <= hva < kvm.mmu_notifier_range_end:
            return True
        return kvm.mmu_notifier_seq.value != mmu_seq

    def is_page_fault_stale(self, vcpu: Any, mmu_seq: int, pfn: Any, hva: Any) -> bool:
        """5.17's (an obsolete root, then the notifier), calling the renamed
        ``mmu_invalidate_retry_hva`` (20ec3ebd707c)."""
        sp = to_shadow_page(vcpu.kvm, vcpu.mmu.root_hpa >> PAGE_SHIFT)
        if sp is not None and self.is_obsolete_sp(vcpu.kvm, sp):
            return True
        return pfn is not None and self.mmu_invalidate_retry_hva(vcpu.kvm, mmu_seq, hva)

    def _stale_fault_spins(self, vcpu: Any, mmu_seq: int, pfn: Any, hva: Any) -> bool:
        return pfn is not None and self.mmu_invalidate_retry_hva(vcpu.kvm, mmu_seq, hva)

    # ------------------------------------------- legacy MMU (tdp_mmu=0)
    def mmu_alloc_direct_roots(self, vcpu: Any) -> int:
        """5.13's (the write lock around either MMU's allocation), calling 6.0's
        ``mmu_alloc_root(vcpu, gfn, quadrant, level)`` (86938ab6925b,
        7f49777550e5)."""
        kvm = vcpu.kvm
        write_lock(kvm.mmu_lock)
        if kvm.arch.tdp_mmu_enabled:
            vcpu.mmu.root_hpa = self.kvm_tdp_mmu_get_vcpu_root_hpa(vcpu)
        elif vcpu.mmu.shadow_root_level >= PT64_ROOT_4LEVEL:
            vcpu.mmu.root_hpa = self.mmu_alloc_root(vcpu, 0, 0, vcpu.mmu.shadow_root_level)
        else:
            WARN_ON_ONCE(True)  # PAE roots are not modelled ("Bad TDP root level")
        write_unlock(kvm.mmu_lock)
        return 0

    def mmu_alloc_shadow_roots(self, vcpu: Any) -> int:
        """5.13's, calling 6.0's ``mmu_alloc_root(vcpu, gfn, quadrant, level)``
        (86938ab6925b: the role, ``direct`` included, is the MMU's)."""
        kvm = vcpu.kvm
        mmu = vcpu.mmu
        root_pgd = self.get_guest_pgd(vcpu, mmu)
        root_gfn = root_pgd >> PAGE_SHIFT
        KVM_MMU_LOCK(kvm)
        if mmu.root_level >= PT64_ROOT_4LEVEL:
            mmu.root_hpa = self.mmu_alloc_root(vcpu, root_gfn, 0, mmu.shadow_root_level)
        else:
            WARN_ON(True)  # 32-bit and PAE guest page tables are not modelled
        mmu.root_pgd = root_pgd
        KVM_MMU_UNLOCK(kvm)
        return 0

    def mmu_alloc_root(self, vcpu: Any, gfn: int, quadrant: int,  # type: ignore[override]
                       level: int) -> int:
        """6.0: the role is the current MMU's ``root_role`` (the model's
        ``vcpu.mmu.mmu_role``: root_mmu's, or guest_mmu's shadow role in L2)
        at ``level``; the page comes from ``kvm_mmu_get_shadow_page``
        (876546436db9).  The caller holds the write lock."""
        kvm = vcpu.kvm
        role = replace(vcpu.mmu.mmu_role, level=level)  # role.quadrant: always 0 here
        sp = self.kvm_mmu_get_shadow_page(vcpu, gfn, role)
        if sp.root is None:
            sp.name = f"s{kvm.nr_roots_made}"
            kvm.nr_roots_made += 1
            sp.root = shadow_root_tree(sp)
        sp.root_count += 1
        sh.note(f"root {sp.name} ({sp.role}) root_count -> {sp.root_count}")
        return sp.pfn << PAGE_SHIFT

    def kvm_mmu_find_shadow_page(self, kvm: Any, vcpu: Any, gfn: int, sp_list: list[Any],
                                 role: Any) -> kvm_mmu_page | None:
        """94c8136448c8 / 3cc736b35799: the lookup half of 5.10's
        ``kvm_mmu_get_page``.  A direct page is never unsync, so neither the
        unsync zap of a role mismatch nor ``kvm_sync_page`` applies."""
        invalid_list = LIST_HEAD("invalid_list")
        found = None
        for sp in self.for_each_valid_sp(kvm, sp_list):
            if sp.gfn != gfn:
                continue
            if sp.role.word != role.word:
                continue
            if sp.role.direct:  # unsync and write-flooding: indirect pages only
                sh.note(f"kvm_mmu_find_shadow_page: found {sp.name} ({sp.role})")
                found = sp
                break
        self.kvm_mmu_commit_zap_page(kvm, invalid_list)
        return found

    def kvm_mmu_alloc_shadow_page(self, kvm: Any, caches: Any, gfn: int, sp_list: list[Any],
                                  role: Any) -> kvm_mmu_page:
        """c306aec81ae1 / 336081fb3f26: 5.10's ``kvm_mmu_alloc_page`` and the
        initialisation ``kvm_mmu_get_page`` did after it.  ``caches`` (the
        vCPU's memory caches) is not modelled: pages come from the slab."""
        sp = kmem_cache_zalloc(kvm.mmu_page_header_cache)
        sp.pfn = kvm.next_pt_pfn  # sp->spt, set_page_private()
        kvm.next_pt_pfn += 1
        kvm.phys[sp.pfn] = sp
        sp.parent_ptes = []
        # FIFO: kvm_zap_obsolete_pages() relies on new pages at the head.
        sp.mmu_valid_gen = kvm.arch.mmu_valid_gen
        list_add(sp.link, kvm.arch.active_mmu_pages)
        sp.gfn = gfn
        sp.role = role
        sp_list.insert(0, sp)  # hlist_add_head(&sp->hash_link, sp_list)
        return sp

    def _kvm_mmu_get_shadow_page(self, kvm: Any, vcpu: Any, caches: Any, gfn: int,
                                 role: Any) -> kvm_mmu_page:
        """``__kvm_mmu_get_shadow_page`` (2f8b1b539be3)."""
        sp_list = kvm.arch.mmu_page_hash.setdefault(self.kvm_page_table_hashfn(gfn), [])
        sp = self.kvm_mmu_find_shadow_page(kvm, vcpu, gfn, sp_list, role)
        if sp is None:
            sp = self.kvm_mmu_alloc_shadow_page(kvm, caches, gfn, sp_list, role)
        return sp

    def kvm_mmu_get_shadow_page(self, vcpu: Any, gfn: int, role: Any) -> kvm_mmu_page:
        return self._kvm_mmu_get_shadow_page(vcpu.kvm, vcpu, None, gfn, role)

    def kvm_mmu_child_role(self, sptep: Sptep, direct: bool, access: int) -> Any:
        """2e65e842c57d: the child's role is the parent's one level down (no
        4-byte gPTEs, so no quadrant)."""
        parent_sp = sptep_to_sp(sptep)
        return replace(parent_sp.role, level=parent_sp.role.level - 1, access=access,
                       direct=int(direct))

    def kvm_mmu_get_child_sp(self, vcpu: Any, sptep: Sptep, gfn: int, direct: bool,
                             access: int) -> Any:
        """The page to link at ``sptep``, or EEXIST if a page table is there."""
        spte = sptep[0].spt[sptep[1]]
        if is_shadow_present_pte(spte) and not is_large_pte(spte):
            return EEXIST
        role = self.kvm_mmu_child_role(sptep, direct, access)
        return self.kvm_mmu_get_shadow_page(vcpu, gfn, role)

    def _direct_map(self, vcpu: Any, gpa: int, error_code: int, map_writable: bool,
                    max_level: int, pfn: int | None, prefault: bool, is_tdp: bool) -> int:
        """``__direct_map`` at 6.0 (2e65e842c57d, 0cd8dc739833): the child page
        is looked up (or made) before a huge SPTE in its place is dropped, which
        ``__link_shadow_page`` now does.  The model keeps 5.15's argument list
        (6.0 passes ``struct kvm_page_fault``)."""
        kvm = vcpu.kvm
        gfn = gpa >> PAGE_SHIFT
        write = bool(error_code & PFERR_WRITE_MASK)
        base_gfn = gfn
        if WARN_ON(vcpu.mmu.root_hpa == INVALID_PAGE):
            return RET_PF_RETRY
        level, pfn = self.kvm_mmu_hugepage_adjust(vcpu, gfn, max_level, pfn)
        sptep = None
        it_level = 0
        for sptep, it_level, _it_addr in self.for_each_shadow_entry(vcpu, gpa):
            base_gfn = gfn & ~(KVM_PAGES_PER_HPAGE(it_level) - 1)
            if it_level == level:
                break
            sp = self.kvm_mmu_get_child_sp(vcpu, sptep, base_gfn, True, ACC_ALL)
            if sp is EEXIST:
                continue
            if sp.root is None:
                sp.name = f"p{kvm.nr_pages_made}"
                kvm.nr_pages_made += 1
                sp.root = sptep_to_sp(sptep).root
            self.link_shadow_page(vcpu, sptep, sp)
        if sptep is None or WARN_ON_ONCE(it_level != level):
            return RET_PF_RETRY  # the kernel returns -EFAULT on the WARN
        return self.mmu_set_spte(vcpu, sptep, ACC_ALL, write, level, base_gfn, pfn, prefault,
                                 map_writable)

    def link_shadow_page(self, vcpu: Any, sptep: Sptep, sp: kvm_mmu_page) -> None:
        self._link_shadow_page(vcpu.kvm, None, sptep, sp, True)

    def _link_shadow_page(self, kvm: Any, cache: Any, sptep: Sptep, sp: kvm_mmu_page,
                          flush: bool) -> None:
        """``__link_shadow_page`` (0cd8dc739833): a present SPTE here is a huge
        leaf; drop it (and flush) before linking ``sp``."""
        if is_shadow_present_pte(sptep[0].spt[sptep[1]]):
            self.drop_large_spte(kvm, sptep, flush)
        spte = make_nonleaf_spte(sp.pfn)
        self.mmu_spte_set(kvm, sptep, spte)
        sp.parent_ptes.append(sptep)  # mmu_page_add_parent_pte

    def drop_large_spte(self, kvm: Any, sptep: Sptep,  # type: ignore[override]
                        flush: bool) -> None:
        """0cd8dc739833: takes ``kvm`` and whether to flush; only called on a
        present (huge) SPTE."""
        sp = sptep_to_sp(sptep)
        WARN_ON(sp.role.level == PG_LEVEL_4K)
        self.drop_spte(kvm, sptep)
        if flush:
            self.kvm_flush_remote_tlbs_with_address(kvm, sp.gfn,
                                                    KVM_PAGES_PER_HPAGE(sp.role.level))

    def _kvm_mmu_prepare_zap_page(self, kvm: Any, sp: Any, invalid_list: Any
                                  ) -> tuple[bool, int]:
        """6.1: ``__kvm_mmu_prepare_zap_page`` asserts the write lock; the rest
        is 5.18's (527d5cd7eece)."""
        lockdep_assert_held_write(kvm.mmu_lock)
        return super()._kvm_mmu_prepare_zap_page(kvm, sp, invalid_list)

    def kvm_mmu_free_shadow_page(self, kvm: Any, sp: kvm_mmu_page) -> None:
        """876546436db9: ``kvm_mmu_free_page`` renamed (the model passes kvm
        for the hash and the page frames)."""
        WARN_ON(any(sp.spt))  # MMU_WARN_ON(!is_empty_shadow_page(sp->spt))
        bucket = kvm.arch.mmu_page_hash.get(self.kvm_page_table_hashfn(sp.gfn), [])
        if sp in bucket:
            bucket.remove(sp)  # hlist_del(&sp->hash_link)
        list_del(sp.link)
        sh.note(f"free {sp.name}", who=1)
        self.free_mmu_page(kvm, sp)

    def kvm_mmu_commit_zap_page(self, kvm: Any, invalid_list: Any) -> None:
        """876546436db9: frees with ``kvm_mmu_free_shadow_page``."""
        if list_empty(invalid_list):
            return
        self.kvm_flush_remote_tlbs(kvm)
        for sp in list_for_each_entry_safe(invalid_list):
            WARN_ON(not sp.role.invalid or sp.root_count)
            self.kvm_mmu_free_shadow_page(kvm, sp)

    # ---------------------------------------------------------------- x86.c
    def kvm_mmu_slot_apply_flags(self, kvm: Any, old: Any, new: Any, change: int) -> None:
        """x86.c 6.1: after write-protecting (or, with PML, clearing the dirty
        bits of) a slot whose dirty logging was just enabled, flush its TLB
        entries whatever the walks reported (b64d740ea7dd; the PML and
        write-protect walks no longer flush themselves).  Eager page splitting
        is not modelled, nor ``kvm_dirty_log_manual_protect_and_init_set``
        (never true in the model)."""
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
            return
        if self.kvm_x86_cpu_dirty_log_size(kvm):
            self.kvm_mmu_slot_leaf_clear_dirty(kvm, new)
            self.kvm_mmu_slot_remove_write_access(kvm, new, PG_LEVEL_2M)
        else:
            self.kvm_mmu_slot_remove_write_access(kvm, new, PG_LEVEL_4K)
        self.kvm_arch_flush_remote_tlbs_memslot(kvm, new)


    # ------------------------------------------------------------- cpuid
    def kvm_mmu_after_set_cpuid(self, vcpu: Any) -> None:
        """6.1 (as in the stored 6.1-rc7 tree): the MMUs' root roles are marked
        invalid so they are recomputed (``root_role.invalid = 1``), then the
        reset and 5.17's ``KVM_BUG_ON``."""
        vcpu.root_mmu.mmu_role = replace(vcpu.root_mmu.mmu_role, invalid=1)
        if vcpu.guest_mmu.mmu_role is not None:
            vcpu.guest_mmu.mmu_role = replace(vcpu.guest_mmu.mmu_role, invalid=1)
        self.kvm_mmu_reset_context(vcpu)
        KVM_BUG_ON(self.kvm_vcpu_has_run(vcpu), vcpu.kvm)


__all__ = ["V6_1"]
