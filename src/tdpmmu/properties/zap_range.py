"""A gfn-range zap zaps every SPTE that mapped the range when it was called.

``kvm_zap_gfn_range`` (``arch/x86/kvm/mmu/mmu.c``, every modelled version)
is how KVM drops the mappings of a gfn range whose memory type or
backing changed (``update_mtrr``, APICv inhibition, ...); 6.1's comment above
it says it: "Invalidate (zap) SPTEs that cover GFNs from gfn_start and up to
gfn_end (not including it)", and its callers rely on no SPTE of the range
surviving the call (they change what a new fault would install).  So every
present leaf SPTE that maps a gfn of the range when the call starts is zapped
(its entry stored to) before the call returns.  A fault may map a gfn of the
range again meanwhile (the zap may yield, or the fault may run before the zap
reaches the gfn): such an entry was stored to, so it is not judged.

Checked when the scenario's ``zap_gfn_range`` returns: an entry that still
holds the leaf it held at the call, unchanged (the same SPTE word of the same
root, not stored to since: ``SpteWord.version``), is the finding.  Roots of
both address spaces count (``kvm_zap_gfn_range`` walks every one), except a
root that is invalid at the return: no vCPU can use it without reloading, and
versions that hand invalid roots to another zapper may skip them.  The check
declares reads of every root it looks at, so it is ordered against the stores
it judges.

Simplified: only the TDP MMU's roots are judged (the legacy MMU's SPTEs are
not words the model tracks one by one).
"""

from __future__ import annotations

from typing import Any

from ..engine import report, visible
from ..kvm.shared import root_reads, spte_word
from ..kvm.spte import (
    SHADOW_PT_INDEX,
    is_last_spte,
    is_shadow_present_pte,
    spte_to_pfn,
)
from .peek import peek, roots_on_list
from .tlb import root_invalid


def leaf_entry(kvm: Any, root: Any, gfn: int) -> tuple[Any, int, int] | None:
    """(page, index, spte) of the present leaf mapping ``gfn`` under ``root``, or
    None (read like a debugger)."""
    role = peek(root, "role")
    level = role.level if role is not None else 0
    sp = root
    while level > 0:
        spt = peek(sp, "spt") or []
        index = SHADOW_PT_INDEX(gfn, level)
        spte = spt[index]
        if not is_shadow_present_pte(spte):
            return None
        if is_last_spte(spte, level):
            return sp, index, spte
        sp = kvm.phys.get(spte_to_pfn(spte))
        if sp is None:
            return None
        level -= 1
    return None


class ZapRangeComplete:
    name = "zap-range-complete"

    def __init__(self, kvm: Any) -> None:
        self.kvm = kvm
        # call id -> [(root, gfn, word, version, spte)] present at the call
        self.calls: dict[int, list[tuple[Any, int, Any, int, int]]] = {}

    def _roots(self) -> list[Any]:
        return [r for r in roots_on_list(self.kvm) if peek(r, "role") is not None]

    def _read(self, what: str) -> list[Any]:
        roots = self._roots()
        visible(f"property: zap range ({what})", root_reads(peek(r, "root") for r in roots))
        return roots

    def probe(self, event: str, f: dict[str, Any]) -> None:
        if event == "zap_gfn_range_called":
            kvm = self.kvm
            mapped = []
            for root in self._read("called"):
                for gfn in range(f["start"], f["end"]):
                    leaf = leaf_entry(kvm, root, gfn)
                    if leaf is not None:
                        sp, index, spte = leaf
                        word = spte_word(sp, index)
                        mapped.append((root, gfn, word, word.version, spte))
            self.calls[f["call"]] = mapped
        elif event == "zap_gfn_range_returned":
            mapped = self.calls.pop(f["call"], [])
            self._read("returned")
            problems = []
            for root, gfn, word, version, spte in mapped:
                if root_invalid(root) or root not in self._roots():
                    continue
                leaf = leaf_entry(self.kvm, root, gfn)
                if leaf is None or leaf[2] != spte or word.version != version:
                    continue
                problems.append(f"root {peek(root, 'name')} still maps gfn {gfn:#x} -> pfn "
                                f"{spte_to_pfn(spte):#x} with the SPTE it had at the call")
            if problems:
                report("property", f"{self.name}: kvm_zap_gfn_range(gfn {f['start']:#x}-"
                       f"{f['end'] - 1:#x}) returned and {problems[0]}", "kvm_zap_gfn_range",
                       problems)
