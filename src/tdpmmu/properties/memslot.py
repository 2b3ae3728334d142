"""Once a memslot deletion or move returns, nothing maps its old pages.

``kvm_set_memslot`` (``virt/kvm/kvm_main.c``, 5.10-5.13) for
``KVM_MR_DELETE``/``KVM_MR_MOVE`` first publishes the slot marked
``KVM_MEMSLOT_INVALID`` (from then on no fault can map it: its comment says
no new shadow pages pointing to a deleted or moved memslot are created after
that point), then calls ``kvm_arch_flush_shadow_memslot``, which on x86 zaps
what maps the slot (``kvm_mmu_zap_all_fast``: every TDP MMU root is zapped,
and the TLBs flushed) before the new memslots are installed.  So when the
ioctl returns, no SPTE and no TLB entry of the slot's address space
translates a gfn of the old range to a frame the current memslots do not
give it (a gfn a new slot covers may be mapped again, to its new frame).

Checked when the scenario's ``memslot_delete``/``memslot_move`` returns
(the ``memslot_removed`` event): the check declares reads of what it looks
at, the SPTE words on the walks of the range's gfns in each root of the
address space and those gfns' TLB entries of its vCPUs (``kvm.shared``), so it
is ordered against the stores, fills and flushes it judges and no others.

From 5.18 the fast zap flushes no TLB for invalid roots (5.18's
``tdp_mmu_zap_root_work``, 6.9's ``kvm_tdp_mmu_zap_invalidated_roots``: "A
TLB flush is not necessary as KVM performs a local TLB flush when allocating
a new root (see kvm_mmu_load())"), so on a version whose
``tlb_flush_contract`` says so a TLB entry filled through a root that is
invalid now is not counted (``properties.tlb``).
"""

from __future__ import annotations

from typing import Any

from ..engine import report, visible
from ..kvm.shared import check_reads, tlb_range_reads
from ..kvm.structs import KVM_MEMSLOT_INVALID
from .invalidation import leaf_mappings
from .peek import mmu_roots, peek
from .tlb import TlbProvenance


class MemslotRemoved:
    name = "memslot-removed"

    def __init__(self, kvm: Any, provenance: TlbProvenance | None = None) -> None:
        self.kvm = kvm
        # The TLB entries that count (under 6.9's contract not those filled
        # through an invalid root: see the module doc).
        self.provenance = provenance if provenance is not None else TlbProvenance(kvm)

    def _frame(self, as_id: int, gfn: int) -> int | None:
        for slot in self.kvm.memslots[as_id].value.slots:
            if slot.contains(gfn) and not slot.flags & KVM_MEMSLOT_INVALID:
                pte = self.kvm.mm.ptes.get(slot.userspace_addr + (gfn - slot.base_gfn))
                return None if pte is None else pte.value[0]
        return None

    def probe(self, event: str, f: dict[str, Any]) -> None:
        if event != "memslot_removed":
            return
        kvm = self.kvm
        as_id, start, end = f["as_id"], f["base_gfn"], f["base_gfn"] + f["npages"]
        roots = [r for r in mmu_roots(kvm) if (1 if peek(r, 'role').smm else 0) == as_id]
        vcpus = [v for v in kvm.vcpus if (1 if v.smm else 0) == as_id]
        gfns = range(start, end)
        visible("property: memslot removed",
                check_reads([peek(r, "root") for r in roots], gfns)
                + tuple(a for v in vcpus for a in tlb_range_reads(v.tlb, gfns)))
        problems = []
        for root in roots:
            for gfn, pfn in leaf_mappings(kvm, root, peek(root, "role").level):
                if start <= gfn < end and self._frame(as_id, gfn) != pfn:
                    problems.append(f"root {peek(root, 'name')} maps gfn {gfn:#x} -> "
                                    f"pfn {pfn:#x}")
        for v in vcpus:
            for gfn, (pfn, _w) in self.provenance.entries(v):
                if start <= gfn < end and self._frame(as_id, gfn) != pfn:
                    problems.append(f"vcpu{v.vcpu_id} TLB maps gfn {gfn:#x} -> pfn {pfn:#x}")
        if problems:
            report("property", f"{self.name}: after {f['what']} of memslot {f['slot']} "
                   f"(as_id {as_id}, gfn {start:#x}-{end - 1:#x}) returned, {problems[0]}",
                   "kvm_set_memslot", problems)
