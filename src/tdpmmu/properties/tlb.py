"""TLB coherence after a zap: each kernel version's own flush contract.

A vCPU's TLB caches translations it walked; only a flush
(``kvm_flush_remote_tlbs``) removes them.  When an SPTE that maps a page is
zapped (made non-present, or replaced by something that no longer maps the
same frame), the zapper owes a flush; *when* it must be done is the version's
contract, ``tlb_flush_contract`` on the kernel class:

``"before-unlock"`` (5.10-5.17): no vCPU TLB entry maps a zapped SPTE once the
zapper drops ``mmu_lock``.  ``tdp_mmu_iter_flush_cond_resched`` (5.10
``tdp_mmu.c``) flushes before ``cond_resched_lock`` lets anyone else in,
``zap_gfn_range`` returns the flush it still owes and ``kvm_tdp_mmu_zap_all``
and the MMU notifier's ``invalidate_range_start`` do it before unlocking:
another thread taking ``mmu_lock`` next (a fault reinstalling the page, the
host freeing a page table or the page) relies on no vCPU still using the old
translation.  Write-protection is not a zap: dirty logging flushes it after
``mmu_lock`` (``kvm_arch_flush_remote_tlbs_memslot``), and the dirty-log
property judges that.

The legacy (shadow) MMU (``tdp_mmu=0``) keeps the same rule for SPTEs it
zaps through rmaps (the MMU notifier, ``kvm_zap_gfn_range``'s
``slot_handle_level_range`` with ``lock_flush_tlb``), but not for the SPTEs
``__kvm_mmu_prepare_zap_page`` clears when it zaps a whole shadow page: those
pages go on an ``invalid_list`` and ``kvm_mmu_commit_zap_page`` flushes before
freeing them, while ``kvm_mmu_zap_all`` and ``kvm_zap_obsolete_pages`` may
yield in between (the latter after asking every vCPU to reload, which flushes).
Such stores carry ``page_zap`` in their event and are not judged here; a vCPU
walking a freed page table is reported by the hardware walk itself.

``"before-unlock-valid-root"`` (5.18 onward): the same, except for TLB
entries that no guest access can use before a flush, and with the flush for a
removed page table deferred to the caller.  5.18's ``tdp_mmu_zap_root_work``
zaps an invalid root without a flush ("A TLB flush is not necessary as KVM
performs a local TLB flush when allocating a new root (see kvm_mmu_load())"),
6.6's and 6.9's ``kvm_tdp_mmu_zap_invalidated_roots`` say the same, and 6.9's
``tdp_mmu_zap_leafs`` asks for no flush when it zaps SPTEs of an invalid root
("Zappings SPTEs in invalid roots doesn't require a TLB flush").
``kvm_mmu_zap_all_fast`` invalidates the roots and sends every vCPU
``KVM_REQ_MMU_FREE_OBSOLETE_ROOTS`` in one ``mmu_lock`` critical section
(5.18's 527d5cd7eece; 6.9: "In order to ensure all vCPUs drop their
soon-to-be invalid roots"), and a root only turns invalid at its last put
otherwise (5.18-6.3's defunct roots), so a vCPU that used an invalid root
must free it, load another and flush before its next guest access.  Exempt
therefore: a vCPU whose current root is invalid, and any TLB entry that was
filled through a root that is invalid now (:class:`TlbProvenance`) -- the
latter covers a vCPU that has already set its new root (6.9's
``kvm_tdp_mmu_alloc_root``) but not yet done ``kvm_mmu_load``'s flush (in
hardware its old entries are tagged with the old root's EPTP/ASID and
unusable anyway; the model's TLB is untagged).  Nor do the zaps of
``kvm_tdp_mmu_zap_all`` owe a flush under this contract: its comment (since
5.18's "Skip remote TLB flush when zapping all of TDP MMU", still in 6.9)
says KVM zaps everything only when the VM is destroyed or the VMM has exited,
when ``KVM_RUN`` is unreachable -- 6.9's 4K-first zap yields with such zaps
outstanding, which the ``zap_all`` action's running vCPUs would otherwise be
charged for.

Removed page tables (5.18's bb95dfb9e2df, "Defer TLB flush to caller when
freeing TDP MMU shadow pages"): ``handle_removed_pt`` no longer flushes; the
page table is freed by an RCU callback, and "Flows that can remove SPs must
service pending TLB flushes prior to dropping RCU protection" (5.18's
``tdp_iter.h``).  So a vCPU may keep TLB entries cached through an unlinked
page table until its remover flushes, but not until the table is freed:
when ``tdp_mmu_free_sp`` frees a page table, no vCPU may hold a usable TLB
entry whose fill walked through it (:meth:`TlbProvenance.path`).  This also
judges entries whose translation is still right -- a fault that maps a huge
page over a page table of 4K leaves of the same frames (the flush
bb95dfb9e2df adds to ``tdp_mmu_map_handle_target_level``) -- which the
``mmu_lock`` check above, judging frames, cannot tell from fresh ones.  The
hardware hazard it stands for is the paging-structure caches and the A/D
assists that write through cached upper-level entries (5.18's comment in
``handle_removed_pt``); the model's TLB caches whole translations and keeps
the walked tables as ghost state instead.  Entries exempt above are exempt
here too (an invalid root's tables are freed with no flush at all), and so
are the tables ``kvm_tdp_mmu_zap_all`` unlinks.  Simplification: the check
runs at the free, i.e. where the model completes a grace period (the
``rcu_grace_period`` action, ``synchronize_rcu``/``rcu_barrier`` callers,
teardown), not at the remover's ``rcu_read_unlock``; a lost flush in an
execution where no grace period ends before the vCPU's next flush goes
unjudged by it (the ``mmu_lock`` check still judges the frames).

A version with another contract names it, and an unknown contract is not
checked here.

A TLB entry counts as stale if the vCPU's *current* root no longer maps it
(an entry another root of the vCPU's still backs is not the zapper's debt);
a vCPU without a root has its TLB flushed when it loads one
(``kvm_mmu_load``), and one inside that load, between installing the root and
the flush, is skipped too (:func:`tlb_unusable`).  The check runs in the
step of the release; it reads the TLBs without declaring it, which keeps
the search the same: the fills and flushes that decide it are ordered
against the zap by the SPTE stores.
"""

