"""Linux 6.18's TDP MMU: era G with root types (direct, mirror, invalid).

Built from the stored 6.18.2 tree (``gfunkmonk/linux-6.18.2``) read against
6.9.0 (``ec-jt/linux-6.9.0``) and, to date the changes, 6.13.7
(``ChenRuiwei/linux-6.13.7``).  The tree is 6.18.2 and has no history: no
list of the 6.18.1/6.18.2 stable patches was found in the stored sources.
Its root functions match what the mainline merges for 6.10 to 6.18 describe
(the 6.18 merge 5b0d0d85422d names only NX recovery under the read lock and
prefault/TDX memslot fixes, which the model does not run), and nothing in
them comes from a later release that the sources name, so the stored code is
taken as 6.18's; a 6.18.y backport to these functions would go unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ..engine import Var
from ..kernel import (
    WARN_ON,
    WARN_ON_ONCE,
    WRITE_ONCE,
    list_add_rcu,
    list_empty,
    list_for_each_entry,
    list_for_each_entry_rcu,
    lockdep_assert_held,
    lockdep_assert_held_write,
    rcu_barrier,
    rcu_read_lock,
    rcu_read_unlock,
    read_lock,
    read_unlock,
    refcount_set,
    refcount_t,
    spin_lock,
    spin_unlock,
    srcu_read_lock,
    srcu_read_unlock,
    write_lock,
    write_unlock,
)
from ..kernel.bug import KVM_BUG_ON, KVM_MMU_WARN_ON
from ..kernel.guard import lock_contract_waived
from ..kernel.lockdep import lockdep_is_held
from . import fidelity
from . import shared as sh
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .spte import PAGE_SHIFT, is_accessed_spte, shadow_accessed_mask, spte_ad_enabled
from .structs import INVALID_PAGE, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, kvm_mmu_page
from .tdp_iter import for_each_tdp_pte, tdp_iter, tdp_iter_root_pt, to_shadow_page
from .tdp_mmu import kvm_mmu_page_as_id
from .v5_13 import role_invalid
from .v5_15 import kvm_gfn_range
from .v6_4 import IS_ENABLED_CONFIG_PROVE_LOCKING
from .v6_9 import V6_9

__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions

# enum kvm_tdp_mmu_root_types (tdp_mmu.h, 6.14)
KVM_INVALID_ROOTS = 1 << 0
KVM_DIRECT_ROOTS = 1 << 1
KVM_MIRROR_ROOTS = 1 << 2
KVM_VALID_ROOTS = KVM_DIRECT_ROOTS | KVM_MIRROR_ROOTS
KVM_ALL_ROOTS = KVM_VALID_ROOTS | KVM_INVALID_ROOTS

# enum kvm_gfn_range_filter (include/linux/kvm_host.h)
KVM_FILTER_SHARED = 1 << 0
KVM_FILTER_PRIVATE = 1 << 1

# KVM_CREATE_VM types (arch/x86/include/uapi/asm/kvm.h)
KVM_X86_DEFAULT_VM = 0
KVM_X86_TDX_VM = 5


def is_mirror_sp(sp: kvm_mmu_page) -> bool:
    """``is_mirror_sp`` (mmu_internal.h, 6.14): the page belongs to a TDX
    mirror root.  A role bit, fixed when the page is made."""
    return bool(sp.role.is_mirror)


def kvm_has_mirrored_tdp(kvm: Any) -> bool:
    """``kvm_has_mirrored_tdp`` (mmu.h, 6.14): only a TDX VM has mirror roots."""
    return kvm.arch.vm_type == KVM_X86_TDX_VM


class _MirrorRootHpa:
    """``&vcpu->arch.mmu->mirror_root_hpa`` as the model's
    ``mmu_free_root_page`` takes it (an object with ``root_hpa``)."""

    def __init__(self, mmu: Any) -> None:
        self._mmu = mmu

    @property
    def root_hpa(self) -> int:
        return int(self._mmu.mirror_root_hpa)

    @root_hpa.setter
    def root_hpa(self, value: int) -> None:
        self._mmu.mirror_root_hpa = value


class V6_18(V6_9):
    """Linux 6.18 (tree 6.18.2): 6.9's roots, now typed.  A root is direct or
    mirror (TDX's shadow of the private page table) and valid or invalid;
    every root walk names the types it visits (``tdp_mmu_root_match``):
    vCPU loads and the slot walks take ``KVM_VALID_ROOTS``, the MMU notifier's
    unmap the direct roots and the invalid ones, ``kvm_tdp_mmu_zap_all``
    direct and invalid roots, the zap of invalidated roots all of them.
    ``kvm_tdp_mmu_invalidate_roots(kvm, root_types)`` invalidates only the
    given types (fast zap: ``KVM_DIRECT_ROOTS``; teardown:
    ``KVM_VALID_ROOTS``) and WARNs on ``KVM_INVALID_ROOTS``.
    ``kvm_tdp_mmu_zap_invalidated_roots(kvm, shared)`` zaps under the read
    lock from the fast zap and under the write lock at teardown.  Aging no
    longer takes ``mmu_lock``: the notifier walks valid direct roots under
    RCU alone and clears Accessed bits atomically, without a TLB flush.

    Mainline commits (6.10 to 6.18) that make it differ from v6.9, by the
    merge that brought them (hashes read in the mailing-list archives of the
    ``pages`` corpus; the individual TDX-preparation patches' hashes were not
    in the sources read):

    - 6.10, the removal of the ``.change_pte()`` MMU notifier (Paolo
      Bonzini; title and hash not checked: read from the trees, 6.9.0 has
      ``kvm_tdp_mmu_set_spte_gfn``, 6.13.7 and 6.18.2 do not): ``kvm_tdp_mmu_set_spte_gfn`` and
      ``kvm_mmu_notifier_change_pte`` are gone (``has_change_pte_notifier``);
      KSM's replacement of a page is an invalidate start/end pair only.
    - c59de1413391 KVM x86 MMU changes for 6.13: ``tdp_mmu_iter_need_resched``
      checks ``need_resched()`` before forward progress and
      ``tdp_mmu_iter_cond_resched`` asserts ``!iter->yielded`` only with
      ``KVM_MMU_WARN_ON`` (see ``CONFIG_KVM_PROVE_MMU``); 526e609f0567 KVM:
      x86/mmu: Process only valid TDP MMU roots when aging a gfn range
      (hash as read on a mirror of a mainline-based tree); aging elides the
      TLB flush (``CONFIG_KVM_ELIDE_TLB_FLUSH_IF_YOUNG``).
    - between 6.9 and 6.13 (in the stored 6.13.7): "KVM: x86/mmu: Introduce
      a quirk to control memslot zap behavior" (title from memory, hash not
      in the sources read): ``kvm_arch_flush_shadow_memslot`` zaps everything only for a
      default VM with ``KVM_X86_QUIRK_SLOT_ZAP_ALL`` (``kvm_memslot_flush_zap_all``).
    - 6.14, TDX MMU preparation (Isaku Yamahata, Rick Edgecombe, Yan Zhao;
      titles, from memory and unchecked, "KVM: x86/tdp_mmu: Introduce KVM
      MMU root types to specify page table type", "Take root types for
      kvm_tdp_mmu_invalidate_all_roots()", "Support mirror root for TDP MMU";
      hashes not in the sources read; the code is read from the trees: in
      6.18.2, not in 6.13.7):
      ``role.is_mirror``, ``tdp_mmu_root_match``, the iterators'
      ``types``, ``kvm_tdp_mmu_invalidate_roots``, ``kvm_tdp_mmu_alloc_root
      (vcpu, mirror)`` (void) and its call for the mirror root from
      ``mmu_alloc_direct_roots``, ``kvm_mmu_destroy`` freeing the mirror root
      under the read lock, ``tdp_mmu_get_root_for_fault``; and 35be969d1ef2
      KVM: x86/mmu: Zap invalid roots with mmu_lock holding for write at
      uninit (``kvm_tdp_mmu_zap_invalidated_roots(kvm, shared)``).  The TDP
      MMU page count (``tdp_mmu_pages``) and its teardown WARN exist only
      with ``CONFIG_KVM_PROVE_MMU`` (6.14 or later: absent from 6.13.7).
    - 20a6cff3b283 KVM: x86/mmu: Check and free obsolete roots in
      kvm_mmu_reload() (6.15; Fixes: 6e01b7601dfe, 6.10's
      ``kvm_arch_vcpu_pre_fault_memory``).
    - 4286a3ec2595 KVM x86/mmu changes for 6.15 (with aa34b811650c KVM:
      Allow lockless walk of SPTEs when handing aging mmu_notifier event):
      x86 selects ``CONFIG_KVM_MMU_LOCKLESS_AGING``; ``kvm_age_gfn`` /
      ``kvm_test_age_gfn`` run without ``mmu_lock``, the TDP MMU part over
      ``for_each_tdp_mmu_root_rcu`` (``__kvm_tdp_mmu_age_gfn_range``).

    No intermediate class.  Only 6.15's lockless aging changes which
    interleavings root walks can meet (an aging walk holds RCU but no
    ``mmu_lock`` and no reference, so it overlaps the final put and the zap
    of invalidated roots): the checker tells 6.15+ from 6.9 there (a root
    freed without a grace period is reported on this class, not on V6_9,
    ``tests/kvm/test_v6_18.py``), and 6.15 to 6.18 differ in nothing the
    model runs, so this class stands for them.  A 6.10-6.14 class would
    behave as V6_9: the root types filter, for a VM without mirror roots, to
    exactly 6.9's roots (``KVM_VALID_ROOTS`` = 6.9's ``only_valid``;
    ``KVM_ALL_ROOTS`` and direct plus invalid = every root), the write lock
    at teardown meets no other thread (the VM has no users then), 6.13's
    ``tdp_mmu_iter_cond_resched`` differs only for a caller that calls it
    again after a yield (checked only with ``CONFIG_KVM_PROVE_MMU``), and
    the removed ``change_pte`` was followed by the invalidation's end anyway.
    Release numbers above come from the merges' titles where a merge is
    named; 6.14 for the TDX preparation, 35be969d1ef2 and the page count,
    and 6.15 for 20a6cff3b283, are from memory and dates (the trees only
    show "after 6.13.7").

    Left out: TDX.  A VM's type is ``KVM_X86_DEFAULT_VM`` (a scenario's
    ``[vm] type = "tdx"`` is refused, see ``vm_types_left_out``), so
    ``kvm_has_mirrored_tdp`` is false: no mirror
    root is ever made, ``kvm_gfn_range_filter_to_root_types`` is always
    ``KVM_DIRECT_ROOTS`` and ``tdp_mmu_root_match``'s mirror branch is never
    taken; the bookkeeping the root functions read (``role.is_mirror``,
    ``mmu->mirror_root_hpa``) is modelled, the external (S-EPT) page-table
    hooks (``set_external_spte_present``, ``remove_external_spte``,
    ``free_external_spt``) and the private/shared gfn split are not.

    Simplifications: the fault path keeps the model's 6.1 shape (see V6_4);
    its root comes from ``tdp_mmu_get_root_for_fault`` (always the direct
    root).  The legacy (shadow) MMU's lockless rmap aging
    (``kvm_rmap_age_gfn_range``: a per-rmap bit lock and atomic bit clears)
    runs here under ``mmu_lock`` for write, which excludes every writer of
    an rmap as the rmap lock does, and more.  6.13's in-place huge page
    recovery (``recover_huge_pages_range``), 6.16's NX recovery under the
    read lock and eager page splitting are not modelled (see the fidelity
    list: the model has no action that disables dirty logging on a huge
    slot in a built-in scenario, and ``kvm_mmu_recover_huge_pages`` keeps
    6.9's zap of collapsible SPTEs).  Everything ``V6_9`` lists.
    """

    name = "v6.18"
    summary = "Linux 6.18: root types (direct/mirror/invalid), lockless aging"

    # Gone by 6.18 (the 6.9.0 tree has them, the 6.18.2 tree none): the
    # change_pte notifier (6.10, above), the per-root aging walk (6.15's
    # lockless aging, above), and kvm_tdp_mmu_invalidate_all_roots, now
    # kvm_tdp_mmu_invalidate_roots(kvm, root_types).
    kvm_mmu_notifier_change_pte = None
    set_tdp_spte = None
    age_gfn_range = None
    kvm_tdp_mmu_invalidate_all_roots = None

    # 6.10: the mm has no .change_pte() notifier any more (see
    # scenarios.actions: KSM's replacement is an invalidation only).
    has_change_pte_notifier = False
    # 6.15: x86 selects the Kconfig option; the notifier's aging runs without
    # mmu_lock, so its young answer may rest on a snapshot a zap made stale
    # (properties.aging judges it by that contract).
    CONFIG_KVM_MMU_LOCKLESS_AGING = True
    # 6.13: x86 selects it; aging's young answer no longer flushes TLBs
    # (properties.aging then judges no flush).
    CONFIG_KVM_ELIDE_TLB_FLUSH_IF_YOUNG = True

    # [vm] type values this version has but the model leaves out (see the
    # checker: a scenario asking for one is refused with this reason).
    vm_types_left_out = {"tdx": "is modelled without TDX: the mirror roots' external "
                                "(S-EPT) page tables and the private/shared gpa split "
                                "are left out"}

    # ------------------------------------------------------ root matching
    def tdp_mmu_root_match(self, root: kvm_mmu_page, types: int) -> bool:
        """6.14: does ``root`` belong to ``types``?  An invalid root only
        matches with ``KVM_INVALID_ROOTS``; then direct or mirror."""
        if WARN_ON_ONCE(not types & KVM_VALID_ROOTS):
            return False
        if role_invalid(root) and not types & KVM_INVALID_ROOTS:
            return False
        if not is_mirror_sp(root):
            return bool(types & KVM_DIRECT_ROOTS)
        return bool(types & KVM_MIRROR_ROOTS)

    def kvm_gfn_range_filter_to_root_types(self, kvm: Any, process: int) -> int:
        """tdp_mmu.h (6.14): the root types a notifier range reaches."""
        if not kvm_has_mirrored_tdp(kvm):
            return KVM_DIRECT_ROOTS
        ret = 0
        if process & KVM_FILTER_PRIVATE:
            ret |= KVM_MIRROR_ROOTS
        if process & KVM_FILTER_SHARED:
            ret |= KVM_DIRECT_ROOTS
        WARN_ON_ONCE(not ret)
        return ret

    def tdp_mmu_get_root(self, vcpu: Any, type: int) -> kvm_mmu_page | None:  # noqa: A002
        """tdp_mmu.h (6.14): the vCPU's mirror root or its direct root."""
        mmu = vcpu.mmu
        hpa = mmu.mirror_root_hpa if type == KVM_MIRROR_ROOTS else mmu.root_hpa
        return to_shadow_page(vcpu.kvm, hpa >> PAGE_SHIFT)

    def tdp_mmu_get_root_for_fault(self, vcpu: Any, gfn: int) -> kvm_mmu_page | None:
        """tdp_mmu.h (6.14): a private gpa faults on the mirror root.  Without
        TDX every address is direct (``kvm_is_addr_direct``)."""
        if kvm_has_mirrored_tdp(vcpu.kvm):  # pragma: no cover - no TDX VMs
            raise NotImplementedError("TDX's private/shared gpa split is not modelled")
        return self.tdp_mmu_get_root(vcpu, KVM_DIRECT_ROOTS)

    def tdp_mmu_for_each_pte(self, vcpu: Any, start: int, end: int) -> Iterator[tdp_iter]:
        """6.14's ``kvm_tdp_mmu_map`` walks ``for_each_tdp_pte`` from the
        root ``tdp_mmu_get_root_for_fault`` returns (the macro
        ``tdp_mmu_for_each_pte`` is gone; the model's fault keeps its call)."""
        root = self.tdp_mmu_get_root_for_fault(vcpu, start)
        return for_each_tdp_pte(tdp_iter(vcpu.kvm), root, vcpu.mmu.shadow_root_level, start,
                                end)

    def _kvm_tdp_mmu_get_walk(self, vcpu: Any, addr: int,
                              root: kvm_mmu_page | None) -> list[int]:
        """``__kvm_tdp_mmu_get_walk`` (6.14): the SPTEs on the path to ``addr``
        from ``root``."""
        gfn = addr >> PAGE_SHIFT
        return [it.old_spte for it in for_each_tdp_pte(tdp_iter(vcpu.kvm), root,
                                                       vcpu.mmu.shadow_root_level, gfn,
                                                       gfn + 1)]

    def kvm_tdp_mmu_get_walk(self, vcpu: Any, addr: int) -> list[int]:
        """6.14: the walk from the vCPU's direct root (inside
        ``kvm_tdp_mmu_walk_lockless_begin/end``: RCU, as the model's 5.12)."""
        root = to_shadow_page(vcpu.kvm, vcpu.mmu.root_hpa >> PAGE_SHIFT)
        rcu_read_lock()
        sptes = self._kvm_tdp_mmu_get_walk(vcpu, addr, root)
        rcu_read_unlock()
        return sptes

    # ----------------------------------------------------- root iterators
    def tdp_mmu_next_root(self, kvm: Any,  # type: ignore[override]
                          prev_root: kvm_mmu_page | None,
                          types: int = KVM_ALL_ROOTS) -> kvm_mmu_page | None:
        """6.14: the next root matching ``types`` whose reference can be
        taken; puts ``prev_root``."""
        from ..kernel.list import list_first_or_null_rcu, list_next_or_null_rcu
        head = kvm.arch.tdp_mmu_roots
        lockdep_assert_held(kvm.mmu_lock)
        rcu_read_lock()
        if prev_root is not None:
            next_root = list_next_or_null_rcu(head, prev_root.link)
        else:
            next_root = list_first_or_null_rcu(head)
        while next_root is not None:
            if self.tdp_mmu_root_match(next_root, types) and \
                    self.kvm_tdp_mmu_get_root(kvm, next_root):
                break
            next_root = list_next_or_null_rcu(head, next_root.link)
        rcu_read_unlock()
        if prev_root is not None:
            self.kvm_tdp_mmu_put_root(kvm, prev_root)
        return next_root

    def _for_each_tdp_mmu_root_yield_safe(self, kvm: Any,  # type: ignore[override]
                                          as_id: int, types: int
                                          ) -> Iterator[kvm_mmu_page]:
        """``__for_each_tdp_mmu_root_yield_safe`` (6.14): ``types`` instead of
        ``only_valid``."""
        root = self.tdp_mmu_next_root(kvm, None, types)
        while True:
            lockdep_assert_held(kvm.mmu_lock)
            if root is None:
                return
            if as_id < 0 or kvm_mmu_page_as_id(root) == as_id:
                yield root
            root = self.tdp_mmu_next_root(kvm, root, types)

    def for_each_valid_tdp_mmu_root_yield_safe(self, kvm: Any,  # type: ignore[override]
                                               as_id: int) -> Iterator[kvm_mmu_page]:
        return self._for_each_tdp_mmu_root_yield_safe(kvm, as_id, KVM_VALID_ROOTS)

    def for_each_tdp_mmu_root_yield_safe(self, kvm: Any  # type: ignore[override]
                                         ) -> Iterator[kvm_mmu_page]:
        return self._for_each_tdp_mmu_root_yield_safe(kvm, -1, KVM_ALL_ROOTS)

    def _for_each_tdp_mmu_root(self, kvm: Any, as_id: int,  # type: ignore[override]
                               types: int) -> Iterator[kvm_mmu_page]:
        """``__for_each_tdp_mmu_root`` (6.14): the write-locked plain walk."""
        for root in list_for_each_entry(kvm.arch.tdp_mmu_roots):
            self.kvm_lockdep_assert_mmu_lock_held(kvm, False)
            if as_id >= 0 and kvm_mmu_page_as_id(root) != as_id:
                continue
            if not self.tdp_mmu_root_match(root, types):
                continue
            yield root

    def for_each_tdp_mmu_root(self, kvm: Any, as_id: int | None = None
                              ) -> Iterator[kvm_mmu_page]:
        """Gone in 6.14 (its one user, 6.9's aging, walks under RCU now);
        kept for model code that lists every root under the write lock."""
        return self._for_each_tdp_mmu_root(kvm, -1 if as_id is None else as_id,
                                           KVM_ALL_ROOTS)

    def for_each_valid_tdp_mmu_root(self, kvm: Any, as_id: int) -> Iterator[kvm_mmu_page]:
        return self._for_each_tdp_mmu_root(kvm, as_id, KVM_VALID_ROOTS)

    def for_each_tdp_mmu_root_rcu(self, kvm: Any, as_id: int,
                                  types: int) -> Iterator[kvm_mmu_page]:
        """6.15: the roots of ``as_id`` matching ``types``, walked under RCU
        without ``mmu_lock`` and without taking references (the caller holds
        ``rcu_read_lock``; a root unlinked meanwhile is freed after a grace
        period, and ``role.invalid`` is read racily)."""
        for root in list_for_each_entry_rcu(kvm.arch.tdp_mmu_roots):
            if as_id >= 0 and kvm_mmu_page_as_id(root) != as_id:
                continue
            if not self.tdp_mmu_root_match(root, types):
                continue
            yield root

    # ------------------------------------------------------ root loading
    def kvm_tdp_mmu_alloc_root(self, vcpu: Any, mirror: bool = False) -> None:  # type: ignore[override]
        """6.14: ``mirror`` loads the TDX mirror root (``role.is_mirror``)
        into ``mirror_root_hpa``; otherwise 6.9's lookup, recheck and
        allocation.  Returns nothing."""
        mmu = vcpu.mmu
        kvm = vcpu.kvm
        role = self.page_role_for_level(vcpu, mmu.shadow_root_level)
        if mirror:
            role = replace(role, is_mirror=1)
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
                for r in list_for_each_entry(kvm.arch.tdp_mmu_roots):
                    if r.role.word == role.word and \
                            not WARN_ON_ONCE(not self.kvm_tdp_mmu_get_root(kvm, r)):
                        root = r
                        break
            if root is None:
                root = self.alloc_tdp_mmu_page(vcpu, 0, mmu.shadow_root_level)
                if mirror:  # tdp_mmu_init_sp(root, NULL, 0, role): the role is the vCPU's
                    root.role = role
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
        if mirror:
            mmu.mirror_root_hpa = root.pfn << PAGE_SHIFT
        else:
            mmu.root_hpa = root.pfn << PAGE_SHIFT

    def mmu_alloc_direct_roots(self, vcpu: Any) -> int:
        """6.14: a TDX VM loads its mirror root first (once), then the direct
        root; the legacy MMU as in 6.9."""
        kvm = vcpu.kvm
        if kvm.arch.tdp_mmu_enabled:
            if kvm_has_mirrored_tdp(kvm) and vcpu.mmu.mirror_root_hpa == INVALID_PAGE:
                self.kvm_tdp_mmu_alloc_root(vcpu, True)
            self.kvm_tdp_mmu_alloc_root(vcpu, False)
            return 0
        return super().mmu_alloc_direct_roots(vcpu)

    def kvm_mmu_reload(self, vcpu: Any) -> int:
        """mmu.h (20a6cff3b283, 6.15): free obsolete roots first, so a caller
        outside ``vcpu_enter_guest`` (KVM_PRE_FAULT_MEMORY, not modelled)
        does not keep a root that was invalidated; then load one if none.
        Checking the direct root is enough: a mirror root never outlives it."""
        if self.kvm_check_request(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, vcpu):
            self.kvm_mmu_free_obsolete_roots(vcpu)
        if vcpu.mmu.root_hpa != INVALID_PAGE:
            return 0
        return self.kvm_mmu_load(vcpu)

    def kvm_mmu_destroy(self, vcpu: Any) -> None:
        """6.14: after the unload, the mirror root's reference is put under
        the read lock (there is none without TDX: ``mmu_free_root_page``
        returns at once)."""
        self.kvm_mmu_unload(vcpu)
        if vcpu.kvm.arch.tdp_mmu_enabled:
            read_lock(vcpu.kvm.mmu_lock)
            self.mmu_free_root_page(vcpu.kvm, _MirrorRootHpa(vcpu.mmu), None)
            read_unlock(vcpu.kvm.mmu_lock)

    # ------------------------------------------------------ invalidation
    def kvm_tdp_mmu_invalidate_roots(self, kvm: Any, root_types: int) -> None:
        """6.14: 6.6's invalidation, of the roots matching ``root_types``
        only (the VM-teardown lockdep waiver stays)."""
        if WARN_ON_ONCE(root_types & KVM_INVALID_ROOTS):
            root_types &= ~KVM_INVALID_ROOTS
        waived = not (kvm.users_count and kvm.created_vcpus)
        if IS_ENABLED_CONFIG_PROVE_LOCKING and not waived:
            lockdep_assert_held_write(kvm.mmu_lock)
        for root in list_for_each_entry(kvm.arch.tdp_mmu_roots):
            if not self.tdp_mmu_root_match(root, root_types):
                continue
            if not role_invalid(root):
                root.tdp_mmu_scheduled_root_to_zap = True
                if waived:
                    with lock_contract_waived():  # the kernel's waiver (see V6_4)
                        root.role = replace(root.role, invalid=1)
                else:
                    root.role = replace(root.role, invalid=1)
                WRITE_ONCE(root.role_invalid, True)

    def kvm_tdp_mmu_zap_invalidated_roots(self, kvm: Any,  # type: ignore[override]
                                          shared: bool) -> None:
        """35be969d1ef2: the read lock when ``shared`` (the fast zap), else
        the write lock (teardown)."""
        if shared:
            read_lock(kvm.mmu_lock)
        else:
            write_lock(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
            if not root.tdp_mmu_scheduled_root_to_zap:
                continue
            root.tdp_mmu_scheduled_root_to_zap = False
            KVM_BUG_ON(not role_invalid(root), kvm)
            self.tdp_mmu_zap_root(kvm, root, shared)
            self.kvm_tdp_mmu_put_root(kvm, root)
        if shared:
            read_unlock(kvm.mmu_lock)
        else:
            write_unlock(kvm.mmu_lock)

    def kvm_mmu_uninit_tdp_mmu(self, kvm: Any) -> None:
        """6.14: invalidate the valid roots, zap them under the write lock;
        the page-count check only with ``CONFIG_KVM_PROVE_MMU`` (the model
        keeps its page list either way: the WARN reads its emptiness)."""
        if not kvm.arch.tdp_mmu_enabled:
            return
        self.kvm_tdp_mmu_invalidate_roots(kvm, KVM_VALID_ROOTS)
        self.kvm_tdp_mmu_zap_invalidated_roots(kvm, False)
        KVM_MMU_WARN_ON(not list_empty(kvm.arch.tdp_mmu_pages), self.CONFIG_KVM_PROVE_MMU)
        WARN_ON(not list_empty(kvm.arch.tdp_mmu_roots))
        rcu_barrier()

    def kvm_mmu_zap_all_fast(self, kvm: Any) -> None:
        """6.14: the fast zap invalidates the direct roots only (a TDX VM's
        mirror roots are invalidated by their own caller)."""
        lockdep_assert_held(kvm.slots_lock)
        KVM_MMU_LOCK(kvm)
        kvm.arch.mmu_valid_gen = 1 - kvm.arch.mmu_valid_gen
        if kvm.arch.tdp_mmu_enabled:
            self.kvm_tdp_mmu_invalidate_roots(kvm, KVM_DIRECT_ROOTS)
        self.kvm_make_all_cpus_request(kvm, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS)
        self.kvm_zap_obsolete_pages(kvm)
        KVM_MMU_UNLOCK(kvm)
        if kvm.arch.tdp_mmu_enabled:
            self.kvm_tdp_mmu_zap_invalidated_roots(kvm, True)

    def kvm_memslot_flush_zap_all(self, kvm: Any) -> bool:
        """mmu.c (after 6.9; in the stored 6.13.7): a default VM with
        ``KVM_X86_QUIRK_SLOT_ZAP_ALL`` (on
        unless userspace disables it; the model has no ``KVM_CAP_DISABLE_QUIRKS2``)
        zaps everything on a memslot removal."""
        return kvm.arch.vm_type == KVM_X86_DEFAULT_VM

    def kvm_arch_flush_shadow_memslot(self, kvm: Any, slot: Any) -> None:
        """mmu.c: the fast zap of every root, as before, for the model's VMs;
        ``kvm_mmu_zap_memslot`` (TDX, or the quirk disabled) is not modelled."""
        if self.kvm_memslot_flush_zap_all(kvm):
            self.kvm_mmu_zap_all_fast(kvm)
        else:  # pragma: no cover - unreachable: no TDX VMs, the quirk is on
            raise NotImplementedError("kvm_mmu_zap_memslot is not modelled")

    # --------------------------------------------------------------- zap
    def kvm_tdp_mmu_zap_all(self, kvm: Any) -> None:
        """6.14: direct roots, invalid ones included (a TDX VM's valid
        mirror roots are left to the notifier's caller)."""
        lockdep_assert_held_write(kvm.mmu_lock)
        for root in self._for_each_tdp_mmu_root_yield_safe(kvm, -1,
                                                           KVM_DIRECT_ROOTS | KVM_INVALID_ROOTS):
            self.tdp_mmu_zap_root(kvm, root, False)

    def kvm_tdp_mmu_unmap_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range,
                                    flush: bool) -> bool:
        """6.14: the roots the range's filter reaches (hva-based notifiers
        are ``KVM_FILTER_SHARED``), and the invalid ones."""
        types = self.kvm_gfn_range_filter_to_root_types(kvm, KVM_FILTER_SHARED) | \
            KVM_INVALID_ROOTS
        for root in self._for_each_tdp_mmu_root_yield_safe(kvm, gfn_range.slot.as_id, types):
            flush = self.tdp_mmu_zap_leafs(kvm, root, gfn_range.start, gfn_range.end,
                                           gfn_range.may_block, flush)
        return flush

    def kvm_unmap_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        """6.13: a zap of a gfn range is inside an invalidation, or under
        ``slots_lock`` (memslot deletion) -- asserted once."""
        if not (kvm.mmu_notifier_count or lockdep_is_held(kvm.slots_lock)):
            WARN_ON_ONCE(True)  # lockdep_assert_once()
        return super().kvm_unmap_gfn_range(kvm, gfn_range)

    # ------------------------------------------------------------ yield
    def tdp_mmu_iter_need_resched(self, kvm: Any, it: tdp_iter) -> bool:
        """6.13: ``need_resched() || rwlock_needbreak()`` first, then forward
        progress."""
        if not self.need_resched(kvm, it):
            return False
        return it.next_last_level_gfn != it.yielded_gfn

    def tdp_mmu_iter_cond_resched(self, kvm: Any, it: tdp_iter, flush: bool = False,
                                  shared: bool = False) -> bool:
        """6.13: a caller must not come back after a yield without moving the
        iterator on; checked only with ``CONFIG_KVM_PROVE_MMU``."""
        from ..kernel import cond_resched_rwlock_read, cond_resched_rwlock_write
        KVM_MMU_WARN_ON(it.yielded, self.CONFIG_KVM_PROVE_MMU)
        if not self.tdp_mmu_iter_need_resched(kvm, it):
            return False
        if flush:
            self.kvm_flush_remote_tlbs(kvm)
        rcu_read_unlock()
        if shared:
            cond_resched_rwlock_read(kvm.mmu_lock)
        else:
            cond_resched_rwlock_write(kvm.mmu_lock)
        rcu_read_lock()
        WARN_ON_ONCE(it.gfn > it.next_last_level_gfn)
        it.yielded = True
        return True

    # ------------------------------------------------------------- aging
    def kvm_tdp_mmu_age_spte(self, kvm: Any, it: tdp_iter) -> None:
        """6.13/6.15: clear the Accessed bit atomically (the model's SPTEs
        have A/D bits, so the access-tracking cmpxchg branch is not taken)."""
        if spte_ad_enabled(it.old_spte):
            # tdp_mmu_clear_spte_bits_atomic(): a LOCK AND
            it.old_spte = sh.fetch_and_spte(it.sp, it.index, ~shadow_accessed_mask)
            new_spte = it.old_spte & ~shadow_accessed_mask
        else:  # pragma: no cover - the model's SPTEs have A/D bits
            raise NotImplementedError("A/D-disabled SPTEs are not modelled")
        self.trace_kvm_tdp_mmu_spte_changed(kvm, kvm_mmu_page_as_id(tdp_iter_root_pt(it)),
                                            it.gfn, it.level, it.old_spte, new_spte)

    def _kvm_tdp_mmu_age_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range,
                                   test_only: bool) -> bool:
        """``__kvm_tdp_mmu_age_gfn_range`` (6.15): valid roots, walked under
        RCU without ``mmu_lock``; no yielding."""
        ret = False
        types = self.kvm_gfn_range_filter_to_root_types(kvm, KVM_FILTER_SHARED)
        WARN_ON(types & ~KVM_VALID_ROOTS)
        rcu_read_lock()
        for root in self.for_each_tdp_mmu_root_rcu(kvm, gfn_range.slot.as_id, types):
            for it in self.tdp_root_for_each_leaf_pte(kvm, root, gfn_range.start,
                                                      gfn_range.end):
                if not is_accessed_spte(it.old_spte):
                    continue
                if test_only:
                    rcu_read_unlock()
                    return True
                ret = True
                self.kvm_tdp_mmu_age_spte(kvm, it)
        rcu_read_unlock()
        return ret

    def kvm_tdp_mmu_age_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        return self._kvm_tdp_mmu_age_gfn_range(kvm, gfn_range, False)

    def kvm_tdp_mmu_test_age_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        return self._kvm_tdp_mmu_age_gfn_range(kvm, gfn_range, True)

    def kvm_may_have_shadow_mmu_sptes(self, kvm: Any) -> bool:
        """mmu.c (6.15): rmaps exist without the TDP MMU (the model has no
        nested shadow pages, ``indirect_shadow_pages``)."""
        return not kvm.arch.tdp_mmu_enabled

    def kvm_rmap_age_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range,
                               test_only: bool) -> bool:
        """mmu.c (6.15), simplified: the rmap walk under ``mmu_lock`` for write
        instead of the per-rmap bit lock (see the class docstring)."""
        write_lock(kvm.mmu_lock)
        handler = self.kvm_test_age_rmapp if test_only else self.kvm_age_rmapp
        young = self.kvm_handle_gfn_range(kvm, gfn_range, handler)
        write_unlock(kvm.mmu_lock)
        return young

    def kvm_age_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        """6.15: the TDP MMU first, then the rmaps if any can exist."""
        young = False
        if kvm.arch.tdp_mmu_enabled:
            young = self.kvm_tdp_mmu_age_gfn_range(kvm, gfn_range)
        if self.kvm_may_have_shadow_mmu_sptes(kvm):
            young |= self.kvm_rmap_age_gfn_range(kvm, gfn_range, False)
        return young

    def kvm_test_age_gfn(self, kvm: Any, gfn_range: kvm_gfn_range) -> bool:
        """6.15: the rmaps are only tested if the TDP MMU found no young SPTE."""
        young = False
        if kvm.arch.tdp_mmu_enabled:
            young = self.kvm_tdp_mmu_test_age_gfn(kvm, gfn_range)
        if young:
            return young
        if self.kvm_may_have_shadow_mmu_sptes(kvm):
            young |= self.kvm_rmap_age_gfn_range(kvm, gfn_range, True)
        return young

    def kvm_mmu_notifier_clear_flush_young(self, kvm: Any, start: int, end: int) -> int:
        """virt/kvm (6.15, ``kvm_age_hva_range`` with ``.lockless``): no
        ``mmu_lock`` (``CONFIG_KVM_MMU_LOCKLESS_AGING``) and no flush
        (``CONFIG_KVM_ELIDE_TLB_FLUSH_IF_YOUNG``)."""
        idx = srcu_read_lock(kvm.srcu)
        young = self.kvm_age_hva(kvm, start, end)
        srcu_read_unlock(kvm.srcu, idx)
        return young

    def kvm_mmu_notifier_test_young(self, kvm: Any, address: int) -> int:
        """6.15: lockless, as above."""
        idx = srcu_read_lock(kvm.srcu)
        young = self.kvm_test_age_hva(kvm, address)
        srcu_read_unlock(kvm.srcu, idx)
        return young


__all__ = ["KVM_ALL_ROOTS", "KVM_DIRECT_ROOTS", "KVM_INVALID_ROOTS", "KVM_MIRROR_ROOTS",
           "KVM_VALID_ROOTS", "V6_18", "is_mirror_sp", "kvm_has_mirrored_tdp"]
