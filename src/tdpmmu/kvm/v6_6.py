"""Linux 6.6's TDP MMU: era F, invalidated roots zapped synchronously.

Built from the stored 6.6.47 tree (``Salpadding/linux-6.6-strip``) read
against 6.5.0 (``sndrzt/linux-6.5``).  The root-lifecycle changes between
them are two 6.6-rc3 fixes, 0df9dab891ff and 441a5dfcd968, both in the 6.6
release.  The rest of the diff in ``tdp_mmu.c`` is either 6.6 merge-window
work that changes no modelled behaviour (``WARN_ON`` -> ``WARN_ON_ONCE``,
``MMU_WARN_ON`` -> ``KVM_MMU_WARN_ON`` for 6.6's ``CONFIG_KVM_PROVE_MMU``,
``to_shadow_page`` -> ``root_to_sp``, ``range->pte`` -> ``range->arg.pte``)
or 6.6.y stable backports, left out: ``tdp_mmu_need_write_protect`` in
``clear_dirty_gfn_range`` / ``clear_dirty_pt_masked`` ("KVM: x86/mmu:
Write-protect L2 SPTEs in TDP MMU when clearing dirty status": in the stored
6.9.0, not in 6.8.0, so mainline 6.9; with the move of
``clear_dirty_pt_masked``'s lockdep assertion);
the model's SPTEs have no A/D-disabled roots, so that choice is moot here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ..kernel import (
    INIT_LIST_HEAD,
    WARN_ON,
    WARN_ON_ONCE,
    WRITE_ONCE,
    list_empty,
    list_for_each_entry,
    lockdep_assert_held_write,
    rcu_barrier,
    read_lock,
    read_unlock,
    spinlock_t,
)
from ..kernel.bug import KVM_BUG_ON
from ..kernel.guard import lock_contract_waived
from . import fidelity
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .structs import kvm_mmu_page
from .v5_13 import role_invalid
from .v5_15 import kvm_gfn_range
from .v6_4 import IS_ENABLED_CONFIG_PROVE_LOCKING, V6_4

__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"
__kernel_files__ = fidelity.kernel_files()  # its mmu.c / tdp_mmu.c functions


class V6_6(V6_4):
    """Linux 6.6 (tree 6.6.47): era F.  No work queue.  Invalidation marks
    each valid root invalid and flags it ``tdp_mmu_scheduled_root_to_zap``
    (under ``mmu_lock`` for write, or with no lock at VM teardown, 6.4's
    waiver); ``kvm_tdp_mmu_zap_invalidated_roots`` then walks every root
    under the read lock, and for each flagged one clears the flag, zaps it
    and puts the TDP MMU's reference (gifted by the invalidation).  VM
    teardown invalidates and zaps synchronously from
    ``kvm_mmu_uninit_tdp_mmu``.  The yield-safe walk over all roots no longer
    filters by address space.

    Mainline commits (6.6) that make it differ from v6.4:

    - 0df9dab891ff KVM: x86/mmu: Stop zapping invalidated TDP MMU roots
      asynchronously (6.6-rc3): ``tdp_mmu_zap_wq``, ``tdp_mmu_zap_root_work``
      and ``tdp_mmu_schedule_zap_root`` are gone;
      ``tdp_mmu_scheduled_root_to_zap``; ``kvm_tdp_mmu_zap_invalidated_roots``
      zaps under the read lock (``KVM_BUG_ON`` on a flagged valid root);
      ``kvm_mmu_uninit_tdp_mmu`` calls it; ``kvm_tdp_mmu_invalidate_all_roots``
      walks the list without RCU (nothing unlinks roots meanwhile).
    - 441a5dfcd968 KVM: x86/mmu: Do not filter address spaces in
      for_each_tdp_mmu_root_yield_safe() (6.6-rc3): the walk takes
      ``shared`` instead of ``as_id`` and visits both address spaces;
      ``kvm_tdp_mmu_zap_leafs(kvm, start, end, flush)`` (always may yield);
      ``kvm_tdp_mmu_zap_all`` walks once; ``kvm_tdp_mmu_unmap_gfn_range``
      keeps the per-address-space walk and the notifier's ``may_block``;
      ``kvm_zap_gfn_range`` calls the zap once.

    The legacy (shadow) MMU's root functions (``tdp_mmu=0``) in the 6.6.47
    tree differ from 6.4.6 only in ways the model cannot tell apart:
    ``WARN_ON`` -> ``WARN_ON_ONCE`` (``kvm_zap_obsolete_pages``,
    ``kvm_mmu_commit_zap_page``, ``kvm_mmu_zap_all``, ``mmu_free_root_page``,
    ``kvm_mmu_unload``), ``root_to_sp()`` for ``to_shadow_page()``, and the
    dummy roots of shadow paging (``kvm_mmu_is_dummy_root`` in
    ``kvm_mmu_free_roots`` and ``direct_page_fault``), which a direct MMU never
    loads; ``kvm_mmu_free_shadow_page``'s empty-page check became
    ``kvm_mmu_check_sptes_at_free`` (``CONFIG_KVM_PROVE_MMU``), which the model
    keeps on as it kept ``MMU_WARN_ON``.

    ``CONFIG_KVM_PROVE_MMU`` (the 6.6 merge d011151616e7 "KVM x86 MMU
    changes for 6.6": MMU_DEBUG replaced by it) is a run option from here on
    (``--prove-mmu``, off by default as in the kernel's Kconfig): 6.6's
    ``KVM_MMU_WARN_ON`` checks no root state on the modelled paths (they are
    in A/D-bit helpers and the legacy MMU's ``kvm_mmu_check_sptes_at_free``,
    whose model keeps 5.10's check), so on 6.6 the option changes nothing;
    6.9 and 6.18 read it (``tdp_mmu_zap_root``'s passes, the yield and
    teardown checks).

    Simplifications:
    ``tdp_mmu_scheduled_root_to_zap`` is a plain field of the page: every
    access holds ``mmu_lock`` (for write in the invalidation; for read in the
    zap, of which one runs at a time: under ``slots_lock`` or at teardown),
    so the lock's events order them.  Everything ``V6_4`` lists.
    """

    name = "v6.6"
    summary = "Linux 6.6: no work queue; invalidated roots flagged and zapped synchronously"

    kworker_threads = 0  # 0df9dab891ff: no tdp_mmu_zap_wq, so no kernel worker

    # 0df9dab891ff: "kvm_tdp_mmu_zap_invalidated_roots() is gifted the TDP
    # MMU's reference" (see properties.root_lifecycle).
    tdp_mmu_reference_put_by = "kvm_tdp_mmu_zap_invalidated_roots"
    # Kconfig KVM_PROVE_MMU (6.6, default n): the run option --prove-mmu.
    CONFIG_KVM_PROVE_MMU = False

    # ------------------------------------------------------------ VM init
    def kvm_mmu_init_tdp_mmu(self, kvm: Any) -> None:
        """0df9dab891ff: no work queue to allocate (the function is void)."""
        kvm.arch.tdp_mmu_pages_lock = spinlock_t("kvm->arch.tdp_mmu_pages_lock")
        if not self.is_tdp_mmu_enabled():  # the module-wide tdp_mmu_enabled (see V6_4)
            return
        kvm.arch.tdp_mmu_enabled = True
        INIT_LIST_HEAD(kvm.arch.tdp_mmu_roots)
        INIT_LIST_HEAD(kvm.arch.tdp_mmu_pages)

    def kvm_mmu_uninit_tdp_mmu(self, kvm: Any) -> None:
        """0df9dab891ff: invalidate every root, then zap them here (read lock),
        which puts the TDP MMU's references and frees them."""
        if not kvm.arch.tdp_mmu_enabled:
            return
        self.kvm_tdp_mmu_invalidate_all_roots(kvm)
        self.kvm_tdp_mmu_zap_invalidated_roots(kvm)
        WARN_ON(not list_empty(kvm.arch.tdp_mmu_pages))
        WARN_ON(not list_empty(kvm.arch.tdp_mmu_roots))
        rcu_barrier()

    # ----------------------------------------------------- root iterators
    def for_each_tdp_mmu_root_yield_safe(self, kvm: Any,  # type: ignore[override]
                                         shared: bool) -> Iterator[kvm_mmu_page]:
        """441a5dfcd968: every root of both address spaces, invalid ones
        included, with the lockdep assertion at every root."""
        root = self.tdp_mmu_next_root(kvm, None, shared, False)
        while root is not None:
            self.kvm_lockdep_assert_mmu_lock_held(kvm, shared)
            yield root
            root = self.tdp_mmu_next_root(kvm, root, shared, False)

    # --------------------------------------------------------------- zap
    def kvm_tdp_mmu_zap_leafs(self, kvm: Any, start: int, end: int,  # type: ignore[override]
                              flush: bool) -> bool:
        """441a5dfcd968: every root of every address space; may always yield."""
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm, False):
            flush = self.tdp_mmu_zap_leafs(kvm, root, start, end, True, flush)
        return flush

    def kvm_tdp_mmu_zap_all(self, kvm: Any) -> None:
        """441a5dfcd968: one walk over all roots (no per-address-space loop)."""
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm, False):
            self.tdp_mmu_zap_root(kvm, root, False)

    def kvm_tdp_mmu_zap_invalidated_roots(self, kvm: Any) -> None:
        """0df9dab891ff: zap the roots the invalidation flagged, under the read
        lock, and put the reference it gifted -- after the zap, so the root
        stays reachable by the MMU notifiers while it is zapped."""
        read_lock(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm, True):
            if not root.tdp_mmu_scheduled_root_to_zap:
                continue
            root.tdp_mmu_scheduled_root_to_zap = False
            KVM_BUG_ON(not role_invalid(root), kvm)
            # No TLB flush: a vCPU flushes when it loads a new root.
            self.tdp_mmu_zap_root(kvm, root, True)
            self.kvm_tdp_mmu_put_root(kvm, root, True)
        read_unlock(kvm.mmu_lock)

    def kvm_tdp_mmu_invalidate_all_roots(self, kvm: Any) -> None:
        """0df9dab891ff: flag each valid root for the synchronous zap and mark
        it invalid.  6.4's lockdep waiver stays (VM teardown holds no lock);
        the walk is a plain one, as nothing else can unlink roots then."""
        waived = not (kvm.users_count and kvm.created_vcpus)
        if IS_ENABLED_CONFIG_PROVE_LOCKING and not waived:
            lockdep_assert_held_write(kvm.mmu_lock)
        for root in list_for_each_entry(kvm.arch.tdp_mmu_roots):
            if not role_invalid(root):
                root.tdp_mmu_scheduled_root_to_zap = True
                if waived:
                    # The kernel waives its assertion here: so does the
                    # model's lock contract for this write (see V6_4).
                    with lock_contract_waived():
                        root.role = replace(root.role, invalid=1)
                else:
                    root.role = replace(root.role, invalid=1)
                WRITE_ONCE(root.role_invalid, True)

    def kvm_tdp_mmu_unmap_gfn_range(self, kvm: Any, gfn_range: kvm_gfn_range,
                                    flush: bool) -> bool:
        """441a5dfcd968: the notifier's walk keeps its address space (and its
        ``may_block``), open-coded with ``__for_each_tdp_mmu_root_yield_safe``."""
        for root in self._for_each_tdp_mmu_root_yield_safe(kvm, gfn_range.slot.as_id, False,
                                                           False):
            flush = self.tdp_mmu_zap_leafs(kvm, root, gfn_range.start, gfn_range.end,
                                           gfn_range.may_block, flush)
        return flush

    # ---------------------------------------------------------------- mmu.c
    def kvm_zap_gfn_range(self, kvm: Any, gfn_start: int, gfn_end: int) -> None:
        """441a5dfcd968: one zap over every address space's roots."""
        if WARN_ON_ONCE(gfn_end <= gfn_start):
            return
        KVM_MMU_LOCK(kvm)
        self.kvm_mmu_invalidate_begin(kvm, 0, (1 << 64) - 1)
        flush = self.kvm_rmap_zap_gfn_range(kvm, gfn_start, gfn_end)
        if kvm.arch.tdp_mmu_enabled:
            flush = self.kvm_tdp_mmu_zap_leafs(kvm, gfn_start, gfn_end, flush)
        if flush:
            self.kvm_flush_remote_tlbs_with_address(kvm, gfn_start, gfn_end - gfn_start)
        self.kvm_mmu_invalidate_end(kvm, 0, (1 << 64) - 1)
        KVM_MMU_UNLOCK(kvm)


__all__ = ["V6_6"]
