"""After an MMU-notifier invalidation completes, nothing maps the range.

At ``invalidate_range_end`` no SPTE in any root and no vCPU TLB entry may map
a page frame the invalidation took away from the range: the host is free to
reuse those frames from then on.  (A mapping of the range's *new* frames may
exist already: ``change_pte`` installs one between start and end.)

A TLB entry no guest access can use before its vCPU flushes does not count:
on a version whose ``tlb_flush_contract`` says so (5.18 onward), one filled
through a root that is invalid now (``properties.tlb.TlbProvenance``; 5.18's
zap work and 6.9's ``kvm_tdp_mmu_zap_invalidated_roots`` owe no flush for
invalid roots because "KVM performs a local TLB flush when allocating a new
root (see kvm_mmu_load())").
"""

from __future__ import annotations

from typing import Any

from ..engine import READ, report, visible
from ..kvm.shared import root_reads
from .peek import mmu_roots, peek
from .tlb import TlbProvenance


def leaf_mappings(kvm: Any, root: Any, level: int, base_gfn: int = 0):
    """(gfn, pfn) of every present leaf under ``root`` (huge leaves expanded)."""
    from ..kvm.spte import (
        KVM_PAGES_PER_HPAGE,
        PT64_ENT_PER_PAGE,
        is_last_spte,
        is_shadow_present_pte,
        spte_to_pfn,
    )
    spt = peek(root, "spt") or []
    for i in range(min(len(spt), PT64_ENT_PER_PAGE)):
        spte = spt[i]
        if not is_shadow_present_pte(spte):
            continue
        gfn = base_gfn + i * KVM_PAGES_PER_HPAGE(level)
        if is_last_spte(spte, level):
            for j in range(KVM_PAGES_PER_HPAGE(level)):
                yield gfn + j, spte_to_pfn(spte) + j
        else:
            child = kvm.phys.get(spte_to_pfn(spte))
            if child is not None:
                yield from leaf_mappings(kvm, child, level - 1, gfn)


class InvalidationComplete:
    name = "invalidation-complete"

    def __init__(self, kvm: Any, provenance: TlbProvenance | None = None) -> None:
        self.kvm = kvm
        # The TLB entries that count (under 6.9's contract not those filled
        # through an invalid root: see the module doc).
        self.provenance = provenance if provenance is not None else TlbProvenance(kvm)

    def probe(self, event: str, fields: dict[str, Any]) -> None:
        if event != "invalidate_range_end":
            return
        kvm = self.kvm
        start, end = fields["start"], fields["end"]
        hvas = range(start, end)
        old_pfns = {pfn for hva in hvas for pfn in kvm.mm.old_pfns.get(hva, ())}
        # It reads every vCPU's TLB and every root's leaves: both declared, so
        # that a store into a root racing the check is ordered against it.
        visible("property: invalidation complete",
                tuple((v.tlb, READ) for v in kvm.vcpus) + root_reads(mmu_roots(kvm)))
        problems = []
        for root in mmu_roots(kvm):
            role = peek(root, "role")
            for gfn, pfn in leaf_mappings(kvm, root, role.level):
                if pfn in old_pfns:
                    problems.append(f"root {peek(root, 'name')} maps gfn {gfn:#x} -> "
                                    f"stale pfn {pfn:#x}")
        for v in kvm.vcpus:
            for gfn, (pfn, _w) in self.provenance.entries(v):
                if pfn in old_pfns:
                    problems.append(f"vcpu{v.vcpu_id} TLB maps gfn {gfn:#x} -> stale pfn "
                                    f"{pfn:#x}")
        if problems:
            report("property", f"{self.name}: after invalidate_range_end(hva "
                   f"{start:#x}-{end:#x}) {problems[0]}",
                   "kvm_mmu_notifier_invalidate_range_end", problems)
