"""The MMU-notifier contract and the lifetime of host page frames.

``include/linux/mmu_notifier.h`` / ``kvm_main.c`` at 5.10: once
``invalidate_range_start`` returns, the secondary MMU maps no page of the
range and does not map one again until ``invalidate_range_end``: KVM zaps the
range and flushes TLBs in ``kvm_mmu_notifier_invalidate_range_start``, and a
page fault that raced with the invalidation sees ``mmu_notifier_count`` (in
progress) or a changed ``mmu_notifier_seq`` in ``mmu_notifier_retry`` and
retries instead of installing what it looked up.  The one exception is the
notifier's own ``change_pte``, which maps the range's new page between start
and end.  The host then frees (or hands to another user) the pages it took
away, so a mapping or an access of one of them is a use-after-free of host
memory, which no sanitizer of the kernel would see: the report names the
site that released the frame and the site that mapped or touched it, as
KASAN does.

Checked:

* when ``invalidate_range_start`` returns: no SPTE of any root and no vCPU
  TLB entry maps a frame of the range;
* at every SPTE store (the ``kvm_tdp_mmu_spte_changed`` tracepoint): a new
  leaf maps no frame the host released, and no thread but the notifier
  itself installs a leaf for a page of a range being invalidated;
* at every guest access: the frame reached is the one the host maps at that
  page's address in the vCPU's own address space's memslot (so neither a
  frame the host released nor a frame of another memslot or address space);
* when ``->release`` returns (``kvm_mmu_notifier_release``, called by
  ``mmu_notifier_unregister`` or the mm's exit): no SPTE of any root maps a
  page.  ``mmu_notifier.h`` says the secondary MMU must tear down all its
  mappings in ``release``, after which the mm frees the pages; KVM does it
  with ``kvm_arch_flush_shadow_all`` (``kvm_mmu_zap_all``).

Where the kernel class's ``tlb_flush_contract`` says that TLB entries filled
through an invalid root are unusable until a flush (5.18 onward,
``properties.tlb.INVALID_ROOT_ENTRIES_UNUSABLE``), such entries are not
counted when ``invalidate_range_start`` returns.  6.9's
``kvm_tdp_mmu_unmap_gfn_range`` zaps invalid roots too, but
``tdp_mmu_zap_leafs`` asks for no flush for them ("Zappings SPTEs in invalid
roots doesn't require a TLB flush, see kvm_tdp_mmu_zap_invalidated_roots()"),
and neither does the fast zap that may have zapped the SPTE first: the
comment there relies on "a local TLB flush when allocating a new root (see
kvm_mmu_load())", which every vCPU on an invalid root must do before its next
guest access, since ``kvm_mmu_zap_all_fast`` made
``KVM_REQ_MMU_FREE_OBSOLETE_ROOTS`` in the critical section that invalidated
the roots.  A vCPU that does reach such a frame is still reported at the
access (the guest-access check below).

Simplification: the checks read the memslots and host page tables in the
step of the store or access without declaring those reads to the engine;
the stores and accesses that can break them are ordered against the
notifier's own steps through the SPTEs, TLBs and the notifier sequence, which
are declared.
"""

from __future__ import annotations

from typing import Any

from ..engine import report, runtime
from ..engine.runtime import current_thread
from ..kernel import callsite
from ..kvm.spte import (
    KVM_PAGES_PER_HPAGE,
    is_last_spte,
    is_shadow_present_pte,
    spte_to_pfn,
)
from .invalidation import leaf_mappings
from .peek import mmu_roots, peek
from .tlb import TlbProvenance

# Reports name kernel code, not the property's own frames.
runtime.hide_frames_of(__file__)