from __future__ import annotations

from typing import Any

from ..engine import report, runtime
from ..engine.runtime import current_thread
from ..kernel import callsite
from ..kvm.shared import check_reads, tlb_range_reads
from ..kvm.spte import (
    KVM_PAGES_PER_HPAGE,
    PAGE_SHIFT,
    SHADOW_PT_INDEX,
    is_last_spte,
    is_shadow_present_pte,
    round_gfn_for_level,
    spte_to_pfn,
)
from ..kvm.structs import INVALID_PAGE
from .peek import peek

# Reports name kernel code, not the property's own frames.
runtime.hide_frames_of(__file__)

CONTRACTS = ("before-unlock", "before-unlock-valid-root")

# The contracts under which a TLB entry filled through a root that is invalid
# now is owed no flush (see above; 5.18's tdp_mmu_zap_root_work).
INVALID_ROOT_ENTRIES_UNUSABLE = ("before-unlock-valid-root",)

# The contracts under which a removed page table's flush is its remover's,
# owed before the table's RCU free (see above; 5.18's bb95dfb9e2df).
PT_FLUSH_BEFORE_RCU_FREE = ("before-unlock-valid-root",)


def root_invalid(root: Any) -> bool:
    """``role.invalid`` of a root of either MMU, read like a debugger."""
    return root is not None and bool(getattr(peek(root, "role"), "invalid", False))


