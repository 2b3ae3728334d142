"""``mmu.c`` at v5.10, the parts on the TDP MMU path: loading and unloading a
vCPU's root, the direct page fault, fast zap on memslot changes, MMU-notifier
hooks, dirty-logging helpers, VM init/uninit.

With ``tdp_mmu=0`` the direct roots are the legacy (shadow) MMU's: its own
functions are in :mod:`tdpmmu.kvm.mmu_legacy`; the functions here call both
MMUs as ``mmu.c`` does (the legacy rmap walks first, then the TDP MMU's if
``kvm->arch.tdp_mmu_enabled``).  With ``tdp_mmu=1`` the legacy loops find
no pages and no rmaps.

A vCPU has two MMUs, ``root_mmu`` (L1's direct roots) and ``guest_mmu``
(nested EPT: L2's shadow-EPT roots, legacy shadow pages with
``role.direct=0``), each with a current root and ``prev_roots``, the cache
of earlier roots the fast root switch (``fast_pgd_switch``) reuses;
``kvm_mmu_unload`` frees every root of both.  Nested entry and exit are in
:mod:`tdpmmu.kvm.x86`.

Simplified: the fault path has no page tracking, async page faults or
per-vCPU MMIO cache, and of ``handle_abnormal_pfn`` only the no-slot and
read-only cases; no PAE roots (``pae_root``) or special roots; no shadow
paging of L1 (``tdp_enabled`` is always on), so ``kvm_mmu_new_pgd`` is
reached only through nested entry/exit.
"""

from __future__ import annotations

from typing import Any

from ..kernel import (
    BUG,
    LIST_HEAD,
    WARN_ON,
    list_for_each_entry_safe,
    lockdep_assert_held,
    mutex_lock,
    mutex_unlock,
)
from ..kernel.bug import BUG_ON as VM_BUG_ON
from . import fidelity, shared
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .spte import (
    KVM_MAX_HUGEPAGE_LEVEL,
    KVM_PAGES_PER_HPAGE,
    PAGE_SHIFT,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    get_mmio_spte_generation,
    is_mmio_spte,
    is_shadow_present_pte,
    round_gfn_for_level,
)
from .structs import (
    INVALID_PAGE,
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_READONLY,
    KVM_MEMSLOT_INVALID,
    KVM_MMU_NUM_PREV_ROOTS,
    KVM_REQ_MMU_RELOAD,
    REQUEST_NAMES,
    kvm_mmu_page_role,
)
from .tdp_iter import to_shadow_page
from .tdp_mmu import PFERR_WRITE_MASK, RET_PF_EMULATE, RET_PF_INVALID, RET_PF_RETRY

__kernel_file__ = "arch/x86/kvm/mmu/mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions

KVM_MR_CREATE = 0
KVM_MR_DELETE = 1
KVM_MR_MOVE = 2
KVM_MR_FLAGS_ONLY = 3
PFERR_RSVD_MASK = 1 << 3
KVM_PFN_ERR_RO_FAULT = -2  # a write fault on a read-only memslot
EIO = 5
ENOSPC = 28
PT64_ROOT_4LEVEL = 2  # the model's small roots (2-4 levels, spte.py) all stand for 4-level ones
ACC_ALL = 7

KVM_MMU_ROOT_CURRENT = 1 << 0


def KVM_MMU_ROOT_PREVIOUS(i: int) -> int:
    return 1 << (1 + i)


KVM_MMU_ROOTS_ALL = (1 << (1 + KVM_MMU_NUM_PREV_ROOTS)) - 1


