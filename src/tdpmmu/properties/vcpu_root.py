"""A vCPU's ``root_hpa`` always names a live root.

``mmu_alloc_direct_roots`` (``mmu.c``) stores in ``vcpu->arch.mmu->root_hpa``
the root that ``kvm_tdp_mmu_get_vcpu_root_hpa`` took a reference on for the
vCPU, and ``mmu_free_root_page`` drops that reference and resets
``root_hpa`` to ``INVALID_PAGE`` in the same ``mmu_lock`` section: so while
``mmu_lock`` is free (no writer and, as 6.9 frees under the read lock, no
reader), a valid ``root_hpa`` is the page of a root that is
allocated, on ``tdp_mmu_roots``, and counted (``root_count`` >= 1, the
vCPU's own reference).  The page fault path and the guest's hardware walk
use ``root_hpa`` without checking any of that (``kvm_tdp_mmu_map`` only
WARNs on a zero count), so a root freed or uncounted under a vCPU is checked
here, between steps, before it is used.

Every root a vCPU holds is checked: root_mmu's and guest_mmu's current
roots and their ``prev_roots`` (each cached root keeps the reference it
had as the current one; ``kvm_mmu_free_roots`` puts it).

A legacy (shadow) MMU root (``tdp_mmu=0``, and nested EPT's shadow roots) is held the same way by
``mmu_alloc_root``'s ``++sp->root_count``; it may leave ``active_mmu_pages``
while held (zapped and marked invalid by ``kvm_mmu_zap_all_fast``), so for it
the rule is: allocated and counted.
"""

from __future__ import annotations

from typing import Any

from ..engine import report
from ..kernel import object_is_freed
from ..kvm.spte import PAGE_SHIFT
from ..kvm.structs import INVALID_PAGE
from .peek import peek


class VcpuRootLive:
    name = "vcpu-root-live"

    def __init__(self, kvm: Any) -> None:
        self.kvm = kvm
        self.reported: set[tuple[int, int]] = set()

    def check(self) -> None:
        kvm = self.kvm
        if peek(kvm.mmu_lock, "owner") is not None or peek(kvm.mmu_lock, "readers", 0):
            return
        for v, hpa in held_roots(kvm):
            pfn = hpa >> PAGE_SHIFT
            sp = kvm.phys.get(pfn)
            legacy = sp is not None and not peek(sp, "tdp_mmu_page")
            if sp is not None and not object_is_freed(sp) and root_count(sp) >= 1 \
                    and (legacy or _listed(sp)):
                continue  # the common case, checked without walking the list
            if sp is None:
                what = f"{kvm.freed_phys.get(pfn, hex(pfn))}, a freed page"
            elif object_is_freed(sp):
                what = f"{peek(sp, 'name')}, a freed page"
            elif not legacy and not _listed(sp):
                what = f"root {peek(sp, 'name')}, not on tdp_mmu_roots"
            elif root_count(sp) < 1:
                what = f"root {peek(sp, 'name')} with root_count {root_count(sp)}"
            else:
                continue
            key = (v.vcpu_id, hpa)
            if key in self.reported:
                continue
            self.reported.add(key)
            report("property", f"{self.name}: vcpu{v.vcpu_id}'s root_hpa names {what}, "
                   "while mmu_lock is free", "mmu_alloc_direct_roots")


def held_roots(kvm: Any) -> list[tuple[Any, int]]:
    """(vCPU, hpa) of every valid root a vCPU holds, current or cached, in
    both of its MMUs."""
    out = []
    for v in kvm.vcpus:
        for mmu in (v.root_mmu, v.guest_mmu):
            for hpa in [mmu.root_hpa] + [r.hpa for r in mmu.prev_roots]:
                if hpa != INVALID_PAGE:
                    out.append((v, hpa))
    return out


def root_count(sp: Any) -> int:
    """A root's count, a plain int (5.10-5.12) or a ``refcount_t`` (later; from
    5.13 the TDP MMU's is ``tdp_mmu_root_count``)."""
    refs = peek(sp, "tdp_mmu_root_count")
    if refs is not None:
        return int(peek(refs, "refs", 0))
    count = peek(sp, "root_count", 0)
    return count if isinstance(count, int) else int(peek(count, "refs", 0))


def _listed(sp: Any) -> bool:
    """Is the page on a list (``link`` neither self-linked nor poisoned)?  Only
    roots are on ``tdp_mmu_roots``, and a root is on no other list."""
    link = peek(sp, "link")
    nxt = peek(link, "next")
    return nxt is not link and not isinstance(nxt, int) and nxt is not None