def tlb_unusable(kvm: Any, v: Any, contract: str | None) -> bool:
    """Are all of ``v``'s TLB entries ones it can never use again before a flush?

    While it has no root (it loads one, and flushes, before a guest access);
    while its ``kvm_mmu_load`` installs a new root and has not flushed yet
    (``tlb_flush_after_load_pending``, model ghost state: real TLB entries are
    tagged with the old root, which the new one does not use); and, under 6.9's
    contract, while its current root is invalid: it was sent
    ``KVM_REQ_MMU_FREE_OBSOLETE_ROOTS`` (with a kick) when the root was
    invalidated and frees it and flushes at load before its next guest access
    (the comment of 6.9's ``kvm_tdp_mmu_zap_invalidated_roots``).  A guest
    access through such an entry would still be caught by the access checks."""
    hpa = v.root_mmu.root_hpa  # the TLB holds L1's translations (see on_release)
    if hpa == INVALID_PAGE or getattr(v, "tlb_flush_after_load_pending", False):
        return True  # no root yet, or loading one: kvm_mmu_load flushes first
    if contract not in INVALID_ROOT_ENTRIES_UNUSABLE:
        return False
    return root_invalid(kvm.phys.get(hpa >> PAGE_SHIFT))


class TlbProvenance:
    """Through which root each vCPU's TLB entry was filled (or last used), and
    so which entries a guest access can still use without a flush.

    A fill and the access that makes it happen in one step, which the
    ``guest_access`` tracepoint reports with the vCPU, whose ``root_hpa`` then
    is the root walked (or, on a TLB hit, the root loaded, which is the one
    the entry came through: a vCPU flushes its TLB whenever it loads a root,
    ``kvm_mmu_load``, before it can access the guest again).  The model's TLB
    is not tagged by root, as hardware's is (EPTP/ASID); this is the tag.
    """

    def __init__(self, kvm: Any, contract: str | None = None) -> None:
        self.kvm = kvm
        # Under this contract an entry filled through an invalid root is unusable.
        self.contract = contract
        self.invalid_root_entries_unusable = contract in INVALID_ROOT_ENTRIES_UNUSABLE
        self.root: dict[tuple[int, int], Any] = {}  # (vcpu_id, gfn) -> root
        # (vcpu_id, gfn) -> the page tables (pfns) the fill walked, root first.
        self.walked: dict[tuple[int, int], tuple[int, ...]] = {}
        self._tlb_version: dict[int, int] = {}  # vcpu_id -> TLB version last seen

    def probe(self, event: str, f: dict[str, Any]) -> None:
        if event != "guest_access":
            return
        v = f["vcpu"]
        hpa = v.mmu.root_hpa
        root = self.kvm.phys.get(hpa >> PAGE_SHIFT) if hpa != INVALID_PAGE else None
        key = (v.vcpu_id, f["gfn"])
        self.root[key] = root
        # The access filled its entry iff the TLB changed since the last
        # access (a fill bumps the version in the access's own step; a flush
        # empties the TLB, so the access after it fills): then the walk just
        # made is the current root's, in this step.  A hit keeps the path of
        # the fill it hit.
        if self._tlb_version.get(v.vcpu_id) != v.tlb.version:
            self._tlb_version[v.vcpu_id] = v.tlb.version
            self.walked[key] = walk_path(self.kvm, root, f["gfn"])

    def path(self, v: Any, gfn: int) -> tuple[int, ...]:
        """The page tables (pfns) the fill of ``v``'s entry for ``gfn`` walked."""
        return self.walked.get((v.vcpu_id, gfn), ())

    def filled_through_invalid_root(self, v: Any, gfn: int) -> bool:
        return root_invalid(self.root.get((v.vcpu_id, gfn)))

    def unusable(self, v: Any, gfn: int) -> bool:
        """The entry cannot be used before the vCPU flushes (see the module doc)."""
        if tlb_unusable(self.kvm, v, self.contract):
            return True
        return self.invalid_root_entries_unusable and self.filled_through_invalid_root(v, gfn)

    def entries(self, v: Any) -> list[tuple[int, tuple[int, bool]]]:
        """``v``'s TLB entries that a guest access may still use, by gfn."""
        return [(gfn, e) for gfn, e in sorted(v.tlb.entries.items())
                if not self.unusable(v, gfn)]