class Mmu:
    """The ``mmu.c`` glue around the TDP MMU."""

    # ------------------------------------------------------------ requests
    def kvm_make_request(self, req: int, vcpu: Any) -> None:
        shared.atomic_or(vcpu.requests, 1 << req,
                         f"kvm_make_request({REQUEST_NAMES[req]}, vcpu{vcpu.vcpu_id})")

    def kvm_make_all_cpus_request(self, kvm: Any, req: int) -> None:
        """Sets the request on every vCPU.  The kick and the wait for the IPI
        acknowledgement are implicit: a vCPU checks its requests before every
        guest access (:func:`shared.tlb_lookup_point`)."""
        for vcpu in kvm.vcpus:
            self.kvm_make_request(req, vcpu)

    def kvm_reload_remote_mmus(self, kvm: Any) -> None:
        self.kvm_make_all_cpus_request(kvm, KVM_REQ_MMU_RELOAD)

    def kvm_flush_remote_tlbs(self, kvm: Any) -> None:
        """``KVM_REQ_TLB_FLUSH`` to all vCPUs and wait: the model empties every TLB
        in one step, which is what the requester can rely on when it returns."""
        shared.tlb_flush([v.tlb for v in kvm.vcpus], "kvm_flush_remote_tlbs")

    def kvm_flush_remote_tlbs_with_address(self, kvm: Any, start_gfn: int, pages: int) -> None:
        """Range flushes (Hyper-V enlightenment) fall back to a full flush."""
        self.kvm_flush_remote_tlbs(kvm)

    def kvm_arch_flush_remote_tlbs_memslot(self, kvm: Any, memslot: Any) -> None:
        lockdep_assert_held(kvm.slots_lock)
        self.kvm_flush_remote_tlbs_with_address(kvm, memslot.base_gfn, memslot.npages)

    def kvm_vcpu_flush_tlb_all(self, vcpu: Any) -> None:
        shared.tlb_flush([vcpu.tlb], f"vcpu{vcpu.vcpu_id} flush TLB")

    kvm_vcpu_flush_tlb_current = kvm_vcpu_flush_tlb_all

    # ----------------------------------------------------------- load/unload
    def kvm_mmu_reload(self, vcpu: Any) -> int:
        if vcpu.mmu.root_hpa != INVALID_PAGE:
            return 0
        return self.kvm_mmu_load(vcpu)

    def kvm_mmu_load(self, vcpu: Any) -> int:
        # Model only (ghost state for the TLB properties): between installing
        # the new root and the flush below, the TLB's entries are the old
        # root's.  Real TLBs tag them with the old EPTP/ASID, so the new root
        # never uses them; the model's TLB is untagged, so the properties skip
        # a vCPU while its load's flush is pending.
        vcpu.tlb_flush_after_load_pending = True
        r = self.mmu_alloc_roots(vcpu)
        if r:
            vcpu.tlb_flush_after_load_pending = False
            return r
        self.kvm_vcpu_flush_tlb_current(vcpu)  # kvm_x86_ops.tlb_flush_current
        vcpu.tlb_flush_after_load_pending = False
        return 0

    def mmu_alloc_roots(self, vcpu: Any) -> int:
        if vcpu.mmu.direct_map:
            return self.mmu_alloc_direct_roots(vcpu)
        return self.mmu_alloc_shadow_roots(vcpu)

    def mmu_alloc_direct_roots(self, vcpu: Any) -> int:
        shadow_root_level = vcpu.mmu.shadow_root_level
        if vcpu.kvm.arch.tdp_mmu_enabled:
            root = self.kvm_tdp_mmu_get_vcpu_root_hpa(vcpu)
            if root == INVALID_PAGE:
                return -ENOSPC
            vcpu.mmu.root_hpa = root
        elif shadow_root_level >= PT64_ROOT_4LEVEL:
            root = self.mmu_alloc_root(vcpu, 0, 0, shadow_root_level, True)
            if root == INVALID_PAGE:
                return -ENOSPC
            vcpu.mmu.root_hpa = root
        else:
            BUG()  # PAE roots (PT32E_ROOT_LEVEL) are not modelled
        return 0

    def mmu_alloc_shadow_roots(self, vcpu: Any) -> int:
        """A shadow root for the current MMU: with nested EPT, guest_mmu's root
        shadowing L1's EPT table at the EPTP's gfn (``role.direct=0``), always
        a legacy shadow page, whatever ``tdp_mmu`` says.  5.10 takes
        ``mmu_lock`` in ``mmu_alloc_root``.

        Simplified: ``mmu_check_root`` (a triple fault for an EPTP outside
        the memslots), ``kvm_mmu_sync_roots`` and ``account_shadowed`` (the
        write tracking of the shadowed EPT table's gfn, which write-protects
        L1's SPTEs of that gfn) are left out; the shadow root
        maps nothing (L2 makes no memory accesses in the model), so only its
        lifecycle (allocation, reuse, obsolescence, free) is modelled."""
        mmu = vcpu.mmu
        root_pgd = self.get_guest_pgd(vcpu, mmu)
        root_gfn = root_pgd >> PAGE_SHIFT
        if mmu.root_level >= PT64_ROOT_4LEVEL:
            root = self.mmu_alloc_root(vcpu, root_gfn, 0, mmu.shadow_root_level, False)
            mmu.root_hpa = root
        else:
            BUG()  # 32-bit and PAE guest page tables are not modelled
        mmu.root_pgd = root_pgd
        return 0

    def kvm_mmu_unload(self, vcpu: Any) -> None:
        """Frees every root of both MMUs, current and cached."""
        self.kvm_mmu_free_roots(vcpu, vcpu.root_mmu, KVM_MMU_ROOTS_ALL)
        WARN_ON(vcpu.root_mmu.root_hpa != INVALID_PAGE)
        self.kvm_mmu_free_roots(vcpu, vcpu.guest_mmu, KVM_MMU_ROOTS_ALL)
        WARN_ON(vcpu.guest_mmu.root_hpa != INVALID_PAGE)

    def kvm_mmu_free_roots(self, vcpu: Any, mmu: Any,
                           roots_to_free: int = KVM_MMU_ROOTS_ALL) -> None:
        """Frees the roots ``roots_to_free`` names (the current one, cached
        ones) under ``mmu_lock``, taken only if one of them is valid.  The
        kernel's PAE branch (four ``pae_root`` entries) is not modelled: every
        model root is 4-level-like (``PT64_ROOT_4LEVEL``)."""
        kvm = vcpu.kvm
        invalid_list = LIST_HEAD("invalid_list")
        free_active_root = bool(roots_to_free & KVM_MMU_ROOT_CURRENT)
        # Before taking the lock, see whether there is any work.
        if not (free_active_root and mmu.root_hpa != INVALID_PAGE) and \
                not self.any_prev_root_to_free(mmu, roots_to_free):
            return
        KVM_MMU_LOCK(kvm)
        for i in range(KVM_MMU_NUM_PREV_ROOTS):
            if roots_to_free & KVM_MMU_ROOT_PREVIOUS(i):
                self.mmu_free_root_page(kvm, mmu.prev_roots[i], invalid_list)
        if free_active_root:
            if mmu.shadow_root_level >= PT64_ROOT_4LEVEL and \
                    (mmu.root_level >= PT64_ROOT_4LEVEL or mmu.direct_map):
                self.mmu_free_root_page(kvm, mmu, invalid_list)
            else:
                mmu.root_hpa = INVALID_PAGE  # pae_root[]: not modelled
            mmu.root_pgd = 0
        self.kvm_mmu_commit_zap_page(kvm, invalid_list)
        KVM_MMU_UNLOCK(kvm)

    def any_prev_root_to_free(self, mmu: Any, roots_to_free: int) -> bool:
        """Model-only name for the loop ``kvm_mmu_free_roots`` opens with (the
        same in every version): a cached root asked for is valid."""
        return any(roots_to_free & KVM_MMU_ROOT_PREVIOUS(i)
                   and mmu.prev_roots[i].hpa != INVALID_PAGE
                   for i in range(KVM_MMU_NUM_PREV_ROOTS))

    def mmu_free_root_page(self, kvm: Any, mmu: Any, invalid_list: Any = None) -> None:
        """``mmu_free_root_page(kvm, &root_hpa, ...)``: ``mmu`` is anything with
        a ``root_hpa`` (the MMU, for its current root, or a ``prev_roots``
        entry)."""
        if mmu.root_hpa == INVALID_PAGE:
            return
        sp = to_shadow_page(kvm, mmu.root_hpa >> PAGE_SHIFT)
        if self.kvm_mmu_put_root(kvm, sp):
            if sp.tdp_mmu_page:
                self.kvm_tdp_mmu_free_root(kvm, sp)
            elif sp.role.invalid:
                self.kvm_mmu_prepare_zap_page(kvm, sp, invalid_list)
        mmu.root_hpa = INVALID_PAGE

    def kvm_mmu_reset_context(self, vcpu: Any) -> None:
        """A role change (e.g. entering SMM, KVM_SET_CPUID): drop every root of
        both MMUs; the next entry loads one."""
        self.kvm_mmu_unload(vcpu)
        self.kvm_init_mmu(vcpu)

    def kvm_init_mmu(self, vcpu: Any) -> None:
        """5.10's ``kvm_init_mmu(vcpu, reset_roots)`` with the roots already
        freed: ``init_kvm_nested_mmu`` while L2 runs (the walk MMU: nothing
        the roots read), else ``init_kvm_tdp_mmu`` (root_mmu's role)."""
        if self.mmu_is_nested(vcpu):
            return
        self.init_kvm_tdp_mmu(vcpu)

    def mmu_is_nested(self, vcpu: Any) -> bool:
        """``vcpu->arch.walk_mmu == &vcpu->arch.nested_mmu``: L2 runs with
        nested EPT (the model has no other nested paging)."""
        return vcpu.mmu is vcpu.guest_mmu

    def init_kvm_tdp_mmu(self, vcpu: Any) -> None:
        context = vcpu.root_mmu
        context.shadow_root_level = vcpu.kvm.root_level
        context.root_level = PT64_ROOT_4LEVEL  # a 64-bit L1 with paging on
        context.direct_map = True
        context.mmu_role = kvm_mmu_page_role(level=vcpu.kvm.root_level, smm=vcpu.smm,
                                             guest_mode=vcpu.guest_mode)

    # ------------------------------------------------- fast root switch
    def is_root_usable(self, kvm: Any, root: Any, pgd: int, role: Any) -> bool:
        if not (role.direct or pgd == root.pgd) or root.hpa == INVALID_PAGE:
            return False
        sp = to_shadow_page(kvm, root.hpa >> PAGE_SHIFT)
        return sp is not None and role.word == sp.role.word

    def cached_root_available(self, vcpu: Any, new_pgd: int, new_role: Any) -> bool:
        """Swaps the current root into ``prev_roots`` (LRU order) until one is
        usable for the new pgd and role; if none is, the LRU entry ends up as
        the current root, for the caller to free."""
        mmu = vcpu.mmu
        root = mmu.root
        if self.is_root_usable(vcpu.kvm, root, new_pgd, new_role):
            return True
        found = False
        for i in range(KVM_MMU_NUM_PREV_ROOTS):
            root, mmu.prev_roots[i] = mmu.prev_roots[i], root
            if self.is_root_usable(vcpu.kvm, root, new_pgd, new_role):
                found = True
                break
        mmu.set_root(root)
        return found

    def fast_pgd_switch(self, vcpu: Any, new_pgd: int, new_role: Any) -> bool:
        mmu = vcpu.mmu
        if mmu.shadow_root_level >= PT64_ROOT_4LEVEL and mmu.root_level >= PT64_ROOT_4LEVEL:
            return self.cached_root_available(vcpu, new_pgd, new_role)
        return False

    def _kvm_mmu_new_pgd(self, vcpu: Any, new_pgd: int, new_role: Any) -> None:
        """A reused root may be obsolete (the MMU generation changed): the
        reload request of that change frees it.  The requests a reuse makes
        (``KVM_REQ_LOAD_MMU_PGD``, the sync and flush ones) load the root into
        the VMCS and sync shadow pages: not modelled."""
        if not self.fast_pgd_switch(vcpu, new_pgd, new_role):
            self.kvm_mmu_free_roots(vcpu, vcpu.mmu, KVM_MMU_ROOT_CURRENT)
            return
        shared.note(f"{vcpu.mmu.name}: fast switch to cached root for pgd {new_pgd:#x}")

    def kvm_mmu_new_pgd(self, vcpu: Any, new_pgd: int) -> None:
        self._kvm_mmu_new_pgd(vcpu, new_pgd, self.kvm_mmu_calc_root_page_role(vcpu))

    def kvm_mmu_calc_root_page_role(self, vcpu: Any) -> Any:
        """``kvm_calc_tdp_mmu_root_page_role``'s base role (tdp_enabled)."""
        return kvm_mmu_page_role(level=vcpu.kvm.root_level, smm=vcpu.smm,
                                 guest_mode=vcpu.guest_mode)

    def kvm_calc_shadow_ept_root_page_role(self, vcpu: Any, level: int) -> Any:
        """SMM is inherited from root_mmu; not direct, guest_mode.  The bits of
        the kernel's role that only tell shadow-EPT pages apart from other
        shadow pages (cr0_wp + smap_andnot_wp, ad_disabled, execonly) are
        folded into ``direct=0, guest_mode=1``."""
        return kvm_mmu_page_role(level=level, smm=vcpu.root_mmu.mmu_role.smm, direct=0,
                                 access=ACC_ALL, guest_mode=1)

    def kvm_init_shadow_ept_mmu(self, vcpu: Any, new_eptp: int) -> None:
        context = vcpu.guest_mmu
        level = vcpu.kvm.root_level  # vmx_eptp_page_walk_level(): L1 uses L0's depth
        new_role = self.kvm_calc_shadow_ept_root_page_role(vcpu, level)
        self._kvm_mmu_new_pgd(vcpu, new_eptp, new_role)
        if new_role == context.mmu_role:
            return
        context.shadow_root_level = level
        context.root_level = level
        context.direct_map = False
        context.mmu_role = new_role

    # ------------------------------------------------------------ page fault
    def kvm_mmu_page_fault(self, vcpu: Any, gpa: int, error_code: int) -> int:
        if WARN_ON(vcpu.mmu.root_hpa == INVALID_PAGE):
            return RET_PF_RETRY
        r = RET_PF_INVALID
        if error_code & PFERR_RSVD_MASK:
            r = self.handle_mmio_page_fault(vcpu, gpa)
            if r == RET_PF_EMULATE:
                return r
        if r == RET_PF_INVALID:
            r = self.kvm_tdp_page_fault(vcpu, gpa, error_code & ~PFERR_RSVD_MASK, False)
            if WARN_ON(r == RET_PF_INVALID):
                return -EIO
        return r

    def handle_mmio_page_fault(self, vcpu: Any, addr: int) -> int:
        """An EPT misconfiguration: an MMIO SPTE of the current generation is
        emulated; a stale one falls through to the page-fault path."""
        sptes = self.get_mmio_spte(vcpu, addr)
        leaf = sptes[-1] if sptes else 0
        if is_mmio_spte(leaf):
            if self.check_mmio_spte(vcpu, leaf):
                return RET_PF_EMULATE
            return RET_PF_INVALID
        return RET_PF_RETRY

    def get_mmio_spte(self, vcpu: Any, addr: int) -> list[int]:
        root = to_shadow_page(vcpu.kvm, vcpu.mmu.root_hpa >> PAGE_SHIFT)
        shared.hardware_walk_point(root.root, addr >> PAGE_SHIFT, vcpu.tlb,
                                   vcpu.requests)  # a lockless walk
        if self.is_tdp_mmu_root(vcpu.kvm, vcpu.mmu.root_hpa):
            return self.kvm_tdp_mmu_get_walk(vcpu, addr)
        return self.get_walk(vcpu, addr)

    def get_walk(self, vcpu: Any, addr: int) -> list[int]:
        """The legacy MMU's lockless walk (walk_shadow_page_lockless_begin/end):
        the SPTEs on the path to ``addr``, root first, up to a non-present one."""
        sptes = []
        for (sp, index), _level, _addr in self.for_each_shadow_entry(vcpu, addr):
            spte = sp.spt[index]
            sptes.append(spte)
            if not is_shadow_present_pte(spte):
                break
        return sptes

    def check_mmio_spte(self, vcpu: Any, spte: int) -> bool:
        return get_mmio_spte_generation(spte) == self.kvm_memslots_generation(vcpu.kvm, vcpu)

    def kvm_tdp_page_fault(self, vcpu: Any, gpa: int, error_code: int, prefault: bool) -> int:
        max_level = PG_LEVEL_2M
        return self.direct_page_fault(vcpu, gpa, error_code, prefault, max_level, True)

    def direct_page_fault(self, vcpu: Any, gpa: int, error_code: int, prefault: bool,
                          max_level: int, is_tdp: bool) -> int:
        kvm = vcpu.kvm
        gfn = gpa >> PAGE_SHIFT
        write = bool(error_code & PFERR_WRITE_MASK)
        # Snapshot the notifier sequence before looking up the pfn; a change
        # (or an invalidation in progress) makes the fault retry.
        mmu_seq = kvm.mmu_notifier_seq.load()
        pfn, map_writable = self.try_async_pf(vcpu, prefault, gfn, gpa, write)
        if pfn is KVM_PFN_ERR_RO_FAULT:
            return RET_PF_EMULATE  # handle_abnormal_pfn(): a write to a read-only slot
        r = RET_PF_RETRY
        KVM_MMU_LOCK(kvm)
        if self.mmu_notifier_retry(kvm, mmu_seq):
            shared.note("mmu_notifier_retry: the fault will be retried")
            vcpu.fault_retry_spin = True
        elif self.is_tdp_mmu_root(kvm, vcpu.mmu.root_hpa):
            r = self.kvm_tdp_mmu_map(vcpu, gpa, error_code, map_writable, max_level, pfn,
                                     prefault)
        else:
            r = self._direct_map(vcpu, gpa, error_code, map_writable, max_level, pfn,
                                 prefault, is_tdp)
        KVM_MMU_UNLOCK(kvm)
        return r

    def try_async_pf(self, vcpu: Any, prefault: bool, gfn: int, gpa: int,
                     write: bool) -> tuple[int | None, bool]:
        """``__gfn_to_pfn_memslot``: (None, ...) stands for KVM_PFN_NOSLOT."""
        slot = self.kvm_vcpu_gfn_to_memslot(vcpu, gfn)
        if slot is None or slot.flags & KVM_MEMSLOT_INVALID:
            return None, False
        hva = slot.userspace_addr + (gfn - slot.base_gfn)
        writable_slot = not slot.flags & KVM_MEM_READONLY
        if write and not writable_slot:
            return KVM_PFN_ERR_RO_FAULT, False
        return self.hva_to_pfn(vcpu.kvm, hva, write, writable_slot)

    def kvm_mmu_hugepage_adjust(self, vcpu: Any, gfn: int, max_level: int,
                                pfn: int | None) -> tuple[int, int | None]:
        """The level to map ``gfn`` at, and the pfn to map (aligned for a huge SPTE).

        A 2M SPTE needs the aligned gfn range inside one memslot with the same
        alignment of host addresses, no dirty logging (the model's stand-in for
        ``lpage_info``'s ``disallow_lpage``), and the host mapping the page with
        a huge page (``host_pfn_mapping_level``).  The host mapping is read
        without a lock, as the kernel does: the MMU-notifier retry check that
        ran before under ``mmu_lock`` guarantees it is not being changed.
        """
        if pfn is None or max_level < PG_LEVEL_2M:
            return PG_LEVEL_4K, pfn
        slot = self.kvm_vcpu_gfn_to_memslot(vcpu, gfn)
        if slot is None or slot.flags & KVM_MEM_LOG_DIRTY_PAGES:
            return PG_LEVEL_4K, pfn
        pages = KVM_PAGES_PER_HPAGE(PG_LEVEL_2M)
        base = round_gfn_for_level(gfn, PG_LEVEL_2M)
        if base < slot.base_gfn or base + pages > slot.base_gfn + slot.npages:
            return PG_LEVEL_4K, pfn
        if (slot.userspace_addr - slot.base_gfn) % pages:
            return PG_LEVEL_4K, pfn
        if not vcpu.kvm.mm.is_huge_frame(pfn):
            return PG_LEVEL_4K, pfn
        mask = pages - 1
        VM_BUG_ON((gfn & mask) != (pfn & mask))
        return PG_LEVEL_2M, pfn & ~mask

    def PageTransCompoundMap(self, kvm: Any, pfn: int) -> bool:
        """Is ``pfn`` part of a huge page the host maps as one?  Page-table pages
        never are, so v5.10's zap_collapsible_spte_range (which asks this of
        a non-leaf SPTE's pfn, the child page table) never zaps."""
        return kvm.mm.is_huge_frame(pfn)

    # ------------------------------------------------------------- fast zap
    def kvm_mmu_zap_all_fast(self, kvm: Any) -> None:
        lockdep_assert_held(kvm.slots_lock)
        KVM_MMU_LOCK(kvm)
        kvm.arch.mmu_valid_gen = 1 - kvm.arch.mmu_valid_gen
        # Every vCPU must drop its root; TDP roots are not invalidated at v5.10,
        # so a reloading vCPU finds the same root again if its role matches.
        self.kvm_reload_remote_mmus(kvm)
        self.kvm_zap_obsolete_pages(kvm)
        if kvm.arch.tdp_mmu_enabled:
            self.kvm_tdp_mmu_zap_all(kvm)
        KVM_MMU_UNLOCK(kvm)

    def kvm_mmu_invalidate_zap_pages_in_memslot(self, kvm: Any, slot: Any) -> None:
        self.kvm_mmu_zap_all_fast(kvm)

    def kvm_arch_flush_shadow_memslot(self, kvm: Any, slot: Any) -> None:
        """``kvm_page_track_flush_slot`` -> the MMU's page-track notifier."""
        self.kvm_mmu_invalidate_zap_pages_in_memslot(kvm, slot)

    def kvm_zap_gfn_range(self, kvm: Any, gfn_start: int, gfn_end: int) -> None:
        """Zap a gfn range in every address space (a guest MTRR update does it,
        ``update_mtrr``); no vCPU is asked to reload."""
        KVM_MMU_LOCK(kvm)
        self.kvm_zap_gfn_range_rmaps(kvm, gfn_start, gfn_end)
        if kvm.arch.tdp_mmu_enabled:
            flush = self.kvm_tdp_mmu_zap_gfn_range(kvm, gfn_start, gfn_end)
            if flush:
                self.kvm_flush_remote_tlbs(kvm)
        KVM_MMU_UNLOCK(kvm)

    def kvm_zap_gfn_range_rmaps(self, kvm: Any, gfn_start: int, gfn_end: int) -> None:
        """The memslot loop ``kvm_zap_gfn_range`` opens with (the legacy MMU's
        rmaps; a model-only name for the loop, so a later version that changed
        the lock around it can reuse it)."""
        from .structs import KVM_ADDRESS_SPACE_NUM
        for i in range(KVM_ADDRESS_SPACE_NUM):
            slots = self._kvm_memslots(kvm, i)
            for memslot in slots.slots:
                start = max(gfn_start, memslot.base_gfn)
                end = min(gfn_end, memslot.base_gfn + memslot.npages)
                if start >= end:
                    continue
                self.slot_handle_level_range(kvm, memslot, self.kvm_zap_rmapp, PG_LEVEL_4K,
                                             KVM_MAX_HUGEPAGE_LEVEL, start, end - 1, True)

    def kvm_mmu_zap_all(self, kvm: Any) -> None:
        invalid_list = LIST_HEAD("invalid_list")
        KVM_MMU_LOCK(kvm)
        restart = True
        while restart:
            restart = False
            for sp in list_for_each_entry_safe(kvm.arch.active_mmu_pages):
                if WARN_ON(sp.role.invalid):
                    continue
                if self._kvm_mmu_prepare_zap_page(kvm, sp, invalid_list)[0]:
                    restart = True
                    break
                if self.cond_resched_mmu_lock(kvm):
                    restart = True
                    break
        self.kvm_mmu_commit_zap_page(kvm, invalid_list)
        if kvm.arch.tdp_mmu_enabled:
            self.kvm_tdp_mmu_zap_all(kvm)
        KVM_MMU_UNLOCK(kvm)

    def kvm_arch_flush_shadow_all(self, kvm: Any) -> None:
        self.kvm_mmu_zap_all(kvm)

    # ---------------------------------------------------------- mmu notifier
    def kvm_unmap_hva_range(self, kvm: Any, start: int, end: int) -> int:
        r = self.kvm_handle_hva_range(kvm, start, end, 0, self.kvm_unmap_rmapp)
        if kvm.arch.tdp_mmu_enabled:
            r |= self.kvm_tdp_mmu_zap_hva_range(kvm, start, end)
        return r

    def kvm_set_spte_hva(self, kvm: Any, hva: int, pte: Any) -> int:
        r = self.kvm_handle_hva(kvm, hva, pte, self.kvm_set_pte_rmapp)
        if kvm.arch.tdp_mmu_enabled:
            r |= self.kvm_tdp_mmu_set_spte_hva(kvm, hva, pte)
        return r

    def kvm_age_hva(self, kvm: Any, start: int, end: int) -> int:
        young = self.kvm_handle_hva_range(kvm, start, end, 0, self.kvm_age_rmapp)
        if kvm.arch.tdp_mmu_enabled:
            young |= self.kvm_tdp_mmu_age_hva_range(kvm, start, end)
        return young

    def kvm_test_age_hva(self, kvm: Any, hva: int) -> int:
        young = self.kvm_handle_hva(kvm, hva, 0, self.kvm_test_age_rmapp)
        if kvm.arch.tdp_mmu_enabled:
            young |= self.kvm_tdp_mmu_test_age_hva(kvm, hva)
        return young

    # ---------------------------------------------------------- dirty logging
    def kvm_mmu_slot_remove_write_access(self, kvm: Any, memslot: Any, start_level: int) -> None:
        KVM_MMU_LOCK(kvm)
        flush = self.slot_handle_level(kvm, memslot, self.slot_rmap_write_protect, start_level,
                                       KVM_MAX_HUGEPAGE_LEVEL, False)
        # The TDP MMU write-protects down to 4K whatever start_level says (v5.10).
        if kvm.arch.tdp_mmu_enabled:
            flush |= self.kvm_tdp_mmu_wrprot_slot(kvm, memslot, PG_LEVEL_4K)
        KVM_MMU_UNLOCK(kvm)
        # The flush can wait until after mmu_lock: an SPTE only lost its
        # writable bit, and a vCPU that writes through a stale TLB entry
        # before the flush wrote before the enabling ioctl returned.
        if flush:
            self.kvm_arch_flush_remote_tlbs_memslot(kvm, memslot)

    def kvm_mmu_slot_leaf_clear_dirty(self, kvm: Any, memslot: Any) -> None:
        self.slot_tdp_walk_and_flush(kvm, memslot, lambda: self.kvm_tdp_mmu_clear_dirty_slot(
            kvm, memslot))

    def kvm_mmu_slot_set_dirty(self, kvm: Any, memslot: Any) -> None:
        self.slot_tdp_walk_and_flush(kvm, memslot, lambda: self.kvm_tdp_mmu_slot_set_dirty(
            kvm, memslot))

    def slot_tdp_walk_and_flush(self, kvm: Any, memslot: Any, tdp_walk: Any) -> None:
        """The shape the two functions above share in mmu.c: run the TDP MMU's
        slot walk under ``mmu_lock``, then flush the slot's TLB entries after
        dropping the lock if it asked.  Their legacy rmap walks
        (``__rmap_clear_dirty``, ``__rmap_set_dirty``) serve PML, which the
        model does not have: left out."""
        KVM_MMU_LOCK(kvm)
        flush = False
        if kvm.arch.tdp_mmu_enabled:
            flush |= tdp_walk()
        KVM_MMU_UNLOCK(kvm)
        if flush:
            self.kvm_arch_flush_remote_tlbs_memslot(kvm, memslot)

    def kvm_mmu_zap_collapsible_sptes(self, kvm: Any, memslot: Any) -> None:
        KVM_MMU_LOCK(kvm)
        if kvm.arch.tdp_mmu_enabled:
            self.kvm_tdp_mmu_zap_collapsible_sptes(kvm, memslot)
        KVM_MMU_UNLOCK(kvm)

    def kvm_mmu_write_protect_pt_masked(self, kvm: Any, slot: Any, gfn_offset: int,
                                        mask: int) -> None:
        if kvm.arch.tdp_mmu_enabled:
            self.kvm_tdp_mmu_clear_dirty_pt_masked(kvm, slot, slot.base_gfn + gfn_offset, mask,
                                                   True)
        self.kvm_mmu_write_protect_pt_masked_legacy(kvm, slot, gfn_offset, mask)

    def kvm_mmu_clear_dirty_pt_masked(self, kvm: Any, slot: Any, gfn_offset: int,
                                      mask: int) -> None:
        """PML: clear the dirty bits of the collected pages, so that the CPU logs
        their next write (the rmap half, ``__rmap_clear_dirty``, is not modelled:
        PML runs with the TDP MMU only, see :mod:`.vmx`)."""
        if kvm.arch.tdp_mmu_enabled:
            self.kvm_tdp_mmu_clear_dirty_pt_masked(kvm, slot, slot.base_gfn + gfn_offset, mask,
                                                   False)

    def kvm_arch_mmu_enable_log_dirty_pt_masked(self, kvm: Any, slot: Any, gfn_offset: int,
                                                mask: int) -> None:
        """PML's hook clears dirty bits; without PML the collected pages are
        write-protected again."""
        hook = self.kvm_x86_op(kvm, "enable_log_dirty_pt_masked")
        if hook is not None:
            hook(kvm, slot, gfn_offset, mask)
        else:
            self.kvm_mmu_write_protect_pt_masked(kvm, slot, gfn_offset, mask)

    def kvm_mmu_slot_largepage_remove_write_access(self, kvm: Any, memslot: Any) -> None:
        """Write-protect the slot's huge leaves (PML's enable: they are split on
        their first write); the rmap half is ``slot_handle_large_level``."""
        KVM_MMU_LOCK(kvm)
        flush = self.slot_handle_level(kvm, memslot, self.slot_rmap_write_protect,
                                       PG_LEVEL_2M, KVM_MAX_HUGEPAGE_LEVEL, False)
        if kvm.arch.tdp_mmu_enabled:
            flush |= self.kvm_tdp_mmu_wrprot_slot(kvm, memslot, PG_LEVEL_2M)
        KVM_MMU_UNLOCK(kvm)
        if flush:
            self.kvm_arch_flush_remote_tlbs_memslot(kvm, memslot)

    def kvm_mmu_slot_apply_flags(self, kvm: Any, old: Any, new: Any, change: int) -> None:
        """``x86.c``: with PML the ``kvm_x86_ops`` hooks start and stop logging
        (dirty bits), without it logging write-protects the slot.
        (``kvm_dirty_log_manual_protect_and_init_set`` is never true in the
        model, so the level is 4K.)"""
        if change != KVM_MR_FLAGS_ONLY or new.flags & KVM_MEM_READONLY:
            return
        if old is not None and old.flags & KVM_MEM_LOG_DIRTY_PAGES \
                and not new.flags & KVM_MEM_LOG_DIRTY_PAGES:
            self.kvm_mmu_zap_collapsible_sptes(kvm, new)
        if new.flags & KVM_MEM_LOG_DIRTY_PAGES:
            hook = self.kvm_x86_op(kvm, "slot_enable_log_dirty")
            if hook is not None:
                hook(kvm, new)
            else:
                self.kvm_mmu_slot_remove_write_access(kvm, new, PG_LEVEL_4K)
        else:
            hook = self.kvm_x86_op(kvm, "slot_disable_log_dirty")
            if hook is not None:
                hook(kvm, new)

    # ------------------------------------------------------------- VM init
    def kvm_mmu_init_vm(self, kvm: Any) -> None:
        self.kvm_mmu_init_legacy(kvm)  # kvm_arch_init_vm: active_mmu_pages etc.
        self.kvm_mmu_init_tdp_mmu(kvm)

    def kvm_mmu_uninit_vm(self, kvm: Any) -> None:
        self.kvm_mmu_uninit_tdp_mmu(kvm)

    def kvm_mmu_destroy(self, vcpu: Any) -> None:
        self.kvm_mmu_unload(vcpu)

    # ------------------------------------------------- module parameters
    def set_nx_huge_pages(self, kvm: Any, new_val: bool) -> int:
        """A write of the ``nx_huge_pages`` kvm module parameter: a change zaps
        every VM's roots fast (``kvm_mmu_zap_all_fast`` under each VM's
        ``slots_lock``, the VMs walked under ``kvm_lock``).  The model has one
        VM on ``vm_list`` and keeps the parameter (a global) per run in
        ``kvm.nx_huge_pages``; its values are booleans ("off"/"force"; "auto"
        and 6.x's "never" are not modelled).  The parameter's effect on faults
        (no huge page for executable memory) is not modelled either: the model
        has no instruction fetches.  The recovery thread it wakes is not
        modelled."""
        old_val = kvm.nx_huge_pages
        self._set_nx_huge_pages(kvm, new_val)
        if new_val != old_val:
            mutex_lock(kvm.kvm_lock)
            for vm in (kvm,):  # list_for_each_entry(kvm, &vm_list, vm_list)
                mutex_lock(vm.slots_lock)
                self.kvm_mmu_zap_all_fast(vm)
                mutex_unlock(vm.slots_lock)
            mutex_unlock(kvm.kvm_lock)
        return 0

    def _set_nx_huge_pages(self, kvm: Any, val: bool) -> None:
        kvm.nx_huge_pages = val
