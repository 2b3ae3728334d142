"""Reading model objects from a property without tripping KASAN.

A property looks at memory the way a debugger does: a freed object is shown,
not reported (the kernel's own access to it is what KASAN reports).
"""

from __future__ import annotations

from typing import Any


def peek(obj: Any, attr: str, default: Any = None) -> Any:
    try:
        return object.__getattribute__(obj, attr)
    except AttributeError:
        return default


def roots_on_list(kvm: Any) -> list[Any]:
    """The roots on ``kvm->arch.tdp_mmu_roots``, in list order (stops at poison)."""
    head = kvm.arch.tdp_mmu_roots
    out = []
    node = peek(head, "next")
    seen = 0
    while node is not head and not isinstance(node, int) and node is not None and seen < 64:
        owner = peek(node, "owner")
        out.append(owner)
        node = peek(node, "next")
        seen += 1
    return out


def legacy_roots(kvm: Any) -> list[Any]:
    """The legacy (shadow) MMU's root pages still allocated (``tdp_mmu=0``), in
    allocation order: on ``active_mmu_pages``, or off it (``role.invalid``)
    while a vCPU still holds them."""
    return [sp for _pfn, sp in sorted(kvm.phys.items())
            if not peek(sp, "tdp_mmu_page") and peek(peek(sp, "root"), "sp") is sp]


def mmu_roots(kvm: Any) -> list[Any]:
    """Every root of either MMU whose paging structure may map guest pages."""
    return roots_on_list(kvm) + legacy_roots(kvm)