def walk_path(kvm: Any, root: Any, gfn: int) -> tuple[int, ...]:
    """The pfns of the page tables a walk of ``gfn`` from ``root`` visits, root
    first, down to the one holding the leaf (read like a debugger)."""
    if root is None:
        return ()
    role = peek(root, "role")
    level = role.level if role is not None else 0
    sp = root
    path = []
    while level > 0 and sp is not None:
        path.append(peek(sp, "pfn"))
        spt = peek(sp, "spt") or []
        spte = spt[SHADOW_PT_INDEX(gfn, level)]
        if not is_shadow_present_pte(spte) or is_last_spte(spte, level):
            break
        sp = kvm.phys.get(spte_to_pfn(spte))
        level -= 1
    return tuple(path)


def root_translation(kvm: Any, root: Any, gfn: int) -> int | None:
    """The frame ``root`` maps ``gfn`` to now, or None (read like a debugger)."""
    if root is None:
        return None
    role = peek(root, "role")
    level = role.level if role is not None else 0
    sp = root
    while level > 0:
        spt = peek(sp, "spt") or []
        spte = spt[SHADOW_PT_INDEX(gfn, level)]
        if not is_shadow_present_pte(spte):
            return None
        if is_last_spte(spte, level):
            return spte_to_pfn(spte) + (gfn - round_gfn_for_level(gfn, level))
        sp = kvm.phys.get(spte_to_pfn(spte))
        if sp is None:
            return None
        level -= 1
    return None