class HostFrames:
    name = "mmu-notifier"

    def __init__(self, kvm: Any, provenance: TlbProvenance | None = None) -> None:
        self.kvm = kvm
        # The TLB entries that count (see the module doc on invalid roots).
        self.provenance = provenance if provenance is not None else TlbProvenance(kvm)
        # In-progress invalidations: (start, end, thread name, {hva: frame at start}).
        self.in_progress: list[tuple[int, int, str, dict[int, int]]] = []
        self.reported: set[Any] = set()

    # ------------------------------------------------------------ helpers
    def _hva_of(self, as_id: int, gfn: int) -> int | None:
        for slot in self.kvm.memslots[as_id].value.slots:
            if slot.contains(gfn):
                return slot.userspace_addr + (gfn - slot.base_gfn)
        return None

    def _once(self, key: Any, message: str, function: str, details: list[str]) -> None:
        if key in self.reported:
            return
        self.reported.add(key)
        report("property", message, function, details)

    def _released(self, pfn: int, what: str, key: Any) -> None:
        site = self.kvm.mm.released.get(pfn)
        if site is None:
            return
        task, chain = site
        function = callsite.model_function()
        details = [f"{what} by task {callsite.task_name()}:",
                   *callsite.indented(callsite.call_chain(12)), "",
                   f"Released by the host (task {task}):", *callsite.indented(chain)]
        self._once(("released", key), f"{self.name}: use-after-free of host frame "
                   f"{pfn:#x} in {function}: {what}", function, details)

    # ------------------------------------------------------------- probes
    def probe(self, event: str, f: dict[str, Any]) -> None:
        if event in ("kvm_tdp_mmu_spte_changed", "kvm_mmu_spte_changed"):
            self._spte_changed(f)
        elif event == "guest_access":
            self._guest_access(f)
        elif event == "invalidate_range_start_returned":
            self._start_returned(f["start"], f["end"])
        elif event == "invalidate_range_end_called":
            self._end_called(f["start"], f["end"])
        elif event == "mmu_notifier_release_returned":
            self._release_returned()

    def _release_returned(self) -> None:
        kvm = self.kvm
        for root in mmu_roots(kvm):
            for gfn, pfn in leaf_mappings(kvm, root, peek(root, "role").level):
                self._once(("release", peek(root, "name")),
                           f"{self.name}: after ->release returned, root {peek(root, 'name')} "
                           f"still maps gfn {gfn:#x} -> pfn {pfn:#x}",
                           "kvm_mmu_notifier_release",
                           [f"root {peek(root, 'name')} maps gfn {gfn:#x} -> pfn {pfn:#x}"])
                break

    def _start_returned(self, start: int, end: int) -> None:
        kvm = self.kvm
        frames = {}
        for hva in range(start, end):
            pte = kvm.mm.ptes.get(hva)
            if pte is not None:
                frames[hva] = pte.value[0]
        t = current_thread()
        self.in_progress.append((start, end, t.name if t else "setup", frames))
        taken = set(frames.values())
        problems = []
        for root in mmu_roots(kvm):
            for gfn, pfn in leaf_mappings(kvm, root, peek(root, "role").level):
                if pfn in taken:
                    problems.append(f"root {peek(root, 'name')} maps gfn {gfn:#x} -> "
                                    f"pfn {pfn:#x}")
        for v in kvm.vcpus:
            for gfn, (pfn, _w) in self.provenance.entries(v):
                if pfn in taken:
                    problems.append(f"vcpu{v.vcpu_id} TLB maps gfn {gfn:#x} -> pfn {pfn:#x}")
        if problems:
            self._once(("start", start, end, problems[0]),
                       f"{self.name}: after invalidate_range_start(hva {start:#x}-{end:#x}) "
                       f"returned, {problems[0]}", "kvm_mmu_notifier_invalidate_range_start",
                       problems)

    def _end_called(self, start: int, end: int) -> None:
        for i, entry in enumerate(self.in_progress):
            if entry[0] == start and entry[1] == end:
                del self.in_progress[i]
                return

    def _spte_changed(self, f: dict[str, Any]) -> None:
        new, level = f["new_spte"], f["level"]
        if not is_shadow_present_pte(new) or not is_last_spte(new, level):
            return
        as_id, gfn = f["as_id"], f["gfn"]
        base = spte_to_pfn(new)
        t = current_thread()
        me = t.name if t else "setup"
        for i in range(KVM_PAGES_PER_HPAGE(level)):
            pfn = base + i
            self._released(pfn, f"SPTE store maps gfn {gfn + i:#x} -> pfn {pfn:#x}",
                           ("store", as_id, gfn + i, pfn))
            if not self.in_progress:
                continue
            hva = self._hva_of(as_id, gfn + i)
            for start, end, owner, _frames in self.in_progress:
                if hva is not None and start <= hva < end and owner != me:
                    self._once(("during", start, end, gfn + i),
                               f"{self.name}: SPTE for gfn {gfn + i:#x} (hva {hva:#x}) "
                               f"installed while invalidate_range(hva {start:#x}-{end:#x}) "
                               "is in progress", callsite.model_function(),
                               [f"mapped by task {me}:",
                                *callsite.indented(callsite.call_chain(12))])

    def _guest_access(self, f: dict[str, Any]) -> None:
        kvm = self.kvm
        vcpu, gfn, pfn, as_id = f["vcpu"], f["gfn"], f["pfn"], f["as_id"]
        verb = "writes" if f["write"] else "reads"
        what = f"vcpu{vcpu.vcpu_id} {verb} gfn {gfn:#x} at pfn {pfn:#x}"
        self._released(pfn, what, ("access", vcpu.vcpu_id, gfn, pfn))
        if pfn in kvm.mm.released:
            return
        hva = self._hva_of(as_id, gfn)
        pte = kvm.mm.ptes.get(hva) if hva is not None else None
        if pte is None:
            problem = f"no memslot of address space {as_id} holds gfn {gfn:#x}"
        elif pte.value[0] != pfn:
            problem = (f"its memslot in address space {as_id} maps it to hva {hva:#x}, "
                       f"frame {pte.value[0]:#x}")
        else:
            return
        self._once(("frame", vcpu.vcpu_id, gfn, pfn), f"guest-access-frame: {what}, but "
                   f"{problem}", "guest_access", [problem])