class TlbCoherence:
    name = "tlb-coherence"

    def __init__(self, kvm: Any, contract: str | None,
                 provenance: TlbProvenance | None = None) -> None:
        self.kvm = kvm
        self.contract = contract
        self.provenance = provenance if provenance is not None else TlbProvenance(kvm, contract)
        self.owed: dict[Any, list[tuple[int, int, int, int]]] = {}  # thread -> zaps
        self.reported: set[Any] = set()
        self.zap_all_tables: set[int] = set()  # pfns of tables kvm_tdp_mmu_zap_all unlinked
        if contract in CONTRACTS:
            kvm.mmu_lock.on_release = self.on_release
            kvm.mmu_lock.release_reads = self.release_reads

    def probe(self, event: str, f: dict[str, Any]) -> None:
        if event == "kprobe:tdp_mmu_free_sp":
            if self.contract in PT_FLUSH_BEFORE_RCU_FREE:
                self.on_free_sp(f["args"][0])
            return
        if event not in ("kvm_tdp_mmu_spte_changed", "kvm_mmu_spte_changed") \
                or self.contract not in CONTRACTS:
            return
        if f.get("page_zap"):
            return  # a legacy page zap: flushed by kvm_mmu_commit_zap_page (see above)
        old, new, level = f["old_spte"], f["new_spte"], f["level"]
        if self.contract in PT_FLUSH_BEFORE_RCU_FREE and is_shadow_present_pte(old) \
                and not is_last_spte(old, level) \
                and "kvm_tdp_mmu_zap_all" in callsite.call_chain(48):
            # A page table kvm_tdp_mmu_zap_all unlinks owes no flush (see above).
            self.zap_all_tables.add(spte_to_pfn(old))
        if not is_shadow_present_pte(old) or not is_last_spte(old, level):
            return
        if is_shadow_present_pte(new) and is_last_spte(new, level) \
                and spte_to_pfn(new) == spte_to_pfn(old):
            return  # the same frame: a permission or A/D change, not a zap
        t = current_thread()
        if t is None:
            return
        if self.contract == "before-unlock-valid-root" and \
                "kvm_tdp_mmu_zap_all" in callsite.call_chain(16):
            return
        self.owed.setdefault(t, []).append((f["as_id"], f["gfn"], KVM_PAGES_PER_HPAGE(level),
                                            spte_to_pfn(old)))

    def release_reads(self, t: Any) -> tuple:
        """What :meth:`on_release` reads, declared in the release's own step so
        that DPOR orders the check against the fills and flushes of the zapped
        gfns' TLB entries and the stores of their SPTEs (an undeclared read would
        let a vCPU's flush and the check commute, and so be explored in one order)."""
        owed = self.owed.get(t)
        if not owed:
            return ()
        gfns = sorted({gfn0 + i for _a, gfn0, n, _p in owed for i in range(n)})
        kvm = self.kvm
        roots = []
        out: tuple = ()
        for v in kvm.vcpus:
            out += tlb_range_reads(v.tlb, gfns)
            hpa = v.root_mmu.root_hpa
            if hpa != INVALID_PAGE:
                root = kvm.phys.get(hpa >> PAGE_SHIFT)
                if root is not None:
                    roots.append(root)
        return out + check_reads(roots, gfns)

    def on_release(self, t: Any) -> None:
        owed = self.owed.pop(t, None)
        if not owed:
            return
        kvm = self.kvm
        for v in kvm.vcpus:
            # The TLB holds L1's translations (L2 makes no accesses in the
            # model): judge it against root_mmu's root, also while L2 runs.
            hpa = v.root_mmu.root_hpa
            if hpa == INVALID_PAGE or not v.tlb.entries:
                continue
            as_id = 1 if v.smm else 0
            root = kvm.phys.get(hpa >> PAGE_SHIFT)
            unusable = self.contract in INVALID_ROOT_ENTRIES_UNUSABLE
            if unusable and root_invalid(root):
                continue  # the vCPU frees this root and flushes before it runs
            for a, gfn0, n, pfn0 in owed:
                if a != as_id:
                    continue
                for i in range(n):
                    entry = v.tlb.entries.get(gfn0 + i)
                    if entry is None or entry[0] != pfn0 + i:
                        continue
                    if self.provenance.unusable(v, gfn0 + i):
                        continue  # flushed by kvm_mmu_load before any use
                    if root_translation(kvm, root, gfn0 + i) == pfn0 + i:
                        continue
                    self._report(t, v, gfn0 + i, pfn0 + i)
                    return

    def on_free_sp(self, sp: Any) -> None:
        """``tdp_mmu_free_sp`` is about to free ``sp``: no usable TLB entry may
        have been cached through it (see the module doc: removed page tables)."""
        pfn = peek(sp, "pfn")
        if pfn in self.zap_all_tables:
            return  # unlinked by kvm_tdp_mmu_zap_all: no vCPU runs again
        # The check is a step of its own that declares what it reads: each
        # vCPU's flush word and its entries cached through the table (an
        # unlinked table gets no new ones), so that DPOR orders it against the
        # vCPUs' flushes; read inside the free's step, undeclared, a flush and
        # the check would commute and be explored in one order only.
        runtime.visible("property: page table freed", tuple(
            a for v in self.kvm.vcpus
            for a in tlb_range_reads(v.tlb, [g for g, _e in self.provenance.entries(v)
                                             if pfn in self.provenance.path(v, g)])))
        for v in self.kvm.vcpus:
            for gfn, entry in self.provenance.entries(v):
                if pfn not in self.provenance.path(v, gfn):
                    continue
                key = ("freed", v.vcpu_id, gfn, pfn)
                if key in self.reported:
                    return
                self.reported.add(key)
                t = current_thread()
                function = callsite.model_function()
                report("property", f"{self.name}: page table {peek(sp, 'name')} freed while "
                       f"vcpu{v.vcpu_id}'s TLB still holds gfn {gfn:#x} -> pfn {entry[0]:#x} "
                       "cached through it (no TLB flush since it was unlinked)", function,
                       [f"freed by task {t.name if t is not None else '?'}:",
                        *callsite.indented(callsite.call_chain(12))])
                return

    def _report(self, t: Any, v: Any, gfn: int, pfn: int) -> None:
        key = (v.vcpu_id, gfn, pfn)
        if key in self.reported:
            return
        self.reported.add(key)
        function = callsite.model_function()
        report("property", f"{self.name}: {t.name} dropped mmu_lock in {function} while "
               f"vcpu{v.vcpu_id}'s TLB still maps zapped gfn {gfn:#x} -> pfn {pfn:#x} "
               "(no TLB flush since the zap)", function,
               [f"released by task {t.name}:", *callsite.indented(callsite.call_chain(12))])
